"""Train one model on one task: the unit every study is built from.

``train(config)`` builds the task, its unique train/validation split, the model,
and runs the optimiser for at most ``config.train.steps`` steps, evaluating
every ``eval_every`` steps.  The minimum validation loss over training is what
counts (E's protocol); a run succeeds when it drops below ``success_loss``.

``run(config, store)`` is the cached version: a finished run with the same
config hash is returned from the store instead of being trained again.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from seqgap.config import RunConfig
from seqgap.errors import SeqgapError
from seqgap.tasks.base import Batch, Task, make_task


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
        return (f"{'SUCCESS' if s['success'] else 'FAIL'}{tag}: {c['model']} on {c['task']} "
                f"{_fmt_params(c['task_params'])} L={c['max_length']} {c['length_dist']} N={c['n_train']} | "
                f"best val loss {num(s['best_val_loss']):.3g} at step {s['best_step']} | "
                f"val seq acc {num(s['val_seq_acc']):.3f} | {s['steps']} steps, {s['seconds']:.1f}s, "
                f"{s['tokens_per_s']:,.0f} tok/s | {s['n_params']:,} params")


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
    if config.n_train < 0:
        raise SeqgapError(f"training-set size must be >= 0 (0 = fresh samples every step), got {config.n_train}")
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
    from seqgap.models.registry import build_model

    return build_model(config.model, vocab_size=len(task.vocab), max_len=positions_needed(task, config),
                       size=config.model_size, **config.model_options)


def masked_loss(logits: torch.Tensor, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy over trained positions.  logits (B, T, V)."""
    m = batch.loss_mask
    return F.cross_entropy(logits[m], batch.targets[m])


@torch.no_grad()
def evaluate_batches(model, batches: Sequence[Batch], device: str) -> dict[str, float]:
    """Loss on trained positions; token / sequence / final-answer accuracy on scored positions."""
    was_training = model.training
    model.eval()
    loss_sum, loss_n, tok_right, tok_n, seq_right, seq_n, fin_right = 0.0, 0, 0, 0, 0, 0, 0
    for batch in batches:
        batch = batch.to(device)
        logits = model(batch.inputs)  # (B, T, V)
        lm = batch.loss_mask
        if lm.any():
            loss_sum += F.cross_entropy(logits[lm], batch.targets[lm], reduction="sum").item()
            loss_n += int(lm.sum())
        right = (logits.argmax(-1) == batch.targets) | ~batch.mask  # (B, T)
        tok_right += int(((logits.argmax(-1) == batch.targets) & batch.mask).sum())
        tok_n += int(batch.mask.sum())
        seq_right += int(right.all(dim=1).sum())
        seq_n += len(batch)
        # final answer: the last scored position of each sequence
        T = batch.mask.shape[1]
        last = T - 1 - torch.argmax(batch.mask.flip(1).int(), dim=1)  # (B,)
        fin_right += int(right.gather(1, last[:, None]).sum())
    model.train(was_training)
    return {
        "val_loss": loss_sum / loss_n if loss_n else float("nan"),  # no data is never a success
        "val_token_acc": tok_right / max(tok_n, 1),
        "val_seq_acc": seq_right / max(seq_n, 1),
        "val_final_acc": fin_right / max(seq_n, 1),
    }


def _chunks(seq: Sequence, size: int):
    for i in range(0, len(seq), size):
        yield seq[i:i + size]


