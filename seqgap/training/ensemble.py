"""Ensemble training: the runs of one grid point, stepped together.

E's N* search trains a grid of learning rates x seeds at every training-set size
N.  Those runs share the task, the split and the encoded validation set; only the
seed (initialisation and batch order) and the learning rate differ.  The ensemble
builds what they share once and steps the members; everything else is the single
run's code (``trainer.Run``, ``RunState``, ``evaluate``, ``finish_run``), so a
member is the run ``trainer.train`` would make, by construction.

Two strategies, chosen by a fixed rule (:func:`default_strategy`), never by timing:

* ``loop`` -- member after member, each with its own model and optimiser
  (``Run.advance``).  Bit-identical to separate ``trainer.train`` runs.  The rule
  on CPU: one tiny model already keeps a core busy, and stacking members gave at
  most ~1.5x here (docs/performance.md), while the loop is exact.
* ``vmap`` -- members with the same learning rate stacked with PyTorch's own
  mechanism (``torch.func.stack_module_state`` + ``vmap(functional_call)``), one
  ``torch.optim`` optimiser over the stacked parameters, per-member gradient
  clipping.  Equal to separate runs up to rounding.  The rule on accelerators,
  where one tiny model uses a sliver of the device.  A model that vmap cannot
  trace (a probe forward/backward fails) falls back to the loop, with a notice.

``run_ensemble(configs, store)`` is the cached version (like ``trainer.run``):
members already in the store are read, the missing ones train together, and each
is stored under its own config hash as soon as it finishes (a killed ensemble
keeps the members it had finished).
"""
from __future__ import annotations

import copy
import sys
import time
from typing import Any, Callable, Sequence

import torch

from seqgap.config import NON_IDENTITY_FIELDS, RunConfig
from seqgap.errors import SeqgapError
from seqgap.training.trainer import (Run, RunData, RunResult, drop_checkpoint, evaluate, finished_result,
                                     keep_finished, lr_at, make_optimizer, member_losses, prepare, torch_threads)

# The only fields in which the members of one ensemble may differ.
MEMBER_FIELDS = ("lr", "seed")
STRATEGIES = ("loop", "vmap")

# progress(member_index, step, record), called after each evaluation of each member
EnsembleProgressFn = Callable[[int, int, dict[str, Any]], None]
# on_result(member_index, result), called as each member finishes
ResultFn = Callable[[int, RunResult], None]


# ---- configs ----------------------------------------------------------------------------

def _shared_identity(config: RunConfig) -> dict[str, Any]:
    d = config.identity()
    d["train"] = {k: v for k, v in d["train"].items() if k not in MEMBER_FIELDS}
    d["_placement"] = {k: getattr(config.train, k) for k in sorted(NON_IDENTITY_FIELDS)}
    return d


def check_configs(configs: Sequence[RunConfig]) -> None:
    """Raise SeqgapError unless the configs can train as one ensemble (differ only in lr and seed)."""
    if not configs:
        raise SeqgapError("an ensemble needs at least one run config")
    for c in configs:
        c.validate()
    ref = _shared_identity(configs[0])
    for i, c in enumerate(configs[1:], 1):
        other = _shared_identity(c)
        if other != ref:
            diff = sorted(_differences(ref, other))
            raise SeqgapError(f"ensemble runs may differ only in train.lr and train.seed; run {i} also differs in "
                              f"{', '.join(diff[:5])}")


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".").replace("_placement.", "train.")]


def default_strategy(device: str) -> str:
    """The fixed rule: ``loop`` on CPU (exact, and as fast as stacking there), ``vmap`` elsewhere."""
    return "loop" if torch.device(device).type == "cpu" else "vmap"


# ---- vmap: members of one learning rate as one stacked model ------------------------------

