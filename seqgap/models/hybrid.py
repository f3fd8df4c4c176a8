"""Hybrid: a recurrent stack with ONE causal attention layer (W's claim 4).

W prove that an RNN followed by a single Transformer layer solves the retrieval
tasks (Index, AR, c-gram, Counting) without CoT and IsTree with O(n log n) CoT,
and train "Mamba + one LLaMA decoder layer at the end".  Here the recurrent
part may be any registered RNN that implements the features interface
(``features``, ``features_step``, ``init_state`` and an ``emb``; see
:mod:`seqgap.models.base`) -- ``rnn``: mamba, lstm, dense-ssm or a plugin -- and
the attention layer may sit anywhere::

    tokens -> emb -> RNN(attn_position layers) -> attention Block -> RNN(rest) -> [RMSNorm] -> head

``attn_position`` is the number of RNN layers before the attention layer
(default: all of them, W's layout).  The RNN segments are ordinary model
instances built by the registry (which hands the hybrid its ``rnn``'s spec and
its ``build_model``: this file does not import the registry) with ``d_model``
and ``n_layers`` (plus ``rnn_options``, e.g. ``{"d_state": 8}``); their own
embeddings and heads are deleted, so they add no unused parameters.  Each
segment initialises itself for its own depth (a Mamba segment divides its
``out_proj`` by sqrt of its own layer count).  The attention layer is
:class:`seqgap.models.transformer.Block` (``attn_flavor``: llama = RoPE, RMSNorm,
SwiGLU by default; gpt2 = LayerNorm/GELU and no positional signal but what the
RNN provides).  When the attention layer is last, a final RMSNorm precedes the
head (RNN segments end with their own output norm).

State (``state_size``): the attention layer's KV cache grows with the context,
so the state is reported like a Transformer's, ``floats`` = KV floats *per
token* (``per_token=True``, 2 * d_model), and the fixed-size RNN state is
given separately as ``fixed_floats``: after t tokens the model carries
``fixed_floats + t * floats`` numbers.  The registry marks the Hybrid
``recurrent=False`` (not an RNN in W's sense).

Generation: ``step`` feeds one token through the segments' recurrent states
and the attention KV cache; ``prefill`` reads a whole prompt at once (Mamba
segments in one parallel pass, the attention block and other RNNs stepped).

Named sizes (rnn = mamba; parameters without embeddings/head; llama block with
4 heads and d_ff = 4 d_model):

=====  ================================  ========
size   shape                             params
=====  ================================  ========
tiny   d64, 2 Mamba + 1 attention         131k
small  d64, 4 Mamba + 1 attention         197k
0.5M   d64, 12 Mamba + 1 attention        458k  (W: "Hybrid d64, 12 Mamba + 1 attention = 0.46M")
1M     d96, 12 Mamba + 1 attention        967k
2M     d144, 12 Mamba + 1 attention       2.08M
=====  ================================  ========
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from seqgap.errors import SeqgapError
from seqgap.models.base import ModelSpec, SequenceModel, StateSize
from seqgap.models.embeddings import TokenEmbedding
from seqgap.models.transformer import Block, RMSNorm


@dataclass
class HybridConfig:
    d_model: int = 64
    n_layers: int = 4  # recurrent layers in all (the attention layer is extra)
    rnn: str = "mamba"  # any registered recurrent model with the features interface: mamba, lstm, dense-ssm
    attn_position: int | None = None  # recurrent layers before the attention layer; None: all (attention last)
    n_heads: int = 4
    d_ff: int | None = None  # attention block's MLP width; None: 4 * d_model
    attn_flavor: str = "llama"  # "llama" | "gpt2"
    # extra config of the recurrent segments: a dict, or from the CLI a string "d_state=8,expand=1" or JSON
    rnn_options: dict | str = field(default_factory=dict)
    frozen_embeddings: bool = False


@dataclass
class HybridState:
    """Generation state: the next position, the RNN segments' states and the attention KV cache."""

    pos: int
    before: Any
    attn: Any
    after: Any


@dataclass
class HybridStateSize(StateSize):
    """KV cache floats per token (``floats``, ``per_token=True``) plus a fixed RNN state."""

    fixed_floats: int = 0

    def __str__(self) -> str:
        return f"{self.fixed_floats:,} fixed floats (RNN) + {self.floats:,} floats per token (KV cache)"


def _parse_options(options: dict | str | None) -> dict[str, Any]:
    """rnn_options as a dict, JSON, or "key=value,key=value" (numbers converted)."""
    if not options:
        return {}
    if isinstance(options, dict):
        return dict(options)
    text = str(options).strip()
    if text.startswith("{"):
        try:
            return dict(json.loads(text))
        except ValueError as e:
            raise SeqgapError(f"hybrid: rnn_options is not valid JSON: {e}") from None
    out: dict[str, Any] = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        if "=" not in item:
            raise SeqgapError(f"hybrid: rnn_options must look like key=value,key=value, got {text!r}")
        k, v = (t.strip() for t in item.split("=", 1))
        for cast in (int, float):
            try:
                v = cast(v)
                break
            except ValueError:
                pass
        out[k.replace("-", "_")] = v
    return out


def _segment_prefill(seg, x: torch.Tensor):  # (B, T, D) -> ((B, T, D), state after the last token)
    if hasattr(seg, "features_with_state"):
        return seg.features_with_state(x)
    state, ys = seg.init_state(x.shape[0], x.device), []
    for t in range(x.shape[1]):
        y, state = seg.features_step(x[:, t], state)
        ys.append(y)
    return torch.stack(ys, 1), state


