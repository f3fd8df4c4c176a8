"""Train one model on one task: the unit every study is built from, and the one training core.

``train(config)`` builds the task, its unique train/validation split, the model,
and runs the optimiser for at most ``config.train.steps`` steps, evaluating
every ``eval_every`` steps.  The minimum validation loss over training is what
counts (E's protocol); a run succeeds when it drops below ``success_loss``.

The pieces, each used by the single run *and* by the ensemble (``ensemble.py``),
so the two cannot drift apart:

* :class:`RunState`  -- history, best loss, success, the stopping rules;
* :func:`evaluate`   -- validation metrics of E members from their logits;
* :func:`update_step` -- one optimiser step (forward, loss, backward, clip, step);
* :class:`Run`        -- one run in progress (model, optimiser, data order, state),
  with :meth:`Run.result` turning it into the stored summary.

``run(config, store)`` is the cached version: a finished run with the same
config hash is returned from the store instead of being trained again.
"""
from __future__ import annotations

import inspect
import math
import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from seqgap.config import RunConfig, TrainConfig
from seqgap.errors import SeqgapError
from seqgap.models.registry import build_model
from seqgap.tasks.base import Batch, Task
from seqgap.tasks.catalog import make_task
from seqgap.tasks.dataset import Splits, TrainStream, build_splits, check_sizes, measure_overlap


@dataclass
class RunResult:
    id: str
    config: dict[str, Any]
    summary: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False  # True when read from the store
    model: Any = None  # the trained model (None when cached)

    @property
    def success(self) -> bool:
        return bool(self.summary.get("success"))

    def line(self) -> str:
        s = self.summary
        c = self.config
        tag = " (from store)" if self.cached else ""
        variant = ", ".join([f"size {c['model_size']}"] * bool(c.get("model_size"))
                            + [f"{k}={v}" for k, v in (c.get("model_options") or {}).items()])
        return (f"{'SUCCESS' if s['success'] else 'FAIL'}{tag}: {c['model']} on {c['task']} "
                f"{_fmt_params(c['task_params'])} L={c['max_length']} {c['length_dist']} N={c['n_train']} "
                f"lr={c['train']['lr']:g} seed={c['train']['seed']} | "
                f"best val loss {num(s['best_val_loss']):.3g} at step {s['best_step']} | "
                f"val seq acc {num(s['val_seq_acc']):.3f} | {s['steps']} steps, {s['seconds']:.1f}s, "
                f"{s['tokens_per_s']:,.0f} tok/s | {s['n_params']:,} params" + (f" ({variant})" if variant else ""))


def num(x: Any) -> float:
    """A stored metric as a float (the store keeps NaN/inf as null)."""
    return float("nan") if x is None else float(x)


def _fmt_params(p: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in p.items())


# ---- building blocks ------------------------------------------------------------------

def build_task(config: RunConfig) -> Task:
    task = make_task(config.task, **config.task_params)
    if config.max_length < task.min_length:
        raise SeqgapError(f"{config.task}: max length L must be >= {task.min_length}, got {config.max_length}")
    return task


def lengths_for(task: Task, config: RunConfig) -> list[int]:
    if config.length_dist == "fixed":
        return [config.max_length]
    return list(range(task.min_length, config.max_length + 1))


def positions_needed(task: Task, config: RunConfig) -> int:
    longest = max([config.max_length, *config.eval_lengths])
    need = task.max_tokens(longest)
    return max(need, config.max_positions or 0)


def build_model_for(task: Task, config: RunConfig):
    return build_model(config.model, vocab_size=len(task.vocab), max_len=positions_needed(task, config),
                       size=config.model_size, **config.model_options)


