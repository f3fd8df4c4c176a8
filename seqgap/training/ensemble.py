"""Ensemble training: the runs of one grid point train together as ONE vectorized model.

E's N* search trains a grid of learning rates x seeds at every training-set size
N.  Those runs share the task, the data and the model shape; only the seed
(initialization and batch order) and the learning rate differ.  A tiny model
pays per-operation overhead (Python, dispatch, the optimizer's per-tensor loop)
and per-run setup (training split, model, encoded validation set); ``E`` such
runs stacked along a new leading "member" dimension pay them once.  Measured
gains are in docs/performance.md.

``train_ensemble(configs)`` returns exactly what ``trainer.train`` would return
for each config, up to floating-point rounding (tested against it):

* **Init.** Member i is built under ``torch.manual_seed(seed_i)``, as
  ``trainer.train`` builds it; the parameters are then copied into one flat
  ``(E, P)`` buffer, and every parameter is an ``(E, *shape)`` view into it (so
  the optimizer and clipping are a handful of whole-buffer operations).
* **Data.** One shared training split; each member has its own batch order
  (numpy generator seeded ``[seed, 1]`` as in ``DataSource``).  The E batches are
  encoded together and padded to a common length: every model is causal and
  padding is never scored, so this changes nothing but rounding.
* **Forward.** Hand-written batched paths for the Transformer (one ``bmm`` per
  linear layer, one flash-attention call over all members' sequences) and the
  LSTM (``nn.LSTM`` has no batching rule: its recurrence as a custom autograd
  function over batched matmuls, nn.LSTM's gate equations); ``torch.func.vmap``
  over ``functional_call`` of one template module for Dense-SSM, Mamba, Hybrid
  and any model vmap can trace (attention under vmap uses the math SDPA kernel;
  Mamba's chunked scan runs once per member inside an otherwise batched layer).
  Anything vmap cannot trace falls back to a per-member loop of
  ``functional_call``.  Batching every member is not always faster: at batch 64
  a d64 model is mostly compute-bound on a CPU, and E members' activations no
  longer fit in L2.  So on a single CPU thread a training step runs one member's
  forward/backward at a time (optimizer, clipping, data and evaluation stay
  batched), with more threads or on an accelerator all members at once
  (:func:`default_strategy`: a fixed rule, so reruns are bit-identical).
* **Optimizer.** Adam / AdamW on the stacked buffer with a per-member learning
  rate vector (the same operations as ``torch.optim.Adam``'s for-loop
  implementation), the schedule ``lr_at`` and per-member gradient-norm clipping
  (``clip_grad_norm_``'s formula).
* **Stopping.** Each member keeps its own history, best loss, success and
  plateau counters.  A member that stops (success, plateau, divergence) is
  finalized and *removed* from the stacked buffers, so the survivors stop paying
  for it.

Timing: ``seconds`` of a member is its amortized share of the ensemble's wall
time (each step's time split over the members active in it), so seconds summed
over members is the ensemble's wall time; ``tokens_per_s`` follows from it.

``run_ensemble(configs, store)`` is the cached version (like ``trainer.run``):
members already in the store are read, the missing ones train together, each
result is stored under its own config hash.
"""
from __future__ import annotations

import copy
import math
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from seqgap.config import NON_IDENTITY_FIELDS, RunConfig
from seqgap.errors import SeqgapError
from seqgap.tasks.base import Batch, Task
from seqgap.training.trainer import (RunResult, _chunks, build_model_for, build_task, eval_at_lengths,
                                     lengths_for, lr_at, positions_needed, validate)

# The only fields in which the members of one ensemble may differ.
MEMBER_FIELDS = ("lr", "seed")

