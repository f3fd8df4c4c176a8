"""A killed sweep leaves no worker behind (kill -9 of the driver, real processes and signals)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from helpers import alive

DRIVER = textwrap.dedent("""
    from seqgap.config import RunConfig, TrainConfig
    from seqgap.sweep.driver import run_programs
    long = RunConfig(task="modadd", task_params={{"m": 3, "format": "acot"}}, max_length=5, n_train=50, n_val=10,
                     model="lstm", model_size="tiny", train=TrainConfig(steps=10**8, eval_every=10**8))
    run_programs([lambda d, s=s: d.train([long.replace(seed=s)]) for s in range(2)], {store!r}, workers=2)
""")


def workers_of(pid: int) -> list[int]:
    """The pool workers (spawned processes) whose parent is ``pid``."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if int(stat[1]) == pid and b"spawn_main" in cmd:
            out.append(int(p.name))
    return out



def test_kill_9_of_the_driver_takes_the_workers_with_it(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(store=str(tmp_path / "s.sqlite"))])
    pids: list[int] = []
    try:
        deadline = time.time() + 120
        while len(pids) < 2 and time.time() < deadline:
            time.sleep(0.3)
            pids = workers_of(driver.pid)
        assert len(pids) == 2 and all(alive(p) for p in pids)
        time.sleep(1.0)  # the workers are training now
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        deadline = time.time() + 10
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(alive(p) for p in pids), "orphaned sweep workers survived their driver"
    finally:
        if driver.poll() is None:
            driver.kill()
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