def lr_at(step: int, cfg) -> float:
    """Learning-rate multiplier: linear warm-up, then constant or cosine decay to 0."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, cfg.steps - cfg.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / span)))
    return 1.0


def make_optimizer(model, cfg) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise SeqgapError(f"unknown optimizer {cfg.optimizer!r}; use adam or adamw")


def validate(config: RunConfig) -> None:
    t = config.train
    from seqgap.tasks.dataset import LENGTH_DISTS

    if config.length_dist not in LENGTH_DISTS:
        raise SeqgapError(f"unknown length distribution {config.length_dist!r}; use one of {', '.join(LENGTH_DISTS)}")
    if t.schedule not in ("constant", "cosine"):
        raise SeqgapError(f"unknown schedule {t.schedule!r}; use constant or cosine")
    for name in ("batch_size", "steps", "eval_every"):
        if getattr(t, name) <= 0:
            raise SeqgapError(f"{name} must be positive, got {getattr(t, name)}")
    if not t.lr > 0:
        raise SeqgapError(f"learning rate must be positive, got {t.lr}")
    if t.weight_decay < 0:
        raise SeqgapError(f"weight decay must be >= 0, got {t.weight_decay}")
    if t.threads is not None and t.threads < 1:
        raise SeqgapError(f"threads must be >= 1, got {t.threads}")
    if config.n_val is not None and config.n_val < 1:
        raise SeqgapError(f"the validation set needs at least 1 sample (success is judged on it), got n_val={config.n_val}")
    if any(L < 2 for L in config.eval_lengths):
        raise SeqgapError(f"evaluation lengths must be >= 2, got {list(config.eval_lengths)}")


def check_data_size(task: Task, config: RunConfig) -> None:
    """Fail fast when N exceeds the distinct training samples (before any data is generated)."""
    from seqgap.tasks.dataset import check_sizes

    if config.n_train:  # streaming (N = 0) draws fresh problems: nothing to run out of
        check_sizes(task, config.max_length, config.length_dist, config.n_train, config.n_val)


class DataSource:
    """Training batches: a fixed set of N unique problems (shuffled each epoch), or fresh samples if N = 0."""

    def __init__(self, task: Task, config: RunConfig):
        from seqgap.tasks.dataset import build_splits

        self.task = task
        self.config = config
        n_train = config.n_train
        self.splits = build_splits(task, config.max_length, config.length_dist, n_train, config.n_val,
                                   seed=config.data_seed)
        self.rng = np.random.default_rng([config.train.seed, 1])
        self.lengths = lengths_for(task, config)
        self._order: np.ndarray = np.empty(0, dtype=np.int64)
        self._pos = 0

    def val_batches(self, batch_size: int = 512) -> list[Batch]:
        return [self.task.encode_batch(list(c)) for c in _chunks(self.splits.val, batch_size)]

    def next_batch(self, batch_size: int) -> Batch:
        if self.config.n_train == 0:  # streaming: fresh problems at random lengths
            probs = [self.task.sample_problem(self.rng, int(self.rng.choice(self.lengths))) for _ in range(batch_size)]
            return self.task.encode_batch(probs)
        train = self.splits.train
        idx = []
        while len(idx) < batch_size:
            if self._pos >= len(self._order):
                self._order = self.rng.permutation(len(train))
                self._pos = 0
            take = min(batch_size - len(idx), len(self._order) - self._pos)
            idx.extend(self._order[self._pos:self._pos + take].tolist())
            self._pos += take
        return self.task.encode_batch([train[i] for i in idx])


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
    for chunk in _chunks(examples, batch_size):
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
        m = evaluate_batches(model, [task.encode_batch(c) for c in _chunks(probs, 256)], device)
        m.update(generation_eval(model, task, probs, device))
        m["acc"] = m.get("gen_acc", m["val_final_acc"])
        m["acc_normalized"] = (m["acc"] - chance) / (1 - chance) if chance < 1 else 0.0
        out[str(L)] = m
    return out


ProgressFn = Callable[[int, dict[str, Any]], None]


def train(config: RunConfig, progress: ProgressFn | None = None, keep_model: bool = True) -> RunResult:
    """Train one run (no store).  ``progress(step, record)`` is called after each evaluation."""
    validate(config)
    tc = config.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    task = build_task(config)
    data = DataSource(task, config)
    torch.manual_seed(tc.seed)
    model = build_model_for(task, config).to(tc.device)
    opt = make_optimizer(model, tc)
    val_batches = data.val_batches()
    # torch.compile's default shape handling: static first, one dynamic-shape recompile if the
    # batches' lengths vary (uniform lengths, CoT padding)
    forward = torch.compile(model) if tc.compile else model

    history: list[dict[str, Any]] = []
    best_loss, best_step, best_record = float("inf"), 0, None
    success, stop_reason = False, "budget"
    tokens, t0, train_loss_acc, train_loss_n = 0, time.perf_counter(), 0.0, 0
    evals_since_improve, last_improve_value = 0, float("inf")
    step = 0
    model.train()
    for step in range(1, tc.steps + 1):
        for g in opt.param_groups:
            g["lr"] = tc.lr * lr_at(step - 1, tc)
        batch = data.next_batch(tc.batch_size).to(tc.device)
        logits = forward(batch.inputs)
        loss = masked_loss(logits, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        tokens += batch.inputs.numel()
        train_loss_acc += loss.item()
        train_loss_n += 1
        if not math.isfinite(loss.item()):
            stop_reason = "diverged"
            break

        if step % tc.eval_every == 0 or step == tc.steps:
            rec = {"step": step, "train_loss": train_loss_acc / train_loss_n,
                   "seconds": time.perf_counter() - t0, **evaluate_batches(model, val_batches, tc.device)}
            train_loss_acc, train_loss_n = 0.0, 0
            history.append(rec)
            if rec["val_loss"] < best_loss:
                best_loss, best_step, best_record = rec["val_loss"], step, rec
            if progress:
                progress(step, rec)
            if rec["val_loss"] < tc.success_loss:
                success = True
                if tc.early_stop:
                    stop_reason = "success"
                    break
            # failure early stop: no real progress for `patience_evals` evaluations
            if best_loss < last_improve_value * (1 - tc.patience_rel):
                last_improve_value, evals_since_improve = best_loss, 0
            else:
                evals_since_improve += 1
            if (tc.patience_evals and evals_since_improve >= tc.patience_evals
                    and step >= tc.patience_min_frac * tc.steps and not success):
                stop_reason = "plateau"
                break
    seconds = time.perf_counter() - t0
    if best_record is None:  # diverged before the first evaluation
        best_record = {"step": step, **evaluate_batches(model, val_batches, tc.device)}
        history.append(best_record)
        best_loss, best_step = best_record["val_loss"], step
    final = history[-1]
    summary = {
        "success": success,
        "stop_reason": stop_reason,
        "best_val_loss": best_loss,
        "best_step": best_step,
        "steps": step,
        "seconds": seconds,
        "tokens_per_s": tokens / max(seconds, 1e-9),
        "val_loss": final["val_loss"],
        "val_token_acc": final["val_token_acc"],
        "val_seq_acc": final["val_seq_acc"],
        "val_final_acc": final["val_final_acc"],
        "best_val_seq_acc": max(h["val_seq_acc"] for h in history),
        "n_params": model.num_params(),
        "n_trainable_params": model.num_params(trainable_only=True),
        "state_floats": model.state_size().floats,
        "state_per_token": model.state_size().per_token,
        "n_train": len(data.splits.train) if config.n_train else 0,
        "n_val": len(data.splits.val),
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
    return RunResult(config.hash(), config.to_dict(), summary, history, cached=False,
                     model=model if keep_model else None)


def run(config: RunConfig, store=None, progress: ProgressFn | None = None, force: bool = False,
        keep_model: bool = False) -> RunResult:
    """Train ``config`` unless the store already holds it; store the result."""
    run_id = config.hash()
    if store is not None and not force:
        row = store.get(run_id)
        if row is not None:
            return RunResult(run_id, row["config"], row["summary"], row["history"], cached=True)
    result = train(config, progress=progress, keep_model=keep_model)
    if store is not None:
        store.put(run_id, result.config, result.summary, result.history)
    return result
