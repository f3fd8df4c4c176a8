"""An Elman RNN (h_t = tanh(W x_t + U h_{t-1} + b)) that seqgap finds through its entry point.

Importing this module registers the model; seqgap imports it on the first model look-up because
``pyproject.toml`` names it in the ``seqgap.models`` entry-point group.  The package declares a
``version``: it is part of every run's identity (bump it when the model changes).
"""
from dataclasses import dataclass

import torch
from torch import nn

from seqgap.models import SequenceModel, StateSize, register_model
from seqgap.models.embeddings import TokenEmbedding

__version__ = "0.1.0"


@dataclass
class ElmanConfig:
    d_model: int = 64
    n_layers: int = 1
    frozen_embeddings: bool = False


@register_model("elman", config=ElmanConfig, sizes={"tiny": dict(d_model=32)}, version=__version__)
class Elman(SequenceModel):
    """Elman RNN (torch nn.RNN, tanh), from the seqgap-example-rnn package."""

    def __init__(self, config: ElmanConfig, vocab_size: int, max_len: int):
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        self.emb = TokenEmbedding(vocab_size, config.d_model, config.frozen_embeddings)
        self.rnn = nn.RNN(config.d_model, config.d_model, config.n_layers, batch_first=True)

    def features(self, x):  # (B, T, D) -> (B, T, D)
        return self.rnn(x)[0]

    def init_state(self, batch_size, device=None):
        w = self.rnn.weight_hh_l0
        return torch.zeros(self.config.n_layers, batch_size, self.config.d_model, dtype=w.dtype,
                           device=device if device is not None else w.device)

    def features_step(self, x, h):  # (B, D) -> ((B, D), state)
        y, h = self.rnn(x[:, None], h)
        return y[:, 0], h

    def state_size(self):
        return StateSize(self.config.d_model * self.config.n_layers)
