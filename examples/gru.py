"""A GRU through the seqgap model contract (docs/models.md), in a dozen lines.

    seqgap check-model --plugin examples/gru.py --model gru --size tiny --generation
    seqgap train --plugin examples/gru.py --model gru --size tiny --task parity -L 10 --format cot

It uses the features interface (``self.emb`` + ``features`` / ``features_step`` / ``init_state``):
the base class makes ``forward`` and ``step`` from it, counts ``state_size`` from
``init_state``, and the model can also sit inside ``hybrid`` (``--model-opt rnn=gru``).
"""
from dataclasses import dataclass

import torch
from torch import nn

from seqgap.models import SequenceModel, register_model
from seqgap.models.embeddings import TokenEmbedding


@dataclass
class GRUConfig:
    d_model: int = 64
    n_layers: int = 1
    frozen_embeddings: bool = False


@register_model("gru", config=GRUConfig, sizes={"tiny": dict(d_model=32), "small": dict(d_model=128)})
class GRU(SequenceModel):
    """GRU (torch nn.GRU), d_model hidden units per layer."""

    def __init__(self, config: GRUConfig, vocab_size: int, max_len: int):
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        self.emb = TokenEmbedding(vocab_size, config.d_model, config.frozen_embeddings)
        self.gru = nn.GRU(config.d_model, config.d_model, config.n_layers, batch_first=True)

    def features(self, x):  # (B, T, D) -> (B, T, D)
        return self.gru(x)[0]

    def init_state(self, batch_size, device=None):  # (n_layers, B, D), in the parameters' dtype
        w = self.gru.weight_hh_l0
        return torch.zeros(self.config.n_layers, batch_size, self.config.d_model, dtype=w.dtype,
                           device=device if device is not None else w.device)

    def features_step(self, x, h):  # (B, D) -> ((B, D), state)
        y, h = self.gru(x[:, None], h)
        return y[:, 0], h
