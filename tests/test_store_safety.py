"""Run store: bad paths, bad files, read-only stores and hostile rows give one-line
SeqgapErrors or skipped rows, never a traceback, a hang or a silently lost run."""
import json
import multiprocessing as mp
import os
import shutil
import sqlite3
import tempfile
import time

import pytest

from seqgap.errors import SeqgapError
from seqgap.store import DEFAULT_LOCK_WAIT_S, DEFAULT_STORE, RunStore, default_store_path

LOOSE_SCHEMA = "CREATE TABLE runs (id TEXT PRIMARY KEY, kind, config, summary, history, created, seqgap_version)"


def _raises_one_line(path, fn, match=None):
    """fn() raises a SeqgapError: one line, naming ``path``."""
    with pytest.raises(SeqgapError, match=match) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg and (path is None or str(path) in msg), msg
    return msg


def _good_store(path, n=3, blob=0):
    s = RunStore(path)
    for i in range(n):
        s.put(f"r{i}", {"model": "lstm", "i": i, "blob": "x" * blob}, {"success": True, "i": i}, [{"step": i}])
    s.close()
    assert not os.path.exists(f"{path}-wal")  # checkpointed and removed on close: the file is the store


# ---- paths --------------------------------------------------------------------------

def test_empty_store_path_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for p in ("", "   "):
        msg = _raises_one_line(None, lambda: RunStore(p), match="empty")
        assert "SEQGAP_STORE" in msg
    monkeypatch.setenv("SEQGAP_STORE", "")
    _raises_one_line(None, RunStore, match="SEQGAP_STORE is set but empty")
    _raises_one_line(None, default_store_path, match="SEQGAP_STORE is set but empty")
    assert os.listdir(tmp_path) == []  # nothing trained into a temporary database, nothing created
    monkeypatch.setenv("SEQGAP_STORE", str(tmp_path / "env.sqlite"))
    assert RunStore().path == str(tmp_path / "env.sqlite") and (tmp_path / "env.sqlite").exists()
    monkeypatch.delenv("SEQGAP_STORE")
    s = RunStore()  # None still means the default
    assert s.path == DEFAULT_STORE and (tmp_path / DEFAULT_STORE).exists()


def test_directory_device_and_bad_parent_are_refused(tmp_path):
    _raises_one_line(tmp_path, lambda: RunStore(tmp_path), match="is a directory")
    journal_before = os.path.exists("/dev/null-journal")
    _raises_one_line("/dev/null", lambda: RunStore("/dev/null"), match="not a regular file")
    assert os.path.exists("/dev/null-journal") == journal_before  # SQLite was never pointed at it
    (tmp_path / "f").write_text("a file")
    _raises_one_line(tmp_path / "f", lambda: RunStore(tmp_path / "f" / "runs.sqlite"))
    _raises_one_line("x", lambda: RunStore("x\x00y"), match="NUL")
    _raises_one_line(tmp_path / "missing.sqlite", lambda: RunStore(tmp_path / "missing.sqlite", readonly=True),
                     match="does not exist")
    assert not (tmp_path / "missing.sqlite").exists()


def test_lock_wait_setting(monkeypatch, tmp_path):
    monkeypatch.delenv("SEQGAP_STORE_LOCK_WAIT", raising=False)
    assert RunStore(":memory:").lock_wait_s == DEFAULT_LOCK_WAIT_S >= 60
    monkeypatch.setenv("SEQGAP_STORE_LOCK_WAIT", "2.5")
    assert RunStore(":memory:").lock_wait_s == 2.5 and RunStore(":memory:", lock_wait_s=0).lock_wait_s == 0
    for bad in ("abc", "nan", "-1", "inf"):
        monkeypatch.setenv("SEQGAP_STORE_LOCK_WAIT", bad)
        _raises_one_line(None, lambda: RunStore(":memory:"), match="SEQGAP_STORE_LOCK_WAIT")
    monkeypatch.delenv("SEQGAP_STORE_LOCK_WAIT")
    _raises_one_line(None, lambda: RunStore(":memory:", lock_wait_s=-3), match="lock_wait_s")


