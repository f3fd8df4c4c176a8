"""Checkpoints: a run killed (kill -9, a real process) resumes from its checkpoint and ends with the
result of an uninterrupted run, bit for bit; a finished run's checkpoint is removed."""
from __future__ import annotations

import signal
import subprocess
import sys
import time

from helpers import stored_metrics

from seqgap.config import RunConfig, TrainConfig
from seqgap.store import RunStore
from seqgap.training import trainer

ARGS = ["--task", "modadd", "--m", "3", "-L", "6", "--format", "acot", "--model", "lstm", "--size", "tiny",
        "--n-train", "300", "--n-val", "40", "--steps", "1500", "--eval-every", "50", "--lr", "3e-3",
        "--success-loss", "1e-9", "--checkpoint-every-s", "0", "--no-progress", "--json"]



def test_killed_run_resumes_bit_identical(tmp_path):
    cmd = [sys.executable, "-m", "seqgap", "train", *ARGS]
    whole = tmp_path / "whole.sqlite"
    assert subprocess.run(cmd + ["--store", str(whole)], capture_output=True, timeout=600).returncode == 0

    store = tmp_path / "killed.sqlite"
    ckpt_dir = tmp_path / "killed.checkpoints"
    proc = subprocess.Popen(cmd + ["--store", str(store)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not list(ckpt_dir.glob("*.pt")):
        time.sleep(0.05)
    time.sleep(0.5)  # well into training, several checkpoints written
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert list(ckpt_dir.glob("*.pt")) and len(RunStore(store)) == 0  # killed mid-run, a checkpoint left

    again = subprocess.run(cmd + ["--store", str(store)], capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr and "from its checkpoint at step" in again.stderr
    step = int(again.stderr.split("checkpoint at step")[1].split()[0])
    assert 0 < step < 1500
    assert stored_metrics(store) == stored_metrics(whole) and len(stored_metrics(store)) == 1
    assert not list(ckpt_dir.glob("*.pt"))  # the stored run's checkpoint is gone


def test_checkpoint_does_not_change_the_run_id_and_resumes_in_process(tmp_path):
    cfg = RunConfig(task="modadd", task_params={"m": 3, "format": "acot"}, max_length=5, n_train=60, n_val=20,
                    model="transformer", model_size="tiny",
                    train=TrainConfig(steps=40, eval_every=10, batch_size=8, success_loss=1e-9))
    ck = cfg.replace(checkpoint_dir=str(tmp_path), checkpoint_every_s=0.0)
    assert ck.hash() == cfg.hash()
    want = trainer.train(cfg)
    data = trainer.RunData(trainer.build_task(ck), ck)
    with trainer.torch_threads(ck.train):
        half = trainer.Run(ck, data)
        while half.state.step < 17:
            half.advance()
        resumed = trainer.Run(ck, data)  # a new process would build exactly this
        assert resumed.state.step == 17
        while not resumed.state.done:
            resumed.advance()
        got = resumed.result()
    strip = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert strip(got.history) == strip(want.history)
    for k, v in want.model.state_dict().items():
        assert (got.model.state_dict()[k] == v).all(), k


ENSEMBLE_DRIVER = """
from seqgap.config import RunConfig, TrainConfig
from seqgap.sweep.driver import run_programs
base = RunConfig(task="modadd", task_params={{"m": 3, "format": "acot"}}, max_length=6, n_train=100, n_val=20,
                 model="lstm", model_size="tiny", train=TrainConfig(steps=3000, eval_every=10, success_loss=0.9))
# lr 1e-2 reaches the success loss within a few dozen steps and stops; lr 1e-7 trains all 3,000
grid = [base.replace(lr=1e-2, seed=0), base.replace(lr=1e-7, seed=1)]
run_programs([lambda d: d.train(grid)], {store!r}, workers=1)
"""


def test_a_killed_ensemble_keeps_the_members_it_had_finished(tmp_path):
    store = tmp_path / "s.sqlite"
    ckpt = tmp_path / "s.checkpoints"
    proc = subprocess.Popen([sys.executable, "-c", ENSEMBLE_DRIVER.format(store=str(store))])
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not list(ckpt.glob("*.result.json")):
            time.sleep(0.1)
        kept = list(ckpt.glob("*.result.json"))
        assert len(kept) == 1  # the fast member finished, the slow one is still training
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    import json

    finished = json.loads(kept[0].read_text())
    assert len(RunStore(store)) == 0  # killed before the job returned: nothing stored yet
    # rerun: the finished member is not trained again (the slow one resumes or restarts)
    rerun = subprocess.run([sys.executable, "-c", ENSEMBLE_DRIVER.format(store=str(store))],
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    row = RunStore(store).get(finished["id"])
    assert row is not None and row["summary"] == finished["summary"]  # its own seconds: the kept result
    assert not list(ckpt.glob("*.result.json"))  # stored, so no longer kept
