"""The interface every seqgap model implements.

A model maps tokens ``(B, T)`` to logits ``(B, T, V)``, causally: the output at
position t depends only on tokens 0..t.  For generation it also offers a
recurrent/cached path, ``init_state(batch_size)`` + ``step(tokens, state)``,
which must agree with ``forward`` (tested for every model).

Every model reports its parameter count and the size of the state it carries
from one token to the next (``state_size()``): the number that W's theory is
about.  For attention the state grows with the context, so the per-token KV
cache size is reported instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass
class StateSize:
    floats: int  # numbers carried between tokens (fixed-size state), or per token for KV caches
    per_token: bool = False  # True for attention: the cache grows by `floats` each token
    bits_per_float: int = 32

    @property
    def bits(self) -> int:
        return self.floats * self.bits_per_float

    def __str__(self) -> str:
        unit = " per token (KV cache)" if self.per_token else ""
        return f"{self.floats:,} floats = {self.bits:,} bits{unit}"


class SequenceModel(nn.Module):
    """Base class: subclasses implement ``forward``, ``init_state``, ``step`` and ``state_size``."""

    config: Any  # the model's config dataclass
    vocab_size: int

    # The default language-model wrapper: embed -> body -> head.  Models built from
    # ``self.emb`` (a TokenEmbedding) and ``features``/``features_step`` inherit these.
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        return self.emb.logits(self.features(self.emb(tokens)))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        raise NotImplementedError

    def features_step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:  # (B, D) -> ((B, D), state)
        raise NotImplementedError

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> Any:
        """The state before the first token (a cache/recurrent state; model specific)."""
        raise NotImplementedError

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One token per sequence: tokens (B,) -> (logits (B, V), new state)."""
        y, state = self.features_step(self.emb(tokens), state)
        return self.emb.logits(y), state

    def state_size(self) -> StateSize:
        raise NotImplementedError

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def summary(self) -> str:
        return f"{type(self).__name__}: {self.num_params():,} params; state {self.state_size()}"
