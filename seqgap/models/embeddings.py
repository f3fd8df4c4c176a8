"""Token embeddings and output heads shared by every model.

W's setting (an option, off by default): token embeddings are fixed sinusoidal
vectors, frozen, and the output head is the same frozen matrix (tied), so the
model cannot learn anything about tokens through its embedding table.  Whether
this matters is an open reviewer question; seqgap makes it a switch
(``frozen_embeddings=True`` in every model config).
"""
from __future__ import annotations

import math

import torch
from torch import nn


def sinusoidal_table(num: int, dim: int) -> torch.Tensor:
    """(num, dim) sinusoidal vectors (Vaswani et al.), scaled to unit RMS."""
    pos = torch.arange(num, dtype=torch.float32)[:, None]  # (num, 1)
    i = torch.arange(0, dim, 2, dtype=torch.float32)  # (ceil(dim/2),)
    freq = torch.exp(-math.log(10000.0) * i / dim)
    table = torch.zeros(num, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: dim // 2])
    return table * math.sqrt(2.0)  # sin^2 + cos^2 averages to 1/2 per coordinate


class TokenEmbedding(nn.Module):
    """Embedding table + output head; learned and untied by default, or frozen sinusoidal and tied."""

    def __init__(self, vocab_size: int, d_model: int, frozen: bool = False):
        super().__init__()
        self.frozen = frozen
        if frozen:
            self.register_buffer("table", sinusoidal_table(vocab_size, d_model), persistent=True)
            self.embed = None
            self.head = None
        else:
            self.embed = nn.Embedding(vocab_size, d_model)
            nn.init.normal_(self.embed.weight, std=0.02)
            self.head = nn.Linear(d_model, vocab_size, bias=False)
            nn.init.normal_(self.head.weight, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, D)
        if self.frozen:
            return self.table[tokens]
        return self.embed(tokens)

    def logits(self, h: torch.Tensor) -> torch.Tensor:  # (..., D) -> (..., V)
        if self.frozen:
            return h @ self.table.t()
        return self.head(h)
