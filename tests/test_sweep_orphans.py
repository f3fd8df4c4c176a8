"""A killed sweep leaves no worker behind (kill -9 of the driver, real processes and signals)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from seqgap.sweep.local import run_jobs
    from test_sweep_orphans import sleeper
    for _ in run_jobs(sleeper, [({d!r}, i) for i in range(2)], workers=2):
        pass
""")


def sleeper(item):
    folder, i = item
    with open(os.path.join(folder, f"w{i}.pid"), "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:  # a zombie is dead
        return f.read().split()[2] != "Z"


def test_kill_9_of_the_driver_takes_the_workers_with_it(tmp_path):
    tests = os.path.dirname(os.path.abspath(__file__))
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(tests=tests, d=str(tmp_path))])
    try:
        deadline = time.time() + 120
        while len(list(tmp_path.glob("w*.pid"))) < 2 and time.time() < deadline:
            time.sleep(0.2)
        pids = [int(p.read_text()) for p in tmp_path.glob("w*.pid")]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        deadline = time.time() + 10
        while any(alive(p) for p in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(alive(p) for p in pids), "orphaned sweep workers survived their driver"
    finally:
        if driver.poll() is None:
            driver.kill()
        for p in tmp_path.glob("w*.pid"):
            try:
                os.kill(int(p.read_text()), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