def check_device(device: str) -> None:
    """One line for a device this machine does not have (before any work)."""
    if not isinstance(device, str) or not device.strip():
        raise SeqgapError(f"--device: expected a device name such as cpu, cuda or cuda:N, got {device!r}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise SeqgapError(f"--device: {device!r} is not a device ({str(e).splitlines()[0][:120]}); "
                          f"use cpu, cuda or cuda:N") from None
    if dev.type == "cpu":
        if dev.index not in (None, 0):
            raise SeqgapError(f"--device {device}: the CPU has no device index {dev.index}; use cpu "
                              f"(--threads sets how many cores a run uses)")
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SeqgapError(f"--device {device}: no CUDA device on this machine; use cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise SeqgapError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s)")
        return
    if dev.type == "mps" and torch.backends.mps.is_available():
        return
    raise SeqgapError(f"--device {device}: not available here; use cpu or cuda")


def _physical_memory() -> int | None:
    """Bytes of physical RAM (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB" if n >= 2**30 else f"{n / 2**20:,.0f} MiB"


def estimate_request_bytes(config: RunConfig, task: Task, parts: dict[str, float] | None = None) -> int:
    """An up-front estimate (an upper-side one, within a small factor) of the memory a run needs,
    from the config alone (nothing is built): the stored problems and encoded validation,
    the model's parameters with gradients and Adam's two moments, and the largest step (training
    batch or evaluation chunk: activations, attention scores, logits).  ``parts``, when given,
    receives the estimate's terms by name (for the refusal message)."""
    from seqgap.models.registry import get_spec, model_config
    from seqgap.tasks.dataset import default_n_val

    spec = get_spec(config.model)
    cfg = model_config(config.model, config.model_size, config.model_options)
    vocab = len(task.vocab)
    T = positions_needed(task, config)  # tokens of the longest sequence (train or extra eval length)
    T_train = task.max_tokens(config.max_length)
    T_eval = task.max_tokens(max([config.max_length, *config.eval_lengths]))

    def opt(name: str, default: float = 0) -> float:
        v = getattr(cfg, name, None)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else float(default)

    d = opt("d_model", 64)
    h = opt("hidden", d) or d
    ff = opt("d_ff", 4 * d) or 4 * d
    expand = opt("expand", 1) or 1
    width = max(d, h, expand * d)
    layers = opt("n_layers", 1) + (1 if spec.name == "hybrid" else 0)
    attn_layers = 0 if spec.recurrent else (1 if spec.name == "hybrid" else layers)
    heads = opt("n_heads", 4) or 1
    per_layer = max(4 * d * d + 3 * d * ff, 4 * h * (d + h), 3 * expand * d * d + expand * d * opt("d_state") * 2,
                    h * h * (opt("d_input") + 1))
    params = layers * per_layer + 2 * vocab * d + T * d
    out = {}
    # data: problems kept as Python tuples and encoded as int64 inputs/targets/mask (factor 2 for both)
    n_val = config.n_val if config.n_val is not None else default_n_val(task, config.max_length, config.length_dist)
    out["data"] = (config.n_train + n_val) * T_train * 8 * 2 + (config.n_eval * T_eval * 8 * 2 if config.eval_lengths else 0)
    out["model"] = params * 4 * 4  # weights, gradients, Adam's two moments (float32)
    B = config.train.batch_size
    # training step: activations kept for backward (~16 floats per width per layer and token), attention
    # scores (scores, softmax, gradient), logits (logits, log-softmax, gradient)
    train_step = (B * T_train * width * layers * 16 + attn_layers * B * heads * T_train ** 2 * 3
                  + B * T_train * vocab * 3) * 4
    # evaluation (no gradient): validation in chunks of 512, extra lengths in chunks of 256
    eval_step = max((512 * T_train * (width * 2 + vocab * 2) + (512 * heads * T_train ** 2 if attn_layers else 0)) * 4,
                    (256 * T_eval * (width * 2 + vocab * 2) + (256 * heads * T_eval ** 2 if attn_layers else 0)) * 4
                    if config.eval_lengths else 0)
    out["largest step"] = max(train_step, eval_step)
    if parts is not None:
        parts.update(out)
    return int(sum(out.values()))