SIZES = {
    "tiny": dict(d_model=64, n_layers=2),
    "small": dict(d_model=64, n_layers=4),
    "0.5M": dict(d_model=64, n_layers=12, d_ff=256),
    "1M": dict(d_model=96, n_layers=12, d_ff=384),
    "2M": dict(d_model=144, n_layers=12, d_ff=576),
}
HELP = "RNN stack (mamba/lstm/dense-ssm) + one causal attention layer, W's Hybrid"

# what an RNN must implement (override) to sit inside the hybrid (seqgap.models.base)
FEATURES_INTERFACE = ("features", "features_step", "init_state")


def missing_features_interface(model) -> list[str]:
    """The parts of the features interface that ``model`` lacks (empty: it can sit in a hybrid)."""
    missing = [name for name in FEATURES_INTERFACE
               if getattr(type(model), name, None) in (None, getattr(SequenceModel, name))]
    if not isinstance(getattr(model, "emb", None), nn.Module):
        missing.append("emb")
    return missing


class Hybrid(SequenceModel):
    """Hybrid language model: embedding -> RNN -> one attention layer -> RNN -> head.

    ``rnn`` is the registry's spec of ``config.rnn`` and ``build`` the registry's
    ``build_model``, with which the RNN segments are made (``build_model("hybrid", ...)``
    passes both)."""

    def __init__(self, config: HybridConfig, vocab_size: int, max_len: int, rnn: ModelSpec,
                 build: Callable[..., SequenceModel]):
        super().__init__()
        c = config
        self.config, self.vocab_size, self.max_len = c, vocab_size, max_len
        n_before = c.n_layers if c.attn_position is None else c.attn_position
        if not 0 <= n_before <= c.n_layers:
            raise ValueError(f"attn_position must be in 0..n_layers={c.n_layers}, got {c.attn_position}")
        if c.rnn == "hybrid":
            raise ValueError("rnn cannot be 'hybrid'")
        if not rnn.recurrent:
            raise ValueError(f"rnn must be a recurrent model (fixed-size state), got {c.rnn!r}")
        self.emb = TokenEmbedding(vocab_size, c.d_model, frozen=c.frozen_embeddings)
        self.before = self._segment(build, n_before, vocab_size, max_len)
        self.attn = Block(c.d_model, c.n_heads, c.d_ff, c.attn_flavor, max_len)
        self.after = self._segment(build, c.n_layers - n_before, vocab_size, max_len)
        self.norm = RMSNorm(c.d_model) if self.after is None else None

    def _segment(self, build, n_layers: int, vocab_size: int, max_len: int):
        """An RNN model of ``n_layers`` used through the features interface only (or None)."""
        if n_layers == 0:
            return None
        options = _parse_options(self.config.rnn_options)
        for key in ("d_model", "n_layers", "frozen_embeddings"):
            if key in options:
                raise SeqgapError(f"hybrid: set {key} on the hybrid, not in rnn_options")
        model = build(self.config.rnn, vocab_size=vocab_size, max_len=max_len,
                      d_model=self.config.d_model, n_layers=n_layers, **options)
        missing = missing_features_interface(model)
        if missing:
            raise SeqgapError(f"hybrid: rnn {self.config.rnn!r} ({type(model).__name__}) lacks {', '.join(missing)}: "
                              "a model inside hybrid implements features, features_step and init_state "
                              "and keeps its embedding in emb (see seqgap.models.base)")
        del model.emb  # the hybrid embeds and reads out itself: no unused parameters
        return model

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        if x.shape[1] > self.max_len:
            raise SeqgapError(f"sequence of length {x.shape[1]} is longer than the model's max_len={self.max_len}")
        if self.before is not None:
            x = self.before.features(x)
        x = self.attn(x)
        if self.after is not None:
            return self.after.features(x)
        return self.norm(x)

    def init_state(self, batch_size: int, device=None) -> HybridState:
        device = device if device is not None else self.device
        init = lambda seg: None if seg is None else seg.init_state(batch_size, device)  # noqa: E731
        return HybridState(0, init(self.before), self.attn.init_cache(batch_size, device), init(self.after))

    def features_step(self, x: torch.Tensor, state: HybridState):  # (B, D) -> ((B, D), state)
        before, after = state.before, state.after
        if self.before is not None:
            x, before = self.before.features_step(x, before)
        x, cache = self.attn.step(x, state.attn, state.pos)  # raises SeqgapError past max_len
        if self.after is not None:
            x, after = self.after.features_step(x, after)
        else:
            x = self.norm(x)
        return x, HybridState(state.pos + 1, before, cache, after)

    def prefill(self, tokens: torch.Tensor):  # (B, T) -> (logits (B, T, V), state after the last token)
        """A prompt in one pass for the RNN segments that can (Mamba), stepping the rest (generation)."""
        Bn, T = tokens.shape
        x = self.emb(tokens)
        before, after = None, None
        if self.before is not None:
            x, before = _segment_prefill(self.before, x)
        cache, ys = self.attn.init_cache(Bn, x.device), []
        for t in range(T):  # one block only: fills its KV cache
            y, cache = self.attn.step(x[:, t], cache, t)
            ys.append(y)
        x = torch.stack(ys, 1)
        if self.after is not None:
            x, after = _segment_prefill(self.after, x)
        else:
            x = self.norm(x)
        return self.emb.logits(x), HybridState(T, before, cache, after)

    def state_size(self) -> HybridStateSize:
        fixed = sum(seg.state_size().floats for seg in (self.before, self.after) if seg is not None)
        return HybridStateSize(2 * self.config.d_model, per_token=True, fixed_floats=fixed)
