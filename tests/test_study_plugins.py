"""Every study takes --plugin, per-model sizes (--model llama:tiny,mine:small) and runs check-model
once per distinct model before any training (issue 12, item 5)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from seqgap.cli import main as cli_main
from seqgap.errors import SeqgapError
from seqgap.models import registry
from seqgap.models import check as check_mod
from seqgap.studies import models as study_models

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
GRU = str(EXAMPLES / "gru.py")


@pytest.fixture
def plugins(monkeypatch):
    monkeypatch.setattr(registry, "_PLUGINS", {})
    monkeypatch.setattr(registry, "LOADED_PLUGINS", [])
    monkeypatch.setattr(study_models, "_PASSED", set())


@pytest.fixture
def checked(monkeypatch):
    """Records every require_model_ok call (name, size, options, needs_generation)."""
    calls = []
    real = check_mod.require_model_ok

    def spy(name, vocab_size, size=None, options=None, needs_generation=False, max_len=None):
        calls.append((name, size, dict(options or {}), needs_generation))
        return real(name, vocab_size, size, options, needs_generation, max_len)

    monkeypatch.setattr(check_mod, "require_model_ok", spy)
    return calls


def test_parse_models():
    assert study_models.parse_models("llama:tiny, mine:small,lstm") == [("llama", "tiny"), ("mine", "small"),
                                                                          ("lstm", None)]
    assert study_models.parse_models(None) is None
    for bad in ("lstm:", ":tiny", ",", "lstm,lstm"):
        with pytest.raises(SeqgapError):
            study_models.parse_models(bad)
    assert study_models.resolve_sizes([("a", "x"), ("b", None), ("c", None)], None, {"b": "p"}) == \
        [("a", "x"), ("b", "p"), ("c", None)]
    assert study_models.resolve_sizes([("a", "x"), ("b", None)], "s", {"b": "p"}) == [("a", "x"), ("b", "s")]


SC = ["study", "sample-complexity", "--preset", "quick", "--m", "2", "-L", "5", "--format", "acot",
      "--n-max", "16", "--max-steps", "2", "--lrs", "1e-2", "--seeds", "0", "--steps", "20", "--eval-every", "10",
      "--workers", "1"]


def test_sample_complexity_with_a_plugin_model_and_per_model_sizes(tmp_path, plugins, checked, capsys):
    out = tmp_path / "out"
    argv = SC + ["--plugin", GRU, "--model", "gru:tiny,lstm", "--size", "tiny", "--store", str(tmp_path / "s.sqlite"),
                 "--out", str(out)]
    assert cli_main(argv) == 0
    md = capsys.readouterr().out
    assert "gru" in md and "lstm" in md
    # check-model once per distinct model, before training, with the model's own size
    assert sorted((c[0], c[1]) for c in checked) == [("gru", "tiny"), ("lstm", "tiny")]


def test_sample_complexity_plan_gives_each_model_its_size(plugins, checked):
    from seqgap.studies import sample_complexity, study_parser

    args = study_parser(sample_complexity).parse_args(
        ["--plugin", GRU, "--model", "gru:small,transformer,lstm:tiny", "--size", "tiny", "--m", "2", "-L", "5",
         "--format", "acot"])
    cells, _ = sample_complexity.plan(args)
    assert {(c.model, c.model_size) for c in cells} == {("gru", "small"), ("transformer", "tiny"), ("lstm", "tiny")}
    assert len(checked) == 3
    args = study_parser(sample_complexity).parse_args(["--model", "gru:small,lstm", "--m", "2", "-L", "5"])
    cells, _ = sample_complexity.plan(args)  # no --size: a bare name keeps the preset's size
    assert {(c.model, c.model_size) for c in cells} == {("gru", "small"), ("lstm", "tiny")}
    assert len(checked) == 3  # already checked in this process: not again


def test_a_model_failing_check_model_stops_a_study_before_training(tmp_path, plugins, monkeypatch, capsys):
    from seqgap.training import trainer

    bad = tmp_path / "leaky.py"
    bad.write_text((EXAMPLES / "gru.py").read_text().replace('"gru"', '"leaky"').replace(
        "return self.gru(x)[0]", "return self.gru(x)[0] + x.mean(dim=1, keepdim=True)"))
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("trained before check-model"))
    for study in (SC, ["study", "retrieval-gap", "--preset", "quick", "--task", "mqar", "--pairs", "2",
                       "--steps", "2", "--n-val", "8", "--workers", "1"]):
        argv = study[:2] + ["--plugin", str(bad), "--model", "leaky:tiny"] + study[2:] + \
            ["--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o")]
        assert cli_main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1].startswith("seqgap: error: model leaky fails check-model: causal")
        assert not any(line.startswith("Traceback") for line in err)


def test_retrieval_gap_with_a_plugin_model_model_opt_and_per_model_sizes(tmp_path, plugins, checked):
    out = tmp_path / "out"
    argv = ["study", "retrieval-gap", "--preset", "quick", "--plugin", GRU, "--task", "istree,mqar",
            "--format", "cot", "--model", "gru:tiny,lstm:tiny", "--n", "5", "--pairs", "2", "--steps", "3",
            "--n-val", "16", "--gen-eval", "4", "--workers", "1", "--model-opt", "n_layers=1",
            "--store", str(tmp_path / "s.sqlite"), "--out", str(out)]
    assert cli_main(argv) == 0
    cells = json.loads((out / "results.json").read_text())["cells"]
    assert {(c["model"], c["size"], c["task"]) for c in cells} == {
        ("gru", "tiny", "istree"), ("gru", "tiny", "mqar"), ("lstm", "tiny", "istree"), ("lstm", "tiny", "mqar")}
    assert all(c["ok"] and c["model_options"] == {"n_layers": 1} for c in cells)
    # once per distinct model, with generation (IsTree CoT is scored by free generation)
    assert sorted(checked) == [("gru", "tiny", {"n_layers": 1}, True), ("lstm", "tiny", {"n_layers": 1}, True)]


def test_retrieval_gap_model_opt_is_typed_and_checked(tmp_path, plugins, capsys):
    base = ["study", "retrieval-gap", "--dry-run", "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o"),
            "--model", "lstm"]
    assert cli_main(base + ["--model-opt", "n_layers=abc"]) == 2
    assert "n_layers" in capsys.readouterr().err
    assert cli_main(base + ["--model-opt", "bogus=1"]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert cli_main(base + ["--model", "lstm:tiny,lstm:small", "--task", "mqar", "--pairs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert sum("lstm:tiny mqar" in x for x in lines) == 1 and sum("lstm:small mqar" in x for x in lines) == 1


def test_every_study_takes_plugin_and_per_model_sizes():
    from seqgap.studies import STUDY_MODULES, study_parser
    import importlib

    for name in STUDY_MODULES:
        mod = importlib.import_module(name)
        args = study_parser(mod).parse_args(["--plugin", GRU, "--model", "gru:tiny,lstm", "--model-opt", "n_layers=1"])
        assert args.plugin == [GRU] and args.model == "gru:tiny,lstm" and args.model_opt == ["n_layers=1"]


def test_length_generalization_checks_generation_for_cot(plugins, checked):
    from seqgap.studies import length_gen, study_parser

    args = study_parser(length_gen).parse_args(["--plugin", GRU, "--model", "gru:tiny", "--format", "cot,acot",
                                                "--m", "2", "-L", "5"])
    cells, _ = length_gen.plan(args)
    assert {c.model_size for c in cells} == {"tiny"}
    assert checked == [("gru", "tiny", {}, True)]  # CoT answers at longer lengths are generated


def test_worker_processes_load_the_plugins(tmp_path, plugins):
    """Spawned local-engine workers start bare: they load the driver's plugins."""
    from seqgap.models.registry import load_plugin
    from seqgap.sweep import local

    load_plugin(GRU)
    assert local._plugins() == (str(Path(GRU).resolve()),)
