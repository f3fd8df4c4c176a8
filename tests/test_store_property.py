"""Property test of the run store reader: whatever a row (or a spill line) holds, reading
gives runs of the right shape or skips the row -- never an exception, never a hang."""
import contextlib
import io
import json
import os
import sqlite3

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from seqgap.store import RunStore  # noqa: E402

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)
_deep = st.tuples(st.integers(1, 250_000), st.sampled_from(["[", "{\"a\":", "[{\"b\":"]), st.booleans()).map(
    lambda t: t[1] * t[0] + ("" if t[2] else "]" * t[0]))
_json_text = _json.map(lambda x: json.dumps(x, allow_nan=True))
_cell = st.one_of(
    _json_text, _json_text.map(lambda s: s[: len(s) // 2]),  # valid JSON, and JSON cut short
    _deep, st.text(max_size=30), st.binary(max_size=30), st.none(),
    st.integers(-2**63, 2**63 - 1), st.floats(allow_nan=False),
    st.dictionaries(st.text(max_size=5), _json, max_size=3).map(json.dumps),  # a proper object
)
_row = st.tuples(
    # id
    st.one_of(st.text(min_size=1, max_size=10), st.binary(min_size=1, max_size=5), st.integers(-2**63, 2**63 - 1)),
    st.one_of(st.just("train"), st.text(max_size=5), st.none(), st.integers(-9, 9)),  # kind
    _cell, _cell, _cell,  # config, summary, history
    st.one_of(st.floats(allow_nan=False), st.integers(-2**63, 2**63 - 1), st.text(max_size=5), st.none()),
)
_spill_line = st.one_of(
    st.binary(max_size=60),
    _deep.map(str.encode),
    st.fixed_dictionaries({"id": st.text(min_size=1, max_size=5), "kind": st.text(max_size=3), "config": _json,
                           "summary": _json, "history": _json, "created": _json}).map(
        lambda d: json.dumps(d).encode()),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(_row, max_size=6), spill=st.lists(_spill_line, max_size=4))
def test_reader_over_hostile_rows(tmp_path_factory, rows, spill):
    path = str(tmp_path_factory.mktemp("p") / "h.sqlite")
    c = sqlite3.connect(path)
    # loosely typed columns: a foreign writer may store anything, NULLs included
    c.execute("CREATE TABLE runs (id TEXT PRIMARY KEY, kind, config, summary, history, created, seqgap_version)")
    c.executemany("INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,'0')", rows)
    c.commit()
    c.close()
    with open(path + ".spill.jsonl", "wb") as f:
        f.write(b"\n".join(spill) + (b"\n" if spill else b""))
    with contextlib.redirect_stderr(io.StringIO()):
        for readonly in (True, False):  # reading as it is, then after the writable open's merge
            s = RunStore(path, readonly=readonly)
            runs = s.all()
            for r in runs:
                assert isinstance(r["id"], str) and isinstance(r["kind"], str)
                assert isinstance(r["config"], dict) and isinstance(r["summary"], dict)
                assert isinstance(r["history"], list) and isinstance(r["created"], float)
                assert s.get(r["id"]) is not None
            for rid in {row[0] for row in rows if isinstance(row[0], str)}:
                got = s.get(rid)
                assert got is None or got["id"] == rid
            assert len(s) >= len(runs)
            assert len(s.df()) == len(runs) and isinstance(s.find(model="lstm"), list)
            s.close()
    assert not os.path.exists(path + ".spill.jsonl")  # merged or set aside
