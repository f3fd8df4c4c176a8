"""Two drivers on one store (two shells running the same study): every run is trained once."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from seqgap.store import RunStore

DRIVER = textwrap.dedent("""
    import json
    from seqgap.config import RunConfig, TrainConfig
    from seqgap.store import RunStore
    from seqgap.sweep.driver import Driver
    from seqgap.sweep.local import LocalEngine
    base = RunConfig(task="modadd", task_params={{"m": 3, "format": "acot"}}, max_length=6, n_train=100, n_val=20,
                     model="lstm", model_size="tiny", train=TrainConfig(steps=150, eval_every=50, success_loss=1e-9))
    d = Driver(RunStore({store!r}), LocalEngine(1), progress=False)
    out = d.run([lambda drv: drv.train_each([base.replace(seed=s) for s in range(6)])])
    assert out[0].ok, out[0].error
    print(json.dumps(d.counts))
""")


def test_two_drivers_never_train_a_run_twice(tmp_path):
    store = str(tmp_path / "s.sqlite")
    RunStore(store).close()  # created before both start
    procs = [subprocess.Popen([sys.executable, "-c", DRIVER.format(store=store)], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    counts = [json.loads(p.communicate(timeout=600)[0].strip().splitlines()[-1]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sum(c["trained"] for c in counts) == 6, counts  # each run once, whoever claimed it
    assert sum(c["from_store"] for c in counts) >= 6 - min(c["trained"] for c in counts)
    assert len(RunStore(store)) == 6 and not RunStore(store).claims()


def test_a_killed_claimants_claim_is_taken_at_once(tmp_path):
    # kill -9 leaves its claims behind; on the same machine a dead pid frees them at once, not after the ttl
    import socket

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store = RunStore(str(tmp_path / "s.sqlite"))
    assert store.claim("run-a", f"{socket.gethostname()}:{dead.pid}:x", ttl_s=3600)
    assert store.claim("run-a", "me:1:y", ttl_s=60)  # taken over: its owner's process is gone
    assert store.claim("run-b", f"{socket.gethostname()}:{__import__('os').getpid()}:x", ttl_s=3600)
    assert not store.claim("run-b", "me:1:y", ttl_s=60)  # a live local owner keeps it
    assert store.claim("run-c", "elsewhere:1:x", ttl_s=3600)
    assert not store.claim("run-c", "me:1:y", ttl_s=60)  # another machine's claim: only its ttl tells
