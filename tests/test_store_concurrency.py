"""Run store with real processes: concurrent writers, a lock held past the retry window
(spill, then merge, also when the merge is killed), and claims."""
import json
import multiprocessing as mp
import os
import random
import signal
import sqlite3
import threading
import time

import pytest

from seqgap.errors import SeqgapError
from seqgap.store import RunStore, new_owner


def _integrity_ok(path):
    c = sqlite3.connect(path)
    try:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT id FROM runs GROUP BY id HAVING COUNT(*) > 1").fetchall() == []
        return c.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    finally:
        c.close()


# ---- two writers -----------------------------------------------------------------------

def _write_many(path, tag, n, start):
    start.wait()
    s = RunStore(path)  # both create the store at once
    for i in range(n):
        s.put(f"{tag}-{i}", {"writer": tag, "i": i}, {"i": i}, [{"step": i}])
        s.put(f"shared-{i}", {"i": i}, {"i": i, "by": tag})  # both write these: one row each
    s.close()


def test_two_writer_processes(tmp_path):
    path = str(tmp_path / "new" / "w.sqlite")
    ctx = mp.get_context("spawn")
    start = ctx.Event()
    n = 250
    procs = [ctx.Process(target=_write_many, args=(path, tag, n, start)) for tag in ("a", "b")]
    for p in procs:
        p.start()
    time.sleep(0.5)
    start.set()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert _integrity_ok(path) == 3 * n
    s = RunStore(path)
    assert not os.path.exists(s.spill_path)  # nothing had to be spilled
    rows = {r["id"]: r for r in s.all()}
    assert all(rows[f"{t}-{i}"]["config"] == {"writer": t, "i": i} for t in "ab" for i in range(n))
    assert all(rows[f"shared-{i}"]["summary"]["by"] in "ab" for i in range(n))


# ---- a lock held past the retry window ---------------------------------------------------

def _hold_lock(path, locked, release):
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("BEGIN EXCLUSIVE")
    locked.set()
    release.wait(60)
    c.execute("ROLLBACK")
    c.close()


class LockHolder:
    """Another process holding the store's write lock (BEGIN EXCLUSIVE) until released."""

    def __init__(self, path):
        ctx = mp.get_context("fork")
        self.locked, self.release = ctx.Event(), ctx.Event()
        self.proc = ctx.Process(target=_hold_lock, args=(path, self.locked, self.release))
        self.proc.start()
        assert self.locked.wait(30)

    def stop(self):
        self.release.set()
        self.proc.join(30)
        assert self.proc.exitcode == 0


def test_lock_beyond_retry_window_spills_and_next_open_merges(tmp_path, capfd):
    path = str(tmp_path / "l.sqlite")
    s = RunStore(path, lock_wait_s=0.6)
    s.put("before", {"a": 0}, {"ok": True})
    holder = LockHolder(path)
    try:
        t0 = time.monotonic()
        s.put("run1", {"model": "lstm"}, {"success": True, "loss": float("nan")}, [{"step": 1}])
        assert 0.5 < time.monotonic() - t0 < 10  # retried for the window, then spilled
        err = capfd.readouterr().err
        assert "stayed locked" in err and s.spill_path in err and "run1" in err
        lines = open(s.spill_path).read().splitlines()
        assert len(lines) == 1 and json.loads(lines[0])["id"] == "run1"
        # the spilled run is visible, so a study does not train it again
        assert s.get("run1")["summary"] == {"success": True, "loss": None} and "run1" in s and len(s) == 2
        assert [r["id"] for r in s.all()] == ["before", "run1"]
        # reads and opens are not blocked by the lock; an open cannot merge yet and says so
        s2 = RunStore(path, lock_wait_s=0.3)
        assert s2.get("run1") is not None and os.path.exists(s.spill_path)
        assert "stay in" in capfd.readouterr().err
    finally:
        holder.stop()
    s3 = RunStore(path)  # opened for writing: merges
    assert "merged 1 spilled run" in capfd.readouterr().err
    assert not os.path.exists(s3.spill_path)
    assert s3.get("run1")["history"] == [{"step": 1}] and len(s3) == 2
    RunStore(path)  # again: nothing left to merge, nothing duplicated
    assert _integrity_ok(path) == 2


def test_short_lock_is_waited_out(tmp_path):
    path = str(tmp_path / "w.sqlite")
    s = RunStore(path, lock_wait_s=20)
    holder = LockHolder(path)
    threading.Timer(0.8, holder.release.set).start()
    t0 = time.monotonic()
    s.put("r", {"a": 1}, {"b": 2})  # waits for the lock, then writes: no spill
    assert 0.5 < time.monotonic() - t0 < 15 and not os.path.exists(s.spill_path)
    holder.stop()
    assert _integrity_ok(path) == 1


