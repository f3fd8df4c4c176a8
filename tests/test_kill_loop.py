"""kill -9 a study at random moments, rerun it to completion: nothing finished is trained again,
and the final store and N* table equal an uninterrupted run's (real processes, real signals)."""
from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import time

import pytest

from helpers import stored_metrics

from seqgap.store import RunStore

STUDY = ["study", "sample-complexity", "--task", "modadd", "--m", "2", "-L", "4,5", "--model", "lstm,transformer",
         "--format", "acot", "--n-max", "24", "--factor", "2", "--max-steps", "3", "--lrs", "1e-2,3e-3",
         "--seeds", "0", "--steps", "60", "--eval-every", "20", "--success-loss", "0.3", "--workers", "2"]


def run_study(store, out, kill_after: float | None = None):
    cmd = [sys.executable, "-m", "seqgap", *STUDY, "--store", str(store), "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        time.sleep(kill_after)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
    out_text, err = proc.communicate(timeout=600)
    return proc.returncode, out_text, err



def kill_loop(tmp_path, kills: int, seed: int):
    whole = tmp_path / "whole.sqlite"
    code, table, _ = run_study(whole, tmp_path / "whole")
    assert code == 0
    store = tmp_path / "killed.sqlite"
    rng = random.Random(seed)
    for _ in range(kills):
        run_study(store, tmp_path / "killed", kill_after=rng.uniform(1.0, 6.0))
    before = set(stored_metrics(store)) if store.exists() else set()
    code, table_after, err = run_study(store, tmp_path / "killed")
    assert code == 0, err
    trained = sum(int(t) for t in re.findall(r"runs, (\d+) trained\)", err))
    after = stored_metrics(store)
    # nothing that was stored before the final rerun is trained again
    assert trained == len(set(after) - before), (trained, len(after), len(before))
    assert after == stored_metrics(whole)
    assert table_after.split("## What the numbers say")[0] == table.split("## What the numbers say")[0]
    assert RunStore(store).claims() == []


def test_kill_loop_short(tmp_path):
    kill_loop(tmp_path, kills=2, seed=0)


@pytest.mark.slow
def test_kill_loop_long(tmp_path):
    kill_loop(tmp_path, kills=10, seed=1)


def test_ctrl_c_stops_a_study_within_seconds_and_leaves_the_store_consistent(tmp_path):
    import os
    import sqlite3

    cmd = [sys.executable, "-m", "seqgap", *STUDY[:STUDY.index("--steps")], "--steps", "5000", "--eval-every", "50",
           "--success-loss", "1e-9", "--workers", "2", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    time.sleep(5)  # training in both workers
    t0 = time.time()
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
    _, err = proc.communicate(timeout=60)
    assert time.time() - t0 < 15 and proc.returncode == 130, err[-2000:]
    assert "interrupted" in err and "Traceback" not in err.split("interrupted")[-1]
    assert sqlite3.connect(tmp_path / "s.sqlite").execute("pragma integrity_check").fetchone() == ("ok",)
