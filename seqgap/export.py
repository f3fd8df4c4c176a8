"""``seqgap runs`` filters and exports: the run store as CSV, JSON or Parquet, one flat record per run.

Records are :meth:`seqgap.store.RunStore.df` rows (config and summary fields side by side,
``task.<param>`` and ``train.<field>`` for the nested config) plus ``kind``.  CSV and Parquet
cells hold scalars: nested values (``eval_lengths`` metrics, model options, lists) are JSON text.
Parquet needs pyarrow (``pip install 'seqgap[export]'``, with DuckDB to query it)::

    duckdb -c "select model, avg(best_val_loss) from 'runs.parquet' group by model"
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Sequence

from seqgap.errors import SeqgapError

FORMATS = (".csv", ".json", ".parquet")


def _yes_no(text: str | None) -> bool | None:
    if text is None:
        return None
    t = str(text).strip().lower()
    if t in ("yes", "true", "1", "y"):
        return True
    if t in ("no", "false", "0", "n"):
        return False
    raise SeqgapError(f"--success: expected yes or no, got {text!r}")


def _names(text: str | None) -> set[str] | None:
    if text is None:
        return None
    names = {x.strip() for x in str(text).split(",") if x.strip()}
    return names or None


def filter_runs(rows: Sequence[dict[str, Any]], model: str | None = None, task: str | None = None,
                kind: str | None = None, success: str | None = None) -> list[dict[str, Any]]:
    """Stored runs (``RunStore.all()`` rows) that match every filter given: ``model`` / ``task`` /
    ``kind`` (comma lists of names) and ``success`` (yes/no: the run met its criterion)."""
    models, tasks, kinds, ok = _names(model), _names(task), _names(kind), _yes_no(success)
    out = []
    for r in rows:
        c, s = r.get("config") or {}, r.get("summary") or {}
        if kinds is not None and r.get("kind") not in kinds:
            continue
        if models is not None and c.get("model") not in models:
            continue
        if tasks is not None and c.get("task") not in tasks:
            continue
        if ok is not None and ("success" not in s or bool(s.get("success")) != ok):
            continue
        out.append(r)
    return out


def records(store, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat records (``store.df()``, with ``kind``) of ``rows``, in their order."""
    kind_of = {r["id"]: r["kind"] for r in rows}
    flat = {rec["id"]: rec for rec in store.df() if rec["id"] in kind_of}
    out = []
    for r in rows:
        rec = flat.get(r["id"])
        if rec is not None:
            out.append({"id": rec["id"], "kind": kind_of[r["id"]], **{k: v for k, v in rec.items() if k != "id"}})
    return out


def _scalar(v: Any) -> Any:
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True, default=str)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def flat_table(recs: Sequence[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns in first-seen order, records with scalar cells of one type per column: nested values
    as JSON text; a column mixing text with numbers, or booleans with numbers, as text; ints with
    floats as floats)."""
    cols: list[str] = []
    seen = set()
    for r in recs:
        for k in r:
            if k not in seen:
                seen.add(k)
                cols.append(k)
    rows = [{k: _scalar(r.get(k)) for k in cols} for r in recs]
    for k in cols:
        kinds = {type(r[k]) for r in rows if r[k] is not None}
        if len(kinds) <= 1:
            continue
        if kinds <= {int, float}:
            for r in rows:
                if r[k] is not None:
                    r[k] = float(r[k])
        else:
            for r in rows:
                if r[k] is not None:
                    r[k] = json.dumps(r[k]) if isinstance(r[k], bool) else str(r[k])
    return cols, rows


def export(recs: Sequence[dict[str, Any]], path: str) -> Path:
    """Write ``recs`` to ``path``; the format from its suffix (.csv, .json, .parquet)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in FORMATS:
        raise SeqgapError(f"--export {path}: unknown format {suffix or '(no suffix)'!r}; use .csv, .json or .parquet")
    if suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise SeqgapError("--export .parquet needs pyarrow: pip install 'seqgap[export]'") from None
    if p.parent and not p.parent.exists():
        raise SeqgapError(f"--export {path}: folder {p.parent} does not exist")
    try:
        if suffix == ".json":
            p.write_text(json.dumps([{k: _json_safe(v) for k, v in r.items()} for r in recs], indent=1,
                                    default=str) + "\n")
        elif suffix == ".csv":
            cols, rows = flat_table(recs)
            with open(p, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=cols)
                w.writeheader()
                for r in rows:
                    w.writerow({k: ("" if v is None else json.dumps(v) if isinstance(v, bool) else v)
                                for k, v in r.items()})
        else:
            cols, rows = flat_table(recs)
            table = pa.Table.from_pylist(rows) if rows else pa.table({c: pa.array([], pa.null()) for c in cols})
            pq.write_table(table, p)
    except OSError as e:
        raise SeqgapError(f"--export {path}: {e.strerror or e}") from None
    return p


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
