"""The Ray engine against the local one: the same sweep stores bit-identical metrics; a killed
driver leaves no Ray worker training and resumes without retraining what was stored."""
from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from seqgap.config import RunConfig, TrainConfig
from helpers import alive, stored_metrics

from seqgap.store import RunStore
from seqgap.studies import sample_complexity as sc

ray = pytest.importorskip("ray")

SETTINGS = sc.SearchSettings(n_max=16, factor=4, max_steps=2, bisect="geometric", lrs=(1e-2, 3e-3), seeds=(0,),
                             train=TrainConfig(steps=40, eval_every=10, batch_size=8, success_loss=0.3))
CELLS = [sc.Cell("modadd", {"m": 2, "format": "acot"}, 4, "fixed", "transformer", "tiny"),
         sc.Cell("modadd", {"m": 2, "format": "acot"}, 5, "fixed", "lstm", "tiny")]



def test_local_and_ray_engines_store_bit_identical_metrics(tmp_path):
    local = sc.search_cells(CELLS, SETTINGS, str(tmp_path / "local.sqlite"), workers=2)
    on_ray = sc.search_cells(CELLS, SETTINGS, str(tmp_path / "ray.sqlite"), workers=2, backend="ray")
    assert [r.search.to_dict() for r in local] == [r.search.to_dict() for r in on_ray]
    a, b = stored_metrics(tmp_path / "local.sqlite"), stored_metrics(tmp_path / "ray.sqlite")
    assert a and a == b


def test_without_ray_the_backend_is_a_one_line_error(monkeypatch, capsys, tmp_path):
    from seqgap.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    code = main(["sweep", str(Path(__file__).parents[1] / "examples" / "sweep_parity.py"), "--backend", "ray",
                 "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith("seqgap: error:") and "pip install" in err[-1]


DRIVER = textwrap.dedent("""
    from seqgap.config import RunConfig, TrainConfig
    from seqgap.sweep.driver import run_programs
    base = RunConfig(task="modadd", task_params={{"m": 3, "format": "acot"}}, max_length=5, n_train=50, n_val=10,
                     model="lstm", model_size="tiny", train=TrainConfig(steps=5, eval_every=5))
    quick = [base.replace(seed=s) for s in range(2)]
    slow = [base.replace(seed=10 + s, steps=10**8, eval_every=10**8) for s in range(2)]
    run_programs([lambda d: d.train_each(quick + slow)], {store!r}, backend="ray", workers=2)
""")


def ray_workers() -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"_execute_in_worker" in (p / "cmdline").read_bytes():
                    out.append(int(p.name))
            except OSError:
                pass
    return out



def test_killed_driver_leaves_no_ray_worker_and_resumes_without_retraining(tmp_path):
    store = tmp_path / "s.sqlite"
    driver = subprocess.Popen([sys.executable, "-c", DRIVER.format(store=str(store))])
    try:
        deadline = time.time() + 180
        busy: list[int] = []
        while time.time() < deadline:  # the quick runs stored, the slow ones training on Ray workers
            time.sleep(0.5)
            busy = ray_workers()
            if store.exists() and len(RunStore(store, readonly=True)) >= 2 and len(busy) >= 2:
                break
        assert len(RunStore(store, readonly=True)) == 2 and len(busy) >= 2
        driver.send_signal(signal.SIGKILL)
        driver.wait(10)
        deadline = time.time() + 60
        while any(alive(p) for p in busy) and time.time() < deadline:
            time.sleep(0.5)
        assert not any(alive(p) for p in busy), "Ray workers kept training after their driver died"
    finally:
        if driver.poll() is None:
            driver.kill()
        subprocess.run([str(Path(sys.executable).parent / "ray"), "stop", "--force"], capture_output=True)  # nothing left behind
    # rerun: the finished runs come from the store, nothing is trained again
    from seqgap.sweep.driver import Driver
    from seqgap.sweep.local import LocalEngine

    base = RunConfig(task="modadd", task_params={"m": 3, "format": "acot"}, max_length=5, n_train=50, n_val=10,
                     model="lstm", model_size="tiny", train=TrainConfig(steps=5, eval_every=5))
    d = Driver(RunStore(store), LocalEngine(1), progress=False)
    out = d.run([lambda drv: drv.train_each([base.replace(seed=s) for s in range(2)])])
    assert out[0].ok and all(r.cached for r in out[0].value) and d.counts["trained"] == 0


def test_a_plugin_model_trains_on_ray_workers(tmp_path):
    # a Ray worker starts bare: the driver's plugin files travel with each job and load there
    from seqgap.models.registry import load_plugin
    from seqgap.sweep.driver import run_programs

    load_plugin(str(Path(__file__).parents[1] / "examples" / "gru.py"))
    cfg = RunConfig(task="modadd", task_params={"m": 3, "format": "acot"}, max_length=5, n_train=40, n_val=10,
                    model="gru", train=TrainConfig(steps=5, eval_every=5))
    out = run_programs([lambda d: d.train_each([cfg])], str(tmp_path / "s.sqlite"), backend="ray", workers=2)
    assert out[0].ok, out[0].error
    assert out[0].value[0].summary["steps"] == 5 and not out[0].value[0].cached
