"""Typed configs for one training run.

A sweep is a plain list of :class:`RunConfig` (zoology style).  A run's identity
is the hash of its config (:func:`config_hash`); fields that cannot change the
result (device, threads, progress display) are left out of the hash so a run
finished on a GPU is reused on a laptop and vice versa.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from seqgap.errors import SeqgapError

# Bump when a change to data generation or training would change results,
# so stale runs in an old store are not reused.  Run ids leave out fields at their
# default value, so CHANGING A DEFAULT below also requires a bump
# (tests/test_store.py pins the defaults to catch it).
RESULTS_VERSION = 1


@dataclass
class TrainConfig:
    lr: float = 1e-3
    optimizer: str = "adamw"  # "adam" | "adamw" (AdamW with weight_decay 0 == Adam, as in W)
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" | "cosine" (cosine decay to 0 after linear warm-up)
    warmup_steps: int = 0
    batch_size: int = 64
    steps: int = 2000  # step budget
    eval_every: int = 100
    success_loss: float = 1e-4  # success = validation loss below this
    early_stop: bool = True  # stop as soon as the success criterion is met
    # Stop a *failing* run early when its best validation loss has not improved by
    # `patience_rel` (relative) over the last `patience_evals` evaluations, and at least
    # `patience_min_frac` of the budget is spent.  0 disables it (the default).
    patience_evals: int = 0
    patience_rel: float = 0.01
    patience_min_frac: float = 0.25
    grad_clip: float = 1.0  # 0 disables
    seed: int = 0  # model init and batch order
    # not part of the run's identity:
    device: str = "cpu"
    threads: int | None = None
    # torch.compile the training forward/backward (eval and generation stay eager). Same
    # numbers up to fused-kernel rounding, like a change of device or thread count; pays off
    # only for long runs (compiling takes tens of seconds; LLaMA 0.5M: 1.3x eager, docs/performance.md).
    compile: bool = False


NON_IDENTITY_FIELDS = {"device", "threads", "compile"}


@dataclass
class RunConfig:
    task: str = "modadd"
    task_params: dict[str, Any] = field(default_factory=dict)  # e.g. {"m": 5, "format": "acot"}
    max_length: int = 20  # L: problems have length n in 2..L
    length_dist: str = "fixed"  # "fixed" | "uniform" | "short-to-long"
    n_train: int = 2000  # N unique training problems
    n_val: int | None = None  # default: min(2000, 20% of the distinct problems)
    data_seed: int = 0  # fixes validation set and training order (same for every N and seed)
    model: str = "lstm"
    model_size: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    # after training, evaluate the final model at these lengths (fresh problems)
    eval_lengths: tuple[int, ...] = ()
    n_eval: int = 500  # problems per extra evaluation length
    # after training, score this many validation problems by free greedy generation
    # (generative formats only; with the task's tool, e.g. live retrieval, if it has one)
    gen_eval: int = 0
    # positions to allocate for models with learned absolute positions (0 = just enough
    # for max_length and eval_lengths); recorded so length-generalisation is honest.
    max_positions: int = 0

    def identity(self) -> dict[str, Any]:
        """The fields that define the run.  Fields at their default value are left out, so
        adding a new option (with a default) later does not change existing runs' ids."""
        d = _non_default(self, RunConfig())
        d["train"] = {k: v for k, v in _non_default(self.train, TrainConfig()).items() if k not in NON_IDENTITY_FIELDS}
        d["results_version"] = RESULTS_VERSION
        return d

    def hash(self) -> str:
        return config_hash(self.identity())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_lengths"] = list(self.eval_lengths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        d = dict(d)
        try:
            train = TrainConfig(**d.pop("train", {}))
            d["eval_lengths"] = tuple(d.get("eval_lengths", ()))
            return cls(train=train, **d)
        except TypeError as e:
            raise SeqgapError(f"malformed run config: {e}") from None

    def replace(self, **changes: Any) -> "RunConfig":
        train_changes = {k: changes.pop(k) for k in list(changes) if k in _TRAIN_FIELDS}
        cfg = dataclasses.replace(self, **changes)
        if train_changes:
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_changes))
        return cfg


_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}


def _non_default(obj: Any, default: Any) -> dict[str, Any]:
    out = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if dataclasses.is_dataclass(v):
            continue
        if isinstance(v, tuple):
            v = list(v)
        dv = getattr(default, f.name)
        if isinstance(dv, tuple):
            dv = list(dv)
        if v != dv:
            out[f.name] = v
    return out


def config_hash(d: dict[str, Any]) -> str:
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]
