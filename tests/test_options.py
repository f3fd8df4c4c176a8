"""One config path: flags generated from the config dataclasses, --set, typed values, one-line errors."""
from __future__ import annotations

import dataclasses

import pytest

from seqgap.cli import build_parser, main, run_config_from
from seqgap.config import RunConfig, TrainConfig
from seqgap.errors import SeqgapError
from seqgap.options import apply_overrides, parse_kv, typed_model_options


def config_of(*argv: str) -> RunConfig:
    return run_config_from(build_parser().parse_args(["train", *argv]))


# a value other than the default for every TrainConfig field, as typed on the command line
NON_DEFAULT = {"lr": ("3e-3", 3e-3), "optimizer": ("adam", "adam"), "weight_decay": ("0.1", 0.1),
               "schedule": ("cosine", "cosine"), "warmup_steps": ("5", 5), "batch_size": ("8", 8),
               "steps": ("30", 30), "eval_every": ("10", 10), "success_loss": ("0.5", 0.5),
               "early_stop": ("no", False), "patience_evals": ("3", 3), "patience_rel": ("0.2", 0.2),
               "patience_min_frac": ("0.5", 0.5), "grad_clip": ("0", 0.0), "label_smoothing": ("0.1", 0.1),
               "seed": ("7", 7), "device": ("cpu", "cpu"), "threads": ("2", 2), "compile": ("yes", True),
               "checkpoint_dir": ("/tmp/ck", "/tmp/ck"), "checkpoint_every_s": ("10", 10.0)}


@pytest.mark.parametrize("name", [f.name for f in dataclasses.fields(TrainConfig)])
def test_every_train_config_field_is_reachable_from_seqgap_train(name):
    # one flag per field, generated from the dataclass: a new TrainConfig field needs no CLI code
    # (this test fails for a new field until it is listed above)
    text, want = NON_DEFAULT[name]
    flag = {"warmup_steps": "--warmup", "patience_evals": "--patience"}.get(name, "--" + name.replace("_", "-"))
    assert getattr(config_of(flag, text).train, name) == want
    assert getattr(config_of("--set", f"train.{name}={text}").train, name) == want


def test_flags_keep_their_names_and_the_dataclass_holds_the_one_default():
    cfg = config_of()
    assert cfg == dataclasses.replace(RunConfig(), train=TrainConfig())  # nothing given: every default is the dataclass's
    cfg = config_of("--lr", "3e-3", "--warmup", "5", "--patience", "4", "--no-early-stop", "-L", "7", "--n-val", "30",
                    "--label-smoothing", "0.1", "--eval-lengths", "10,20", "--gen-eval", "5")
    assert (cfg.train.lr, cfg.train.warmup_steps, cfg.train.patience_evals, cfg.train.early_stop) == (3e-3, 5, 4, False)
    assert (cfg.max_length, cfg.n_val, cfg.eval_lengths, cfg.gen_eval) == (7, 30, (10, 20), 5)
    assert cfg.train.label_smoothing == 0.1


def test_set_reaches_any_field_by_path():
    base = RunConfig(model="lstm")
    cfg = apply_overrides(base, {"train.lr": "1e-2", "n_val": "12", "task_params.m": "7",
                                 "model_options.hidden": "32", "steps": "9"})
    assert (cfg.train.lr, cfg.n_val, cfg.task_params["m"], cfg.train.steps) == (1e-2, 12, 7, 9)
    with pytest.raises(SeqgapError, match="unknown option"):
        apply_overrides(base, {"train.nope": "1"})
    with pytest.raises(SeqgapError, match="integer"):
        apply_overrides(base, {"n_val": "1e3"})


def test_model_options_are_typed_by_the_model_config():
    assert typed_model_options("transformer", {"frozen_embeddings": "no"})["frozen_embeddings"] is False
    assert typed_model_options("transformer", {"frozen_embeddings": "yes"})["frozen_embeddings"] is True
    assert typed_model_options("lstm", {"hidden": "64"})["hidden"] == 64
    for bad in ("abc", "1e3", "2.5", "nan", "true", "", "0x2"):
        with pytest.raises(SeqgapError, match="hidden"):
            typed_model_options("lstm", {"hidden": bad})


@pytest.mark.parametrize("argv, msg", [
    (["--model-opt", "d_model=1e3"], "integer"),
    (["--model-opt", "d_model=abc"], "integer"),
    (["--model-opt", "frozen_embeddings=maybe", "--model", "transformer"], "yes/no"),
    (["--seed", "-1"], "seed"),
    (["--seed", str(2**64)], "seed"),
    (["--data-seed", "-1"], "data_seed"),
    (["--weight-decay", "nan"], "weight_decay"),
    (["--lr", "inf"], "lr"),
    (["--success-loss", "inf"], "success_loss"),
    (["--success-loss", "0"], "success_loss"),
    (["--label-smoothing", "1"], "label_smoothing"),
    (["--batch-size", "100000000"], "batch_size"),
    (["--threads", "100000"], "threads"),
    (["-L", "1000000000"], "max length"),
    (["--device", "bogus"], "device"),
    (["--device", "cuda:99"], "cuda"),
    (["--set", "oops"], "key=value"),
])
def test_bad_options_are_one_line_errors(argv, msg, capsys, tmp_path):
    code = main(["train", *argv, "--store", str(tmp_path / "s.sqlite"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert msg in err and err.startswith("seqgap: error:") and len(err.splitlines()) == 1, err


def test_parse_kv_keeps_strings_for_their_owner_to_type():
    assert parse_kv(["a-b=1", "c= x "], "--x") == {"a_b": "1", "c": "x"}
    with pytest.raises(SeqgapError):
        parse_kv(["=3"], "--x")