@torch.no_grad()
def clip_members_(grads: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``clip_grad_norm_`` per member: grads are (E, ...) each; returns the (E,) norms."""
    E = grads[0].shape[0]
    norms = torch.stack([g.reshape(E, -1).pow(2).sum(1) for g in grads]).sum(0).sqrt()
    coef = (max_norm / (norms + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(E, *([1] * (g.dim() - 1))))
    return norms


class StackedMembers:
    """Runs with the same learning rate, stepped as one vmapped model (their states stay their own)."""

    def __init__(self, runs: list[Run]):
        from torch.func import stack_module_state

        self.runs = runs
        self.template = copy.deepcopy(runs[0].model).to("meta")  # structure only, for functional_call
        self.params, self.buffers = stack_module_state([r.model for r in runs])  # {name: (E, ...)}
        self.opt = make_optimizer(runs[0].model, runs[0].cfg, named=self.params)

    def logits(self, inputs: torch.Tensor, member_dim: int | None = 0) -> torch.Tensor:
        """inputs (E, B, T), or (B, T) shared with ``member_dim=None`` -> logits (E, B, T, V)."""
        from torch.func import functional_call, vmap

        def one(p, b, x):
            return functional_call(self.template, (p, b), (x,))

        return vmap(one, in_dims=(0, 0, member_dim), randomness="different")(self.params, self.buffers, inputs)

    def step(self, task, lr_mult: float) -> tuple[list[float], int]:
        """One optimiser step of every member; returns their losses and the tokens per member."""
        cfg = self.runs[0].cfg
        E, B = len(self.runs), cfg.batch_size
        problems = [p for r in self.runs for p in r.order.next_problems(B)]
        batch = task.encode_batch(problems).to(cfg.device)  # padded to one length: never scored
        as_members = lambda t: t.view(E, B, -1)  # noqa: E731
        losses = member_losses(self.logits(as_members(batch.inputs)), as_members(batch.targets),
                               as_members(batch.loss_mask), cfg.label_smoothing)
        for g in self.opt.param_groups:
            g["lr"] = cfg.lr * lr_mult
        self.opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        if cfg.grad_clip:
            grads = [p.grad for p in self.params.values() if p.grad is not None]
            clip_members_(grads, cfg.grad_clip)
        self.opt.step()
        return losses.detach().tolist(), B * batch.inputs.shape[1]

    def evaluate(self, val_batches, device: str) -> list[dict[str, float]]:
        self.template.eval()
        try:
            return evaluate(lambda x: self.logits(x, member_dim=None), val_batches, len(self.runs), device)
        finally:
            self.template.train()

    def sync(self, row: int) -> None:
        """Copy member ``row``'s stacked weights back into its own model."""
        with torch.no_grad():
            state = {n: t[row] for n, t in {**self.params, **self.buffers}.items()}
            self.runs[row].model.load_state_dict(state, strict=False)

    def keep(self, rows: Sequence[int]) -> None:
        """Drop every member not in ``rows``: stacked parameters and optimiser state are sliced."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        old_opt_state = {n: self.opt.state.get(p, {}) for n, p in self.params.items()}
        with torch.no_grad():
            self.params = {n: p.detach()[idx.to(p.device)].clone().requires_grad_(p.requires_grad)
                           for n, p in self.params.items()}
            self.buffers = {n: b[idx.to(b.device)].clone() for n, b in self.buffers.items()}
        self.runs = [self.runs[r] for r in rows]
        self.opt = make_optimizer(self.runs[0].model, self.runs[0].cfg, named=self.params)
        for n, p in self.params.items():
            st = old_opt_state[n]
            if st:
                self.opt.state[p] = {k: (v[idx.to(v.device)].clone() if torch.is_tensor(v) and v.dim() else v)
                                     for k, v in st.items()}


def vmap_traceable(run: Run) -> str | None:
    """None if vmap can step this model (a probe forward/backward on two copies), else the reason."""
    probe = None
    try:
        probe = StackedMembers([run, run])
        x = run.data.val_batches[0].inputs[:2].to(run.cfg.device)
        probe.logits(torch.stack([x, x])).sum().backward()
    except Exception as e:  # any failure: the loop is the fallback
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


# ---- the ensemble -------------------------------------------------------------------------

def train_ensemble(configs: Sequence[RunConfig], progress: EnsembleProgressFn | None = None,
                   keep_model: bool = True, stop_on_success: bool = False, strategy: str | None = None,
                   on_result: ResultFn | None = None) -> list[RunResult | None]:
    """Train runs that differ only in ``train.lr`` / ``train.seed`` together.

    Returns one :class:`RunResult` per config, in order, equal to ``trainer.train(config)``
    (bit-identical with the ``loop`` strategy, up to rounding with ``vmap``).
    ``progress(i, step, record)`` is called after each evaluation of member i; ``on_result(i,
    result)`` as member i finishes.  With ``stop_on_success`` (the N* search's short circuit)
    training ends at the first evaluation where some member succeeds: members that succeeded
    finish normally, the others are abandoned and returned as None.
    """
    configs = list(configs)
    check_configs(configs)
    tc = configs[0].train
    if strategy is not None and strategy not in STRATEGIES:
        raise SeqgapError(f"unknown ensemble strategy {strategy!r}; use one of {', '.join(STRATEGIES)}")
    if strategy == "vmap" and tc.compile:
        raise SeqgapError("train.compile compiles one model's step; the vmap strategy steps a stacked model "
                          "(use the loop strategy, the default on CPU)")
    strategy = strategy or ("loop" if tc.compile else default_strategy(tc.device))
    results: list[RunResult | None] = [None] * len(configs)

    def finished(i: int, run: Run) -> None:
        results[i] = run.result(keep_model)
        keep_finished(run.config, results[i])
        if on_result:
            on_result(i, results[i])

    for i, c in enumerate(configs):  # members a killed job had finished (see trainer.keep_finished)
        results[i] = finished_result(c)
        if results[i] is not None and on_result:
            on_result(i, results[i])
    if stop_on_success and any(r is not None and r.success for r in results):
        return results
    pending = [i for i, r in enumerate(results) if r is None]
    if not pending:
        return results
    with torch_threads(tc):
        task, _ = prepare(configs[0])
        data = RunData(task, configs[0])
        runs: list[Run | None] = [Run(c, data) if results[i] is None else None for i, c in enumerate(configs)]
        if strategy == "vmap":
            reason = vmap_traceable(runs[pending[0]])
            if reason:
                print(f"seqgap: note: {configs[0].model} cannot be stacked by vmap ({reason}); "
                      f"training the members one at a time", file=sys.stderr)
                strategy = "loop"
        step_all = _loop_stepper(runs) if strategy == "loop" else _vmap_stepper(runs, data)
        active = pending
        while active:
            for i, rec in step_all(active):
                if progress:
                    progress(i, runs[i].state.step, rec)
            if stop_on_success and any(runs[i].state.success for i in active):
                for i in active:  # this grid point has succeeded: the unfinished others are abandoned
                    if not runs[i].state.success and not runs[i].state.done:
                        runs[i].state.stop_reason = "abandoned"
            for i in active:
                st = runs[i].state
                if st.done and st.stop_reason != "abandoned":
                    finished(i, runs[i])
            active = [i for i in active if not runs[i].state.done]
    return results


def _loop_stepper(runs: list[Run]):
    """One step of every active member, member after member (each exactly ``trainer.train``'s step)."""

    def step_all(active: list[int]):
        out = []
        for i in active:
            rec = runs[i].advance()
            if rec is not None:
                out.append((i, rec))
        return out

    return step_all


def _vmap_stepper(runs: list[Run | None], data: RunData):
    """One step of every active member, one vmapped step per learning rate."""
    groups: dict[float, list[int]] = {}
    for i, r in enumerate(runs):
        if r is not None:
            groups.setdefault(r.cfg.lr, []).append(i)
    stacks = {lr: (idx, StackedMembers([runs[i] for i in idx])) for lr, idx in groups.items()}
    task, device = data.task, data.config.train.device

    def step_all(active: list[int]):
        out = []
        alive = set(active)
        for lr, (idx, stack) in list(stacks.items()):
            keep_rows = [r for r, i in enumerate(idx) if i in alive]
            if not keep_rows:
                del stacks[lr]
                continue
            if len(keep_rows) < len(idx):  # members that stopped leave the stack
                stack.keep(keep_rows)
                idx = [idx[r] for r in keep_rows]
                stacks[lr] = (idx, stack)
            t0 = time.perf_counter()
            st0 = runs[idx[0]].state
            losses, tokens = stack.step(task, lr_at(st0.step, st0.cfg))
            for i, loss in zip(idx, losses):
                runs[i].state.after_step(loss, tokens)
            due = [r for r, i in enumerate(idx) if runs[i].state.eval_due()]
            if due:
                metrics = stack.evaluate(data.val_batches, device)
                share = (time.perf_counter() - t0) / len(idx)
                for r, i in enumerate(idx):
                    runs[i].state.seconds += share
                t0 = time.perf_counter()
                for r in due:
                    out.append((idx[r], runs[idx[r]].state.after_eval(metrics[r])))
            share = (time.perf_counter() - t0) / len(idx)
            for r, i in enumerate(idx):
                st = runs[i].state
                st.seconds += share
                st.after_budget()
                if st.done:
                    stack.sync(r)  # its own model holds its final weights for the summary
        return out

    return step_all


def run_ensemble(configs: Sequence[RunConfig], store=None, progress: EnsembleProgressFn | None = None,
                 force: bool = False, keep_model: bool = False, stop_on_success: bool = False,
                 strategy: str | None = None) -> list[RunResult | None]:
    """``trainer.run`` for a whole grid point: reuse stored members, train the missing ones together.

    Each new result is stored under its own config hash as soon as it finishes, so ensemble
    and one-by-one training fill the same store interchangeably.  Duplicate configs train
    once.  With ``stop_on_success``: if a stored member already succeeded nothing is trained,
    and abandoned members are returned as None and not stored.
    """
    configs = list(configs)
    check_configs(configs)
    ids = [c.hash() for c in configs]
    results: dict[str, RunResult | None] = {}
    if store is not None and not force:
        for rid in ids:
            row = store.get(rid)
            if row is not None:
                results[rid] = RunResult(rid, row["config"], row["summary"], row["history"], cached=True)
    if stop_on_success and any(r is not None and r.success for r in results.values()):
        return [results.get(rid) for rid in ids]
    todo, seen = [], set()
    for c, rid in zip(configs, ids):
        if rid not in results and rid not in seen:
            seen.add(rid)
            todo.append(c)
    if todo:
        if store is not None:
            store.require_writable()  # before training, not after

        def member_progress(i: int, step: int, rec: dict[str, Any]) -> None:
            progress(ids.index(todo[i].hash()), step, rec)

        def store_result(i: int, res: RunResult) -> None:
            results[res.id] = res
            if store is not None:
                store.put(res.id, res.config, res.summary, res.history)
                drop_checkpoint(todo[i])

        train_ensemble(todo, progress=member_progress if progress else None, keep_model=keep_model,
                       stop_on_success=stop_on_success, strategy=strategy, on_result=store_result)
    return [results.get(rid) for rid in ids]