def prepare(config: RunConfig) -> tuple[Task, Any]:
    """Every check a run needs, before any data is generated: options, device, task, data
    sizes, memory and model (one line for any failure).  Returns the task and a freshly built model."""
    from seqgap.models.registry import model_config

    config.validate()
    check_device(config.train.device)
    cores = os.cpu_count() or 1
    if config.train.threads is not None and config.train.threads > cores:
        raise SeqgapError(f"--threads must be at most {cores} (the cores of this machine), got {config.train.threads}")
    task = build_task(config)
    if config.n_train:  # streaming (N = 0) draws fresh problems: nothing to run out of
        check_sizes(task, config.max_length, config.length_dist, config.n_train, config.n_val)
    model_config(config.model, config.model_size, config.model_options)  # every model option, one line
    parts: dict[str, float] = {}
    need = estimate_request_bytes(config, task, parts)
    have = _physical_memory()
    if have is not None and need > have:
        detail = ", ".join(f"{k} {_gib(v)}" for k, v in parts.items())
        raise SeqgapError(f"this run needs about {_gib(need)} of memory ({detail}), more than this machine's "
                          f"{_gib(have)}; lower --n-train/--n-val, --batch-size, -L/--eval-lengths or the model size")
    if config.train.device.startswith("cuda"):
        dev = torch.device(config.train.device)
        total = torch.cuda.get_device_properties(dev.index or 0).total_memory
        on_device = parts["model"] + parts["largest step"]
        if on_device > total:
            raise SeqgapError(f"this run needs about {_gib(on_device)} on {config.train.device} (model "
                              f"{_gib(parts['model'])}, largest step {_gib(parts['largest step'])}), more than its "
                              f"{_gib(total)}; lower --batch-size, -L/--eval-lengths or the model size")
    return task, build_model_for(task, config)


def member_losses(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor,
                  label_smoothing: float = 0.0) -> torch.Tensor:
    """The training loss, one per member: mean cross-entropy over its trained positions.
    logits (E, B, T, V), targets and loss_mask (E, B, T) -> (E,)."""
    E = logits.shape[0]
    ce = F.cross_entropy(logits.flatten(0, 2), targets.flatten(), reduction="none",
                         label_smoothing=label_smoothing).view(E, -1)
    m = loss_mask.flatten(1).to(ce.dtype)
    return (ce * m).sum(1) / m.sum(1).clamp(min=1)


def masked_loss(logits: torch.Tensor, batch: Batch, label_smoothing: float = 0.0) -> torch.Tensor:
    """:func:`member_losses` of one model.  logits (B, T, V)."""
    return member_losses(logits[None], batch.targets[None], batch.loss_mask[None], label_smoothing)[0]


@torch.no_grad()
def evaluate(logits_of: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[Batch], n_members: int,
             device: str) -> list[dict[str, float]]:
    """Validation metrics of ``n_members`` models at once; ``logits_of(inputs (B, T))`` gives (E, B, T, V).

    Loss on trained positions (NaN, never a success, when there is none); token / sequence /
    final-answer accuracy on scored positions.
    """
    E = n_members
    loss_sum = torch.zeros(E, dtype=torch.float64)
    loss_n = tok_n = seq_n = 0
    tok_right = torch.zeros(E, dtype=torch.long)
    seq_right = torch.zeros(E, dtype=torch.long)
    fin_right = torch.zeros(E, dtype=torch.long)
    for batch in batches:
        batch = batch.to(device)
        logits = logits_of(batch.inputs)  # (E, B, T, V)
        lm = batch.loss_mask
        if lm.any():
            ce = F.cross_entropy(logits[:, lm].flatten(0, 1), batch.targets[lm].repeat(E), reduction="none")
            loss_sum += ce.view(E, -1).double().sum(1).cpu()
            loss_n += int(lm.sum())
        hit = logits.argmax(-1) == batch.targets  # (E, B, T)
        right = hit | ~batch.mask
        tok_right += (hit & batch.mask).flatten(1).sum(1).cpu()
        tok_n += int(batch.mask.sum())
        seq_right += right.all(dim=2).sum(1).cpu()
        seq_n += len(batch)
        # final answer: the last scored position of each sequence
        T = batch.mask.shape[1]
        last = T - 1 - torch.argmax(batch.mask.flip(1).int(), dim=1)  # (B,)
        fin_right += right.gather(2, last.view(1, -1, 1).expand(E, -1, 1)).flatten(1).sum(1).cpu()
    return [{
        "val_loss": float(loss_sum[e]) / loss_n if loss_n else float("nan"),
        "val_token_acc": int(tok_right[e]) / max(tok_n, 1),
        "val_seq_acc": int(seq_right[e]) / max(seq_n, 1),
        # the last scored position: the answer token for outcome/ACoT/vanilla, the closing token of a
        # CoT/RAG trace (which teacher forcing gives away): free generation scores CoT answers
        "val_final_acc": int(fin_right[e]) / max(seq_n, 1),
    } for e in range(E)]


