"""Dense-SSM: E's bilinear RNN, whose transition matrix is a linear function of the input.

    h_t = A(x_t) h_{t-1},        A(x)_{ij} = sum_k W_ijk x_k

(Ebrahimi et al. 2026; bilinear RNNs go back to Sutskever et al. 2011's
multiplicative RNN).  There is no additive input and no bias in the
recurrence: the input only *transforms* the state, which is exactly the
structure of state tracking (a group element acting on the current state).
The initial state h_0 is learned.

Choices E leaves open (each documented here and configurable):

* **Input.** x_t is a ``d_input``-dimensional projection of the (layer-normed)
  token embedding, plus one constant coordinate 1, so A(x) = W_0 + sum_k W_k x_k.
  The constant channel is what lets A start near the identity whatever the
  token (a learned embedding could learn such a coordinate itself); W then has
  ``hidden^2 (d_input + 1)`` entries.
* **Normalization (stability).** After every step h_t is rescaled to unit RMS.
  The recurrence is linear in h, so this only changes the *length* of h_t, never
  its direction: h_t = normalize(A_t ... A_1 h_0).  A batched prefix product and
  the step loop therefore compute the same states (tested).
* **Initialization.** W_0 = I and W_k small random *skew-symmetric* matrices, so
  A(x) = I + S(x) with S skew: a first-order rotation, norm preserving up to
  O(|S|^2), for every input.  State tracking needs such near-orthogonal
  transitions; a generic random A would collapse h onto its top eigenvector.
* **Readout.** LayerNorm of h_t, then a linear map to d_model if ``hidden !=
  d_model`` or the embeddings are frozen (a frozen tied head is no learned
  readout: without one, d64 did not learn m=5 modular addition (ACoT) in 400
  steps; with it, it did in 300), then the head.

Evaluation order.  Measured on this CPU (one thread, forward+backward, B=64,
T=40, d_input=32, d=64 / 128): the step loop that contracts h with W first and
then with x_t takes 28 / 89 ms; an outer-product loop 35 / 103 ms;
materializing every A_t (B, T, d, d) and then scanning sequentially or in
chunks 0.4-4 s; a log-depth prefix-product scan is 55-150x slower than the loop
in a full training step.  Scans multiply d x d matrices, O(d^3) per combine,
where the loop does O(d^2 d_input) per token and never stores a d x d matrix.
``forward`` therefore runs the loop (``scan="loop"``), with the input
projections of all positions computed at once; ``scan="parallel"`` selects the
log-depth (Hillis-Steele) scan, kept as a cross-check and for GPUs.

Named sizes, all one layer with d_input 32 (parameters without embeddings and
head; W alone is d^2 * 33): tiny d64 (138k), small d128 (545k), paper (E's
hidden 256; 2.17M).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from seqgap.models.base import SequenceModel, StateSize
from seqgap.models.embeddings import TokenEmbedding

SCANS = ("loop", "parallel")


@dataclass
class DenseSSMConfig:
    d_model: int = 128  # embedding width (and the width of `features`)
    n_layers: int = 1
    hidden: int | None = None  # state size d; None: d_model
    d_input: int = 32  # width of the input x_t that drives A(x_t) (plus one constant channel)
    init_scale: float = 0.1  # ~ rotation angle per step at initialization (spectral norm of S)
    scan: str = "loop"  # "loop" (fastest on CPU) | "parallel" (log-depth prefix product)
    frozen_embeddings: bool = False


def unit_rms(h: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)


class DenseSSMLayer(nn.Module):
    """One bilinear recurrence, (B, T, d_model) -> (B, T, d_model)."""

    def __init__(self, d_model: int, hidden: int, d_input: int, init_scale: float, scan: str = "loop",
                 out_proj: bool = False):
        super().__init__()
        if scan not in SCANS:
            raise ValueError(f"unknown scan {scan!r}; known: {', '.join(SCANS)}")
        self.hidden, self.scan = hidden, scan
        self.in_norm = nn.LayerNorm(d_model)
        self.in_proj = nn.Linear(d_model, d_input, bias=False)
        nn.init.normal_(self.in_proj.weight, std=d_model ** -0.5)  # x_k ~ unit variance
        # W_ijk stored as weight[j, k, i], so that h @ weight.view(d, K * d) needs no copy
        K = d_input + 1
        # S(x) = sum_k S_k x_k is skew-symmetric with entries of std init_scale / (2 sqrt(d)),
        # hence spectral norm ~ init_scale (semicircle law)
        S = torch.randn(K - 1, hidden, hidden) * (init_scale / (2 * math.sqrt(2 * hidden * (K - 1))))
        S = S - S.transpose(1, 2)
        W = torch.cat([S, torch.eye(hidden)[None]], 0)  # (K, i, j): W_k, then W_0 = I last
        self.weight = nn.Parameter(W.permute(2, 0, 1).contiguous())  # (j, k, i)
        self.h0 = nn.Parameter(torch.randn(hidden))
        self.out_norm = nn.LayerNorm(hidden)
        self.out = nn.Linear(hidden, d_model) if out_proj or hidden != d_model else None

    def inputs(self, x: torch.Tensor) -> torch.Tensor:  # (..., d_model) -> (..., K): x_t with the constant 1
        u = self.in_proj(self.in_norm(x))
        return torch.cat([u, torch.ones_like(u[..., :1])], -1)

    def transition(self, h: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """normalize(A(u) h) for h (B, d), u (B, K): h_i <- sum_jk W_ijk h_j u_k."""
        B, d = h.shape
        g = (h @ self.weight.view(d, -1)).view(B, -1, d)  # (B, K, d): sum_j W_ijk h_j
        return unit_rms(torch.bmm(u[:, None, :], g)[:, 0])  # (B, d)

    def readout(self, h: torch.Tensor) -> torch.Tensor:  # (..., d) -> (..., d_model)
        y = self.out_norm(h)
        return self.out(y) if self.out is not None else y

    def states(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d_model) -> h_1..h_T (B, T, d)
        u = self.inputs(x)  # (B, T, K), all positions at once
        if self.scan == "parallel":
            return self.states_parallel(u)
        h = self.init_state(x.shape[0])
        hs = []
        for t in range(x.shape[1]):
            h = self.transition(h, u[:, t])
            hs.append(h)
        return torch.stack(hs, 1)

    def transitions(self, u: torch.Tensor) -> torch.Tensor:  # (B, T, K) -> A_t (B, T, d, d), A[b, t, i, j]
        d = self.hidden
        return (u @ self.weight.permute(1, 2, 0).reshape(-1, d * d)).unflatten(-1, (d, d))

    def states_parallel(self, u: torch.Tensor) -> torch.Tensor:
        """Hillis-Steele scan: after the round with offset s, P_t = A_t ... A_max(1, t-2s+1)."""
        P = self.transitions(u)  # (B, T, d, d)
        T, s = P.shape[1], 1
        while s < T:
            P = torch.cat([P[:, :s], P[:, s:] @ P[:, :-s]], 1)
            P = P / P.flatten(2).norm(dim=-1)[..., None, None]  # a positive rescale changes no direction
            s *= 2
        return unit_rms(P @ self.h0)  # (B, T, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.readout(self.states(x))

    def init_state(self, batch_size: int, device=None) -> torch.Tensor:  # (B, d), in h0's dtype
        return unit_rms(self.h0).expand(batch_size, -1).to(device or self.h0.device)

    def step(self, x: torch.Tensor, h: torch.Tensor):  # (B, d_model), (B, d) -> ((B, d_model), (B, d))
        h = self.transition(h, self.inputs(x))
        return self.readout(h), h


def _size(d: int) -> dict:
    return dict(d_model=d, hidden=d, n_layers=1, d_input=32)


SIZES = {"tiny": _size(64), "small": _size(128), "paper": _size(256)}
HELP = "Dense-SSM: bilinear RNN h_t = A(x_t) h_{t-1}, E's state-tracking RNN"


class DenseSSM(SequenceModel):
    """Dense-SSM language model: embedding -> bilinear recurrence(s) -> head."""

    def __init__(self, config: DenseSSMConfig, vocab_size: int, max_len: int):
        super().__init__()
        c = config
        self.config, self.vocab_size, self.max_len = c, vocab_size, max_len
        self.hidden = c.hidden or c.d_model
        self.emb = TokenEmbedding(vocab_size, c.d_model, frozen=c.frozen_embeddings)
        # a frozen tied head is no learned output map: put a linear readout before it
        self.layers = nn.ModuleList(DenseSSMLayer(c.d_model, self.hidden, c.d_input, c.init_scale, c.scan,
                                                  out_proj=c.frozen_embeddings) for _ in range(c.n_layers))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        for layer in self.layers:
            x = layer(x)
        return x

    def init_state(self, batch_size: int, device=None) -> list[torch.Tensor]:
        return [layer.init_state(batch_size, device) for layer in self.layers]

    def features_step(self, x: torch.Tensor, state: list[torch.Tensor]):  # (B, D) -> ((B, D), state)
        new = []
        for layer, h in zip(self.layers, state):
            x, h = layer.step(x, h)
            new.append(h)
        return x, new

    def state_size(self) -> StateSize:
        return StateSize(self.hidden * self.config.n_layers)
