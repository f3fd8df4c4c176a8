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
import math
from dataclasses import dataclass, field
from typing import Any

from seqgap.errors import SeqgapError
from seqgap.tasks.dataset import LENGTH_DISTS

# Bump when a change to data generation or training would change results,
# so stale runs in an old store are not reused.  Run ids leave out fields at their
# default value, so CHANGING A DEFAULT below also requires a bump
# (tests/test_store.py pins the defaults to catch it).
RESULTS_VERSION = 2
# 2: one training core (the ensemble steps each member with the single run's code; results moved
#    by rounding), RoPE as real cos/sin tables, Mamba's reference initialisation, W's IsTree tour,
#    validation problems kept out of training under the task's problem identity.


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
    label_smoothing: float = 0.0  # cross-entropy label smoothing on trained positions
    seed: int = 0  # model init and batch order
    # not part of the run's identity:
    device: str = "cpu"
    threads: int | None = None  # CPU threads (default 1 on CPU: numbers independent of scheduling)
    # torch.compile the training forward/backward (eval and generation stay eager). Same
    # numbers up to fused-kernel rounding, like a change of device or thread count; pays off
    # only for long runs (compiling takes tens of seconds; LLaMA 0.5M: 1.3x eager, docs/performance.md).
    compile: bool = False
    # checkpoints: a run that has trained this long saves its whole state (model, optimiser, data
    # order, RNG states, history) every `checkpoint_every_s` seconds into `checkpoint_dir`, and a
    # rerun resumes from it with a bit-identical result (None: no checkpoints; the CLI and the
    # sweep driver put them next to the store)
    checkpoint_dir: str | None = None
    checkpoint_every_s: float = 300.0


NON_IDENTITY_FIELDS = {"device", "threads", "compile", "checkpoint_dir", "checkpoint_every_s"}


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

    def validate(self) -> None:
        """Every option checked once, up front: one SeqgapError naming the option and its range."""
        for name in ("task", "model"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise SeqgapError(f"{name} must be a name (see `seqgap {name}s`), got {getattr(self, name)!r}")
        if self.model_size is not None and not isinstance(self.model_size, str):
            raise SeqgapError(f"model_size must be a named size (see `seqgap models`), got {self.model_size!r}")
        if not isinstance(self.train, TrainConfig):
            raise SeqgapError(f"train must be a TrainConfig, got {type(self.train).__name__}")
        check_train(self.train)
        if not isinstance(self.length_dist, str) or self.length_dist not in LENGTH_DISTS:
            raise SeqgapError(f"unknown length distribution {self.length_dist!r}; use one of {', '.join(LENGTH_DISTS)}")
        _check_int("max length L", self.max_length, 2, MAX_LENGTH)
        _check_int("n_train", self.n_train, 0, MAX_SAMPLES, "0 = fresh samples every step")
        if self.n_val is not None:
            _check_int("n_val", self.n_val, 1, MAX_SAMPLES, "success is judged on the validation set")
        _check_int("data_seed", self.data_seed, 0, MAX_SEED)
        if not isinstance(self.eval_lengths, (tuple, list)):
            raise SeqgapError(f"eval_lengths must be a list of lengths, got {self.eval_lengths!r}")
        for L in self.eval_lengths:
            _check_int("eval_lengths", L, 2, MAX_LENGTH)
        _check_int("n_eval", self.n_eval, 1, MAX_SAMPLES)
        _check_int("gen_eval", self.gen_eval, 0, MAX_SAMPLES)
        _check_int("max_positions", self.max_positions, 0, MAX_LENGTH * 64)
        for name in ("task_params", "model_options"):
            if not isinstance(getattr(self, name), dict):
                raise SeqgapError(f"{name} must be a mapping of option names to values")

    def identity(self) -> dict[str, Any]:
        """The fields that define the run.  Fields at their default value are left out, so
        adding a new option (with a default) later does not change existing runs' ids."""
        d = _non_default(self, RunConfig())
        d["train"] = train_identity(self.train)
        d["results_version"] = RESULTS_VERSION
        d["versions"] = self.versions()
        return d

    def versions(self) -> dict[str, str]:
        """The versions of the model and the task this run uses (part of its identity): a
        built-in's own version, a plugin's declared version or the hash of its source file,
        so a change to one model or task invalidates only its runs (``seqgap runs --stale``)."""
        from seqgap.models.registry import model_version
        from seqgap.tasks.catalog import task_version

        return {"model": model_version(self.model, self.model_options, self.model_size),
                "task": task_version(self.task)}

    def hash(self) -> str:
        return config_hash(self.identity())

    def to_dict(self) -> dict[str, Any]:
        """The config as stored, with the model and task versions it was made by (``versions``,
        when the model and task are known; ``from_dict`` ignores it)."""
        d = dataclasses.asdict(self)
        d["eval_lengths"] = list(self.eval_lengths)
        try:
            d["versions"] = self.versions()
        except SeqgapError:  # an unknown model or task: nothing to record
            pass
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        if not isinstance(d, dict):
            raise SeqgapError(f"malformed run config: expected a mapping, got {type(d).__name__}")
        d = dict(d)
        d.pop("versions", None)
        t = d.pop("train", {})
        if not isinstance(t, dict):
            raise SeqgapError(f"malformed run config: train must be a mapping, got {type(t).__name__}")
        for where, keys, names in (("", d, _RUN_FIELDS), ("train.", t, _TRAIN_FIELDS)):
            unknown = [k for k in keys if k not in names]
            if unknown:  # named by repr: a hostile key stays on one line
                raise SeqgapError(f"malformed run config: unknown field(s) {', '.join(where + repr(k) for k in unknown)}")
        try:
            train = TrainConfig(**t)
            d["eval_lengths"] = tuple(d.get("eval_lengths", ()))
            return cls(train=train, **d)
        except TypeError as e:
            raise SeqgapError(f"malformed run config: {' '.join(str(e).split())}") from None

    def replace(self, **changes: Any) -> "RunConfig":
        train_changes = {k: changes.pop(k) for k in list(changes) if k in _TRAIN_FIELDS}
        cfg = dataclasses.replace(self, **changes)
        if train_changes:
            cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **train_changes))
        return cfg


