"""LSTM (Hochreiter & Schmidhuber 1997): E's recurrent baseline, and W's classic RNN.

A thin wrapper over ``torch.nn.LSTM`` (batch first; oneDNN kernels on CPU) with a
linear head.  The embedding width ``d_model`` and the hidden size may differ: a
linear projection hidden -> d_model then closes ``features`` so the block maps
(B, T, d_model) -> (B, T, d_model) and can be stacked (Hybrid model).

State: h and c of every layer, ``2 * hidden * n_layers`` floats.

Under ``torch.func.vmap`` (the ensemble's E stacked members) ``features`` goes through
:class:`_MemberLSTM`: ``aten::lstm`` has no batching rule ("Batching rule not implemented
for aten::lstm.input. We could not generate a fallback."), so its vmap rule runs the real
kernel once per member; everything around it stays batched.

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


@dataclass
class LSTMConfig:
    d_model: int = 128  # embedding width (and the width of `features`)
    n_layers: int = 1
    hidden: int | None = None  # LSTM hidden size; None: d_model
    frozen_embeddings: bool = False


def _size(h: int) -> dict:
    return dict(d_model=h, hidden=h, n_layers=1)


SIZES = {"tiny": _size(64), "small": _size(128), "256": _size(256), "paper": _size(768),
         "0.5M": _size(256), "1M": _size(352), "2M": _size(512)}
HELP = "LSTM (torch nn.LSTM) with a linear head, E's recurrent baseline"


def _call_lstm(lstm: nn.LSTM, names: tuple[str, ...], x: torch.Tensor, weights) -> torch.Tensor:
    """The real nn.LSTM kernel with the given weights (named as in ``lstm``): x (B, T, in) -> (B, T, hidden)."""
    return torch.func.functional_call(lstm, dict(zip(names, weights)), (x,))[0]


class _MemberLSTM(torch.autograd.Function):
    """``nn.LSTM`` under functorch transforms (vmap: one call per member, see the module docstring).

    The gate equations stay in torch's kernel: ``vmap`` selects each member's input and weights
    and calls it; under plain autograd those calls are recorded as usual (torch's own LSTM
    backward).  ``forward``/``backward`` serve a transform without vmap (``torch.func.grad``):
    the backward recomputes the forward (``torch.func.vjp``) instead of saving its internals."""

    @staticmethod
    def forward(lstm, names, x, *weights):  # x (B, T, in) -> (B, T, hidden)
        return _call_lstm(lstm, names, x, weights)

    @staticmethod
    def setup_context(ctx, inputs, output):
        lstm, names, x, *weights = inputs
        ctx.lstm, ctx.names = lstm, names
        ctx.save_for_backward(x, *weights)

    @staticmethod
    def backward(ctx, dy):
        # recompute with torch.func.vjp (unlike autograd.grad, allowed inside a functorch transform)
        _, vjp = torch.func.vjp(lambda x, *w: _call_lstm(ctx.lstm, ctx.names, x, w), *ctx.saved_tensors)
        return (None, None, *vjp(dy))

    @staticmethod
    def vmap(info, in_dims, lstm, names, x, *weights):
        def member(t, dim, e):
            return t if dim is None else t.select(dim, e)

        ys = [_call_lstm(lstm, names, member(x, in_dims[2], e), [member(w, d, e) for w, d in zip(weights, in_dims[3:])])
              for e in range(info.batch_size)]
        return torch.stack(ys), 0


class LSTMModel(SequenceModel):
    """LSTM language model: embedding -> nn.LSTM -> (projection) -> head."""

    def __init__(self, config: LSTMConfig, vocab_size: int, max_len: int):
        super().__init__()
        self.config, self.vocab_size, self.max_len = config, vocab_size, max_len
        d, self.hidden = config.d_model, config.hidden or config.d_model
        self.emb = TokenEmbedding(vocab_size, d, frozen=config.frozen_embeddings)
        self.lstm = nn.LSTM(d, self.hidden, num_layers=config.n_layers, batch_first=True)
        self.out = nn.Linear(self.hidden, d) if self.hidden != d else None
        self._lstm_names = tuple(n for n, _ in self.lstm.named_parameters())  # weight_ih_l0, weight_hh_l0, ...

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        if torch._C._are_functorch_transforms_active():  # vmap: nn.LSTM has no batching rule
            y = _MemberLSTM.apply(self.lstm, self._lstm_names, x, *(getattr(self.lstm, n) for n in self._lstm_names))
        else:
            y, _ = self.lstm(x)  # (B, T, hidden)
        return self.out(y) if self.out is not None else y

    def init_state(self, batch_size: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
        w = self.lstm.weight_hh_l0  # the state in the weights' dtype, on their device unless told
        device = w.device if device is None else device
        h = torch.zeros(self.config.n_layers, batch_size, self.hidden, device=device, dtype=w.dtype)  # (layers, B, H)
        return h, torch.zeros_like(h)

    def features_step(self, x: torch.Tensor, state):  # (B, D) -> ((B, D), (h, c))
        y, state = self.lstm(x[:, None], state)  # (B, 1, hidden)
        y = y[:, 0]
        return (self.out(y) if self.out is not None else y), state

    def state_size(self) -> StateSize:
        return StateSize(2 * self.hidden * self.config.n_layers)