# progress(member_index, step, record), called after each evaluation of each member
EnsembleProgressFn = Callable[[int, int, dict[str, Any]], None]


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
        validate(c)
    ref = _shared_identity(configs[0])
    for i, c in enumerate(configs[1:], 1):
        other = _shared_identity(c)
        if other != ref:
            diff = sorted(_differences(ref, other))
            raise SeqgapError(f"ensemble runs may differ only in train.lr and train.seed; run {i} also differs in "
                              f"{', '.join(diff[:5])}")
    if getattr(configs[0], "gen_eval", 0):
        raise SeqgapError("ensemble training does not run the free-generation evaluation (gen_eval); "
                          "train these runs one by one")
    if configs[0].train.compile:
        raise SeqgapError("ensemble training does not torch.compile (train.compile); train these runs one by one")


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in set(a) | set(b):
            out += _differences(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [] if a == b else [prefix.rstrip(".").replace("_placement.", "train.")]


# ---- per-member data --------------------------------------------------------------------


class _MemberStream:
    """One member's training problems: the order of ``trainer.DataSource.next_batch``."""

    def __init__(self, task: Task, config: RunConfig, train: list, lengths: list[int]):
        self.task, self.train, self.lengths = task, train, lengths
        self.streaming = config.n_train == 0
        self.rng = np.random.default_rng([config.train.seed, 1])  # as DataSource
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0

    def next_problems(self, batch_size: int) -> list:
        if self.streaming:  # fresh problems at random lengths
            return [self.task.sample_problem(self.rng, int(self.rng.choice(self.lengths))) for _ in range(batch_size)]
        idx: list[int] = []
        while len(idx) < batch_size:
            if self._pos >= len(self._order):  # a new epoch: reshuffle
                self._order = self.rng.permutation(len(self.train))
                self._pos = 0
            take = min(batch_size - len(idx), len(self._order) - self._pos)
            idx.extend(self._order[self._pos:self._pos + take].tolist())
            self._pos += take
        return [self.train[i] for i in idx]


# ---- stacked parameters -----------------------------------------------------------------


class StackedParams:
    """The parameters of E copies of one model, stacked: ``params[name]`` is ``(E, *shape)``.

    Trainable parameters live in one flat ``(E, P)`` buffer (and their gradients in
    another), so optimizer and clipping are whole-buffer operations; each
    ``params[name]`` is a leaf view into it, updated in place by the optimizer.  Buffers that are equal in every member
    (RoPE tables, frozen sinusoidal embeddings) are shared, not stacked.
    """

    def __init__(self, models: Sequence[torch.nn.Module]):
        first = models[0]
        self.trainable = [(n, p.shape) for n, p in first.named_parameters() if p.requires_grad]
        fixed = [n for n, p in first.named_parameters() if not p.requires_grad]
        named = [dict(m.named_parameters()) for m in models]
        with torch.no_grad():
            self.flat = torch.stack([torch.cat([d[n].detach().reshape(-1) for n, _ in self.trainable])
                                     if self.trainable else first_param(first).new_zeros(0) for d in named])
            self.fixed = {n: torch.stack([d[n].detach() for d in named]) for n in fixed}
            bufs = [dict(m.named_buffers()) for m in models]
            self.shared_buffers, self.stacked_buffers = {}, {}
            for n, b in bufs[0].items():
                if all(torch.equal(b, other[n]) for other in bufs[1:]):
                    self.shared_buffers[n] = b
                else:
                    self.stacked_buffers[n] = torch.stack([other[n] for other in bufs])
        self._make_views()

    def _make_views(self) -> None:
        E = self.flat.shape[0]
        self.grad = torch.empty_like(self.flat)
        self.params: dict[str, torch.Tensor] = {}
        off = 0
        for n, shape in self.trainable:
            k = math.prod(shape)
            v = self.flat[:, off:off + k].view(E, *shape)
            self.params[n] = v.requires_grad_(True)
            off += k

    @property
    def size(self) -> int:
        return self.flat.shape[0]

    def backward(self, loss: torch.Tensor) -> None:
        """Gradients of ``loss`` w.r.t. every trainable parameter, into the flat ``grad`` buffer."""
        grads = torch.autograd.grad(loss, list(self.params.values()), allow_unused=True, materialize_grads=True)
        E = self.flat.shape[0]
        torch.cat([g.reshape(E, -1) for g in grads], dim=1, out=self.grad)

    def all_params(self) -> dict[str, torch.Tensor]:
        """Every parameter and non-shared buffer, (E, ...) each (the vmapped argument)."""
        return {**self.params, **self.fixed, **self.stacked_buffers}

    def subset(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.flat.device)
        return {n: t.detach().index_select(0, idx) for n, t in self.all_params().items()}

    def keep(self, rows: Sequence[int]) -> None:
        """Drop every member not in ``rows`` (in place; rows keep their order)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.flat.device)
        with torch.no_grad():
            self.flat = self.flat.index_select(0, idx)
            self.fixed = {n: t.index_select(0, idx) for n, t in self.fixed.items()}
            self.stacked_buffers = {n: t.index_select(0, idx) for n, t in self.stacked_buffers.items()}
        self._make_views()

    def member_params(self, row: int) -> tuple[dict[str, torch.Tensor], list[torch.Tensor]]:
        """Member ``row``'s parameters for a plain forward, and its trainable leaves (views into
        ``flat[row]``, so gradients w.r.t. them cost one member, not E)."""
        leaves, off = {}, 0
        for n, shape in self.trainable:
            k = math.prod(shape)
            leaves[n] = self.flat[row, off:off + k].view(shape).requires_grad_(True)
            off += k
        other = {n: t[row] for n, t in {**self.fixed, **self.stacked_buffers}.items()}
        return {**leaves, **other}, list(leaves.values())

    def member_state(self, row: int) -> dict[str, torch.Tensor]:
        """Member ``row``'s parameters and buffers, named as in ``module.state_dict()``."""
        out = {n: t[row].detach().clone() for n, t in self.all_params().items()}
        out.update({n: b.clone() for n, b in self.shared_buffers.items()})
        return out


def first_param(m: torch.nn.Module) -> torch.Tensor:
    return next(iter(m.parameters()))


