"""Decoder-only Transformer, in two flavours.

* ``gpt2`` (E's model; Radford et al. 2019): learned absolute position
  embeddings (``max_len`` of them), pre-norm LayerNorm blocks, GELU MLP, biases.
* ``llama`` (W's model; Touvron et al. 2023): rotary position embeddings
  (RoPE, Su et al. 2021) inside attention, RMSNorm, SwiGLU MLP (Shazeer 2020),
  no biases.

Both are built-in models (``seqgap.models.registry``): ``transformer`` (flavor gpt2,
``SIZES``) and ``llama`` (flavor llama, ``LLAMA_SIZES``).

:class:`Block` is one pre-norm decoder layer, usable on its own (the Hybrid
model puts one after its RNN stack).  It has a full-sequence ``forward`` and a
one-token ``step`` with a preallocated KV cache.

Written for speed on small CPUs as well as clarity: one fused q/k/v projection,
a single ``scaled_dot_product_attention`` call for all heads, RoPE as one
complex multiply by a precomputed table (see ``apply_rope``), RMSNorm through
``vector_norm``.  Measured speed against HF ``LlamaForCausalLM``, eager and
under ``torch.compile``: docs/performance.md.

Named sizes (4 heads and ``d_ff = 4 d_model`` unless said; parameter counts
without embeddings, head and gpt2 positions -- add ``2 * vocab * d_model`` for
untied learned embeddings and ``max_len * d_model`` for gpt2 positions):

    size            shape                            llama     gpt2 (transformer)
    tiny            d64, 2 layers                    131k      100k
    small           d128, 4 layers                   1.05M     793k
    0.5M            d64, ff 256, 8 / 10 layers       525k      500k
    1M              d88, ff 352, 8 / 11 layers       993k      1.03M
    2M              d128, ff 512, 8 / 10 layers      2.10M     1.98M
    paper-e         d256, 6 layers, 8 heads          6.29M     4.74M
    paper-e-2layer  d256, 2 layers, 8 heads          2.10M     1.58M

"0.5M" for llama is W's Transformer (d64 x 8 layers, ff 256, 4 heads: 0.53M
with a ~70-token vocabulary).  1M and 2M grow the *width* at W's depth of 8
(depth costs more than width on a CPU, and more per generated token).  gpt2
gets more layers (10 / 11 / 10) to reach the same counts, because its GELU MLP
has two matrices where SwiGLU has three.  paper-e is E's GPT-2 (6 layers, d256,
8 heads, MLP x4; its llama variant is simply the same shape).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from seqgap.errors import SeqgapError
from seqgap.models.base import SequenceModel, StateSize
from seqgap.models.embeddings import TokenEmbedding

FLAVORS = ("gpt2", "llama")


@dataclass
class TransformerConfig:
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    d_ff: int | None = None  # MLP hidden width (SwiGLU hidden width for llama); None: 4 * d_model
    flavor: str = "gpt2"  # "gpt2" | "llama"
    frozen_embeddings: bool = False
    rope_base: float = 10000.0  # llama only
    # kernel size of a causal depthwise convolution over the input embeddings, added to them
    # (x + conv(x)) before the first block; 0 = off.  zoology's Based configs put a short
    # convolution before the sequence mixers: it hands each position its predecessors, the
    # previous-token mixing attention otherwise has to learn before it can bind keys to values.
    short_conv: int = 0


@dataclass
class LlamaConfig(TransformerConfig):
    flavor: str = "llama"


# --------------------------------------------------------------------------- pieces


class RMSNorm(nn.Module):
    """Root-mean-square norm with a learned gain and no bias (Zhang & Sennrich 2019).

    x / (rms(x) + eps) through ``vector_norm``: one reduction kernel, a third faster
    on CPU (forward + backward) than x * rsqrt(mean(x^2) + eps)."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm's formula, x / (rms(x) + eps) * weight (weight broadcast against x)."""
    rms = torch.linalg.vector_norm(x, dim=-1, keepdim=True) * x.shape[-1] ** -0.5
    return x / (rms + eps) * weight


def make_norm(flavor: str, dim: int) -> nn.Module:
    return nn.LayerNorm(dim) if flavor == "gpt2" else RMSNorm(dim)


