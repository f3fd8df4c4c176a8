"""The examples in examples/ pass check-model (the GRU also inside hybrid; the entry-point package
once installed), and model/task versions are part of a run's identity: an edited plugin file gets
a new run id, built-in ids are pinned and stable across processes, a plugin cannot shadow `lstm`,
and `seqgap runs --stale` lists runs made by outdated versions."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import seqgap.models.registry as registry
from seqgap.config import RunConfig, TrainConfig
from seqgap.errors import SeqgapError
from seqgap.models import load_plugin
from seqgap.models.check import check_model, failures
from seqgap.store import RunStore

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.setattr(registry, "_PLUGINS", {})


def _seqgap(*args, env=None, timeout=120):
    return subprocess.run([sys.executable, "-m", "seqgap", *args], capture_output=True, text=True, timeout=timeout,
                          env=env)


@pytest.mark.parametrize("file, name", [("gru.py", "gru"), ("delta_rule.py", "delta-rule")])
def test_example_passes_check_model(plugins, file, name):
    load_plugin(str(EXAMPLES / file))
    for size in ("tiny", "small"):
        results = check_model(name, 11, size, {}, needs_generation=True)
        assert all(r.status == "PASS" for r in results), [r.line() for r in results]


def test_example_gru_sits_inside_hybrid(plugins):
    load_plugin(str(EXAMPLES / "gru.py"))
    results = check_model("hybrid", 11, "tiny", {"rnn": "gru"}, needs_generation=True)
    assert not failures(results), [r.line() for r in results]
    assert RunConfig(model="hybrid", model_options={"rnn": "gru"}).versions()["model"].startswith("1+rnn=gru:sha256:")


def test_example_from_the_cli():
    p = _seqgap("check-model", "--plugin", str(EXAMPLES / "delta_rule.py"), "--model", "delta-rule", "--size", "tiny",
                "--generation")
    assert p.returncode == 0 and p.stdout.count("PASS") == 6, p.stdout + p.stderr


def test_entry_point_package(tmp_path):
    """Installed (into a private target, no dependencies), the package's model is found through the
    `seqgap.models` entry point without --plugin, and passes check-model."""
    src = tmp_path / "src"
    shutil.copytree(EXAMPLES / "entry_point_pkg", src)  # building writes into the source tree
    target = tmp_path / "site"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--no-index", "--target", str(target), str(src)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    eps = (next(target.glob("seqgap_example_rnn-*.dist-info")) / "entry_points.txt").read_text()
    assert "[seqgap.models]" in eps and "elman = seqgap_example_rnn" in eps
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}
    p = _seqgap("models", env=env)
    assert p.returncode == 0 and "elman" in p.stdout, p.stdout + p.stderr
    p = _seqgap("check-model", "--model", "elman", "--size", "tiny", "--generation", env=env)
    assert p.returncode == 0 and p.stdout.count("PASS") == 6, p.stdout + p.stderr
    # and a tiny card, found through the entry point alone (no --plugin)
    p = _seqgap("card", "--model", "elman", "--battery", "tiny", "--workers", "1", "--store", str(tmp_path / "s.sqlite"),
                "--out", str(tmp_path / "card"), env=env, timeout=300)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    import json

    card = json.loads((tmp_path / "card" / "card.json").read_text())
    assert card["model"] == "elman" and card["battery"] == "tiny"


# ---- identity ------------------------------------------------------------------------------

README_CFG = RunConfig(task="modadd", task_params={"m": 5, "format": "acot"}, max_length=20, n_train=2000,
                       model="lstm", model_size="small", train=TrainConfig(lr=3e-3, steps=5000))
# Pinned: a change to identity() that moves existing runs must be deliberate (bump RESULTS_VERSION
# or a model/task version, and update these).
PINNED = {"default": (RunConfig(), "0950100e3bf10ef31028"), "readme": (README_CFG, "39f74f85e8eaee970860"),
          "hybrid-lstm": (RunConfig(model="hybrid", model_options={"rnn": "lstm"}), "72a3053a73240e96e629")}


def test_builtin_ids_are_pinned_and_carry_versions():
    for key, (cfg, rid) in PINNED.items():
        assert cfg.hash() == rid, key
    assert README_CFG.identity()["versions"] == {"model": "1", "task": "1"}


def test_builtin_ids_are_stable_across_processes():
    code = ("from seqgap.config import RunConfig, TrainConfig; "
            "print(RunConfig(task='modadd', task_params={'m': 5, 'format': 'acot'}, max_length=20, n_train=2000, "
            "model='lstm', model_size='small', train=TrainConfig(lr=3e-3, steps=5000)).hash())")
    out = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout.strip()
           for _ in range(2)}
    assert out == {PINNED["readme"][1]}


def test_a_version_change_moves_only_that_models_runs(monkeypatch):
    import dataclasses

    lstm, mamba = RunConfig(model="lstm"), RunConfig(model="mamba")
    before = lstm.hash(), mamba.hash()
    table = dict(registry.BUILTIN_MODELS)
    table["lstm"] = dataclasses.replace(table["lstm"], version="2")
    monkeypatch.setattr(registry, "BUILTIN_MODELS", table)
    assert lstm.hash() != before[0] and mamba.hash() == before[1]


def test_an_edited_plugin_file_gets_a_new_run_id(plugins, tmp_path):
    path = tmp_path / "mine.py"
    text = (EXAMPLES / "gru.py").read_text().replace('"gru"', '"my-gru"')
    path.write_text(text)
    load_plugin(str(path))
    cfg = RunConfig(model="my-gru", model_size="tiny")
    first = cfg.hash()
    assert cfg.hash() == first  # stable
    path.write_text(text.replace("return y[:, 0], h", "return y[:, 0], h  # edited"))
    load_plugin(str(path))
    assert cfg.hash() != first


def test_a_declared_plugin_version_is_the_identity(plugins):
    load_plugin(str(EXAMPLES / "delta_rule.py"))
    assert RunConfig(model="delta-rule").versions() == {"model": "1", "task": "1"}


def test_a_plugin_cannot_shadow_lstm(plugins, tmp_path):
    path = tmp_path / "shadow.py"
    path.write_text((EXAMPLES / "gru.py").read_text().replace('register_model("gru"', 'register_model("lstm"'))
    with pytest.raises(SeqgapError, match="built-in model's name"):
        load_plugin(str(path))
    assert registry.get_spec("lstm").cls.__name__ == "LSTMModel"
    p = _seqgap("check-model", "--plugin", str(path), "--model", "lstm")
    assert p.returncode == 2 and "built-in model's name" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_runs_stale_lists_runs_of_outdated_versions(tmp_path):
    store = RunStore(tmp_path / "s.sqlite")
    fresh = RunConfig(model="lstm", n_train=10)
    store.put(fresh.hash(), fresh.to_dict(), {"steps": 1})
    old = fresh.replace(n_train=11)
    d = old.to_dict()
    d["versions"] = {"model": "0", "task": "1"}
    store.put("oldlstm", d, {"steps": 1})
    p = _seqgap("runs", "--stale", "--store", str(store.path))
    assert p.returncode == 0, p.stderr
    assert "oldlstm" in p.stdout and "model lstm version 0 -> 1" in p.stdout and fresh.hash() not in p.stdout
    assert "1 of 2 runs" in p.stderr
    assert json.loads(json.dumps(fresh.to_dict()))["versions"] == {"model": "1", "task": "1"}
    assert RunConfig.from_dict(fresh.to_dict()) == fresh