def evaluate_batches(model, batches: Sequence[Batch], device: str) -> dict[str, float]:
    """:func:`evaluate` for one model (in eval mode, restored after)."""
    was_training = model.training
    model.eval()
    try:
        return evaluate(lambda x: model(x)[None], batches, 1, device)[0]
    finally:
        model.train(was_training)


def chunks(seq: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning-rate multiplier: linear warm-up, then constant or cosine decay to 0."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    return 1.0


def param_groups(named: dict[str, torch.Tensor], no_decay: set[str], weight_decay: float) -> list[dict[str, Any]]:
    """Optimizer groups: weight decay only where the model allows it (never on biases, norms, A_log, ...)."""
    params = {n: p for n, p in named.items() if p.requires_grad}
    if not weight_decay:
        return [{"params": list(params.values()), "weight_decay": 0.0}]
    decay = [p for n, p in params.items() if n not in no_decay]
    keep = [p for n, p in params.items() if n in no_decay]
    return [g for g in ({"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0})
            if g["params"]]


def make_optimizer(model, cfg: TrainConfig, named: dict[str, torch.Tensor] | None = None) -> torch.optim.Optimizer:
    """AdamW/Adam over ``named`` (default: the model's parameters); groups by :func:`param_groups`."""
    named = dict(model.named_parameters()) if named is None else named
    no_decay = model.no_weight_decay() if hasattr(model, "no_weight_decay") else set()
    groups = param_groups(named, no_decay, cfg.weight_decay)
    cls = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}.get(cfg.optimizer)
    if cls is None:
        raise SeqgapError(f"unknown optimizer {cfg.optimizer!r}; use adam or adamw")
    # the fused kernel: one pass over all parameters (a tiny model's step was ~8% optimiser
    # overhead with the per-tensor loop; docs/performance.md); same update up to rounding
    fused = "fused" in inspect.signature(cls).parameters and torch.device(cfg.device).type in ("cpu", "cuda")
    return cls(groups, lr=cfg.lr, **({"fused": True} if fused else {}))


def update_step(forward: Callable[[torch.Tensor], torch.Tensor], params: Sequence[torch.Tensor],
                opt: torch.optim.Optimizer, batch: Batch, lr: float, cfg: TrainConfig) -> float:
    """One optimiser step on one batch; returns the training loss."""
    for g in opt.param_groups:
        g["lr"] = lr
    loss = masked_loss(forward(batch.inputs), batch, cfg.label_smoothing)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.grad_clip:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    opt.step()
    return loss.item()


@contextmanager
def torch_threads(cfg: TrainConfig):
    """The run's CPU thread count, restored afterwards.  On CPU a run uses one thread unless
    ``threads`` says otherwise, so its numbers never depend on how it was scheduled (matmul
    rounding depends on the thread count; sweep workers run one thread each)."""
    n = cfg.threads or (1 if torch.device(cfg.device).type == "cpu" else 0)
    prev = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


# ---- run state: one implementation of the bookkeeping and the stopping rules -----------

@dataclass
class RunState:
    """History, best validation loss, success and the stopping rules of one run."""

    cfg: TrainConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = float("inf")
    best_step: int = 0
    best_record: dict[str, Any] | None = None
    success: bool = False
    stop_reason: str | None = None  # None while running; budget | success | plateau | diverged | abandoned
    step: int = 0
    tokens: int = 0
    seconds: float = 0.0
    train_loss_sum: float = 0.0
    train_loss_n: int = 0
    evals_since_improve: int = 0
    last_improve_value: float = float("inf")

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def after_step(self, loss: float, tokens: int) -> None:
        self.step += 1
        self.tokens += tokens
        self.train_loss_sum += loss
        self.train_loss_n += 1
        if not math.isfinite(loss):
            self.stop_reason = "diverged"

    def eval_due(self) -> bool:
        return not self.done and (self.step % self.cfg.eval_every == 0 or self.step == self.cfg.steps)

    def after_eval(self, metrics: dict[str, float]) -> dict[str, Any]:
        """Record an evaluation; apply success, early stop and the plateau rule."""
        tc = self.cfg
        rec = {"step": self.step, "train_loss": self.train_loss_sum / max(self.train_loss_n, 1),
               "seconds": self.seconds, **metrics}
        self.train_loss_sum, self.train_loss_n = 0.0, 0
        self.history.append(rec)
        if rec["val_loss"] < self.best_loss:
            self.best_loss, self.best_step, self.best_record = rec["val_loss"], self.step, rec
        if rec["val_loss"] < tc.success_loss:
            self.success = True
            if tc.early_stop:
                self.stop_reason = "success"
                return rec
        # failure early stop: no real progress for `patience_evals` evaluations
        if self.best_loss < self.last_improve_value * (1 - tc.patience_rel):
            self.last_improve_value, self.evals_since_improve = self.best_loss, 0
        else:
            self.evals_since_improve += 1
        if (tc.patience_evals and self.evals_since_improve >= tc.patience_evals
                and self.step >= tc.patience_min_frac * tc.steps and not self.success):
            self.stop_reason = "plateau"
        return rec

    def after_budget(self) -> None:
        if not self.done and self.step >= self.cfg.steps:
            self.stop_reason = "budget"


# ---- data -------------------------------------------------------------------------------

class RunData:
    """What the runs of one grid point share: task, split and encoded validation batches."""

    def __init__(self, task: Task, config: RunConfig):
        self.task = task
        self.config = config
        self.lengths = lengths_for(task, config)
        self.splits: Splits = build_splits(task, config.max_length, config.length_dist, config.n_train,
                                           config.n_val, seed=config.data_seed)
        self.val_batches = [task.encode_batch(list(c)) for c in chunks(self.splits.val, 512)]

        self._overlap: int | None = None

    def train_order(self, seed: int) -> TrainStream:
        """One run's training problems, ordered by its seed: the fixed set reshuffled each epoch, or
        (N = 0) fresh problems that are never validation problems (under the task's identity)."""
        return TrainStream(self.task, self.lengths, self.splits.val_keys, np.random.default_rng([seed, 1]),
                           train=self.splits.train if self.config.n_train else None)

    @property
    def val_overlap(self) -> int:
        """Validation problems (by the task's problem identity) found in the training set: 0 by
        construction, measured once per split and recorded in every run's summary."""
        if self._overlap is None:
            self._overlap = measure_overlap(self.task, self.splits.train, self.splits.val) if self.config.n_train else 0
        return self._overlap


# ---- one run ----------------------------------------------------------------------------

ProgressFn = Callable[[int, dict[str, Any]], None]


class Run:
    """One run in progress: its model, optimiser, data order and :class:`RunState`.

    ``advance()`` is one training step (and the evaluation that may follow it); the
    ensemble calls it member after member.  The global torch RNG is saved and restored
    around each step, so interleaved runs draw exactly what separate runs would.
    """

    def __init__(self, config: RunConfig, data: RunData):
        tc = config.train
        self.config, self.data, self.cfg = config, data, tc
        torch.manual_seed(tc.seed)
        self.model = build_model_for(data.task, config).to(tc.device)
        self.rng_state = _rng_state(tc.device)
        self.opt = make_optimizer(self.model, tc)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.order = data.train_order(tc.seed)
        self.state = RunState(tc)
        # torch.compile's default shape handling: static first, one dynamic-shape recompile if
        # the batches' lengths vary (uniform lengths, CoT padding)
        self.forward = torch.compile(self.model) if tc.compile else self.model
        self.model.train()
        self.checkpoint = checkpoint_path(config)
        self._last_save = time.monotonic()
        if self.checkpoint is not None and self.checkpoint.exists():
            self._restore(self.checkpoint)

    def advance(self) -> dict[str, Any] | None:
        """One step; returns the evaluation record when one was made."""
        st, tc = self.state, self.cfg
        t0 = time.perf_counter()
        _set_rng_state(tc.device, self.rng_state)
        batch = self.data.task.encode_batch(self.order.next_problems(tc.batch_size)).to(tc.device)
        loss = update_step(self.forward, self.params, self.opt, batch, tc.lr * lr_at(st.step, tc), tc)
        st.after_step(loss, batch.inputs.numel())
        rec = None
        if st.eval_due():
            st.seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            rec = st.after_eval(self.evaluate())
        st.after_budget()
        self.rng_state = _rng_state(tc.device)
        st.seconds += time.perf_counter() - t0
        if (self.checkpoint is not None and not st.done
                and time.monotonic() - self._last_save >= tc.checkpoint_every_s):
            self.save(self.checkpoint)
        return rec

    # ---- checkpoints: everything the next step depends on --------------------------------

    def save(self, path) -> None:
        """The run's whole state, written atomically (a kill mid-write leaves the previous one)."""
        order = self.order
        state = {k: v for k, v in vars(self.state).items() if k != "cfg"}
        blob = {"run_id": self.config.hash(), "model": self.model.state_dict(), "opt": self.opt.state_dict(),
                "rng": [t for t in self.rng_state if t is not None],
                "order": {"rng": order.rng.bit_generator.state, "perm": torch.from_numpy(order._order.copy()),
                          "pos": order._pos, "rejected": order.rejected},
                "state": state}
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(blob, tmp)
        os.replace(tmp, path)
        self._last_save = time.monotonic()

    def _restore(self, path) -> None:
        try:  # tensors, numbers, strings and lists only: nothing is unpickled as code
            blob = torch.load(path, map_location=self.cfg.device, weights_only=True)
        except Exception as e:
            print(f"seqgap: warning: ignoring unreadable checkpoint {path} ({type(e).__name__}); training from "
                  f"the start", file=sys.stderr)
            return
        if blob.get("run_id") != self.config.hash():
            return
        self.model.load_state_dict(blob["model"])
        self.opt.load_state_dict(blob["opt"])
        rng = blob["rng"]
        self.rng_state = (rng[0], rng[1] if len(rng) > 1 else None)
        o = blob["order"]
        self.order.rng.bit_generator.state = o["rng"]
        self.order._order, self.order._pos, self.order.rejected = o["perm"].numpy(), o["pos"], o["rejected"]
        for k, v in blob["state"].items():
            setattr(self.state, k, v)
        print(f"seqgap: resuming {self.config.hash()} from its checkpoint at step {self.state.step}", file=sys.stderr)

    def evaluate(self) -> dict[str, float]:
        return evaluate_batches(self.model, self.data.val_batches, self.cfg.device)

    def result(self, keep_model: bool = True) -> RunResult:
        """The run's summary (and the evaluations that follow training: generation, extra lengths)."""
        return finish_run(self.config, self.data, self.state, self.model, self.evaluate, keep_model,
                          rejected=self.order.rejected)


def checkpoint_path(config: RunConfig) -> Path | None:
    d = config.train.checkpoint_dir
    return None if not d else Path(d) / f"{config.hash()}.pt"


def drop_checkpoint(config: RunConfig) -> None:
    """Remove a run's checkpoint (and its finished result, see :func:`keep_finished`) once it is stored."""
    path = checkpoint_path(config)
    if path is not None:
        path.unlink(missing_ok=True)
        path.with_suffix(".result.json").unlink(missing_ok=True)


def keep_finished(config: RunConfig, result: RunResult) -> None:
    """A finished run's result next to its checkpoint, until the driver has stored it: a job killed
    after some of its runs finished (an ensemble's members) keeps them."""
    path = checkpoint_path(config)
    if path is None:
        return
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".result.tmp")
    tmp.write_text(json.dumps({"id": result.id, "config": result.config, "summary": result.summary,
                               "history": result.history}, default=_json_default))
    os.replace(tmp, path.with_suffix(".result.json"))


def finished_result(config: RunConfig) -> RunResult | None:
    """The result :func:`keep_finished` kept for ``config``, if any (an unreadable one is ignored)."""
    path = checkpoint_path(config)
    if path is None or not path.with_suffix(".result.json").exists():
        return None
    import json

    try:
        d = json.loads(path.with_suffix(".result.json").read_text())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(d, dict) or d.get("id") != config.hash():
        return None
    return RunResult(d["id"], d["config"], d["summary"], d["history"], cached=False)


def _json_default(x: Any) -> Any:
    return float(x) if isinstance(x, (np.floating, np.integer)) else str(x)


def _rng_state(device: str) -> tuple:
    dev = torch.device(device)
    return (torch.get_rng_state(), torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None)


def _set_rng_state(device: str, state: tuple) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], torch.device(device))