def test_later_put_merges_earlier_spills(tmp_path, capfd):
    path = str(tmp_path / "m.sqlite")
    s = RunStore(path, lock_wait_s=0)
    holder = LockHolder(path)
    try:
        for i in range(5):
            s.put(f"r{i}", {"i": i}, {"v": 1})
        s.put("r0", {"i": 0}, {"v": 2})  # a newer result for r0, also spilled
    finally:
        holder.stop()
    assert s.get("r0")["summary"] == {"v": 2} and len(s) == 5
    s.put("after", {}, {})  # the lock is free again: the spill comes along
    assert not os.path.exists(s.spill_path) and "merged 6 spilled run" in capfd.readouterr().err
    assert s.get("r0")["summary"] == {"v": 2}  # the newest spilled line won
    s.delete("r1")
    assert s.get("r1") is None and _integrity_ok(path) == 5


def _open_and_merge(path, started):
    started.set()
    RunStore(path, lock_wait_s=5)
    os._exit(0)


def test_merge_killed_at_random_moments_loses_and_duplicates_nothing(tmp_path):
    path = str(tmp_path / "k.sqlite")
    n = 300  # a merge of this many takes tens of milliseconds: room to land kills inside it
    s = RunStore(path, lock_wait_s=0)
    holder = LockHolder(path)
    try:
        for i in range(n):
            s.put(f"r{i}", {"i": i, "blob": "x" * 5000}, {"i": i}, [{"i": i}] * 3)
    finally:
        holder.stop()
    spill = s.spill_path
    s.close()
    assert len(open(spill).read().splitlines()) == n
    ctx = mp.get_context("fork")
    rng = random.Random(0)
    window, partial = 0.005, 0
    for _ in range(100):
        if not os.path.exists(spill):
            break
        started = ctx.Event()
        p = ctx.Process(target=_open_and_merge, args=(path, started))
        p.start()
        assert started.wait(30)
        time.sleep(rng.uniform(0.0, window))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        stored = _integrity_ok(path)
        partial += p.exitcode == -signal.SIGKILL and 0 < stored < n and os.path.exists(spill)
        window *= 1.1  # from "killed before it began" to "killed after it finished"
    assert partial > 0  # some kills did land in the middle of a merge
    s = RunStore(path)  # whatever is left
    assert not os.path.exists(spill) and _integrity_ok(path) == n
    for r in s.all():
        i = r["config"]["i"]
        assert r["id"] == f"r{i}" and r["summary"] == {"i": i} and len(r["config"]["blob"]) == 5000


# ---- claims ------------------------------------------------------------------------------

def _contend(path, owner, ids, barrier, out):
    s = RunStore(path)
    barrier.wait()
    out.put((owner, [rid for rid in ids if s.claim(rid, owner, ttl_s=60)]))
    s.close()


