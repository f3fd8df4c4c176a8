"""LSTM (Hochreiter & Schmidhuber 1997): E's recurrent baseline, and W's classic RNN.

A thin wrapper over ``torch.nn.LSTM`` (batch first; oneDNN kernels on CPU) with a
linear head.  The embedding width ``d_model`` and the hidden size may differ: a
linear projection hidden -> d_model then closes ``features`` so the block maps
(B, T, d_model) -> (B, T, d_model) and can be stacked (Hybrid model).

State: h and c of every layer, ``2 * hidden * n_layers`` floats.

Named sizes (one layer, ``d_model = hidden``; recurrent parameters
``4 (d h + h^2 + 2 h)``, plus ``2 * vocab * d_model`` for embeddings and head):
tiny h64 (33k), small h128 (132k), 256 h256 (526k), paper h768 (E's, 4.72M),
and 0.5M / 1M / 2M = one layer *widened* to h256 (0.53M) / h352 (0.99M) /
h512 (2.10M), keeping E's single layer.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from seqgap.models.base import SequenceModel, StateSize
from seqgap.models.embeddings import TokenEmbedding
from seqgap.models.registry import register_model


@dataclass
class LSTMConfig:
    d_model: int = 128  # embedding width (and the width of `features`)
    n_layers: int = 1
    hidden: int | None = None  # LSTM hidden size; None: d_model
    frozen_embeddings: bool = False


def _size(h: int) -> dict:
    return dict(d_model=h, hidden=h, n_layers=1)


@register_model("lstm", config=LSTMConfig, recurrent=True,
                sizes={"tiny": _size(64), "small": _size(128), "256": _size(256), "paper": _size(768),
                       "0.5M": _size(256), "1M": _size(352), "2M": _size(512)},
                help="LSTM (torch nn.LSTM) with a linear head, E's recurrent baseline")
class LSTMModel(SequenceModel):
    """LSTM language model: embedding -> nn.LSTM -> (projection) -> head."""

    def __init__(self, config: LSTMConfig, vocab_size: int, max_len: int):
        super().__init__()
        self.config, self.vocab_size, self.max_len = config, vocab_size, max_len
        d, self.hidden = config.d_model, config.hidden or config.d_model
        self.emb = TokenEmbedding(vocab_size, d, frozen=config.frozen_embeddings)
        self.lstm = nn.LSTM(d, self.hidden, num_layers=config.n_layers, batch_first=True)
        self.out = nn.Linear(self.hidden, d) if self.hidden != d else None

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        y, _ = self.lstm(x)  # (B, T, hidden)
        return self.out(y) if self.out is not None else y

    def init_state(self, batch_size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        device = device if device is not None else self.device
        h = torch.zeros(self.config.n_layers, batch_size, self.hidden, device=device)  # (layers, B, hidden)
        return h, torch.zeros_like(h)

    def features_step(self, x: torch.Tensor, state):  # (B, D) -> ((B, D), (h, c))
        y, state = self.lstm(x[:, None], state)  # (B, 1, hidden)
        y = y[:, 0]
        return (self.out(y) if self.out is not None else y), state

    def state_size(self) -> StateSize:
        return StateSize(2 * self.hidden * self.config.n_layers)