def finish_run(config: RunConfig, data: RunData, st: RunState, model, evaluate_now: Callable[[], dict[str, float]],
               keep_model: bool, rejected: int = 0) -> RunResult:
    """Summary of a finished run; ``model`` holds its final weights."""
    task, tc = data.task, config.train
    if st.best_record is None:  # diverged before the first evaluation
        st.best_record = {"step": st.step, **evaluate_now()}
        st.history.append(st.best_record)
        st.best_loss, st.best_step = st.best_record["val_loss"], st.step
    final = st.history[-1]
    size = model.state_size()
    summary = {
        "success": st.success,
        "stop_reason": st.stop_reason,
        "best_val_loss": st.best_loss,
        "best_step": st.best_step,
        "steps": st.step,
        "seconds": st.seconds,
        "tokens_per_s": st.tokens / max(st.seconds, 1e-9),
        "val_loss": final["val_loss"],
        "val_token_acc": final["val_token_acc"],
        "val_seq_acc": final["val_seq_acc"],
        "val_final_acc": final["val_final_acc"],
        "best_val_seq_acc": max(h["val_seq_acc"] for h in st.history),
        "n_params": model.num_params(),
        "n_trainable_params": model.num_params(trainable_only=True),
        "state_floats": size.floats,
        "state_per_token": size.per_token,
        "n_train": len(data.splits.train) if config.n_train else 0,
        "n_val": len(data.splits.val),
        "val_overlap": data.val_overlap,
        "train_draws_rejected_as_val": rejected,  # streaming: fresh draws that were validation problems
        "max_positions": positions_needed(task, config),
        "chance_accuracy": task.chance_accuracy,
        "device": tc.device,
    }
    if config.gen_eval:
        rng = np.random.default_rng([config.data_seed, 11])
        val = data.splits.val
        pick = rng.permutation(len(val))[: config.gen_eval]
        summary.update(generation_eval(model, task, [val[i] for i in pick], tc.device))
    if config.eval_lengths:
        summary["eval_lengths"] = eval_at_lengths(model, task, config.eval_lengths, config.n_eval,
                                                  config.data_seed, tc.device)
    return RunResult(config.hash(), config.to_dict(), summary, st.history, cached=False,
                     model=model if keep_model else None)