def test_claims_contended_by_processes_have_one_winner(tmp_path):
    path = str(tmp_path / "c.sqlite")
    RunStore(path).close()
    ctx = mp.get_context("spawn")
    ids = [f"run{i}" for i in range(40)]
    barrier, out = ctx.Barrier(3), ctx.Queue()
    procs = [ctx.Process(target=_contend, args=(path, f"p{k}", ids, barrier, out)) for k in range(3)]
    for p in procs:
        p.start()
    won = dict(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    winners = [rid for got in won.values() for rid in got]
    assert sorted(winners) == sorted(ids)  # every run claimed exactly once
    live = RunStore(path).claims()
    assert {c["run_id"]: c["owner"] for c in live} == {rid: o for o, got in won.items() for rid in got}


def _claim_and_die(path, ttl, claimed):
    RunStore(path).claim("r", "doomed", ttl)
    claimed.set()
    time.sleep(60)


def test_claim_of_a_killed_process_expires_and_is_taken_over(tmp_path):
    path = str(tmp_path / "c.sqlite")
    RunStore(path).close()
    ctx = mp.get_context("fork")
    claimed = ctx.Event()
    p = ctx.Process(target=_claim_and_die, args=(path, 2.0, claimed))
    p.start()
    assert claimed.wait(30)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    s = RunStore(path)
    assert not s.claim("r", "me", 10)  # still live: its heartbeat is recent
    assert [c["owner"] for c in s.claims()] == ["doomed"]
    time.sleep(2.1)
    assert s.claims() == [] and [c["owner"] for c in s.claims(include_expired=True)] == ["doomed"]
    assert s.claim("r", "me", 10)  # expired: taken over
    assert [c["owner"] for c in s.claims()] == ["me"]


def test_claim_heartbeat_release(tmp_path):
    s = RunStore(tmp_path / "c.sqlite")
    assert s.claims() == [] and not s.heartbeat("x", "a") and not s.release("x", "a")  # no claims table yet
    assert s.claim("x", "a", ttl_s=1)
    assert s.claim("x", "a", ttl_s=1)  # again by its owner: refreshed
    assert not s.claim("x", "b", ttl_s=5)
    for _ in range(5):  # heartbeats keep it alive well past its ttl
        time.sleep(0.3)
        assert s.heartbeat("x", "a")
    assert not s.claim("x", "b", ttl_s=5)
    time.sleep(1.1)
    assert s.claim("x", "b", ttl_s=5)  # a missed heartbeat: expired, taken over
    assert not s.heartbeat("x", "a") and not s.release("x", "a")  # "a" learns it lost the claim
    c = s.claims()
    assert len(c) == 1 and c[0]["owner"] == "b" and c[0]["ttl_s"] == 5 and c[0]["expires"] > time.time()
    assert s.release("x", "b") and s.claims() == []
    assert s.claim("x", "a", 1)  # free again
    for owner, ttl in (("", 1), (None, 1), ("a", 0), ("a", float("nan")), ("a", -1), ("a", "1")):
        with pytest.raises(SeqgapError):
            s.claim("y", owner, ttl)
    assert len(new_owner()) > 10 and new_owner() != new_owner()


def _claim_for_a_while(path, held, seconds):
    with RunStore(path).claiming("r", owner="worker", ttl_s=0.6) as mine:
        assert mine
        held.set()
        time.sleep(seconds)  # "training", far longer than the ttl: the heartbeat thread keeps it
    os._exit(0)


def test_claiming_heartbeats_while_the_block_runs(tmp_path):
    path = str(tmp_path / "c.sqlite")
    RunStore(path).close()
    ctx = mp.get_context("fork")
    held = ctx.Event()
    p = ctx.Process(target=_claim_for_a_while, args=(path, held, 2.0))
    p.start()
    assert held.wait(30)
    s = RunStore(path)
    time.sleep(1.2)  # two ttls
    with s.claiming("r", ttl_s=5) as mine:
        assert not mine  # still held by the worker
    p.join(30)
    assert p.exitcode == 0 and s.claims() == []  # released at the end of the block
    with s.claiming("r", ttl_s=5) as mine:
        assert mine and s.claims()[0]["owner"] != "worker"
    assert s.claims() == []


def test_claims_never_block_reads(tmp_path, capfd):
    path = str(tmp_path / "c.sqlite")
    s = RunStore(path, lock_wait_s=0.3)
    s.put("done", {"a": 1}, {"b": 2})
    assert s.claim("busy", "me", 60)
    holder = LockHolder(path)  # another process mid-write (e.g. taking a claim)
    try:
        t0 = time.monotonic()
        reader = RunStore(path, readonly=True)
        assert reader.get("done") is not None and len(reader.all()) == 1
        assert [c["run_id"] for c in reader.claims()] == ["busy"]
        assert s.get("done") is not None and s.claims()[0]["owner"] == "me"
        assert time.monotonic() - t0 < 2  # no waiting (a blocked read would wait minutes)
        # bookkeeping under a lock never raises; a claim goes ahead (duplicate work, never lost work)
        assert s.heartbeat("busy", "me") and not s.release("busy", "me")
        assert s.claim("new", "me", 60) and "without a claim" in capfd.readouterr().err
    finally:
        holder.stop()
    assert s.release("busy", "me")


def test_claims_on_a_read_only_store_are_refused(tmp_path):
    RunStore(tmp_path / "c.sqlite").close()
    s = RunStore(tmp_path / "c.sqlite", readonly=True)
    assert s.claims() == []
    for fn in (lambda: s.claim("r", "me", 5), lambda: s.heartbeat("r", "me"), lambda: s.release("r", "me")):
        with pytest.raises(SeqgapError, match="read-only"):
            fn()


def test_spill_after_a_torn_append_and_delete_of_a_spilled_run(tmp_path, capfd):
    path = str(tmp_path / "t.sqlite")
    s = RunStore(path, lock_wait_s=0)
    with open(s.spill_path, "wb") as f:
        f.write(b'{"id": "cut", "config": {"a": ')  # an append killed mid-write: no newline
    holder = LockHolder(path)
    try:
        for rid in ("keep", "drop"):
            s.put(rid, {"id": rid}, {"ok": True})
    finally:
        holder.stop()
    lines = open(s.spill_path, "rb").read().split(b"\n")
    assert lines[0] == b'{"id": "cut", "config": {"a": ' and json.loads(lines[1])["id"] == "keep"  # own line
    s.delete("drop")  # gone from the spill file too, so no merge brings it back
    assert s.get("drop") is None and s.get("keep") is not None
    s2 = RunStore(path)
    assert "merged 1 spilled run" in capfd.readouterr().err
    assert [r["id"] for r in s2.all()] == ["keep"] and not os.path.exists(s2.spill_path)
    assert open(s2.rejected_path, "rb").read() == b'{"id": "cut", "config": {"a": \n'