_TRAIN_FIELDS = {f.name for f in dataclasses.fields(TrainConfig)}
_RUN_FIELDS = {f.name for f in dataclasses.fields(RunConfig)} - {"train"}

# Up-front bounds on requests (far above anything a study needs; they stop typos such as
# `-L 1e9` from hanging in set-up or exhausting memory).
MAX_SEED = 2**63 - 1
MAX_LENGTH = 100_000
MAX_SAMPLES = 10**10
MAX_STEPS = 10**9
MAX_BATCH = 1 << 16
MAX_THREADS = 1024
OPTIMIZERS = ("adam", "adamw")
SCHEDULES = ("constant", "cosine")


def _check_int(name: str, v: Any, lo: int, hi: int, why: str = "") -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        note = f"; {why}" if why else ""
        raise SeqgapError(f"{name} must be >= {lo} (an integer, at most {hi:,}{note}), got {v!r}")


def _finite(v: int | float) -> bool:
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer too large for a float
        return False


def _check_float(name: str, v: Any, lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and _finite(v)
    ok = ok and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok:
        rng = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise SeqgapError(f"{name} must be a finite number in {rng}, got {v!r}")


def check_train(t: TrainConfig) -> None:
    if not isinstance(t.optimizer, str) or t.optimizer not in OPTIMIZERS:
        raise SeqgapError(f"unknown optimizer {t.optimizer!r}; use {' or '.join(OPTIMIZERS)}")
    if not isinstance(t.schedule, str) or t.schedule not in SCHEDULES:
        raise SeqgapError(f"unknown schedule {t.schedule!r}; use {' or '.join(SCHEDULES)}")
    _check_float("lr", t.lr, 0.0, 1e3, lo_open=True)
    _check_float("weight_decay", t.weight_decay, 0.0, 1e3)
    _check_int("batch_size", t.batch_size, 1, MAX_BATCH)
    _check_int("steps", t.steps, 1, MAX_STEPS)
    _check_int("eval_every", t.eval_every, 1, MAX_STEPS)
    _check_int("warmup_steps", t.warmup_steps, 0, MAX_STEPS)
    # a loss threshold that can never be met (0, negative) or is always met (inf) is a typo
    _check_float("success_loss", t.success_loss, 0.0, 1e3, lo_open=True)
    _check_int("patience_evals", t.patience_evals, 0, MAX_STEPS)
    _check_float("patience_rel", t.patience_rel, 0.0, 1.0, hi_open=True)
    _check_float("patience_min_frac", t.patience_min_frac, 0.0, 1.0)
    _check_float("grad_clip", t.grad_clip, 0.0, 1e6)
    _check_float("label_smoothing", t.label_smoothing, 0.0, 1.0, hi_open=True)
    _check_int("seed", t.seed, 0, MAX_SEED)
    for name in ("early_stop", "compile"):
        if not isinstance(getattr(t, name), bool):
            raise SeqgapError(f"{name} must be yes or no, got {getattr(t, name)!r}")
    if t.threads is not None:
        _check_int("threads", t.threads, 1, MAX_THREADS)
    _check_float("checkpoint_every_s", t.checkpoint_every_s, 0.0, 1e9)
    if not isinstance(t.device, str) or not t.device:
        raise SeqgapError(f"device must be a non-empty name such as cpu or cuda, got {t.device!r}")


def train_identity(t: TrainConfig) -> dict[str, Any]:
    """The training options that define a run: non-default values only (a new option with a default
    leaves every existing id alone), without placement (device, threads, compile)."""
    return {k: v for k, v in _non_default(t, TrainConfig()).items() if k not in NON_IDENTITY_FIELDS}


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
