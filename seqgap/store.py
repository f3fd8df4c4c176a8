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

    claims(run_id TEXT PRIMARY KEY, owner TEXT, claimed REAL, heartbeat REAL, ttl REAL)

Query it with any SQLite client, e.g.::

    sqlite3 seqgap_runs/runs.sqlite \
      "select json_extract(config,'$.model'), json_extract(config,'$.n_train'),
              json_extract(summary,'$.best_val_loss') from runs"

or from Python: ``RunStore(path).df()`` (a list of flat dicts) / ``.find(model="lstm")``.

What can go wrong, and what the store does about it
---------------------------------------------------
* **Bad path.** ``""`` (also ``SEQGAP_STORE`` set but empty) is refused: SQLite
  would open a temporary database and throw every run away.  A directory,
  ``/dev/null`` or any other non-regular file is refused before SQLite touches it.
* **Unreadable file.** Corrupt, truncated, not SQLite, another program's database,
  a ``runs`` table of another schema: a one-line :class:`SeqgapError` naming the
  file and the reason, at open or at the first read that meets the damage.
* **Read-only file or folder.** The store opens read-only (``writable`` is False)
  and reads work.  ``RunStore(path, readonly=False)`` or :meth:`require_writable`
  refuses it up front (call it before training); ``put`` into it saves the run to
  the spill file if it can and raises a SeqgapError saying where the run went.
* **Hostile rows** (malformed JSON, nesting too deep to parse, a config that is not
  a JSON object, text that is not UTF-8, ...): skipped with a warning on stderr.
  ``get`` of such a row returns None, so the run is trained again and ``put``
  replaces the bad row.  Never a traceback, never a hang.
