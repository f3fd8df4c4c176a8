"""The run store: every finished run, keyed by the hash of its config.

SQLite (standard library) in WAL mode: a run is written in one transaction, so a
process killed mid-write leaves either the whole run or nothing; several
processes (parallel sweep workers) may read and write at once.

Schema (one row per run)::

    runs(id TEXT PRIMARY KEY,      -- config hash (RunConfig.hash())
         kind TEXT,                -- "train" for training runs; studies may add others
         config TEXT,              -- JSON, the full config
         summary TEXT,             -- JSON: success, best_val_loss, steps, seconds, ...
         history TEXT,             -- JSON list of evaluation records
         created REAL, seqgap_version TEXT)

Query it with any SQLite client, e.g.::

    sqlite3 seqgap_runs/runs.sqlite \
      "select json_extract(config,'$.model'), json_extract(config,'$.n_train'),
              json_extract(summary,'$.best_val_loss') from runs"

or from Python: ``RunStore(path).df()`` (a list of flat dicts) / ``.find(model="lstm")``.
"""
from __future__ import annotations

import json
import os
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from seqgap import __version__

DEFAULT_STORE = "seqgap_runs/runs.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL DEFAULT 'train',
    config TEXT NOT NULL,
    summary TEXT NOT NULL,
    history TEXT NOT NULL,
    created REAL NOT NULL,
    seqgap_version TEXT NOT NULL
);
"""


def default_store_path() -> str:
    return os.environ.get("SEQGAP_STORE", DEFAULT_STORE)


class RunStore:
    """Finished runs keyed by config hash.  ``RunStore(":memory:")`` for a throwaway store."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = str(path if path is not None else default_store_path())
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute(_SCHEMA)

    # ---- writing -------------------------------------------------------------
    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        else:
            self._conn.execute("COMMIT")

    def put(self, run_id: str, config: dict[str, Any], summary: dict[str, Any],
            history: list[dict[str, Any]] | None = None, kind: str = "train") -> None:
        """Store one finished run atomically (replacing any earlier row with the same id)."""
        row = (run_id, kind, _dumps(config), _dumps(summary), _dumps(history or []), time.time(), __version__)
        with self._transaction() as c:
            c.execute("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?)", row)

    def delete(self, run_id: str) -> None:
        with self._transaction() as c:
            c.execute("DELETE FROM runs WHERE id=?", (run_id,))

    # ---- reading -------------------------------------------------------------
    def get(self, run_id: str) -> dict[str, Any] | None:
        cur = self._conn.execute("SELECT id, kind, config, summary, history, created FROM runs WHERE id=?", (run_id,))
        r = cur.fetchone()
        return None if r is None else _row(r)

    def __contains__(self, run_id: str) -> bool:
        return self._conn.execute("SELECT 1 FROM runs WHERE id=?", (run_id,)).fetchone() is not None

    def __len__(self) -> int:
        return self._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0]

    def all(self, kind: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT id, kind, config, summary, history, created FROM runs"
        args: tuple = ()
        if kind is not None:
            q += " WHERE kind=?"
            args = (kind,)
        return [_row(r) for r in self._conn.execute(q + " ORDER BY created", args)]

    def find(self, kind: str | None = None, **config_filters: Any) -> list[dict[str, Any]]:
        """Runs whose config has the given top-level values (e.g. ``model="lstm"``)."""
        return [r for r in self.all(kind) if all(r["config"].get(k) == v for k, v in config_filters.items())]

    def df(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Flat records (config and summary fields side by side), e.g. for pandas.DataFrame."""
        out = []
        for r in self.all(kind):
            rec = {"id": r["id"]}
            rec.update({k: v for k, v in r["config"].items() if not isinstance(v, dict)})
            rec.update({f"task.{k}": v for k, v in r["config"].get("task_params", {}).items()})
            rec.update({f"train.{k}": v for k, v in r["config"].get("train", {}).items()})
            rec.update(r["summary"])
            out.append(rec)
        return out

    def close(self) -> None:
        self._conn.close()


def _finite(x: Any) -> Any:
    """NaN/inf -> None: SQLite's JSON functions reject NaN, and one such row breaks every query."""
    if isinstance(x, float) and (x != x or x in (float("inf"), float("-inf"))):
        return None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite(v) for v in x]
    return x


def _dumps(x: Any) -> str:
    return json.dumps(_finite(x), sort_keys=True, allow_nan=False)


def _row(r) -> dict[str, Any]:
    return {"id": r[0], "kind": r[1], "config": json.loads(r[2]), "summary": json.loads(r[3]),
            "history": json.loads(r[4]), "created": r[5]}