def rope_table(max_len: int, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """RoPE rotations as a real table (max_len, head_dim/2, 2) of (cos, sin): coordinates
    (2i, 2i+1) form one complex number, rotated at position p by the angle p * base^(-2i/head_dim).

    Real, not complex: ``model.to(torch.float32)`` (unlike ``.float()``) casts a complex buffer
    to a real one (dropping the sines), while a real buffer simply follows the model's dtype."""
    inv_freq = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)  # (hd/2,)
    angles = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq  # (L, hd/2)
    return torch.view_as_real(torch.polar(torch.ones_like(angles), angles))  # (L, hd/2, 2)


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., hd) by rot (real (cos, sin) pairs, broadcastable to (..., hd/2, 2)).

    One complex multiply: about twice as fast on CPU as the "rotate half" form, and five times
    faster than the same rotation written with real cos/sin products.  Complex numbers exist
    for float and double only; other dtypes (bfloat16, half) take the real form."""
    if x.dtype in (torch.float32, torch.float64) and rot.dtype == x.dtype:
        z = torch.view_as_complex(x.unflatten(-1, (-1, 2)))  # (..., hd/2) complex
        return torch.view_as_real(z * torch.view_as_complex(rot)).flatten(-2)
    a, b = x.unflatten(-1, (-1, 2)).unbind(-1)  # (..., hd/2) each
    cos, sin = rot.unbind(-1)
    return torch.stack((a * cos - b * sin, a * sin + b * cos), -1).flatten(-2)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False) -> torch.Tensor:
    """``scaled_dot_product_attention`` of (B, H, T, hd) tensors, traceable by ``torch.func.vmap``.

    Under a functorch transform (vmap, grad) it runs the math kernel: the CPU flash kernel
    has no batching rule, so vmap would fall back to a slow per-sample loop with a warning,
    while the math kernel is ordinary batched matmuls and a softmax (same result up to rounding)."""
    if torch._C._are_functorch_transforms_active():
        with sdpa_kernel(SDPBackend.MATH):
            return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal)


class Attention(nn.Module):
    """Causal multi-head self-attention; RoPE on q and k when ``rope`` is set."""

    def __init__(self, d_model: int, n_heads: int, max_len: int, bias: bool, rope: bool, rope_base: float = 10000.0):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads, self.head_dim, self.max_len = n_heads, d_model // n_heads, max_len
        if rope and self.head_dim % 2:
            raise ValueError(f"RoPE needs an even head dimension, got d_model/n_heads = {self.head_dim}")
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)  # fused q, k, v projections
        self.proj = nn.Linear(d_model, d_model, bias=bias)
        self.rope = rope
        if rope:
            self.register_buffer("rot", rope_table(max_len, self.head_dim, rope_base), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        B, T, D = x.shape
        return self.proj(self.attend(self.qkv(x).view(B, T, 3, self.n_heads, self.head_dim)))

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """Causal attention of projected q, k, v: (B, T, 3, H, hd) -> (B, T, H * hd), before ``proj``
        (the batched ensemble calls it with its members' sequences stacked into B)."""
        B, T, _, H, hd = qkv.shape
        if self.rope:  # rotate q and k together: (B, T, 2, H, hd) by (T, 1, 1, hd/2, 2)
            qk = apply_rope(qkv[:, :, :2], self.rot[:T, None, None])
            q, k = qk.unbind(2)
        else:
            q, k = qkv[:, :, 0], qkv[:, :, 1]
        v = qkv[:, :, 2]
        # (B, H, T, hd); one fused kernel for all heads, causal mask built in
        y = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
        return y.transpose(1, 2).reshape(B, T, H * hd)

    def init_cache(self, batch_size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Preallocated key and value caches, (B, H, max_len, hd) each, in the projections'
        dtype (a float32 cache would silently round a float64 model's keys), on ``device``
        (default: the parameters')."""
        w = self.qkv.weight
        shape = (batch_size, self.n_heads, self.max_len, self.head_dim)
        device = w.device if device is None else device
        return torch.zeros(shape, device=device, dtype=w.dtype), torch.zeros(shape, device=device, dtype=w.dtype)

    def step(self, x: torch.Tensor, cache: tuple[torch.Tensor, torch.Tensor], pos: int):
        """x (B, D) is the token at position ``pos``; writes its key/value into the cache in place."""
        if pos >= self.max_len:
            raise SeqgapError(f"sequence longer than the model's max_len={self.max_len}")
        B, D = x.shape
        q, k, v = self.qkv(x).view(B, 3, self.n_heads, self.head_dim).unbind(1)  # (B, H, hd) each
        if self.rope:
            q, k = (apply_rope(t, self.rot[pos]) for t in (q, k))
        k_cache, v_cache = cache
        k_cache[:, :, pos] = k
        v_cache[:, :, pos] = v
        # a single query attends to every cached position 0..pos: no mask needed
        y = sdpa(q[:, :, None], k_cache[:, :, : pos + 1], v_cache[:, :, : pos + 1])
        return self.proj(y.reshape(B, D)), cache


class MLP(nn.Module):
    """GELU MLP (gpt2) or SwiGLU (llama): silu(x W_gate) * (x W_up), then W_down."""

    def __init__(self, d_model: int, d_ff: int, flavor: str):
        super().__init__()
        self.swiglu = flavor == "llama"
        bias = not self.swiglu
        self.up = nn.Linear(d_model, d_ff, bias=bias)
        # two matrices, not one fused and chunked: measured 1.2x faster on CPU, since
        # the chunk's backward costs a concatenation of two (B, T, d_ff) gradients
        self.gate = nn.Linear(d_model, d_ff, bias=False) if self.swiglu else None
        self.down = nn.Linear(d_ff, d_model, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.swiglu:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class Block(nn.Module):
    """One pre-norm decoder layer: x + attn(norm(x)), then + mlp(norm(x)).

    Position-free for gpt2 (positions are added by the model); RoPE inside
    attention for llama.  ``d_ff=None`` means 4 * d_model.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None, flavor: str, max_len: int, rope_base: float = 10000.0):
        super().__init__()
        if flavor not in FLAVORS:
            raise ValueError(f"unknown transformer flavor {flavor!r}; known: {', '.join(FLAVORS)}")
        llama = flavor == "llama"
        self.norm1 = make_norm(flavor, d_model)
        self.attn = Attention(d_model, n_heads, max_len, bias=not llama, rope=llama, rope_base=rope_base)
        self.norm2 = make_norm(flavor, d_model)
        self.mlp = MLP(d_model, d_ff or 4 * d_model, flavor)
        for m in self.modules():  # GPT-2 / LLaMA initialisation
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))

    def init_cache(self, batch_size: int, device=None):
        return self.attn.init_cache(batch_size, device)

    def step(self, x: torch.Tensor, cache, pos: int):  # (B, D) -> ((B, D), cache)
        a, cache = self.attn.step(self.norm1(x), cache, pos)
        x = x + a
        return x + self.mlp(self.norm2(x)), cache


# --------------------------------------------------------------------------- model


@dataclass
class KVState:
    """Generation state: the next position, one (k, v) cache per block (updated in place) and, with
    ``short_conv = k``, the last k - 1 input embeddings (B, k - 1, D), oldest first (None otherwise)."""

    pos: int
    caches: list
    conv: torch.Tensor | None = None


class ShortConv(nn.Module):
    """Causal depthwise convolution over time, added to its input: y_t = x_t + sum_i w_i * x_{t-k+1+i} + b
    (zero before the first position).  ``step`` takes the last k - 1 inputs."""

    def __init__(self, d_model: int, kernel: int):
        super().__init__()
        self.kernel = kernel
        self.conv = nn.Conv1d(d_model, d_model, kernel, groups=d_model, padding=kernel - 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        T = x.shape[1]
        return x + self.conv(x.transpose(1, 2))[..., :T].transpose(1, 2)

    def step(self, x: torch.Tensor, past: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (B, D), past (B, k - 1, D) -> (y (B, D), the new past)."""
        window = torch.cat([past, x[:, None]], 1)  # (B, k, D), oldest first
        w = self.conv.weight[:, 0]  # (D, k)
        y = x + (window * w.t()).sum(1) + self.conv.bias
        return y, window[:, 1:]


def _sizes(flavor: str) -> dict[str, dict]:
    deep = {"gpt2": (10, 11, 10), "llama": (8, 8, 8)}[flavor]  # layers of 0.5M, 1M, 2M
    return {
        "tiny": dict(d_model=64, n_layers=2, n_heads=4),
        "small": dict(d_model=128, n_layers=4, n_heads=4),
        "0.5M": dict(d_model=64, n_layers=deep[0], n_heads=4, d_ff=256),
        "1M": dict(d_model=88, n_layers=deep[1], n_heads=4, d_ff=352),
        "2M": dict(d_model=128, n_layers=deep[2], n_heads=4, d_ff=512),
        "paper-e": dict(d_model=256, n_layers=6, n_heads=8, d_ff=1024),
        "paper-e-2layer": dict(d_model=256, n_layers=2, n_heads=8, d_ff=1024),
    }


# named sizes and one-line help of the two built-in names (the registry's table reads them)
SIZES, LLAMA_SIZES = _sizes("gpt2"), _sizes("llama")
HELP = "GPT-2-style Transformer (learned positions, LayerNorm, GELU), E's model"
LLAMA_HELP = "LLaMA-style Transformer (RoPE, RMSNorm, SwiGLU, no biases), W's model"


class Transformer(SequenceModel):
    """Decoder-only Transformer (gpt2 or llama flavour)."""

    def __init__(self, config: TransformerConfig, vocab_size: int, max_len: int):
        super().__init__()
        c = config
        if c.flavor not in FLAVORS:
            raise ValueError(f"unknown transformer flavor {c.flavor!r}; known: {', '.join(FLAVORS)}")
        self.config, self.vocab_size, self.max_len = c, vocab_size, max_len
        self.emb = TokenEmbedding(vocab_size, c.d_model, frozen=c.frozen_embeddings)
        if not isinstance(c.short_conv, int) or isinstance(c.short_conv, bool) or c.short_conv < 0:
            raise SeqgapError(f"short_conv must be a kernel size >= 0 (0 = off), got {c.short_conv!r}")
        self.short_conv = ShortConv(c.d_model, c.short_conv) if c.short_conv else None
        self.pos = None
        if c.flavor == "gpt2":
            self.pos = nn.Parameter(torch.randn(max_len, c.d_model) * 0.01)  # (max_len, D)
        self.blocks = nn.ModuleList(Block(c.d_model, c.n_heads, c.d_ff, c.flavor, max_len, c.rope_base)
                                    for _ in range(c.n_layers))
        self.norm = make_norm(c.flavor, c.d_model)
        for b in self.blocks:  # GPT-2: residual projections scaled by 1/sqrt(2 * n_layers)
            for lin in (b.attn.proj, b.mlp.down):
                nn.init.normal_(lin.weight, std=0.02 / math.sqrt(2 * c.n_layers))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        T = x.shape[1]
        if T > self.max_len:
            raise SeqgapError(f"sequence of length {T} is longer than the model's max_len={self.max_len}")
        if self.short_conv is not None:
            x = self.short_conv(x)
        if self.pos is not None:
            x = x + self.pos[:T]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def init_state(self, batch_size: int, device=None) -> KVState:
        conv = None
        if self.short_conv is not None:
            w = self.short_conv.conv.weight
            conv = torch.zeros(batch_size, self.short_conv.kernel - 1, self.config.d_model,
                               device=w.device if device is None else device, dtype=w.dtype)
        return KVState(0, [b.init_cache(batch_size, device) for b in self.blocks], conv)

    def features_step(self, x: torch.Tensor, state: KVState):  # (B, D) -> ((B, D), state)
        pos = state.pos
        conv = state.conv
        if self.short_conv is not None:
            x, conv = self.short_conv.step(x, conv)
        if self.pos is not None:
            if pos >= self.max_len:
                raise SeqgapError(f"sequence longer than the model's max_len={self.max_len}")
            x = x + self.pos[pos]
        caches = []
        for block, cache in zip(self.blocks, state.caches):
            x, cache = block.step(x, cache, pos)
            caches.append(cache)
        return self.norm(x), KVState(pos + 1, caches, conv)

    def state_size(self) -> StateSize:
        # keys and values of every layer, per token
        return StateSize(2 * self.config.n_layers * self.config.d_model, per_token=True)