# ---- damaged or foreign files ----------------------------------------------------------

@pytest.mark.parametrize("content", [os.urandom(10_000), b"hello, I am a text file\n" * 10, b"\x00" * 4096,
                                     b"SQLite format 3\x00" + os.urandom(3000)])
def test_not_a_database(tmp_path, content):
    p = tmp_path / "junk.sqlite"
    p.write_bytes(content)
    _raises_one_line(p, lambda: RunStore(p).all(), match="corrupt|not an SQLite|truncated")
    assert p.read_bytes() == content  # a file that is not a store is never written to


@pytest.mark.parametrize("keep", [50, 100, 1000, 4096, 10_000, 0.5, 0.9])
def test_truncated_store(tmp_path, keep):
    p = tmp_path / "t.sqlite"
    _good_store(p, n=40, blob=20_000)
    data = p.read_bytes()
    p.write_bytes(data[:int(len(data) * keep) if isinstance(keep, float) else keep])

    def use():
        s = RunStore(p)
        s.all()
        s.put("new", {"a": 1}, {"b": 2})

    _raises_one_line(p, use, match="truncated|corrupt")


def test_corruption_met_on_read_is_a_one_line_error(tmp_path):
    p = tmp_path / "c.sqlite"
    _good_store(p, n=40, blob=20_000)
    data = bytearray(p.read_bytes())
    data[8192:len(data) - 8192] = os.urandom(len(data) - 16384)  # header intact, pages destroyed
    p.write_bytes(bytes(data))
    _raises_one_line(p, lambda: (RunStore(p).all(), RunStore(p).get("r5")), match="corrupt")


def test_wrong_schema(tmp_path):
    cases = {
        "other_app": "CREATE TABLE users (name TEXT, email TEXT)",
        "runs_other_columns": "CREATE TABLE runs (a, b)",
        "runs_not_keyed": "CREATE TABLE runs (id, kind, config, summary, history, created, seqgap_version)",
        "claims_other_columns": LOOSE_SCHEMA + "; CREATE TABLE claims (x)",
    }
    for name, sql in cases.items():
        p = tmp_path / f"{name}.sqlite"
        c = sqlite3.connect(p)
        c.executescript(sql)
        c.close()
        _raises_one_line(p, lambda: RunStore(p).all(), match="not a seqgap run store")
    p = tmp_path / "empty.sqlite"
    p.write_bytes(b"")  # an empty file is an empty store
    assert len(RunStore(p)) == 0


# ---- read-only stores ----------------------------------------------------------------

def _unprivileged(fn, *args):
    """fn(*args) where file permissions apply: as nobody in a forked child when we are root."""
    if os.geteuid() != 0:
        return fn(*args)
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)

    def child():
        try:
            os.setgid(65534)
            os.setuid(65534)
            send.send(("ok", fn(*args)))
        except BaseException as e:  # reported to the parent, which fails the test
            send.send(("error", f"{type(e).__name__}: {e}"))

    p = ctx.Process(target=child)
    p.start()
    status, value = recv.recv()
    p.join()
    assert status == "ok", value
    return value


def _observe(fn):
    try:
        return ("ok", fn())
    except SeqgapError as e:
        return ("SeqgapError", str(e))


def _readonly_file_checks(p):
    s = RunStore(p)
    return {
        "writable": s.writable,
        "read": [r["id"] for r in s.all()],
        "get": s.get("r1")["summary"]["i"],
        "strict": _observe(lambda: RunStore(p, readonly=False)),
        "require": _observe(s.require_writable),
        "put": _observe(lambda: s.put("new", {"model": "x"}, {"success": True})),
        "get_new": s.get("new") is not None,  # saved to the spill file: not lost
        "claim": _observe(lambda: s.claim("r1", "me", 10)),
    }