class StackedAdam:
    """Adam / AdamW over a stacked ``(E, P)`` buffer with one learning rate per member.

    Performs, per member, exactly the operations of ``torch.optim.Adam``'s for-loop
    implementation (defaults betas (0.9, 0.999), eps 1e-8), with lr a per-row vector.
    All active members share the step count (members only ever leave).
    """

    def __init__(self, stack: StackedParams, weight_decay: float = 0.0, decoupled: bool = True,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        self.wd, self.decoupled, self.betas, self.eps = weight_decay, decoupled, betas, eps
        self.exp_avg = torch.zeros_like(stack.flat)
        self.exp_avg_sq = torch.zeros_like(stack.flat)
        self.steps = 0

    def keep(self, rows: Sequence[int]) -> None:
        idx = torch.as_tensor(list(rows), dtype=torch.long, device=self.exp_avg.device)
        self.exp_avg = self.exp_avg.index_select(0, idx)
        self.exp_avg_sq = self.exp_avg_sq.index_select(0, idx)

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor, lrs: Sequence[float]) -> None:
        b1, b2 = self.betas
        self.steps += 1
        lr = param.new_tensor(lrs)[:, None]  # (E, 1)
        if self.wd:
            if self.decoupled:  # AdamW
                param.mul_(param.new_tensor([1 - x * self.wd for x in lrs])[:, None])
            else:  # Adam: L2 penalty in the gradient
                grad = grad.add(param, alpha=self.wd)
        self.exp_avg.lerp_(grad, 1 - b1)
        self.exp_avg_sq.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        bc1, bc2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
        step_size = param.new_tensor([x / bc1 for x in lrs])[:, None]  # lr / bias_correction1, per member
        denom = (self.exp_avg_sq.sqrt() / bc2 ** 0.5).add_(self.eps)
        param.sub_(self.exp_avg.div(denom).mul_(step_size))  # = addcdiv_(exp_avg, denom, value=-step_size)
        del lr


@torch.no_grad()
def clip_rows_(grad: torch.Tensor, max_norm: float) -> torch.Tensor:
    """Per-row ``clip_grad_norm_``: scale row e by min(1, max_norm / (||g_e|| + 1e-6)).  Returns the norms."""
    norms = torch.linalg.vector_norm(grad, dim=1)  # (E,)
    grad.mul_((max_norm / (norms + 1e-6)).clamp_(max=1.0)[:, None])
    return norms


# ---- forward strategies -----------------------------------------------------------------
# Each maps (template module, params {name: (E, ...)}, shared buffers, tokens (E, B, T) or (B, T)
# shared by every member) to logits (E, B, T, V).


