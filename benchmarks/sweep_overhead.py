"""The sweep engines' overhead per run: many tiny runs through the driver (docs/scaling.md).

    .venv/bin/python benchmarks/sweep_overhead.py --runs 2000 [--backend local,ray] [--workers 2]

Each run is a 1-step training of the tiny LSTM on 8 modadd problems, so almost all of its time
is the engine, the driver and the store.  Reports runs/s, the driver's CPU time per run and the
store's write time per run (timed around each ``RunStore.put``, in the driver: the single writer).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))


def measure(backend: str, runs: int, workers: int) -> dict:
    from seqgap.config import RunConfig, TrainConfig
    from seqgap.store import RunStore
    from seqgap.sweep.driver import Driver, make_engine

    base = RunConfig(task="modadd", task_params={"m": 3, "format": "acot"}, max_length=4, n_train=8, n_val=4,
                     model="lstm", model_size="tiny", train=TrainConfig(steps=1, eval_every=1, batch_size=8))
    configs = [base.replace(seed=s) for s in range(runs)]
    with tempfile.TemporaryDirectory() as d:
        store = RunStore(os.path.join(d, "s.sqlite"))
        put_time = [0.0]
        real_put = store.put

        def timed_put(*a, **k):
            t = time.perf_counter()
            real_put(*a, **k)
            put_time[0] += time.perf_counter() - t

        store.put = timed_put
        engine = make_engine(backend, workers=workers)
        driver = Driver(store, engine, progress=False)
        if backend == "ray":  # start-up is not per-run overhead: warm the workers first
            Driver(RunStore(os.path.join(d, "warm.sqlite")), engine, progress=False).run(
                [lambda drv: drv.train_each([base.replace(seed=10**6 + s) for s in range(workers)])])
        c0, w0 = time.process_time(), time.perf_counter()
        out = driver.run([lambda drv: drv.train_each(configs)])
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        engine.close()
        assert out[0].ok and len(store) == runs, out[0].error
    return {"backend": backend, "runs": runs, "workers": workers, "wall_s": wall, "runs_per_s": runs / wall,
            "driver_cpu_ms_per_run": 1e3 * cpu / runs, "store_write_ms_per_run": 1e3 * put_time[0] / runs}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2000)
    ap.add_argument("--backend", default="local,ray")
    ap.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    args = ap.parse_args()
    for backend in args.backend.split(","):
        print(json.dumps(measure(backend, args.runs, args.workers)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