def generation_eval(model, task: Task, problems: Sequence, device: str, batch_size: int = 64) -> dict[str, float]:
    """Free greedy generation from each example's prompt (with the task's tool, if any).

    Returns the mean of the task's ``generation_metrics`` as ``gen_<name>``, plus
    ``gen_failures``: sequences whose generation failed (e.g. the tool raised).
    Empty for formats that cannot be generated from (ACoT, outcome).
    """
    from seqgap.training.generate import greedy_generate

    examples = [task.encode(p) for p in problems]
    if not examples or examples[0].prompt_len is None:
        return {}
    sums: dict[str, float] = {}
    failures = 0
    was_training = model.training
    model.eval()
    for chunk in chunks(examples, batch_size):
        prompts = [e.sequence[: e.prompt_len] for e in chunk]
        budget = max(task.max_new_tokens(e) for e in chunk)
        results = greedy_generate(model, prompts, max_new_tokens=budget, stop_ids=task.generation_stop_ids(),
                                  tool=task.generation_tool())
        for e, r in zip(chunk, results):
            cont = list(r.context[e.prompt_len:])
            failures += int(bool(getattr(r, "failed", False)))
            for k, v in task.generation_metrics(e, cont).items():
                sums[k] = sums.get(k, 0.0) + float(v)
    model.train(was_training)
    out = {f"gen_{k}": v / len(examples) for k, v in sums.items()}
    out["gen_failures"] = failures
    out["gen_n"] = len(examples)
    return out