def _sdpa_math():
    """The math SDPA kernel, which vmap batches (the CPU flash kernel has no batching rule)."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # pragma: no cover - older torch
        return nullcontext()
    return sdpa_kernel(SDPBackend.MATH)


def forward_vmap(model, params, buffers, tokens: torch.Tensor, E: int) -> torch.Tensor:
    from torch.func import functional_call, vmap

    def one(p, x):
        return functional_call(model, (p, buffers), (x,))

    x_dim = 0 if tokens.dim() == 3 else None
    with _sdpa_math(), _vmappable_scan():
        return vmap(one, in_dims=(0, x_dim), randomness="different")(params, tokens)


def forward_loop(model, params, buffers, tokens: torch.Tensor, E: int) -> torch.Tensor:
    """Fallback for models vmap cannot trace: one functional call per member."""
    from torch.func import functional_call

    outs = []
    for e in range(E):
        x = tokens[e] if tokens.dim() == 3 else tokens
        outs.append(functional_call(model, ({n: t[e] for n, t in params.items()}, buffers), (x,)))
    return torch.stack(outs)


def _bmm_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """Per-member linear map: x (E, ..., in), w (E, out, in), b (E, out) -> (E, ..., out)."""
    E = w.shape[0]
    x2 = x.reshape(E, -1, x.shape[-1])
    wt = w.transpose(1, 2).contiguous()  # CPU bmm is slower with a transposed right operand
    y = torch.bmm(x2, wt) if b is None else torch.baddbmm(b[:, None, :], x2, wt)
    return y.view(*x.shape[:-1], w.shape[1])


def _embed(emb, params, buffers, prefix: str, tokens: torch.Tensor, E: int) -> torch.Tensor:
    """TokenEmbedding lookup per member: tokens (E, ...) -> (E, ..., D)."""
    if emb.frozen:
        return buffers[prefix + "table"][tokens]
    w = params[prefix + "embed.weight"]  # (E, V, D)
    E, V, D = w.shape
    offset = (torch.arange(E, device=w.device) * V).view(E, *([1] * (tokens.dim() - 1)))
    return F.embedding(tokens + offset, w.reshape(E * V, D))  # one table of E * V rows


def _head(emb, params, buffers, prefix: str, h: torch.Tensor) -> torch.Tensor:
    if emb.frozen:
        return h @ buffers[prefix + "table"].t()
    return _bmm_linear(h, params[prefix + "head.weight"])


class _LSTMScan(torch.autograd.Function):
    """E independent single-layer LSTM recurrences at once, with a hand-written backward.

    xg (E, T, B, 4H): the input projections plus both biases, gates reordered to
    (i, f, o, g) so one sigmoid covers three of them; w (E, H, 4H): W_hh^T in the same
    order.  nn.LSTM's equations: c_t = f c_t-1 + i g, h_t = o tanh(c_t), h_0 = c_0 = 0.
    Returns h_1..h_T (E, T, B, H).  Instead of autograd's graph of ~10 small ops per
    time step, the forward saves the gate activations and the backward is one loop
    of batched matmuls plus a single weight-gradient matmul over all time steps.
    Everything stays in the (E, T, B, .) layout of the matmuls around it (no copies).
    """

    @staticmethod
    def forward(ctx, xg, w):
        E, T, B, G = xg.shape
        H = G // 4
        w = w.contiguous()  # bmm copies a transposed operand on every call otherwise
        acts = torch.empty_like(xg)  # activated gates (i, f, o, g)
        hs = xg.new_zeros(E, T + 1, B, H)  # h_0..h_T
        cs = xg.new_zeros(E, T + 1, B, H)  # c_0..c_T
        tc = xg.new_empty(E, T, B, H)  # tanh(c_t)
        for t in range(T):
            a = torch.bmm(hs[:, t], w, out=acts[:, t]).add_(xg[:, t])  # (E, B, 4H) pre-activations
            a[..., :3 * H].sigmoid_()
            a[..., 3 * H:].tanh_()
            torch.mul(a[..., H:2 * H], cs[:, t], out=cs[:, t + 1]).addcmul_(a[..., :H], a[..., 3 * H:])
            torch.tanh(cs[:, t + 1], out=tc[:, t])
            torch.mul(a[..., 2 * H:3 * H], tc[:, t], out=hs[:, t + 1])
        ctx.save_for_backward(w, acts, hs, cs, tc)
        return hs[:, 1:]

    @staticmethod
    def backward(ctx, dh_out):
        w, acts, hs, cs, tc = ctx.saved_tensors
        E, T, B, G = acts.shape
        H = G // 4
        dgates = torch.empty_like(acts)  # gradients w.r.t. the pre-activations
        wt = w.transpose(1, 2).contiguous()  # (E, 4H, H)
        dh = dh_out.new_zeros(E, B, H)  # dL/dh_t from step t+1
        dc = dh_out.new_zeros(E, B, H)  # dL/dc_t from step t+1
        tmp = dh_out.new_empty(E, B, H)
        for t in reversed(range(T)):
            dh.add_(dh_out[:, t])
            a, d = acts[:, t], dgates[:, t]
            i, f, o, g = a[..., :H], a[..., H:2 * H], a[..., 2 * H:3 * H], a[..., 3 * H:]
            torch.mul(dh, tc[:, t], out=d[..., 2 * H:3 * H])  # dL/do
            torch.mul(tc[:, t], tc[:, t], out=tmp).neg_().add_(1).mul_(o).mul_(dh)  # dh o (1 - tanh(c)^2)
            dc.add_(tmp)
            torch.mul(dc, g, out=d[..., :H])  # dL/di
            torch.mul(dc, cs[:, t], out=d[..., H:2 * H])  # dL/df
            torch.mul(dc, i, out=d[..., 3 * H:])  # dL/dg
            dc.mul_(f)
            s = a[..., :3 * H]
            d[..., :3 * H].mul_(s - s * s)  # sigmoid' = s (1 - s)
            d[..., 3 * H:].mul_(1 - g * g)  # tanh' = 1 - g^2
            torch.bmm(d, wt, out=dh)  # dL/dh_t-1 through the recurrence
        # dW = sum_t h_t-1^T dgates_t: one matmul over all time steps
        dw = torch.bmm(hs[:, :-1].reshape(E, T * B, H).transpose(1, 2), dgates.view(E, T * B, G))
        return dgates, dw


def _lstm_perm(H: int, device) -> torch.Tensor:
    """nn.LSTM's gate order (i, f, g, o) -> (i, f, o, g)."""
    r = torch.arange(H, device=device)
    return torch.cat([r, r + H, r + 3 * H, r + 2 * H])


def forward_lstm(model, params, buffers, tokens: torch.Tensor, E: int) -> torch.Tensor:
    """Batched LSTMModel forward: embedding -> LSTM layers (``_LSTMScan``) -> projection -> head."""
    if tokens.dim() == 2:
        tokens = tokens.expand(E, *tokens.shape)
    x = _embed(model.emb, params, buffers, "emb.", tokens.transpose(1, 2), E)  # (E, T, B, D), time-major per member
    perm = _lstm_perm(model.hidden, x.device)
    for layer in range(model.config.n_layers):
        w_ih = params[f"lstm.weight_ih_l{layer}"][:, perm]  # (E, 4H, in)
        w_hh = params[f"lstm.weight_hh_l{layer}"][:, perm]  # (E, 4H, H)
        bias = (params[f"lstm.bias_ih_l{layer}"] + params[f"lstm.bias_hh_l{layer}"])[:, perm]  # (E, 4H)
        x = _LSTMScan.apply(_bmm_linear(x, w_ih, bias), w_hh.transpose(1, 2))  # (E, T, B, H)
    if model.out is not None:
        x = _bmm_linear(x, params["out.weight"], params["out.bias"])
    return _head(model.emb, params, buffers, "emb.", x).transpose(1, 2)  # (E, B, T, V)


