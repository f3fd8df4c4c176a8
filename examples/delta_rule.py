"""A delta-rule linear RNN (DeltaNet, Schlag et al. 2021; Yang et al. 2024) with its own ``step``.

    seqgap check-model --plugin examples/delta_rule.py --model delta-rule --size tiny --generation

Each layer keeps a matrix state per head, S (d_head x d_head), and at every token writes the
value v_t under the key k_t, replacing what S held for that key (the delta rule):

    S_t = S_{t-1} + beta_t (v_t - S_{t-1} k_t) k_t^T,      o_t = S_t q_t

with k_t, q_t L2-normalised and beta_t = sigmoid(w . x_t) in (0, 1).  ``forward`` runs the
recurrence over the sequence (a readable reference, O(T) sequential steps) and ``step``
advances it by one token; the two share ``_cell`` so they agree by construction (check-model
tests it).  ``state_size`` is the base class default: the floats of ``init_state(1)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from seqgap.models import SequenceModel, register_model


@dataclass
class DeltaRuleConfig:
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4


class DeltaLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        assert d_model % n_heads == 0, "d_model must be a multiple of n_heads"
        self.h, self.dh = n_heads, d_model // n_heads
        self.norm = nn.LayerNorm(d_model)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=False)
        self.beta = nn.Linear(d_model, n_heads)
        self.out = nn.Linear(d_model, d_model, bias=False)

    def cell(self, x: torch.Tensor, S: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One token: x (B, D), S (B, H, dh, dh) -> (x + update (B, D), new S)."""
        B = x.shape[0]
        u = self.norm(x)
        q, k, v = self.qkv(u).view(B, 3, self.h, self.dh).unbind(1)  # (B, H, dh) each
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        beta = torch.sigmoid(self.beta(u))[..., None]  # (B, H, 1)
        old = (S @ k[..., None])[..., 0]  # what S stores under k: (B, H, dh)
        S = S + (beta * (v - old))[..., None] * k[:, :, None, :]  # rank-1 delta update
        o = (S @ q[..., None])[..., 0]  # (B, H, dh)
        return x + self.out(o.reshape(B, -1)), S


@register_model("delta-rule", config=DeltaRuleConfig, version="1",
                sizes={"tiny": dict(d_model=32, n_layers=1, n_heads=2), "small": dict(d_model=64, n_layers=2)})
class DeltaRule(SequenceModel):
    """Delta-rule linear RNN (DeltaNet): a matrix state per head, updated by the delta rule."""

    def __init__(self, config: DeltaRuleConfig, vocab_size: int, max_len: int):
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        self.embed = nn.Embedding(vocab_size, config.d_model)
        self.layers = nn.ModuleList(DeltaLayer(config.d_model, config.n_heads) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, vocab_size, bias=False)

    def init_state(self, batch_size: int, device=None) -> list[torch.Tensor]:
        w = self.head.weight
        dh = self.config.d_model // self.config.n_heads
        return [torch.zeros(batch_size, self.config.n_heads, dh, dh, dtype=w.dtype,
                            device=device if device is not None else w.device) for _ in self.layers]

    def step(self, tokens: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """tokens (B,) -> (logits (B, V), new state)."""
        x = self.embed(tokens)
        new = []
        for layer, S in zip(self.layers, state):
            x, S = layer.cell(x, S)
            new.append(S)
        return self.head(self.norm(x)), new

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        state = self.init_state(tokens.shape[0])
        out = []
        for t in range(tokens.shape[1]):
            logits, state = self.step(tokens[:, t], state)
            out.append(logits)
        return torch.stack(out, 1)
