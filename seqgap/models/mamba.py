"""Mamba: a selective state-space model (Gu & Dao 2023), in pure PyTorch.

One layer (a "mixer", pre-norm residual: ``x + mixer(rmsnorm(x))``)::

    x, z  = in_proj(u)                      # (B, T, Di) each, Di = expand * D
    x     = silu(causal_depthwise_conv(x))  # kernel d_conv
    delta = softplus(dt_proj(x_proj_dt(x))) # (B, T, Di), low-rank (dt_rank) projection
    B, C  = x_proj_B(x), x_proj_C(x)        # (B, T, N) each, N = d_state
    h_t   = exp(delta_t A) * h_t-1 + delta_t B_t x_t     # (B, Di, N), A = -exp(A_log) diagonal
    y_t   = C_t . h_t + D * x_t
    out   = out_proj(y * silu(z))

The recurrence (the *selective scan*) is the only sequential part.  Three
implementations, which the tests hold equal:

* :func:`selective_scan_ref` -- the naive loop over time, differentiated by
  autograd.  The oracle.
* :func:`selective_scan` -- training path.  A custom autograd function with a
  hand-written backward, built for CPUs: time is cut into chunks of ``chunk``
  steps; within a chunk every elementwise op is batched over the chunk and the
  recurrence is ``chunk`` in-place fused multiply-adds, so the working set
  (``chunk x B x Di x N`` floats) stays in cache.  Only the state at chunk
  boundaries is saved; the backward recomputes each chunk's states (as the
  CUDA kernel of the paper recomputes in SRAM) and runs the adjoint recurrence
  backwards.  The (B, T, Di, N) tensor of all states is never stored, so the
  memory is O(B T Di + (T / chunk) B Di N) per layer.
* :meth:`MambaMixer.step` -- generation: O(1) work and state per token (conv
  buffer of the last d_conv - 1 inputs + the SSM state h).

Why not the SSD / "Mamba-2" quadratic-within-chunk form?  With Mamba-1's
per-channel diagonal A, the within-chunk decay matrix has chunk^2 x Di x N
entries per chunk, i.e. ``chunk`` times more work and memory than the
recurrence itself.  Measured on 2 CPU cores (B 64, T 128, Di 128, N 16): the
128 in-place recurrence steps cost ~6 ms per layer; the rest is the ~20
elementwise passes (exp, outer products, reductions) that every form needs, so
what matters is keeping them in cache (chunk 4-8 beat 16 and 32; whole-sequence
tensors were 2x slower still).

Speed against the pure-PyTorch ``mambapy`` package (tokens/s and peak memory,
same configuration): docs/performance.md.  With 2 threads and OpenMP's default
spin-waiting, an oversubscribed machine collapses this (and any many-small-ops)
training: ``OMP_WAIT_POLICY=PASSIVE`` in the environment, or 1 thread, avoids that.

Initialisation follows the reference implementation (state-spaces/mamba,
``mamba_ssm/models/mixer_seq_simple.py: _init_weights``, and ``Mamba.__init__``
in ``mamba_ssm/modules/mamba_simple.py``): S4D-real A, log-uniform step sizes
through the ``dt_proj`` bias, and each layer's ``out_proj`` divided by
sqrt(n_layers) (``rescale_prenorm_residual``, one residual per layer).  ``A_log``
and ``D`` get no weight decay (the reference's ``_no_weight_decay``).

Named sizes (parameters without embeddings/head; add ``2 * vocab * d_model``
for untied learned embeddings).  Depth stays at W's 16 layers; 1M and 2M grow
the width (like the transformer's sizes):

=====  =====================  ========
size   shape                  params
=====  =====================  ========
tiny   d64, 2 layers           65k
small  d64, 4 layers           131k
0.5M   d64, 16 layers          523k  (W: "Mamba d64 x 16 layers = 0.52M")
1M     d92, 16 layers          1.01M
2M     d132, 16 layers         1.98M
=====  =====================  ========

State (W's "memory"): per layer ``Di * N`` SSM floats + ``Di * (d_conv - 1)``
conv-buffer floats.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqgap.models.base import SequenceModel, StateSize
from seqgap.models.embeddings import TokenEmbedding
from seqgap.models.transformer import RMSNorm


# --------------------------------------------------------------------------- selective scan


def selective_scan_ref(u, delta, A, B, C, h0=None):
    """Naive selective scan, one time step at a time (the oracle for the tests).

    u, delta: (Bt, T, Di); A: (Di, N), or (Bt, Di, N) one per sequence; B, C: (Bt, T, N);
    h0: (Bt, Di, N) or None.  Returns y (Bt, T, Di) with y_t = C_t . h_t, and the final state h_T (Bt, Di, N).
    """
    Bt, T, Di = u.shape
    h = u.new_zeros(Bt, Di, A.shape[-1]) if h0 is None else h0
    ys = []
    for t in range(T):
        a = torch.exp(delta[:, t, :, None] * A)  # (Bt, Di, N)
        h = a * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]  # (Bt, Di, N)
        ys.append((h * C[:, t, None, :]).sum(-1))  # (Bt, Di)
    return torch.stack(ys, dim=1), h


def _chunk_states(delta, du, A, B, h0, a, hs):
    """States of one chunk, written into the work buffers ``a`` and ``hs``.

    delta, du: (K, Bt, Di) (du = delta * u); A: (Di, N) or (Bt, Di, N); B: (K, Bt, N);
    h0: (Bt, Di, N), the state before the chunk.  Fills a[k] = exp(delta_k A) and hs[k] = h_k, both (K, Bt, Di, N).
    """
    torch.mul(delta[..., None], A, out=a)  # (K, Bt, Di, N)
    a.exp_()
    torch.mul(du[..., None], B[:, :, None, :], out=hs)  # delta_k B_k x_k
    hs[0].addcmul_(a[0], h0)
    for k in range(1, a.shape[0]):
        hs[k].addcmul_(a[k], hs[k - 1])  # h_k = a_k * h_k-1 + delta_k B_k x_k, in place


class _SelectiveScan(torch.autograd.Function):
    """Chunked selective scan, time-major layout; see the module docstring.

    In the ``setup_context`` style with a ``vmap`` rule, so that ``torch.func.vmap`` traces it
    (an ensemble of stacked members): the rule folds the vmapped dimension into the batch and
    runs one scan for all members, each member's A repeated over its sequences -- which is why
    A may also be (Bt, Di, N), one per sequence.  The chunk checkpoints are a third output
    (not differentiable) because that style saves for the backward only inputs and outputs."""

    @staticmethod
    @torch.no_grad()  # as under plain autograd; a functorch grad transform calls it with grad mode on
    def forward(u, delta, A, B, C, h0, chunk: int):
        # u, delta: (T, Bt, Di); A: (Di, N) or (Bt, Di, N); B, C: (T, Bt, N); h0: (Bt, Di, N)
        T, Bt, Di = u.shape
        N = A.shape[-1]
        K = min(chunk, T)
        n_chunks = -(-T // K)
        du = delta * u  # (T, Bt, Di)
        y = u.new_empty(T, Bt, Di)
        ckpt = u.new_empty(n_chunks, Bt, Di, N)  # state before each chunk: all the backward needs
        a, hs = u.new_empty(K, Bt, Di, N), u.new_empty(K, Bt, Di, N)  # work buffers, reused
        ckpt[0].copy_(h0)
        for c in range(n_chunks):
            t0, t1 = c * K, min(T, (c + 1) * K)
            k = t1 - t0
            _chunk_states(delta[t0:t1], du[t0:t1], A, B[t0:t1], ckpt[c], a[:k], hs[:k])
            # y_t = C_t . h_t, one batched matmul for the chunk: (k Bt, Di, N) @ (k Bt, N, 1)
            torch.bmm(hs[:k].view(k * Bt, Di, N), C[t0:t1].reshape(k * Bt, N, 1), out=y[t0:t1].view(k * Bt, Di, 1))
            if c + 1 < n_chunks:
                ckpt[c + 1].copy_(hs[k - 1])
        hT = hs[T - (n_chunks - 1) * K - 1].clone()
        return y, hT, ckpt

    @staticmethod
    def setup_context(ctx, inputs, output):
        u, delta, A, B, C, h0, chunk = inputs
        ckpt = output[2]
        ctx.mark_non_differentiable(ckpt)
        ctx.save_for_backward(u, delta, A, B, C, ckpt)
        ctx.chunk = min(chunk, u.shape[0])

    @staticmethod
    def vmap(info, in_dims, u, delta, A, B, C, h0, chunk):
        E = info.batch_size

        def first(t, dim):  # the vmapped dimension first: (E, ...)
            return t.expand(E, *t.shape) if dim is None else t.movedim(dim, 0)

        def fold(t, dim):  # time-major (E, T, Bt, .) -> (T, E * Bt, .): members become sequences
            t = first(t, dim)
            return t.transpose(0, 1).reshape(t.shape[1], -1, t.shape[-1])

        u_, delta_ = fold(u, in_dims[0]), fold(delta, in_dims[1])  # (T, E Bt, Di)
        B_, C_ = fold(B, in_dims[3]), fold(C, in_dims[4])  # (T, E Bt, N)
        Bt = u_.shape[1] // E
        h0_ = first(h0, in_dims[5])
        h0_ = h0_.reshape(E * Bt, *h0_.shape[-2:])  # (E Bt, Di, N)
        if in_dims[2] is None and A.dim() == 2:
            A_ = A  # one A for everything
        else:  # one A per (member, sequence): (E Bt, Di, N)
            A_ = first(A, in_dims[2])
            A_ = (A_[:, None] if A_.dim() == 3 else A_).expand(E, Bt, *A_.shape[-2:]).reshape(E * Bt, *A_.shape[-2:])
        y, hT, ckpt = _SelectiveScan.apply(u_, delta_, A_, B_, C_, h0_, chunk)
        T, Di = y.shape[0], y.shape[-1]
        # back to one slice per member: y (T, E, Bt, Di), hT (E, Bt, Di, N), ckpt (chunks, E, Bt, Di, N)
        outputs = y.view(T, E, Bt, Di), hT.view(E, Bt, *hT.shape[1:]), ckpt.view(ckpt.shape[0], E, Bt, *ckpt.shape[2:])
        return outputs, (1, 0, 1)

    @staticmethod
    @torch.no_grad()  # first-order only (out= buffers); a functorch grad transform runs it with grad mode on
    def backward(ctx, dy, dhT, _dckpt):
        u, delta, A, B, C, ckpt = ctx.saved_tensors
        K = ctx.chunk
        T, Bt, Di = u.shape
        N = A.shape[-1]
        n_chunks = ckpt.shape[0]
        dy = dy.contiguous()
        du = delta * u
        d_du = u.new_empty(T, Bt, Di)  # dL/d(delta * u)
        d_logA = u.new_empty(T, Bt, Di)  # dL/ddelta through the decay exp(delta A)
        dB, dC = u.new_empty(T, Bt, N), u.new_empty(T, Bt, N)
        dA = A.new_zeros(A.shape)
        sum_dims = (0, 1) if A.dim() == 2 else 0  # A shared by the batch, or one per sequence
        a, hs, G, tmp = (u.new_empty(K, Bt, Di, N) for _ in range(4))
        g = dhT.clone() if dhT is not None else u.new_zeros(Bt, Di, N)  # dL/dh at the chunk's end, from later steps
        for c in reversed(range(n_chunks)):
            t0, t1 = c * K, min(T, (c + 1) * K)
            k = t1 - t0
            a_, hs_, G_, tmp_ = a[:k], hs[:k], G[:k], tmp[:k]
            _chunk_states(delta[t0:t1], du[t0:t1], A, B[t0:t1], ckpt[c], a_, hs_)  # recompute
            dy_c = dy[t0:t1]  # (k, Bt, Di)
            # y_t = C_t . h_t  =>  dC_t = dy_t^T h_t  (row vector times matrix: 2x faster than h^T dy)
            torch.bmm(dy_c.reshape(k * Bt, 1, Di), hs_.view(k * Bt, Di, N), out=dC[t0:t1].view(k * Bt, 1, N))
            # adjoint recurrence, backwards: G_k = dL/dh_k = dy_k C_k + a_k+1 G_k+1
            torch.mul(dy_c[..., None], C[t0:t1, :, None, :], out=G_)
            G_[k - 1].add_(g)
            for j in range(k - 1, 0, -1):
                G_[j - 1].addcmul_(a_[j], G_[j])
            g = a_[0] * G_[0]  # flows into the previous chunk's last state
            # h_k = ... + (delta u)_k B_k  =>  d(delta u)_k = G_k B_k,  dB_k = (delta u)_k^T G_k
            torch.bmm(G_.view(k * Bt, Di, N), B[t0:t1].reshape(k * Bt, N, 1), out=d_du[t0:t1].view(k * Bt, Di, 1))
            torch.bmm(du[t0:t1].reshape(k * Bt, 1, Di), G_.view(k * Bt, Di, N), out=dB[t0:t1].view(k * Bt, 1, N))
            # h_k = a_k h_k-1 + ...  with a_k = exp(delta_k A):  q_k = dL/d(delta_k A) = G_k a_k h_k-1
            q = a_.mul_(G_)
            q[0].mul_(ckpt[c])
            if k > 1:
                q[1:].mul_(hs_[:-1])
            torch.mul(q, A, out=tmp_)
            torch.sum(tmp_, -1, out=d_logA[t0:t1])  # dL/ddelta_k = sum_n q_k A
            torch.mul(q, delta[t0:t1, :, :, None], out=tmp_)
            dA += tmp_.sum(sum_dims)  # dL/dA = sum_{t (, b)} q delta
        ddelta = d_logA.addcmul_(d_du, u)
        dU = d_du.mul_(delta)
        return dU, ddelta, dA, dB, dC, g, None


def selective_scan_tm(u, delta, A, B, C, h0=None, chunk: int = 8):
    """Fast selective scan on time-major tensors: u, delta (T, Bt, Di); B, C (T, Bt, N);
    A (Di, N) or (Bt, Di, N); h0 (Bt, Di, N) or None (zeros).  Returns y (T, Bt, Di) and h_T (Bt, Di, N)."""
    if h0 is None:
        h0 = u.new_zeros(u.shape[1], u.shape[2], A.shape[-1])
    if u.shape[0] == 0:  # an empty sequence: nothing to scan
        return u.new_zeros(u.shape), h0
    y, hT, _ = _SelectiveScan.apply(u.contiguous(), delta.contiguous(), A, B.contiguous(), C.contiguous(), h0, chunk)
    return y, hT


def selective_scan(u, delta, A, B, C, h0=None, chunk: int = 8):
    """Fast selective scan, same contract (batch-major) as :func:`selective_scan_ref`: returns (y, h_T)."""
    tm = lambda t: t.transpose(0, 1)  # noqa: E731  (Bt, T, .) <-> (T, Bt, .)
    y, hT = selective_scan_tm(tm(u), tm(delta), A, tm(B), tm(C), h0, chunk)
    return tm(y), hT


# --------------------------------------------------------------------------- layers


@dataclass
class MambaConfig:
    d_model: int = 64
    n_layers: int = 4
    d_state: int = 16  # N
    expand: int = 2  # d_inner = expand * d_model
    d_conv: int = 4
    dt_rank: int | str = "auto"  # "auto": ceil(d_model / 16)
    dt_min: float = 0.001  # initial step sizes are log-uniform in [dt_min, dt_max]
    dt_max: float = 0.1
    chunk: int = 8  # time chunk of the training scan (speed only; 4-8 fastest on a 2-core CPU)
    frozen_embeddings: bool = False


class MambaMixer(nn.Module):
    """The selective SSM block of one layer (without the norm and residual).

    Works time-major, (T, B, .): then the scan needs no transposes and the causal
    depthwise conv is ``d_conv`` shifted multiply-adds over contiguous time slices
    (faster on CPU than a grouped Conv1d and its two transposes).
    """

    NO_WEIGHT_DECAY = ("A_log", "D")  # as the reference's `_no_weight_decay` (see SequenceModel.no_weight_decay)

    def __init__(self, c: MambaConfig):
        super().__init__()
        d_inner = c.expand * c.d_model
        self.d_inner, self.d_state, self.d_conv, self.chunk = d_inner, c.d_state, c.d_conv, c.chunk
        self.dt_rank = math.ceil(c.d_model / 16) if c.dt_rank == "auto" else int(c.dt_rank)
        if self.dt_rank <= 0:
            raise ValueError(f"dt_rank must be positive or 'auto', got {c.dt_rank!r}")
        self.in_proj = nn.Linear(c.d_model, 2 * d_inner, bias=False)
        bound = c.d_conv ** -0.5  # nn.Conv1d's default init for a depthwise kernel
        self.conv_weight = nn.Parameter(torch.empty(d_inner, c.d_conv).uniform_(-bound, bound))  # (Di, d_conv)
        self.conv_bias = nn.Parameter(torch.empty(d_inner).uniform_(-bound, bound))
        self.x_proj = nn.Linear(d_inner, self.dt_rank + 2 * c.d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, d_inner)
        self.out_proj = nn.Linear(d_inner, c.d_model, bias=False)
        # S4D-real initialisation: A_n = -(n + 1) for every channel
        A = torch.arange(1, c.d_state + 1, dtype=torch.float32).repeat(d_inner, 1)  # (Di, N)
        self.A_log = nn.Parameter(torch.log(A))
        self.D = nn.Parameter(torch.ones(d_inner))
        # delta starts log-uniform in [dt_min, dt_max]: the dt_proj bias is softplus^-1 of it
        nn.init.uniform_(self.dt_proj.weight, -self.dt_rank ** -0.5, self.dt_rank ** -0.5)
        dt = torch.exp(torch.rand(d_inner) * (math.log(c.dt_max) - math.log(c.dt_min)) + math.log(c.dt_min))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _ssm_params(self, x: torch.Tensor):  # x (..., Di) -> delta (..., Di), B, C (..., N)
        dt, B, C = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        return F.softplus(self.dt_proj(dt)), B, C

    # forward and step side by side: the same computation, whole sequence vs one token

    def forward(self, u: torch.Tensor, scan: str = "fast", return_state: bool = False):
        # u (T, B, D) -> (T, B, D) [, state after the last token]
        T, K = u.shape[0], self.d_conv
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (T, B, Di) each
        xp = F.pad(x, (0, 0, 0, 0, K - 1, 0))  # (T + K - 1, B, Di): zeros before the start
        x = torch.addcmul(self.conv_bias, xp[:T], self.conv_weight[:, 0])  # causal depthwise conv
        for k in range(1, K):
            x = x.addcmul(xp[k:k + T], self.conv_weight[:, k])
        x = F.silu(x)
        delta, B, C = self._ssm_params(x)  # (T, B, Di), (T, B, N), (T, B, N)
        A = -torch.exp(self.A_log)  # (Di, N)
        if scan == "fast":
            y, h = selective_scan_tm(x, delta, A, B, C, chunk=self.chunk)
        elif scan == "ref":
            bm = lambda t: t.transpose(0, 1)  # noqa: E731
            y, h = selective_scan_ref(bm(x), bm(delta), A, bm(B), bm(C))
            y = bm(y)
        else:
            raise ValueError(f"unknown scan {scan!r}")
        y = y + x * self.D  # (T, B, Di)
        out = self.out_proj(y * F.silu(z))
        if not return_state:
            return out
        conv = xp[T:].permute(1, 2, 0).contiguous()  # last K - 1 inputs, (B, Di, K - 1)
        return out, (conv, h)

    def init_state(self, batch_size: int, device=None):
        dtype, device = self.A_log.dtype, self.A_log.device if device is None else device
        conv = torch.zeros(batch_size, self.d_inner, self.d_conv - 1, device=device, dtype=dtype)  # last d_conv - 1 inputs
        h = torch.zeros(batch_size, self.d_inner, self.d_state, device=device, dtype=dtype)  # SSM state
        return conv, h

    def step(self, u: torch.Tensor, state):  # u (B, D) -> (B, D), state
        conv, h = state
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, Di) each
        window = torch.cat([conv, x[:, :, None]], dim=-1)  # (B, Di, d_conv)
        x = (window * self.conv_weight).sum(-1) + self.conv_bias  # the causal conv's output at this token
        x = F.silu(x)
        delta, B, C = self._ssm_params(x)  # (B, Di), (B, N), (B, N)
        A = -torch.exp(self.A_log)
        h = torch.exp(delta[:, :, None] * A) * h + (delta * x)[:, :, None] * B[:, None, :]  # (B, Di, N)
        y = (h @ C[:, :, None])[..., 0] + x * self.D  # (B, Di)
        return self.out_proj(y * F.silu(z)), (window[:, :, 1:], h)


class MambaLayer(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x))."""

    def __init__(self, c: MambaConfig):
        super().__init__()
        self.norm = RMSNorm(c.d_model)
        self.mixer = MambaMixer(c)

    def forward(self, x, scan: str = "fast", return_state: bool = False):  # (T, B, D)
        if not return_state:
            return x + self.mixer(self.norm(x), scan)
        y, state = self.mixer(self.norm(x), scan, return_state=True)
        return x + y, state

    def step(self, x, state):  # (B, D)
        y, state = self.mixer.step(self.norm(x), state)
        return x + y, state