def _readonly_dir_checks(p, folder):
    s = RunStore(p)
    return {
        "writable": s.writable,
        "read": [r["id"] for r in s.all()],
        "put": _observe(lambda: s.put("new", {"model": "x"}, {"success": True})),
        "create": _observe(lambda: RunStore(os.path.join(folder, "other.sqlite"))),
    }


@pytest.fixture
def shared_dir():
    """A folder the unprivileged child can reach (pytest's tmp_path is private to root)."""
    d = tempfile.mkdtemp(prefix="seqgap-store-")
    os.chmod(d, 0o777)
    yield d
    os.chmod(d, 0o777)
    shutil.rmtree(d, ignore_errors=True)


def test_read_only_file(shared_dir):
    p = os.path.join(shared_dir, "ro.sqlite")
    _good_store(p)
    os.chmod(p, 0o444)
    got = _unprivileged(_readonly_file_checks, p)
    assert got["writable"] is False and got["read"] == ["r0", "r1", "r2"] and got["get"] == 1
    for k in ("strict", "require", "claim"):
        assert got[k][0] == "SeqgapError" and "read-only" in got[k][1] and p in got[k][1], got[k]
    assert got["put"][0] == "SeqgapError" and "read-only" in got["put"][1] and "spill" in got["put"][1]
    assert got["get_new"]
    os.chmod(p, 0o666)
    s = RunStore(p)  # writable again: the spilled run is merged in
    assert s.get("new")["summary"] == {"success": True} and not os.path.exists(s.spill_path)
    assert sqlite3.connect(p).execute("select count(*) from runs where id='new'").fetchone()[0] == 1


def test_read_only_folder(shared_dir):
    folder = os.path.join(shared_dir, "ro")
    os.mkdir(folder)
    p = os.path.join(folder, "s.sqlite")
    _good_store(p)
    os.chmod(p, 0o666)
    os.chmod(folder, 0o555)
    got = _unprivileged(_readonly_dir_checks, p, folder)
    assert got["writable"] is False and got["read"] == ["r0", "r1", "r2"]
    assert got["put"][0] == "SeqgapError" and "could not be saved" in got["put"][1], got["put"]
    assert got["create"][0] == "SeqgapError" and "cannot be created" in got["create"][1], got["create"]


def test_readonly_mode_never_writes(tmp_path, capfd):
    p = tmp_path / "s.sqlite"
    _good_store(p)
    before = p.read_bytes()
    s = RunStore(p, readonly=True)
    assert not s.writable and len(s) == 3 and s.get("r0")["config"]["i"] == 0
    msg = _raises_one_line(p, lambda: s.put("x", {}, {}), match="read-only")
    assert "saved to" in msg and s.get("x") is not None  # kept in the spill file, readable
    _raises_one_line(p, lambda: s.delete("r0"), match="read-only")
    s.close()
    assert p.read_bytes() == before
    assert RunStore(p).get("x") is not None and len(RunStore(p)) == 4  # merged by the next writable open


# ---- hostile rows ----------------------------------------------------------------------

DEEP = "[" * 200_000 + "]" * 200_000
HOSTILE = {  # id -> (config, summary, history)
    "deep": (DEEP, "{}", "[]"),
    "deep_summary": ('{"a": 1}', '{"x": ' + DEEP + "}", "[]"),
    "deep_open": ("[" * 200_000, "{}", "[]"),
    "malformed": ('{"model": ', "{}", "[]"),
    "list_config": ("[1, 2]", "{}", "[]"),
    "str_config": ('"lstm"', "{}", "[]"),
    "null_config": ("null", "{}", "[]"),
    "sql_null": (None, "{}", "[]"),
    "int_config": (5, "{}", "[]"),
    "blob_config": (b"\xff\xfe\x00", "{}", "[]"),
    "summary_list": ("{}", "[]", "[]"),
    "history_dict": ("{}", "{}", "{}"),
    "empty_text": ("", "{}", "[]"),
}