def eval_at_lengths(model, task: Task, lengths: Sequence[int], n: int, seed: int, device: str) -> dict[str, dict[str, float]]:
    """Metrics of the final model on fresh problems at each length.

    ``acc`` is the answer accuracy used for length generalisation: for generative
    formats (CoT) the answer comes from free greedy generation, since teacher
    forcing would hand the model every intermediate state; otherwise it is the
    prediction at the last scored position.  ``acc_normalized`` maps chance to 0
    and perfect to 1.
    """
    out = {}
    chance = task.chance_accuracy
    for L in lengths:
        rng = np.random.default_rng([seed, 7, L])
        probs = [task.sample_problem(rng, L) for _ in range(n)]
        m = evaluate_batches(model, [task.encode_batch(c) for c in chunks(probs, 256)], device)
        m.update(generation_eval(model, task, probs, device))
        m["acc"] = m.get("gen_acc", m["val_final_acc"])
        m["acc_normalized"] = (m["acc"] - chance) / (1 - chance) if chance < 1 else 0.0
        out[str(L)] = m
    return out


def train(config: RunConfig, progress: ProgressFn | None = None, keep_model: bool = True) -> RunResult:
    """Train one run (no store).  ``progress(step, record)`` is called after each evaluation."""
    with torch_threads(config.train):
        task, _ = prepare(config)
        run_ = Run(config, RunData(task, config))
        while not run_.state.done:
            rec = run_.advance()
            if rec is not None and progress:
                progress(run_.state.step, rec)
        return run_.result(keep_model)


def run(config: RunConfig, store=None, progress: ProgressFn | None = None, force: bool = False,
        keep_model: bool = False) -> RunResult:
    """Train ``config`` unless the store already holds it; store the result."""
    run_id = config.hash()
    if store is not None and not force:
        row = store.get(run_id)
        if row is not None:
            return RunResult(run_id, row["config"], row["summary"], row["history"], cached=True)
    if store is not None:
        store.require_writable()  # before hours of training, not after
    result = train(config, progress=progress, keep_model=keep_model)
    if store is not None:
        store.put(run_id, result.config, result.summary, result.history)
        drop_checkpoint(config)
    return result