SIZES = {
    "tiny": dict(d_model=64, n_layers=2),
    "small": dict(d_model=64, n_layers=4),
    "0.5M": dict(d_model=64, n_layers=16),
    "1M": dict(d_model=92, n_layers=16),
    "2M": dict(d_model=132, n_layers=16),
}
HELP = "Mamba selective state-space model (pure PyTorch, chunked CPU scan), W's RNN"


class Mamba(SequenceModel):
    """Mamba language model: embedding -> Mamba layers -> RMSNorm -> head."""

    def __init__(self, config: MambaConfig, vocab_size: int, max_len: int):
        super().__init__()
        c = config
        self.config, self.vocab_size, self.max_len = c, vocab_size, max_len
        self.emb = TokenEmbedding(vocab_size, c.d_model, frozen=c.frozen_embeddings)
        self.layers = nn.ModuleList(MambaLayer(c) for _ in range(c.n_layers))
        self.norm_f = RMSNorm(c.d_model)
        # The reference's rescale_prenorm_residual (mamba_ssm/models/mixer_seq_simple.py, _init_weights,
        # n_residuals_per_layer=1): each layer adds out_proj(...) to the residual stream, so its
        # default (kaiming-uniform) weight is divided by sqrt(n_layers) to keep the stream's variance
        # independent of depth (GPT-2's scheme, one residual branch per layer).
        with torch.no_grad():
            for layer in self.layers:
                layer.mixer.out_proj.weight.div_(math.sqrt(c.n_layers))

    def features(self, x: torch.Tensor, scan: str = "fast") -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        x = x.transpose(0, 1).contiguous()  # time-major inside, see MambaMixer
        for layer in self.layers:
            x = layer(x, scan)
        return self.norm_f(x).transpose(0, 1)

    def features_with_state(self, x: torch.Tensor):  # (B, T, D) -> ((B, T, D), state after the last token)
        x = x.transpose(0, 1).contiguous()
        states = []
        for layer in self.layers:
            x, s = layer(x, return_state=True)
            states.append(s)
        return self.norm_f(x).transpose(0, 1), states

    def init_state(self, batch_size: int, device=None) -> list:
        device = device if device is not None else self.device
        return [layer.mixer.init_state(batch_size, device) for layer in self.layers]  # [(conv, h)] per layer

    def features_step(self, x: torch.Tensor, state: list):  # (B, D) -> ((B, D), state)
        new = []
        for layer, s in zip(self.layers, state):
            x, s = layer.step(x, s)
            new.append(s)
        return self.norm_f(x), new

    def forward(self, tokens: torch.Tensor, scan: str = "fast") -> torch.Tensor:  # (B, T) -> (B, T, V)
        return self.emb.logits(self.features(self.emb(tokens), scan))

    def prefill(self, tokens: torch.Tensor):  # (B, T) -> (logits (B, T, V), state after token T-1)
        y, state = self.features_with_state(self.emb(tokens))
        return self.emb.logits(y), state

    def state_size(self) -> StateSize:
        m = self.layers[0].mixer if len(self.layers) else None
        per_layer = m.d_inner * m.d_state + m.d_inner * (m.d_conv - 1) if m is not None else 0
        return StateSize(per_layer * self.config.n_layers)