def _member_view(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A per-member vector v (E, D) shaped to broadcast against x (E, ..., D)."""
    return v.view(v.shape[0], *([1] * (x.dim() - 2)), v.shape[-1])


def _norm(params, prefix: str, x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """The Transformer's LayerNorm (gpt2) or RMSNorm (llama) ``norm``, with per-member gains."""
    from seqgap.models.transformer import rms_norm

    w = _member_view(params[prefix + "weight"], x)
    if isinstance(norm, torch.nn.LayerNorm):
        return torch.addcmul(_member_view(params[prefix + "bias"], x), F.layer_norm(x, x.shape[-1:], eps=norm.eps), w)
    return rms_norm(x, w, norm.eps)


def forward_transformer(model, params, buffers, tokens: torch.Tensor, E: int) -> torch.Tensor:
    """Batched Transformer forward (both flavours): the members' batches are one big batch
    for every elementwise op and for attention, and one ``bmm`` per linear layer.

    vmap gets the same result but pays a batching rule per op and must use the slow math
    attention kernel; here attention is a single flash SDPA call over (E * B) sequences.
    """
    c = model.config
    if tokens.dim() == 2:
        tokens = tokens.expand(E, *tokens.shape)
    _, B, T = tokens.shape
    if T > model.max_len:
        raise SeqgapError(f"sequence of length {T} is longer than the model's max_len={model.max_len}")
    H, D = c.n_heads, c.d_model
    x = _embed(model.emb, params, buffers, "emb.", tokens, E)  # (E, B, T, D)
    if model.pos is not None:
        x = x + params["pos"][:, None, :T]
    for i, block in enumerate(model.blocks):
        pre = f"blocks.{i}."
        h = _norm(params, pre + "norm1.", x, block.norm1)
        qkv = _bmm_linear(h, params[pre + "attn.qkv.weight"], params.get(pre + "attn.qkv.bias"))
        # members x batch as one batch of sequences; the module's own attention (RoPE table shared)
        y = block.attn.attend(qkv.view(E * B, T, 3, H, D // H)).view(E, B, T, D)
        x = x + _bmm_linear(y, params[pre + "attn.proj.weight"], params.get(pre + "attn.proj.bias"))
        h = _norm(params, pre + "norm2.", x, block.norm2)
        if block.mlp.swiglu:
            u = F.silu(_bmm_linear(h, params[pre + "mlp.gate.weight"])) * _bmm_linear(h, params[pre + "mlp.up.weight"])
        else:
            u = F.gelu(_bmm_linear(h, params[pre + "mlp.up.weight"], params[pre + "mlp.up.bias"]), approximate="tanh")
        x = x + _bmm_linear(u, params[pre + "mlp.down.weight"], params.get(pre + "mlp.down.bias"))
    return _head(model.emb, params, buffers, "emb.", _norm(params, "norm.", x, model.norm))  # (E, B, T, V)


def _lstm_supported(model) -> bool:
    lstm = getattr(model, "lstm", None)
    return (isinstance(lstm, torch.nn.LSTM) and lstm.bias and lstm.batch_first and not lstm.bidirectional
            and lstm.proj_size == 0 and (lstm.dropout == 0 or lstm.num_layers == 1))


# Mamba's chunked scan is an old-style autograd.Function, which vmap refuses.  While an
# ensemble runs, the module's ``selective_scan_tm`` is routed through ``_MemberScan``, whose
# vmap rule runs the original scan once per member (it takes one A per call; every other op
# of the layer stays batched, and the scan's own backward is recorded as usual).
_ORIGINAL_SCAN: Callable | None = None


class _MemberScan(torch.autograd.Function):
    @staticmethod
    def forward(u, delta, A, B, C, chunk):  # only reached under vmap (see _vmappable_scan)
        raise RuntimeError("_MemberScan is only used under vmap")

    @staticmethod
    def setup_context(ctx, inputs, output):
        pass

    @staticmethod
    def vmap(info, in_dims, u, delta, A, B, C, chunk):
        def member(t, d, e):
            return t if d is None else t.select(d, e)

        ys, hs = [], []
        for e in range(info.batch_size):
            y, h = _ORIGINAL_SCAN(*(member(t, d, e) for t, d in zip((u, delta, A, B, C), in_dims[:5])), chunk=chunk)
            ys.append(y)
            hs.append(h)
        return (torch.stack(ys), torch.stack(hs)), (0, 0)


@contextmanager
def _vmappable_scan():
    """Temporarily make ``seqgap.models.mamba.selective_scan_tm`` usable under vmap."""
    global _ORIGINAL_SCAN
    try:
        import seqgap.models.mamba as mamba
    except ImportError:  # pragma: no cover
        yield
        return
    original = mamba.selective_scan_tm
    if _ORIGINAL_SCAN is not None:  # already patched (nested call)
        yield
        return

    def scan(u, delta, A, B, C, h0=None, chunk: int = 16):
        if h0 is None and torch._C._are_functorch_transforms_active():
            return _MemberScan.apply(u, delta, A, B, C, chunk)
        return original(u, delta, A, B, C, h0, chunk)

    _ORIGINAL_SCAN, mamba.selective_scan_tm = original, scan
    try:
        yield
    finally:
        _ORIGINAL_SCAN, mamba.selective_scan_tm = None, original


FORWARDS = {"vmap": forward_vmap, "loop": forward_loop, "lstm": forward_lstm, "transformer": forward_transformer}


def pick_forward(model, params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 probe: bool = True) -> str:
    """The fastest ensemble forward that handles ``model``: a hand-written path if there is one,
    else vmap if it traces the model (probed on a tiny input; ``probe=False``: assume it does)."""
    from seqgap.models.lstm import LSTMModel
    from seqgap.models.transformer import Transformer

    if type(model) is LSTMModel and _lstm_supported(model):
        return "lstm"
    if type(model) is Transformer:
        return "transformer"
    if not probe:
        return "vmap"
    E = next(iter(params.values())).shape[0]
    probe = torch.zeros(E, 1, 2, dtype=torch.long, device=next(iter(params.values())).device)
    try:
        with torch.no_grad():
            forward_vmap(model, params, buffers, probe, E)
        return "vmap"
    except Exception:  # an op or module vmap cannot batch (e.g. nn.LSTM inside a Hybrid)
        return "loop"


def default_strategy(batched: str, device: str) -> str:
    """All members in one batched forward/backward, or one member's at a time?

    A fixed rule, not a timing, so that the same configs always train the same way (the two
    differ by floating-point rounding, which can flip a near-threshold N* search).  Measured
    on a 2-core CPU (docs/performance.md), 15 tiny d64 members at batch 64: on one thread
    the per-member loop is as fast or faster (Transformer 13.0 vs 13.2 ms per member
    forward+backward, LSTM 48 vs 53 ms per ensemble step; E members' activations leave the
    L2 cache and the op overhead saved is small), on two threads the batched step is faster
    (8.7 vs 11.2 ms: a single member's small ops do not use the second core).  Accelerators
    always batch.
    """
    if batched == "loop":
        return "loop"
    on_cpu = str(device).split(":")[0] == "cpu"
    return batched if not on_cpu or torch.get_num_threads() > 1 else "loop"


# ---- losses and metrics -----------------------------------------------------------------


def member_losses(logits: torch.Tensor, targets: torch.Tensor, loss_mask: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over each member's trained positions: logits (E, B, T, V) -> (E,).

    ``trainer.masked_loss`` per member.  Untrained positions get ignore_index instead of
    being gathered out: no index/scatter pair around the largest activation."""
    E, V = logits.shape[0], logits.shape[-1]
    if not logits.is_contiguous() and logits.transpose(1, 2).is_contiguous():  # time-major models
        logits, targets, loss_mask = (t.transpose(1, 2) for t in (logits, targets, loss_mask))
    tgt = targets.masked_fill(~loss_mask, -100)
    ce = F.cross_entropy(logits.reshape(-1, V), tgt.reshape(-1), ignore_index=-100, reduction="none")
    counts = loss_mask.reshape(E, -1).sum(1).clamp_(min=1)
    return ce.view(E, -1).sum(1) / counts


@torch.no_grad()
def evaluate_members(forward: Callable[[torch.Tensor], torch.Tensor], batches: Sequence[Batch], E: int,
                     device: str) -> list[dict[str, float]]:
    """``trainer.evaluate_batches`` for E members at once; ``forward(tokens (B, T))`` -> (E, B, T, V)."""
    loss_sum = torch.zeros(E, dtype=torch.float64)
    loss_n = tok_n = seq_n = 0
    tok_right = torch.zeros(E, dtype=torch.long)
    seq_right = torch.zeros(E, dtype=torch.long)
    fin_right = torch.zeros(E, dtype=torch.long)
    for batch in batches:
        batch = batch.to(device)
        logits = forward(batch.inputs)  # (E, B, T, V)
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
        T = batch.mask.shape[1]
        last = T - 1 - torch.argmax(batch.mask.flip(1).int(), dim=1)  # (B,)
        fin_right += right.gather(2, last.view(1, -1, 1).expand(E, -1, 1)).flatten(1).sum(1).cpu()
    return [{
        "val_loss": float(loss_sum[e]) / max(loss_n, 1),
        "val_token_acc": int(tok_right[e]) / max(tok_n, 1),
        "val_seq_acc": int(seq_right[e]) / max(seq_n, 1),
        "val_final_acc": int(fin_right[e]) / max(seq_n, 1),
    } for e in range(E)]


# ---- the training loop ------------------------------------------------------------------


@dataclass
class _Member:
    """One run's bookkeeping: the same variables as ``trainer.train``'s loop."""

    index: int
    config: RunConfig
    stream: _MemberStream
    history: list[dict[str, Any]] = field(default_factory=list)
    best_loss: float = float("inf")
    best_step: int = 0
    best_record: dict[str, Any] | None = None
    success: bool = False
    stop_reason: str = "budget"
    tokens: int = 0
    seconds: float = 0.0  # amortized share of the ensemble's wall time
    train_loss_acc: float = 0.0
    train_loss_n: int = 0
    evals_since_improve: int = 0
    last_improve_value: float = float("inf")
    step: int = 0
    done: bool = False


def _eval_chunk(E: int, T: int, V: int, d: int) -> int:
    """Validation problems per forward: keep E * chunk * T * (V + T + 8 d) floats around 2^25."""
    return int(max(1, min(512, 2 ** 25 // max(1, E * T * (V + T + 8 * d)))))


def train_ensemble(configs: Sequence[RunConfig], progress: EnsembleProgressFn | None = None,
                   keep_model: bool = True, stop_on_success: bool = False,
                   forward: str | None = None) -> list[RunResult | None]:
    """Train runs that differ only in ``train.lr`` / ``train.seed`` as one vectorized model.

    Returns one :class:`RunResult` per config, in order, equal (up to floating-point
    rounding) to ``trainer.train(config)``.  ``progress(i, step, record)`` is called after
    each evaluation of member i.  With ``stop_on_success`` (the N* search's short
    circuit) training ends at the first evaluation where some member succeeds: members
    that succeeded finish normally, the others are abandoned and returned as None.
    ``forward`` forces a strategy: "vmap" / "lstm" (all members in one batched forward
    and backward), "transformer" (the hand-written batched Transformer), "loop" (one member
    at a time, everything else still batched); default: :func:`default_strategy` picks
    between the batched path that handles the model (:func:`pick_forward`) and the loop.
    """
    configs = list(configs)
    check_configs(configs)
    cfg0 = configs[0]
    tc = cfg0.train
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = tc.device
    task = build_task(cfg0)
    from seqgap.tasks.dataset import build_splits

    splits = build_splits(task, cfg0.max_length, cfg0.length_dist, cfg0.n_train, cfg0.n_val, seed=cfg0.data_seed)
    lengths = lengths_for(task, cfg0)
    members = [_Member(i, c, _MemberStream(task, c, splits.train, lengths)) for i, c in enumerate(configs)]
    models = []
    for c in configs:  # member i starts exactly where trainer.train's model would
        torch.manual_seed(c.train.seed)
        models.append(build_model_for(task, c).to(device))
    template = models[0]
    stack = StackedParams(models)
    del models
    opt = StackedAdam(stack, weight_decay=tc.weight_decay, decoupled=tc.optimizer == "adamw")
    if tc.optimizer not in ("adam", "adamw"):
        raise SeqgapError(f"unknown optimizer {tc.optimizer!r}; use adam or adamw")
    if forward is not None and forward not in FORWARDS:
        raise SeqgapError(f"unknown ensemble forward {forward!r}; use one of {', '.join(FORWARDS)}")
    if forward in ("lstm", "transformer") and forward != pick_forward(template, {}, {}, probe=False):
        raise SeqgapError(f"ensemble forward {forward!r} does not fit model {cfg0.model!r} ({type(template).__name__})")
    batched = forward if forward in ("vmap", "lstm", "transformer") else pick_forward(template, stack.all_params(),
                                                                      stack.shared_buffers)
    fwd = FORWARDS[batched]  # evaluation always runs batched

    def run_forward(params: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        E = next(iter(params.values())).shape[0]
        return fwd(template, params, stack.shared_buffers, tokens, E)

    def batched_step(inputs, targets, loss_mask) -> torch.Tensor:  # all members in one forward/backward
        losses = member_losses(run_forward(stack.all_params(), inputs), targets, loss_mask)
        stack.backward(losses.sum())
        return losses.detach()

    def member_step(inputs, targets, loss_mask) -> torch.Tensor:  # one member at a time (cache-sized)
        from torch.func import functional_call

        losses = []
        for e in range(inputs.shape[0]):
            params, leaves = stack.member_params(e)
            logits = functional_call(template, (params, stack.shared_buffers), (inputs[e],))
            loss = member_losses(logits[None], targets[e:e + 1], loss_mask[e:e + 1])[0]
            grads = torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True)
            torch.cat([g.reshape(-1) for g in grads], out=stack.grad[e])
            losses.append(loss.detach())
        return torch.stack(losses)

    V = len(task.vocab)
    if forward is None:
        forward = default_strategy(batched, device)
    train_step = member_step if forward == "loop" else batched_step
    train_ensemble.last_forward = forward  # the strategy in use, for benchmarks and curious users

    d_model = getattr(getattr(template, "config", None), "d_model", 64)
    val_T = max(task.max_tokens(n) for n in lengths)
    chunk = _eval_chunk(len(configs), val_T, V, d_model)
    val_batches = [task.encode_batch(list(c)) for c in _chunks(splits.val, chunk)]

    active = list(members)  # stack row r <-> active[r]
    results: list[RunResult | None] = [None] * len(configs)
    template.train()
    step = 0

    def finish(m: _Member, row: int) -> None:
        """Finalize member m (stack row ``row``) into its RunResult (``trainer.train``'s epilogue)."""
        m.done = True
        model = None
        if m.best_record is None:  # diverged before the first evaluation
            params = stack.subset([row])
            m.best_record = {"step": m.step, **evaluate_members(lambda x: run_forward(params, x), val_batches, 1,
                                                                 device)[0]}
            m.history.append(m.best_record)
            m.best_loss, m.best_step = m.best_record["val_loss"], m.step
        if keep_model or m.config.eval_lengths:
            model = copy.deepcopy(template)
            state = stack.member_state(row)
            model.load_state_dict({k: state[k] for k in model.state_dict()})
        final = m.history[-1]
        summary = {
            "success": m.success,
            "stop_reason": m.stop_reason,
            "best_val_loss": m.best_loss,
            "best_step": m.best_step,
            "steps": m.step,
            "seconds": m.seconds,
            "tokens_per_s": m.tokens / max(m.seconds, 1e-9),
            "val_loss": final["val_loss"],
            "val_token_acc": final["val_token_acc"],
            "val_seq_acc": final["val_seq_acc"],
            "val_final_acc": final["val_final_acc"],
            "best_val_seq_acc": max(h["val_seq_acc"] for h in m.history),
            "n_params": template.num_params(),
            "n_trainable_params": template.num_params(trainable_only=True),
            "state_floats": template.state_size().floats,
            "state_per_token": template.state_size().per_token,
            "n_train": len(splits.train) if m.config.n_train else 0,
            "n_val": len(splits.val),
            "max_positions": positions_needed(task, m.config),
            "chance_accuracy": task.chance_accuracy,
            "device": device,
        }
        if m.config.eval_lengths:
            summary["eval_lengths"] = eval_at_lengths(model, task, m.config.eval_lengths, m.config.n_eval,
                                                      m.config.data_seed, device)
        results[m.index] = RunResult(m.config.hash(), m.config.to_dict(), summary, m.history, cached=False,
                                     model=model if keep_model else None)

    def drop(rows_to_drop: set[int]) -> None:
        nonlocal active
        keep = [r for r in range(len(active)) if r not in rows_to_drop]
        if len(keep) < len(active):
            active = [active[r] for r in keep]
            if keep:
                stack.keep(keep)
                opt.keep(keep)

    for step in range(1, tc.steps + 1):
        if not active:
            break
        t0 = time.perf_counter()
        E = len(active)

        def charge() -> None:  # split the wall time since t0 evenly over the active members
            nonlocal t0
            now = time.perf_counter()
            for m in active:
                m.seconds += (now - t0) / E
            t0 = now

        mult = lr_at(step - 1, tc)
        lrs = [m.config.train.lr * mult for m in active]
        problems = [p for m in active for p in m.stream.next_problems(tc.batch_size)]
        batch = task.encode_batch(problems).to(device)
        B, T = tc.batch_size, batch.inputs.shape[1]
        as_members = lambda t: t.view(E, B, T)  # noqa: E731
        losses = train_step(as_members(batch.inputs), as_members(batch.targets), as_members(batch.loss_mask))
        if tc.grad_clip:
            clip_rows_(stack.grad, tc.grad_clip)
        opt.step(stack.flat, stack.grad, lrs)
        loss_values = losses.tolist()
        stopping: set[int] = set()
        for r, (m, lv) in enumerate(zip(active, loss_values)):
            m.step = step
            m.tokens += B * T
            m.train_loss_acc += lv
            m.train_loss_n += 1
            if not math.isfinite(lv):
                m.stop_reason = "diverged"
                stopping.add(r)

        if step % tc.eval_every == 0 or step == tc.steps:
            rows = [r for r in range(E) if r not in stopping]  # diverged members are not evaluated
            metrics = []
            if rows:
                params = stack.subset(rows)
                template.eval()
                metrics = evaluate_members(lambda x: run_forward(params, x), val_batches, len(rows), device)
                template.train()
            charge()
            for r, met in zip(rows, metrics):  # trainer.train's evaluation epilogue, per member
                m = active[r]
                rec = {"step": step, "train_loss": m.train_loss_acc / m.train_loss_n, "seconds": m.seconds, **met}
                m.train_loss_acc, m.train_loss_n = 0.0, 0
                m.history.append(rec)
                if rec["val_loss"] < m.best_loss:
                    m.best_loss, m.best_step, m.best_record = rec["val_loss"], step, rec
                if progress:
                    progress(m.index, step, rec)
                if rec["val_loss"] < tc.success_loss:
                    m.success = True
                    if tc.early_stop:
                        m.stop_reason = "success"
                        stopping.add(r)
                        continue
                if m.best_loss < m.last_improve_value * (1 - tc.patience_rel):
                    m.last_improve_value, m.evals_since_improve = m.best_loss, 0
                else:
                    m.evals_since_improve += 1
                if (tc.patience_evals and m.evals_since_improve >= tc.patience_evals
                        and step >= tc.patience_min_frac * tc.steps and not m.success):
                    m.stop_reason = "plateau"
                    stopping.add(r)
        charge()
        if step == tc.steps:
            stopping = set(range(E))
        elif stop_on_success and any(m.success for m in active):
            # N* short circuit: this grid point has succeeded.  Members that succeeded run to their
            # normal end (so their results equal trainer.run's); the unfinished others are abandoned.
            for r, m in enumerate(active):
                if not m.success and r not in stopping:
                    m.done = True
                    stopping.add(r)
        for r in sorted(stopping):
            if not active[r].done:
                finish(active[r], r)
        drop(stopping)
    return results


def run_ensemble(configs: Sequence[RunConfig], store=None, progress: EnsembleProgressFn | None = None,
                 force: bool = False, keep_model: bool = False, stop_on_success: bool = False) -> list[RunResult | None]:
    """``trainer.run`` for a whole grid point: reuse stored members, train the missing ones together.

    Each new result is stored under its own config hash, so ensemble and one-by-one
    training fill the same store interchangeably.  Duplicate configs train once.  With
    ``stop_on_success``: if a stored member already succeeded nothing is trained, and
    abandoned members (see :func:`train_ensemble`) are returned as None and not stored.
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
        def member_progress(i: int, step: int, rec: dict[str, Any]) -> None:
            if progress:
                progress(ids.index(todo[i].hash()), step, rec)

        trained = train_ensemble(todo, progress=member_progress if progress else None, keep_model=keep_model,
                                 stop_on_success=stop_on_success)
        for c, res in zip(todo, trained):
            results[c.hash()] = res
            if res is not None and store is not None:
                store.put(res.id, res.config, res.summary, res.history)
    return [results.get(rid) for rid in ids]
