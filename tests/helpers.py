"""Helpers shared by test files (importable as ``helpers``: pytest puts tests/ on sys.path)."""
from __future__ import annotations

from seqgap.store import RunStore

TIMING = {"seconds", "tokens_per_s"}


def stored_metrics(path) -> dict:
    """Every training run of a store: id -> (summary, history) without the wall-clock fields, which
    are the only numbers allowed to differ between two executions of the same run."""
    return {r["id"]: ({k: v for k, v in r["summary"].items() if k not in TIMING},
                      [{k: v for k, v in h.items() if k != "seconds"} for h in r["history"]])
            for r in RunStore(path).all() if r["kind"] == "train"}


def alive(pid: int) -> bool:
    """Is process ``pid`` running (a zombie is dead)?"""
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