def _hostile_store(path):
    c = sqlite3.connect(path)
    c.execute(LOOSE_SCHEMA)
    c.execute("INSERT INTO runs VALUES ('good', 'train', ?, ?, ?, 1.0, '0')",
              (json.dumps({"model": "lstm", "task_params": {"m": 5}}), json.dumps({"success": True}), "[]"))
    for rid, (cfg, summ, hist) in HOSTILE.items():
        c.execute("INSERT INTO runs VALUES (?, 'train', ?, ?, ?, 2.0, '0')", (rid, cfg, summ, hist))
    c.execute("INSERT INTO runs VALUES ('bad_utf8', 'train', CAST(x'7b22ff223a317d' AS TEXT), '{}', '[]', 3, '0')")
    c.execute("INSERT INTO runs VALUES (x'00ff', 'train', '{}', '{}', '[]', 3, '0')")  # a BLOB id
    c.execute("INSERT INTO runs VALUES ('null_kind', NULL, '{}', '{}', '[]', 3, '0')")
    c.execute("INSERT INTO runs VALUES ('odd_but_ok', 'train', '{\"task_params\": [1], \"train\": 3, \"x\": NaN}',"
              " '{}', '[]', 'yesterday', '0')")
    c.commit()
    c.close()


def test_hostile_rows_are_skipped_with_a_warning(tmp_path, capfd):
    p = tmp_path / "h.sqlite"
    _hostile_store(p)
    s = RunStore(p)
    t0 = time.monotonic()
    rows = s.all()
    assert sorted(r["id"] for r in rows) == ["good", "odd_but_ok"]
    err = capfd.readouterr().err
    assert "skipped 16 unreadable row(s)" in err and str(p) in err and "nested too deeply" in err
    assert s.get("odd_but_ok")["config"]["x"] is None  # NaN read as null, as the store writes it
    for rid in [*HOSTILE, "bad_utf8", "null_kind"]:
        assert s.get(rid) is None and rid not in s
        assert "unreadable" in capfd.readouterr().err
    assert [r["id"] for r in s.find(model="lstm")] == ["good"]
    flat = {r["id"]: r for r in s.df()}
    assert set(flat) == {"good", "odd_but_ok"} and flat["good"]["task.m"] == 5 and "task.0" not in flat["odd_but_ok"]
    assert len(s) == 2 + len(HOSTILE) + 3  # rows in the table, readable or not
    assert time.monotonic() - t0 < 20  # no hang
    # training again replaces the bad row
    s.put("deep", {"model": "lstm"}, {"success": False})
    assert s.get("deep")["summary"] == {"success": False}


def test_hostile_spill_lines(tmp_path, capfd):
    p = tmp_path / "s.sqlite"
    RunStore(p).close()
    good = {"id": "g", "kind": "train", "config": {"a": 1}, "summary": {"ok": 1}, "history": [], "created": 5.0,
            "seqgap_version": "0"}
    lines = [json.dumps(good).encode(), b'{"id": "torn", "config": {"a"', DEEP.encode(), b"[1, 2]", b"\xff\xfe",
             json.dumps({**good, "id": "nodict", "config": [1]}).encode()]
    with open(str(p) + ".spill.jsonl", "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    ro = RunStore(p, readonly=True)
    assert [r["id"] for r in ro.all()] == ["g"] and ro.get("torn") is None  # readers skip bad lines silently
    s = RunStore(p)  # the writable open merges the good line, sets the rest aside
    err = capfd.readouterr().err
    assert "merged 1 spilled run" in err and "5 unreadable line(s)" in err
    assert not os.path.exists(s.spill_path) and len(open(s.rejected_path, "rb").read().splitlines()) == 5
    assert [r["id"] for r in s.all()] == ["g"] and len(s) == 1
