"""Run store: persistence, atomicity, reuse."""
import multiprocessing as mp
import os
import signal
import sqlite3
import time

from seqgap.config import RunConfig, TrainConfig
from seqgap.store import RunStore


def test_put_get_roundtrip(tmp_path):
    s = RunStore(tmp_path / "r.sqlite")
    s.put("abc", {"model": "lstm", "task_params": {"m": 5}}, {"success": True, "best_val_loss": 1e-5}, [{"step": 1}])
    r = s.get("abc")
    assert r["config"]["model"] == "lstm" and r["summary"]["success"] is True and r["history"] == [{"step": 1}]
    assert "abc" in s and len(s) == 1 and s.get("nope") is None
    # persisted across connections
    s2 = RunStore(tmp_path / "r.sqlite")
    assert s2.get("abc")["summary"]["best_val_loss"] == 1e-5
    assert s2.find(model="lstm")[0]["id"] == "abc" and s2.find(model="mamba") == []
    assert s2.df()[0]["task.m"] == 5


def test_config_hash_ignores_device_and_threads_only():
    a = RunConfig(train=TrainConfig(device="cpu", threads=1))
    b = RunConfig(train=TrainConfig(device="cuda", threads=8))
    assert a.hash() == b.hash()
    assert a.hash() != a.replace(lr=3e-4).hash()
    assert a.hash() != a.replace(n_train=2001).hash()
    assert a.hash() != a.replace(task_params={"m": 3}).hash()
    assert RunConfig.from_dict(a.to_dict()).hash() == a.hash()


def _writer(path, n):
    s = RunStore(path)
    big = {"blob": "x" * 200_000}
    i = 0
    while True:
        s.put(f"run{i}", {"i": i, **big}, {"i": i}, [big] * 5)
        i += 1


def test_kill_9_mid_write_leaves_no_partial_run(tmp_path):
    path = str(tmp_path / "k.sqlite")
    RunStore(path)  # create schema
    ctx = mp.get_context("fork")
    p = ctx.Process(target=_writer, args=(path, 0))
    p.start()
    time.sleep(1.5)
    os.kill(p.pid, signal.SIGKILL)
    p.join()
    s = RunStore(path)
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    rows = s.all()
    assert len(rows) > 0
    for r in rows:  # every stored run is complete
        assert r["config"]["i"] == r["summary"]["i"]
        assert len(r["history"]) == 5 and len(r["config"]["blob"]) == 200_000


def test_defaults_are_pinned():
    """Run ids omit default-valued fields; a changed default would silently alias old runs.
    If you change a default on purpose, bump RESULTS_VERSION and update this test."""
    import dataclasses

    from seqgap.config import RESULTS_VERSION

    assert RESULTS_VERSION == 2
    d = dataclasses.asdict(RunConfig())
    assert d["train"] == {
        "lr": 1e-3, "optimizer": "adamw", "weight_decay": 0.0, "schedule": "constant", "warmup_steps": 0,
        "batch_size": 64, "steps": 2000, "eval_every": 100, "success_loss": 1e-4, "early_stop": True,
        "patience_evals": 0, "patience_rel": 0.01, "patience_min_frac": 0.25, "grad_clip": 1.0,
        "label_smoothing": 0.0, "seed": 0,
        "device": "cpu", "threads": None, "compile": False, "checkpoint_dir": None, "checkpoint_every_s": 300.0}
    d.pop("train")
    assert d == {"task": "modadd", "task_params": {}, "max_length": 20, "length_dist": "fixed", "n_train": 2000,
                 "n_val": None, "data_seed": 0, "model": "lstm", "model_size": None, "model_options": {},
                 "eval_lengths": (), "n_eval": 500, "gen_eval": 0, "max_positions": 0}


def test_nan_metrics_do_not_break_sql_queries(tmp_path):
    s = RunStore(tmp_path / "n.sqlite")
    s.put("a", {"model": "lstm"}, {"best_val_loss": float("nan"), "x": [float("inf"), 1.0]}, [{"val_loss": float("nan")}])
    s.put("b", {"model": "lstm"}, {"best_val_loss": 0.5, "x": []})
    got = sqlite3.connect(tmp_path / "n.sqlite").execute(
        "select id, json_extract(summary, '$.best_val_loss') from runs order by id").fetchall()
    assert got == [("a", None), ("b", 0.5)]
    assert s.get("a")["summary"]["x"] == [None, 1.0]
