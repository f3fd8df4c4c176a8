"""Options, declared once: command-line flags generated from the config dataclasses.

Every ``TrainConfig`` / ``RunConfig`` field is reachable from the command line
without code per option (nanoGPT / zoology style):

* a flag per field, generated from the dataclass (``--lr``, ``--label-smoothing``,
  ``--n-val``, ...), typed by the field's annotation, default "not given" so the
  dataclass holds the one default of each option (a study's preset may hold its own);
* ``--set KEY=VALUE`` for any field by its dotted path (``--set train.lr=3e-3``,
  ``--set task_params.m=5``, ``--set model_options.d_model=128``);
* shared options (``--store --device --workers --preset --out --plugin``) in one
  parent parser every command uses.

Values are parsed by the field's type: bool from yes/no/true/false/1/0, integers
strictly (``1e3`` is not an integer), and each failure is one line naming the option.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any, Sequence

from seqgap.config import RunConfig, TrainConfig
from seqgap.errors import SeqgapError
from seqgap.values import guess_value, parse_typed, typed_fields  # noqa: F401  (re-exported)


def typed_model_options(model: str, options: dict[str, Any]) -> dict[str, Any]:
    """Model options typed by the model's config fields (``frozen_embeddings=no`` -> False)."""
    from seqgap.models.registry import get_spec

    return typed_fields(get_spec(model).config, options, f"model {model}: option")