* **Locked store.** Writes retry with backoff for ``lock_wait_s`` (default
  :data:`DEFAULT_LOCK_WAIT_S`, or ``$SEQGAP_STORE_LOCK_WAIT``).  A finished run that
  still cannot be written is appended to ``<store>.spill.jsonl`` (one JSON line
  per run, fsync'd) with a warning; ``get``/``all``/``len`` see spilled runs, and
  the next writable open (or the next successful ``put``) merges them into the
  database, one transaction per run, without duplicates, and only then removes
  them from the spill file, so a crash during the merge loses and duplicates nothing.
* **Two processes, one run.** :meth:`claim` / :meth:`heartbeat` / :meth:`release`
  (or the :meth:`claiming` context manager) mark a run as in progress; a claim
  whose heartbeat is older than its ttl is dead and can be taken over.  Claims
  are rows in their own table: WAL readers never wait for them.
"""
from __future__ import annotations

import json
import math
import os
import random
import socket
import sqlite3
import stat
import sys
import threading
import time
import uuid
from copy import deepcopy
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

try:  # advisory locks on the spill file (POSIX); without them concurrent merges are not excluded
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from seqgap import __version__
from seqgap.errors import SeqgapError

DEFAULT_STORE = "seqgap_runs/runs.sqlite"
# How long a write waits for another process's write lock before the run is spilled.
# Sweep writes take milliseconds; a lock held for minutes is a stuck or interactive client.
DEFAULT_LOCK_WAIT_S = 300.0
LOCK_WAIT_ENV = "SEQGAP_STORE_LOCK_WAIT"
SPILL_SUFFIX = ".spill.jsonl"
REJECTED_SUFFIX = ".spill.rejected.jsonl"  # fragments of spill lines cut short by a crash
# Opening a store merges spilled runs, but must not stall start-up on a store that is
# still locked: wait this long, then leave them for the next open (reads see them anyway).
MERGE_WAIT_S = 1.0
# Heartbeats and releases are bookkeeping: never stall training for long on them.
CLAIM_BOOKKEEPING_WAIT_S = 10.0
DEFAULT_CLAIM_TTL_S = 120.0

_COLUMNS = ("id", "kind", "config", "summary", "history", "created", "seqgap_version")
_CLAIM_COLUMNS = ("run_id", "owner", "claimed", "heartbeat", "ttl")

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
_CLAIMS_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    claimed REAL NOT NULL,     -- when this owner took it
    heartbeat REAL NOT NULL,   -- its last sign of life (time.time())
    ttl REAL NOT NULL          -- dead once heartbeat + ttl < now
);
"""
_SELECT = "SELECT id, kind, config, summary, history, created FROM runs"
_PUT = f"INSERT OR REPLACE INTO runs ({', '.join(_COLUMNS)}) VALUES (?,?,?,?,?,?,?)"
# Merging a spilled run: insert it, or replace an older row, never a newer one, so merging
# the same line twice (a crash before it was removed from the spill file) changes nothing.
_MERGE = (f"INSERT INTO runs ({', '.join(_COLUMNS)}) VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET "
          + ", ".join(f"{c}=excluded.{c}" for c in _COLUMNS[1:]) + " WHERE excluded.created > runs.created")


def default_store_path() -> str:
    """``$SEQGAP_STORE`` if set, else :data:`DEFAULT_STORE`; set but empty is an error."""
    env = os.environ.get("SEQGAP_STORE")
    if env is None:
        return DEFAULT_STORE
    if not env.strip():
        raise SeqgapError(f"SEQGAP_STORE is set but empty: set it to a file path, or unset it for the "
                          f"default store {DEFAULT_STORE}")
    return env


def new_owner() -> str:
    """A claim owner name unique to this process and call: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _owner_process_gone(owner: str) -> bool:
    """A claim made by a process of this machine that no longer exists (killed: no release, no
    heartbeat) is dead at once, not only after its ttl, so a rerun right after kill -9 goes ahead."""
    host, _, rest = owner.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine's claim: only its heartbeat can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, another user's
        return False
    return False


class _Locked(Exception):
    """Another connection kept the write lock for the whole wait (internal)."""


class _BadRow(Exception):
    """A stored row that cannot be read back as a run (internal)."""


def _warn(msg: str) -> None:
    # Printed, not warnings.warn: the warning filter would show a second spill only once.
    print(f"seqgap: warning: {msg}", file=sys.stderr, flush=True)


class RunStore:
    """Finished runs keyed by config hash.  ``RunStore(":memory:")`` for a throwaway store.

    ``readonly``: None (default) opens read-write when the file and folder allow it and
    read-only otherwise; True never writes (and never creates the file); False requires a
    writable store and refuses any other up front.  ``lock_wait_s``: how long a write
    waits for another process's lock before the run goes to the spill file.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, readonly: bool | None = None,
                 lock_wait_s: float | None = None):
        self.path = os.fsdecode(path) if path is not None else default_store_path()
        self.lock_wait_s = _lock_wait(lock_wait_s)
        self._memory = self.path == ":memory:"
        self.spill_path: str | None = None if self._memory else self.path + SPILL_SUFFIX
        self.rejected_path: str | None = None if self._memory else self.path + REJECTED_SUFFIX
        # One connection shared by threads (heartbeats): a transaction must not interleave.
        self._lock = threading.RLock()
        self._spill_cache: tuple[Any, dict[str, dict[str, Any]]] = (None, {})
        self._has_runs = True
        self._conn: sqlite3.Connection | None = None
        self.writable = self._open(readonly)
        if self.writable:
            self.merge_spill(wait_s=min(MERGE_WAIT_S, self.lock_wait_s))

    # ---- opening -------------------------------------------------------------
    def _open(self, readonly: bool | None) -> bool:
        """Connect and check the file; returns whether the store is writable."""
        if self._memory:
            self._conn = _connect(":memory:")
            self._conn.execute(_SCHEMA)
            return readonly is not True
        p = self.path
        if not p.strip():
            raise SeqgapError('run store path is empty (--store "" or SEQGAP_STORE=""): give a file path, '
                              f"or leave it unset for the default {DEFAULT_STORE}")
        if "\x00" in p:
            raise SeqgapError(f"run store path {p!r} contains a NUL character")
        exists = _check_file(p)
        if readonly is True:
            if not exists:
                raise SeqgapError(f"run store {p!r} does not exist")
            write = False
        else:
            if not exists:
                try:
                    Path(p).parent.mkdir(parents=True, exist_ok=True)
                except OSError as e:
                    raise SeqgapError(f"run store {p!r}: cannot create its folder ({e.strerror or e})") from None
            why = _not_writable(p, exists)
            if why and not exists:
                raise SeqgapError(f"run store {p!r} does not exist and cannot be created ({why})")
            if why and readonly is False:
                raise SeqgapError(f"run store {p!r} is read-only ({why}): runs cannot be stored in it")
            write = not why
        if exists:
            truncated = _truncated(p)
            if truncated:
                raise SeqgapError(f"run store {p!r} is {truncated}: restore it from a backup or move it aside")
        try:
            if write:
                self._conn = _connect(p)
            else:
                self._conn = _connect_readonly(p)
            tables = self._retry(lambda c: dict(c.execute(
                "SELECT name, sql FROM sqlite_master WHERE type='table'").fetchall()), write=False)
            _check_schema(p, tables, self._conn)
            if write:
                # WAL: readers never wait for a writer, and a killed writer leaves no partial run.
                self._retry(lambda c: c.execute("PRAGMA journal_mode=WAL").fetchall(), write=False)
                self._conn.execute("PRAGMA synchronous=NORMAL")
                if "runs" not in tables:
                    self._retry(lambda c: c.execute(_SCHEMA), write=True)
            else:
                self._has_runs = "runs" in tables  # an empty database opened read-only: no runs
        except _Locked:
            self.close()
            raise SeqgapError(f"run store {p!r} is locked by another process (waited {self.lock_wait_s:g} s "
                              "to open it)") from None
        except sqlite3.Error as e:
            self.close()
            raise self._error(e) from None
        except BaseException:
            self.close()
            raise
        return write

    # ---- retrying ------------------------------------------------------------
    def _retry(self, fn: Callable[[sqlite3.Connection], Any], write: bool, wait_s: float | None = None) -> Any:
        """``fn(conn)``, in a write transaction if ``write``, retried while the database is locked.

        SQLite's own busy handler waits in C, where Ctrl-C cannot stop it, so it gets at most
        a second per attempt and this loop does the rest (with backoff for the cases where
        SQLite reports "locked" at once instead of waiting).  Raises _Locked when ``wait_s``
        (default ``lock_wait_s``) runs out, SeqgapError for any other database error.
        """
        wait_s = self.lock_wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + wait_s
        delay = 0.01
        with self._lock:
            if self._conn is None:
                raise SeqgapError(f"run store {self.path!r} is closed")
            c = self._conn
            while True:
                left = max(0.0, deadline - time.monotonic())
                t0 = time.monotonic()
                try:
                    c.execute(f"PRAGMA busy_timeout={int(min(left, 1.0) * 1000)}")
                    if not write:
                        return fn(c)
                    c.execute("BEGIN IMMEDIATE")
                    try:
                        out = fn(c)
                        c.execute("COMMIT")
                        return out
                    except BaseException:
                        if c.in_transaction:  # SQLite rolls back some failures itself
                            c.execute("ROLLBACK")
                        raise
                except sqlite3.Error as e:
                    if not _is_busy(e):
                        raise self._error(e) from None
                    if time.monotonic() >= deadline:
                        raise _Locked() from None
                if time.monotonic() - t0 < 0.5:  # "locked" without SQLite waiting: back off ourselves
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())) * random.uniform(0.5, 1.0))
                    delay = min(delay * 2, 1.0)

    def _error(self, e: sqlite3.Error) -> SeqgapError:
        return SeqgapError(f"run store {self.path!r} {_explain(e)}")

    def require_writable(self) -> None:
        """Raise SeqgapError unless runs can be stored here (call it before training)."""
        if not self.writable:
            raise SeqgapError(f"run store {self.path!r} is read-only: runs cannot be stored in it")

    # ---- writing -------------------------------------------------------------
    def put(self, run_id: str, config: dict[str, Any], summary: dict[str, Any],
            history: list[dict[str, Any]] | None = None, kind: str = "train") -> None:
        """Store one finished run atomically (replacing any earlier row with the same id).

        A store that stays locked for ``lock_wait_s`` gets the run in its spill file instead
        (with a warning; nothing is lost).  Any other failure (read-only, corrupt, disk
        full) also saves the run to the spill file if possible, then raises SeqgapError.
        """
        row = (run_id, kind, _dumps(config), _dumps(summary), _dumps(history or []), time.time(), __version__)
        if not self.writable:
            self._spill_and_raise(row, f"run store {self.path!r} is read-only")
        try:
            self._retry(lambda c: c.execute(_PUT, row), write=True)
        except _Locked:
            where = self._spill(row, f"run store {self.path!r} is locked")
            _warn(f"run store {self.path!r} stayed locked for {self.lock_wait_s:g} s (another process holds its "
                  f"write lock): run {run_id} was saved to {where} and will be merged into the store when it is "
                  "next opened for writing")
            return
        except SeqgapError as e:
            self._spill_and_raise(row, str(e))
        # The lock was free just now: bring in runs spilled earlier (a stat when there are none).
        if self.spill_path is not None and os.path.exists(self.spill_path):
            self.merge_spill(wait_s=min(MERGE_WAIT_S, self.lock_wait_s))

    def delete(self, run_id: str) -> None:
        """Remove a run from the database and from the spill file."""
        self._require_writable_for("delete runs")
        try:
            self._retry(lambda c: c.execute("DELETE FROM runs WHERE id=?", (run_id,)), write=True)
        except _Locked:
            raise SeqgapError(f"run store {self.path!r} stayed locked for {self.lock_wait_s:g} s: "
                              f"run {run_id} was not deleted") from None
        if self.spill_path is not None and os.path.exists(self.spill_path):
            with _locked_file(self.spill_path, blocking=True) as fd:
                if fd is not None:
                    lines = _read_all(fd).split(b"\n")
                    kept = [ln for ln in lines if ln.strip() and _spill_id(ln) != run_id]
                    if len(kept) != len([ln for ln in lines if ln.strip()]):
                        _rewrite(self.spill_path, kept)

    def _require_writable_for(self, what: str) -> None:
        if not self.writable:
            raise SeqgapError(f"run store {self.path!r} is read-only: cannot {what}")

    # ---- spill file ----------------------------------------------------------
    def _spill(self, row: tuple, why: str) -> str:
        """Append a run to the spill file (fsync'd); returns its path or raises SeqgapError."""
        if self.spill_path is None:
            raise SeqgapError(f"{why}; run {row[0]} could not be saved (an in-memory store has no spill file)")
        rec = dict(zip(_COLUMNS, row))
        for k in ("config", "summary", "history"):
            rec[k] = json.loads(rec[k])  # readable JSON lines, not JSON strings inside JSON
        data = (json.dumps(rec, sort_keys=True, allow_nan=False) + "\n").encode()
        try:
            created = not os.path.exists(self.spill_path)
            with _locked_file(self.spill_path, blocking=True, create=True) as fd:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A writer killed mid-append left a partial line: start on a fresh one so
                    # the two never run together (the merge sets the fragment aside).
                    data = b"\n" + data
                _write_all(fd, data)
                os.fsync(fd)
            if created:
                _fsync_dir(self.spill_path)
        except OSError as e:
            raise SeqgapError(f"{why}; run {row[0]} could not be saved to {self.spill_path} either "
                              f"({e.strerror or e})") from None
        return self.spill_path

    def _spill_and_raise(self, row: tuple, why: str) -> None:
        where = self._spill(row, why)
        raise SeqgapError(f"{why}; run {row[0]} was saved to {where} instead (it is merged into the store when "
                          "the store is next opened for writing)")

    def merge_spill(self, wait_s: float | None = None) -> int:
        """Move spilled runs into the database; returns how many were merged.

        One transaction per run.  Lines are removed from the spill file only after their
        run is committed, and re-merging a line that is already in the database changes
        nothing, so a crash at any point loses and duplicates nothing.  A process that
        finds another one merging leaves the work to it.
        """
        if not self.writable or self.spill_path is None or not os.path.exists(self.spill_path):
            return 0
        merged, kept, torn, locked = 0, [], [], False
        try:
            with _locked_file(self.spill_path, blocking=False) as fd:
                if fd is None:  # another process is merging (or appending): it is in good hands
                    return 0
                lines = [ln for ln in _read_all(fd).split(b"\n") if ln.strip()]
                for ln in lines:
                    try:
                        rec = _spill_record(ln)
                    except _BadRow:
                        torn.append(ln)
                        continue
                    if locked:
                        kept.append(ln)
                        continue
                    row = tuple(rec[k] if k not in ("config", "summary", "history") else _dumps(rec[k])
                                for k in _COLUMNS)
                    try:
                        self._retry(lambda c: c.execute(_MERGE, row), write=True, wait_s=wait_s)
                        merged += 1
                    except (_Locked, SeqgapError):
                        locked = True  # keep this line and the rest for the next open
                        kept.append(ln)
                if torn:
                    # Fragments of appends killed mid-write: set aside (for a human), not lost.
                    with open(self.rejected_path, "ab") as f:
                        f.write(b"\n".join(torn) + b"\n")
                        f.flush()
                        os.fsync(f.fileno())
                if len(kept) != len(lines) or not lines:  # (an empty file is just removed)
                    _rewrite(self.spill_path, kept)
        except OSError as e:
            _warn(f"cannot merge spilled runs from {self.spill_path} ({e.strerror or e}); they stay there")
            return merged
        if merged:
            print(f"seqgap: merged {merged} spilled run(s) from {self.spill_path} into {self.path}",
                  file=sys.stderr, flush=True)
        if torn:
            _warn(f"{len(torn)} unreadable line(s) in {self.spill_path} (a write cut short) were moved to "
                  f"{self.rejected_path}")
        if kept:
            _warn(f"run store {self.path!r} is still locked or failing: {len(kept)} spilled run(s) stay in "
                  f"{self.spill_path} (they are read from there; merged at a later open)")
        return merged

    def _spilled(self) -> dict[str, dict[str, Any]]:
        """Runs in the spill file (newest per id), re-read only when the file changes.

        Read without the lock: appends add whole lines (a line still being written
        fails to parse and is skipped) and the merge replaces the file atomically.
        """
        if self.spill_path is None:
            return {}
        try:
            st = os.stat(self.spill_path)
        except OSError:
            return {}
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if self._spill_cache[0] == key:
            return self._spill_cache[1]
        runs: dict[str, dict[str, Any]] = {}
        try:
            with open(self.spill_path, "rb") as f:
                data = f.read()
        except OSError:
            return {}
        for ln in data.split(b"\n"):
            if not ln.strip():
                continue
            try:
                rec = _spill_record(ln)
            except _BadRow:
                continue
            r = {k: rec[k] for k in ("id", "kind", "config", "summary", "history", "created")}
            if r["id"] not in runs or r["created"] >= runs[r["id"]]["created"]:
                runs[r["id"]] = r
        self._spill_cache = (key, runs)
        return runs

    # ---- reading -------------------------------------------------------------
    def _read(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        # WAL readers never wait for writers; this only waits on a store that is not in WAL
        # mode (e.g. opened read-only before any writer switched it) while it is written.
        try:
            return self._retry(fn, write=False)
        except _Locked:
            raise SeqgapError(f"run store {self.path!r} is locked by another process (waited "
                              f"{self.lock_wait_s:g} s to read it)") from None

    def _rows(self, where: str = "", args: tuple = ()) -> list[tuple]:
        if not self._has_runs:
            return []
        return self._read(lambda c: c.execute(_SELECT + where, args).fetchall())

    def _decoded(self, rows: list[tuple]) -> list[dict[str, Any]]:
        """Rows as runs; unreadable rows are skipped with one warning."""
        out, bad = [], []
        for r in rows:
            try:
                out.append(_row(r))
            except _BadRow as e:
                bad.append(f"{r[0]!r:.40}: {e}")
        if bad:
            more = f" (and {len(bad) - 3} more)" if len(bad) > 3 else ""
            _warn(f"run store {self.path!r}: skipped {len(bad)} unreadable row(s): {'; '.join(bad[:3])}{more}")
        return out

    def get(self, run_id: str) -> dict[str, Any] | None:
        """The stored run (database or spill file, the newer if both), or None.
        An unreadable row counts as missing (with a warning): training again replaces it."""
        # The spill file first: a merge commits a run before it removes it from there, so
        # a run that is in neither place when looked for in this order is not stored.
        spilled = self._spilled().get(run_id)
        found = self._decoded(self._rows(" WHERE id=?", (run_id,)))
        if spilled is not None and (not found or spilled["created"] > found[0]["created"]):
            return deepcopy(spilled)  # the cache must not change under the caller
        return found[0] if found else None

    def __contains__(self, run_id: str) -> bool:
        """Whether ``get`` would return the run (an unreadable row does not count)."""
        return self.get(run_id) is not None

    def __len__(self) -> int:
        """Rows in the database plus spilled runs not in it yet."""
        spilled = self._spilled()  # before the database: see get()
        if not self._has_runs:
            return len(spilled)
        n = self._read(lambda c: c.execute("SELECT COUNT(*) FROM runs").fetchone()[0])
        if spilled:
            stored = {r[0] for r in self._read(lambda c: c.execute(
                f"SELECT id FROM runs WHERE id IN ({','.join('?' * len(spilled))})", tuple(spilled)).fetchall())}
            n += sum(1 for rid in spilled if rid not in stored)
        return n

    def all(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every readable run (oldest first); unreadable rows are skipped with a warning."""
        spilled = self._spilled()  # before the database: see get()
        runs = {r["id"]: r for r in self._decoded(self._rows(" ORDER BY created"))}
        for rid, r in spilled.items():
            if rid not in runs or r["created"] > runs[rid]["created"]:
                runs[rid] = deepcopy(r)
        out = [r for r in runs.values() if kind is None or r["kind"] == kind]
        return sorted(out, key=lambda r: r["created"])

    def find(self, kind: str | None = None, **config_filters: Any) -> list[dict[str, Any]]:
        """Runs whose config has the given top-level values (e.g. ``model="lstm"``)."""
        return [r for r in self.all(kind) if all(r["config"].get(k) == v for k, v in config_filters.items())]

    def df(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Flat records (config and summary fields side by side), e.g. for pandas.DataFrame."""
        out = []
        for r in self.all(kind):
            cfg = r["config"]
            rec = {"id": r["id"]}
            rec.update({k: v for k, v in cfg.items() if not isinstance(v, dict)})
            for prefix, sub in (("task", cfg.get("task_params")), ("train", cfg.get("train"))):
                if isinstance(sub, dict):  # a hostile row may hold anything here
                    rec.update({f"{prefix}.{k}": v for k, v in sub.items()})
            rec.update(r["summary"])
            out.append(rec)
        return out

    # ---- claims --------------------------------------------------------------
    def claim(self, run_id: str, owner: str, ttl_s: float) -> bool:
        """Take ``run_id`` for ``owner`` unless another owner holds a live claim on it.

        Atomic across processes (one write transaction).  Claiming again as the same
        owner refreshes the claim.  A claim is live while its last heartbeat is at
        most ``ttl_s`` old; heartbeat well within it (``claiming`` beats every ttl/3).
        If the store stays locked for ``lock_wait_s`` this returns True with a
        warning: training without a claim risks duplicate work, never lost work.
        Expiry compares time.time() of different processes: their clocks must agree.
        """
        _check_claim_args(owner, ttl_s)
        self._require_writable_for("claim runs")

        def take(c: sqlite3.Connection) -> bool:
            now = time.time()
            c.execute(_CLAIMS_SCHEMA)
            # Claims of owners that died long ago would pile up: drop those ten ttls past expiry.
            c.execute("DELETE FROM claims WHERE heartbeat + 10 * ttl < ?", (now,))
            held = c.execute("SELECT owner, heartbeat, ttl, claimed FROM claims WHERE run_id=?",
                             (run_id,)).fetchone()
            if held is not None and held[0] != owner and _alive(held[1], held[2], now) \
                    and not _owner_process_gone(held[0]):
                return False
            claimed = held[3] if held is not None and held[0] == owner else now
            c.execute("INSERT OR REPLACE INTO claims (run_id, owner, claimed, heartbeat, ttl) VALUES (?,?,?,?,?)",
                      (run_id, owner, claimed, now, float(ttl_s)))
            return True

        try:
            return self._retry(take, write=True)
        except _Locked:
            _warn(f"run store {self.path!r} stayed locked for {self.lock_wait_s:g} s: run {run_id} goes ahead "
                  "without a claim (another process may train it too)")
            return True

    def heartbeat(self, run_id: str, owner: str) -> bool:
        """Refresh ``owner``'s claim; False when it is no longer theirs (released, or taken
        over after it expired).  A store locked throughout counts as still held."""
        self._require_writable_for("heartbeat claims")

        def beat(c: sqlite3.Connection) -> bool:
            return c.execute("UPDATE claims SET heartbeat=? WHERE run_id=? AND owner=?",
                             (time.time(), run_id, owner)).rowcount == 1

        try:
            return self._retry(_if_claims(beat, False), write=True, wait_s=min(CLAIM_BOOKKEEPING_WAIT_S,
                                                                                 self.lock_wait_s))
        except _Locked:
            return True  # a takeover needs the same write lock: nobody has taken it meanwhile

    def release(self, run_id: str, owner: str) -> bool:
        """Drop ``owner``'s claim; False when there was none (or the store stayed locked:
        the claim then dies on its own after its ttl)."""
        self._require_writable_for("release claims")

        def drop(c: sqlite3.Connection) -> bool:
            return c.execute("DELETE FROM claims WHERE run_id=? AND owner=?", (run_id, owner)).rowcount == 1

        try:
            return self._retry(_if_claims(drop, False), write=True, wait_s=min(CLAIM_BOOKKEEPING_WAIT_S,
                                                                                 self.lock_wait_s))
        except _Locked:
            return False

    def claims(self, include_expired: bool = False) -> list[dict[str, Any]]:
        """Live claims (all with ``include_expired``), oldest first: dicts with ``run_id``,
        ``owner``, ``claimed``, ``heartbeat``, ``ttl_s``, ``expires`` (time.time() seconds)."""
        def read(c: sqlite3.Connection) -> list:
            return c.execute("SELECT run_id, owner, claimed, heartbeat, ttl FROM claims ORDER BY claimed").fetchall()

        rows = self._read(_if_claims(read, []))
        now = time.time()
        out = []
        for run_id, owner, claimed, beat, ttl in rows:
            if not all(isinstance(x, (int, float)) for x in (claimed, beat, ttl)):
                continue  # a hostile claims row: not a claim anyone holds
            if include_expired or _alive(beat, ttl, now):
                out.append({"run_id": run_id, "owner": owner, "claimed": claimed, "heartbeat": beat,
                            "ttl_s": ttl, "expires": beat + ttl})
        return out

    @contextmanager
    def claiming(self, run_id: str, owner: str | None = None,
                 ttl_s: float = DEFAULT_CLAIM_TTL_S) -> Iterator[bool]:
        """``with store.claiming(run_id) as mine: if mine: train and put`` -- claims the run,
        heartbeats every ``ttl_s / 3`` from a background thread while the block runs, and
        releases it at the end.  Yields False (and does nothing) when another owner holds it."""
        owner = owner or new_owner()
        if not self.claim(run_id, owner, ttl_s):
            yield False
            return
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(ttl_s / 3):
                try:
                    if not self.heartbeat(run_id, owner):
                        return  # taken over after it expired: the block may duplicate work, nothing more
                except SeqgapError:
                    pass  # a failing store: try again at the next beat

        t = threading.Thread(target=beat, name=f"seqgap-claim-{run_id}", daemon=True)
        t.start()
        try:
            yield True
        finally:
            stop.set()
            t.join()
            try:
                self.release(run_id, owner)
            except SeqgapError:
                pass  # the claim expires after its ttl anyway

    # ---- closing -------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "RunStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---- helpers: opening ----------------------------------------------------------

def _lock_wait(value: float | None) -> float:
    src = "lock_wait_s"
    if value is None:
        env = os.environ.get(LOCK_WAIT_ENV)
        if env is None or not env.strip():
            return DEFAULT_LOCK_WAIT_S
        src = LOCK_WAIT_ENV
        try:
            value = float(env)
        except ValueError:
            raise SeqgapError(f"{LOCK_WAIT_ENV}={env!r} is not a number of seconds") from None
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise SeqgapError(f"{src}={value!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise SeqgapError(f"{src}={value!r} must be a finite number of seconds >= 0")
    return value


def _connect(target: str, uri: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(target, timeout=1.0, isolation_level=None, check_same_thread=False, uri=uri)
    # TEXT that is not UTF-8 would make sqlite3 raise in the middle of a query and abort
    # every row after it; kept as bytes instead, the row reader reports just that row.
    conn.text_factory = _text
    return conn


def _connect_readonly(p: str) -> sqlite3.Connection:
    uri = Path(p).absolute().as_uri()
    try:
        conn = _connect(uri + "?mode=ro", uri=True)
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        return conn
    except sqlite3.OperationalError as e:
        if getattr(e, "sqlite_errorname", "") not in ("SQLITE_READONLY_DIRECTORY", "SQLITE_CANTOPEN"):
            raise
    # A WAL database in a read-only folder: SQLite cannot create the -shm file it reads
    # through.  immutable=1 reads the file as it is, which is right here: nobody can be
    # writing to it, since no writer could create the -wal file either.
    return _connect(uri + "?mode=ro&immutable=1", uri=True)


def _text(b: bytes) -> str | bytes:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return b


def _check_file(p: str) -> bool:
    """Whether the store file exists; refuses what SQLite must never be pointed at."""
    try:
        st = os.stat(p)
    except FileNotFoundError:
        return False
    except NotADirectoryError:
        raise SeqgapError(f"run store {p!r}: a parent of it is a file, not a folder") from None
    except OSError as e:
        raise SeqgapError(f"run store {p!r} cannot be opened ({e.strerror or e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise SeqgapError(f"run store {p!r} is a directory, not a file (give a file path such as "
                          f"{os.path.join(p, 'runs.sqlite')})")
    if not stat.S_ISREG(st.st_mode):
        # /dev/null would "work" and lose every run (and SQLite would create /dev/null-journal)
        raise SeqgapError(f"run store {p!r} is not a regular file (a device, pipe or socket)")
    return True


def _not_writable(p: str, exists: bool) -> str:
    """Why the store cannot be written ("" when it can)."""
    folder = os.path.dirname(os.path.abspath(p))
    if exists and not os.access(p, os.W_OK):
        return "the file is read-only"
    # SQLite creates the -wal and -shm files next to the store (and a journal before WAL)
    if not os.access(folder, os.W_OK | os.X_OK):
        if not exists or not all(os.access(p + s, os.W_OK) for s in ("-wal", "-shm")):
            return "its folder is read-only"
    return ""


def _truncated(p: str) -> str:
    """Whether the file is shorter than its own header says ("" if not, or unknown).

    SQLite only notices a truncated file when a read reaches a missing page, so a
    damaged store could train runs it then cannot store.  Checked three times over
    0.2 s: a checkpoint in another process can briefly write page 1 before it
    extends the file.
    """
    for side in ("-wal", "-journal"):
        try:
            if os.path.getsize(p + side) > 0:
                # A crash mid-checkpoint (or mid-commit) can leave the file shorter than its
                # header with the missing pages still in the WAL (journal): SQLite recovers it.
                return ""
        except OSError:
            pass
    for attempt in range(3):
        try:
            with open(p, "rb") as f:
                head, size = f.read(100), os.fstat(f.fileno()).st_size
        except OSError:
            return ""
        if len(head) < 100 or not head.startswith(b"SQLite format 3\x00"):
            return ""  # SQLite itself says what this is
        page = int.from_bytes(head[16:18], "big")
        page = 65536 if page == 1 else page
        pages = int.from_bytes(head[28:32], "big")
        # the in-header page count is valid only when the change counter matches this field
        if head[24:28] != head[92:96] or pages == 0 or size >= pages * page:
            return ""
        if attempt < 2:
            time.sleep(0.1)
    return f"truncated ({size:,} bytes; its header says {pages * page:,})"


def _check_schema(p: str, tables: dict[str, Any], conn: sqlite3.Connection) -> None:
    if "runs" not in tables:
        others = sorted(t for t in tables if t != "claims" and not str(t).startswith("sqlite_"))
        if others:
            raise SeqgapError(f"run store {p!r} is an SQLite database but not a seqgap run store "
                              f"(tables: {', '.join(map(str, others[:5]))})")
        return
    for table, wanted in (("runs", _COLUMNS), ("claims", _CLAIM_COLUMNS)):
        if table not in tables:
            continue
        cols = conn.execute(f"PRAGMA table_info({table})").fetchall()  # cid, name, type, notnull, default, pk
        missing = [c for c in wanted if c not in {col[1] for col in cols}]
        if missing:
            raise SeqgapError(f"run store {p!r} has a '{table}' table of another schema (no column "
                              f"{', '.join(missing)}): not a seqgap run store, or from an incompatible version")
        if [col[1] for col in cols if col[5]] != [wanted[0]]:
            raise SeqgapError(f"run store {p!r} has a '{table}' table not keyed by {wanted[0]}: "
                              "not a seqgap run store")


# ---- helpers: errors and retries -------------------------------------------------

def _is_busy(e: sqlite3.Error) -> bool:
    code = getattr(e, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (and their extended codes)
    msg = str(e).lower()
    return "locked" in msg or "busy" in msg


def _explain(e: sqlite3.Error) -> str:
    """The reason, in words, after "run store 'path' ..."."""
    name = getattr(e, "sqlite_errorname", "") or ""
    msg = " ".join(str(e).split())  # one line
    if name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB" or "not a database" in msg or "malformed" in msg:
        return f"is corrupt or not an SQLite database ({msg}): restore it from a backup or move it aside"
    if name.startswith("SQLITE_READONLY") or "readonly" in msg:
        return f"is read-only ({msg})"
    if name.startswith("SQLITE_CANTOPEN") or "unable to open" in msg:
        return f"cannot be opened ({msg})"
    if name == "SQLITE_FULL":
        return f"cannot be written: the disk is full ({msg})"
    if name.startswith("SQLITE_IOERR"):
        return f"cannot be read or written ({msg})"
    if "no such table" in msg or "no such column" in msg or "has no column" in msg:
        return f"has an unexpected schema ({msg}): not a seqgap run store"
    return f"failed: {msg}"


def _if_claims(fn: Callable[[sqlite3.Connection], Any], empty: Any) -> Callable[[sqlite3.Connection], Any]:
    """``fn``, or ``empty`` when the store has no claims table yet (it is made by the first claim)."""
    def run(c: sqlite3.Connection) -> Any:
        if c.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='claims'").fetchone() is None:
            return empty
        return fn(c)
    return run


def _check_claim_args(owner: str, ttl_s: float) -> None:
    if not isinstance(owner, str) or not owner:
        raise SeqgapError(f"claim owner must be a non-empty string, not {owner!r}")
    if not isinstance(ttl_s, (int, float)) or not math.isfinite(ttl_s) or ttl_s <= 0:
        raise SeqgapError(f"claim ttl_s must be a finite number of seconds > 0, not {ttl_s!r}")


def _alive(heartbeat: float, ttl: float, now: float) -> bool:
    return heartbeat + ttl >= now


# ---- helpers: the spill file -----------------------------------------------------

@contextmanager
def _locked_file(path: str, blocking: bool, create: bool = False) -> Iterator[int | None]:
    """An fd of ``path`` opened for appending, exclusively flock'ed; None when the file
    does not exist (and ``create`` is False) or, if not ``blocking``, another process
    holds the lock.

    A merge replaces or removes the file while holding the lock, so after waiting for
    it we check that the path still names the file we locked, and start over if not.
    """
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_APPEND | (os.O_CREAT if create else 0), 0o666)
        except FileNotFoundError:
            if create:
                raise
            yield None
            return
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
                except BlockingIOError:
                    yield None
                    return
            mine, now = os.fstat(fd), None
            try:
                now = os.stat(path)
            except FileNotFoundError:
                pass
            if now is not None and (now.st_ino, now.st_dev) == (mine.st_ino, mine.st_dev):
                yield fd
                return
        finally:
            os.close(fd)  # also drops the lock


def _read_all(fd: int) -> bytes:
    chunks, off = [], 0
    while True:
        b = os.pread(fd, 1 << 20, off)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        off += len(b)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _fsync_dir(path: str) -> None:
    """Make a created, renamed or removed file's directory entry durable."""
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _rewrite(path: str, lines: list[bytes]) -> None:
    """Replace the spill file by ``lines`` atomically (remove it when none are left).
    The caller holds the lock, so the temporary name cannot collide."""
    if not lines:
        os.unlink(path)
    else:
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"\n".join(lines) + b"\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    _fsync_dir(path)


def _spill_record(line: bytes) -> dict[str, Any]:
    """One spill line as a checked record (raises _BadRow)."""
    try:
        rec = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise _BadRow(f"not valid JSON ({type(e).__name__})") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("id"), str):
        raise _BadRow("not a run record")
    for k, typ in (("config", dict), ("summary", dict), ("history", list)):
        if not isinstance(rec.get(k), typ):
            raise _BadRow(f"{k} is not a JSON {typ.__name__}")
    rec["kind"] = rec["kind"] if isinstance(rec.get("kind"), str) else "train"
    rec["created"] = _created(rec.get("created"))
    rec["seqgap_version"] = str(rec.get("seqgap_version", ""))
    return rec


def _spill_id(line: bytes) -> str | None:
    try:
        return _spill_record(line)["id"]
    except _BadRow:
        return None


# ---- helpers: values -------------------------------------------------------------

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


def _no_constant(name: str) -> None:
    return None  # NaN / Infinity in a foreign row: read as null, as the store writes them


def _created(x: Any) -> float:
    if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x):
        return float(x)
    return 0.0


def _load(value: Any, typ: type, name: str) -> Any:
    """One JSON column, checked: raises _BadRow with the reason."""
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadRow(f"{name} is not UTF-8 text") from None
    if not isinstance(value, str):
        raise _BadRow(f"{name} is not JSON text ({type(value).__name__})")
    try:
        x = json.loads(value, parse_constant=_no_constant)
    except RecursionError:
        raise _BadRow(f"{name} is nested too deeply to read") from None
    except ValueError as e:
        raise _BadRow(f"{name} is not valid JSON ({e})") from None
    if not isinstance(x, typ):
        raise _BadRow(f"{name} is a JSON {type(x).__name__}, not a {typ.__name__}")
    return x


def _row(r: tuple) -> dict[str, Any]:
    rid, kind = r[0], r[1]
    if not isinstance(rid, str):
        raise _BadRow("id is not text")
    if not isinstance(kind, str):
        raise _BadRow("kind is not text")
    return {"id": rid, "kind": kind, "config": _load(r[2], dict, "config"), "summary": _load(r[3], dict, "summary"),
            "history": _load(r[4], list, "history"), "created": _created(r[5])}