def parse_kv(items: Sequence[str] | None, what: str) -> dict[str, str]:
    """``["a=1", "b-c=x"]`` -> ``{"a": "1", "b_c": "x"}`` (values stay strings: typed later by their field)."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise SeqgapError(f"{what} must look like key=value, got {item!r}")
        k, v = item.split("=", 1)
        k = k.strip().replace("-", "_")
        if not k:
            raise SeqgapError(f"{what}: empty option name in {item!r}")
        out[k] = v.strip()
    return out


def int_list(text: str, name: str = "value") -> list[int]:
    return list(parse_typed(str(text), tuple[int, ...], name))


def float_list(text: str, name: str = "value") -> list[float]:
    vals = list(parse_typed(str(text), tuple[float, ...], name))
    if any(not math.isfinite(v) for v in vals):
        raise SeqgapError(f"{name}: expected finite numbers, got {text!r}")
    return vals


def str_list(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


# ---- overrides by dotted path ---------------------------------------------------------

def apply_overrides(config: RunConfig, overrides: dict[str, str]) -> RunConfig:
    """``{"train.lr": "3e-3", "n_val": "100", "task_params.m": "5"}`` applied to ``config``, each
    value typed by its field (free-form dicts: task and model options are typed by their owners)."""
    run_hints = typing.get_type_hints(RunConfig)
    train_hints = typing.get_type_hints(TrainConfig)
    top: dict[str, Any] = {}
    train: dict[str, Any] = {}
    task_params, model_options = dict(config.task_params), dict(config.model_options)
    for key, text in overrides.items():
        head, _, rest = key.partition(".")
        if head == "train" and rest in train_hints:
            train[rest] = parse_typed(text, train_hints[rest], f"--set {key}")
        elif head in ("task_params", "task") and rest:
            task_params[rest] = guess_value(text)
        elif head in ("model_options", "model") and rest:
            model_options[rest] = text
        elif not rest and head in run_hints and head not in ("train", "task_params", "model_options"):
            top[head] = parse_typed(text, run_hints[head], f"--set {key}")
        elif not rest and head in train_hints:  # a training option by its bare name
            train[head] = parse_typed(text, train_hints[head], f"--set {key}")
        else:
            raise SeqgapError(f"--set {key}: unknown option; use a RunConfig field (e.g. n_val), train.<field> "
                              f"(e.g. train.lr), task_params.<name> or model_options.<name>")
    return dataclasses.replace(config, task_params=task_params, model_options=model_options,
                               train=dataclasses.replace(config.train, **train), **top)


# ---- generated argparse options -------------------------------------------------------

# Flags that keep their historical names (field -> flags); every other field gets --field-name.
ALIASES = {"warmup_steps": ("--warmup", "--warmup-steps"), "patience_evals": ("--patience", "--patience-evals"),
           "max_length": ("--length", "-L")}
# Options shared by every command: declared once in the parent parser.
SHARED = ("device", "threads")

_HELP = {
    "lr": "learning rate", "optimizer": "adam | adamw", "schedule": "constant | cosine (with --warmup)",
    "warmup_steps": "linear warm-up steps", "steps": "step budget", "batch_size": "batch size",
    "eval_every": "evaluate every this many steps", "success_loss": "success = validation loss below this",
    "early_stop": "stop as soon as the success criterion is met (yes/no)",
    "patience_evals": "plateau early stop after this many evaluations without 1%% progress (0 = off)",
    "grad_clip": "gradient-norm clipping (0 = off)", "label_smoothing": "cross-entropy label smoothing in [0, 1)",
    "seed": "training seed (init and batch order)", "weight_decay": "weight decay (never on biases/norms)",
    "compile": "torch.compile the training step (long runs only)",
    "n_train": "N unique training samples (0 = fresh samples every step)",
    "n_val": "validation samples (default min(2000, 20%% of distinct problems))",
    "data_seed": "seed of the validation set and the training set", "length_dist": "fixed | uniform | short-to-long",
    "eval_lengths": "after training, also evaluate at these lengths (e.g. 40,80)",
    "n_eval": "problems per extra evaluation length",
    "gen_eval": "after training, score this many validation problems by free generation",
    "max_positions": "positions for models with learned absolute positions (0 = just enough)",
    "max_length": "maximum length L (problems have n in 2..L)",
}


def _flags(name: str) -> tuple[str, ...]:
    return ALIASES.get(name, ("--" + name.replace("_", "-"),))


def add_config_options(group, cls: type, skip: Sequence[str] = (), only: Sequence[str] | None = None) -> list[str]:
    """One flag per field of dataclass ``cls`` (default: not given).  Returns the field names added."""
    hints = typing.get_type_hints(cls)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip or (only is not None and f.name not in only) or dataclasses.is_dataclass(hints[f.name]):
            continue
        if typing.get_origin(hints[f.name]) is dict:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        help_ = _HELP.get(f.name, f.name.replace("_", " "))
        if default is not None and not isinstance(default, tuple):
            help_ += f" (default {default})"
        group.add_argument(*_flags(f.name), dest=f.name, metavar=f.name.upper(), default=None,
                           type=_typed(hints[f.name], _flags(f.name)[0]), help=help_)
        added.append(f.name)
    return added


def _typed(annotation: Any, flag: str):
    def convert(text: str) -> Any:
        try:
            return parse_typed(text, annotation, flag)
        except SeqgapError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    convert.__name__ = flag  # argparse names the option in its message
    return convert


def given(args: argparse.Namespace, names: Sequence[str]) -> dict[str, Any]:
    """The options among ``names`` that the user gave."""
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def shared_parser(preset_choices: Sequence[str] | None = None, workers: bool = True, out: bool = True) -> argparse.ArgumentParser:
    """The options every command shares, declared once (use as ``parents=[shared_parser(...)]``)."""
    p = argparse.ArgumentParser(add_help=False)
    g = p.add_argument_group("where and how")
    g.add_argument("--store", help="run store path (default $SEQGAP_STORE or seqgap_runs/runs.sqlite)")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    g.add_argument("--threads", type=_typed(int | None, "--threads"),
                   help="torch CPU threads per run (default 1 on CPU: numbers independent of scheduling)")
    g.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE",
                   help="import a module or .py file that registers extra models or tasks (repeatable)")
    if workers:
        g.add_argument("--workers", type=_typed(int, "--workers"), help="parallel runs (default: all cores)")
        g.add_argument("--backend", choices=["local", "ray"], default="local",
                       help="where runs execute: local process pool (default) or a Ray cluster")
        g.add_argument("--address", help="Ray cluster to join: auto, ray://host:port (default: a local Ray instance)")
        g.add_argument("--cpus-per-run", type=_typed(float, "--cpus-per-run"), default=1.0,
                       help="Ray resources per run (default 1 CPU)")
        g.add_argument("--gpus-per-run", type=_typed(float, "--gpus-per-run"), default=0.0,
                       help="Ray GPUs per run, fractional (e.g. 0.1: ten tiny runs share a GPU)")
    if preset_choices:
        g.add_argument("--preset", choices=list(preset_choices), default="quick",
                       help="quick (2-core laptop) or paper (cluster); explicit options override it")
    if out:
        g.add_argument("--out", help="report directory")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", dest="overrides",
                   help="any config field by its dotted path, e.g. train.lr=3e-3, n_val=100 (repeatable)")
    return p


def engine_options(args: argparse.Namespace) -> dict[str, Any]:
    """The shared execution options as keyword arguments of a study's run function."""
    import sys

    return {"workers": getattr(args, "workers", None), "backend": getattr(args, "backend", "local"),
            "address": getattr(args, "address", None), "cpus_per_run": getattr(args, "cpus_per_run", 1.0),
            "gpus_per_run": getattr(args, "gpus_per_run", 0.0), "progress": sys.stderr.isatty()}
