"""The interface every seqgap model implements.

A model maps tokens ``(B, T)`` to logits ``(B, T, V)``, causally: the output at
position t depends only on tokens 0..t.  For generation it also offers a
recurrent/cached path, ``init_state(batch_size)`` + ``step(tokens, state)``,
which must agree with ``forward`` (tested for every model).  ``init_state``
allocates the state in the model's parameter dtype, on ``device`` (default: the
model's device), so that a ``.double()`` model also generates in float64.

Every model reports its parameter count and the size of the state it carries
from one token to the next (``state_size()``): the number that W's theory is
about.  For attention the state grows with the context, so the per-token KV
cache size is reported instead.

The features interface (what an RNN needs to sit inside ``hybrid``).  The
default ``forward`` / ``step`` below are embed -> body -> head, and the Hybrid
composes models through the body alone, so a recurrent model usable as the
Hybrid's ``rnn`` must implement (override) all three of:

* ``features(x)``: embeddings ``(B, T, D)`` -> ``(B, T, D)``, causal, with
  ``D = config.d_model``;
* ``features_step(x, state)``: one position, ``(B, D)`` -> ``((B, D), new state)``,
  agreeing with ``features``;
* ``init_state(batch_size, device=None)``: the state before the first position;

and keep its token embedding and output head in ``self.emb`` (the Hybrid deletes
it: it embeds and reads out itself), with ``d_model`` and ``n_layers`` fields
in its config.  Optional: ``features_with_state(x)`` -> ``((B, T, D), state
after the last position)``, a one-pass prompt prefill (Mamba has one).

Weight decay: ``no_weight_decay()`` names the parameters an optimizer must not
decay (every parameter with fewer than 2 dimensions, plus those a module lists
in its ``NO_WEIGHT_DECAY`` class attribute, e.g. Mamba's ``A_log`` and ``D``).

The whole contract, what is required and what is optional, is written out for
model authors in ``docs/models.md``; ``seqgap check-model`` (``models/check.py``)
tests a model against it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

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


@dataclass(frozen=True)
class ModelSpec:
    """A model as the registry knows it: its class, config dataclass, named sizes and flags."""

    name: str
    cls: Callable[..., Any]  # cls(config, vocab_size, max_len) -> the model
    config: type
    sizes: dict[str, dict[str, Any]] = field(default_factory=dict)
    help: str = ""
    recurrent: bool = True  # fixed-size state (an "RNN" in W's sense)
    # how to construct it when it is not just cls(config, vocab_size, max_len) (a composite model)
    build: Callable[..., Any] | None = None
    # part of every run's identity: a built-in's own version (bump it when a change to the model
    # changes results: only that model's runs are retrained), a plugin's declared version or
    # "sha256:<hash of its source file>" (an edited plugin is retrained)
    version: str = "1"
    # config fields that name another registered model (the hybrid's ``rnn``): their versions
    # are part of this model's version
    composes: tuple[str, ...] = ()


class SequenceModel(nn.Module):
    """Base class of a seqgap model (the contract: ``docs/models.md``).

    Required: ``__init__(config, vocab_size, max_len)`` and either ``forward(tokens)``
    (``(B, T)`` -> logits ``(B, T, V)``, causal) or the features interface
    (``self.emb`` + ``features``), from which the default ``forward`` is made.
    Optional: ``init_state`` + ``step`` (or ``features_step``) for generation, ``state_size``
    (default: the floats in ``init_state(1)``), ``no_weight_decay``.
    """

    config: Any  # the model's config dataclass
    vocab_size: int

    # The default language-model wrapper: embed -> body -> head.  Models built from
    # ``self.emb`` (a TokenEmbedding) and ``features``/``features_step`` inherit these.
    def forward(self, tokens: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, T, V)
        if not _overrides(self, "features"):
            raise NotImplementedError(f"{type(self).__name__} implements neither forward(tokens) -> logits (B, T, V) "
                                      "nor features(x) with self.emb (see docs/models.md)")
        return self.emb.logits(self.features(self.emb(tokens)))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, T, D)
        raise NotImplementedError(f"{type(self).__name__} has no features(x): it cannot sit inside hybrid "
                                  "(see docs/models.md)")

    def features_step(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:  # (B, D) -> ((B, D), state)
        raise NotImplementedError(f"{type(self).__name__} has no features_step(x, state) (see docs/models.md)")

    def init_state(self, batch_size: int, device: torch.device | str | None = None) -> Any:
        """The state before the first token (a cache/recurrent state; model specific), in the
        parameters' dtype, on ``device`` (default: the model's)."""
        raise NotImplementedError(f"{type(self).__name__} has no init_state(batch_size, device=None): it cannot "
                                  "generate (CoT/RAG formats, gen_eval); see docs/models.md")

    def step(self, tokens: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        """One token per sequence: tokens (B,) -> (logits (B, V), new state)."""
        if not _overrides(self, "features_step"):
            raise NotImplementedError(f"{type(self).__name__} has no step(tokens, state) (nor features_step): it "
                                      "cannot generate (CoT/RAG formats, gen_eval); see docs/models.md")
        y, state = self.features_step(self.emb(tokens), state)
        return self.emb.logits(y), state

    def can_generate(self) -> bool:
        """Whether the model has the recurrent/cached path (``init_state`` and ``step`` or
        ``features_step``) that generation needs."""
        return _overrides(self, "init_state") and (_overrides(self, "step") or _overrides(self, "features_step"))

    def state_size(self) -> StateSize:
        """The floats carried from one token to the next.  Default: the numbers in
        ``init_state(1)`` (every tensor in it, however nested); 0 (not reported, which
        ``check-model`` fails) for a model without ``init_state``.  Attention models
        override it with the per-token KV cache size."""
        if not _overrides(self, "init_state"):
            return StateSize(0)
        return StateSize(count_floats(self.init_state(1)))

    def num_params(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def no_weight_decay(self) -> set[str]:
        """Names (as in ``named_parameters()``) of the parameters that get no weight decay.

        Every parameter with fewer than 2 dimensions (biases, norm gains, Mamba's D), as in
        nanoGPT, plus the names any submodule lists in its class attribute ``NO_WEIGHT_DECAY``
        (local names, e.g. ``("A_log", "D")`` on a Mamba mixer), wherever it sits in the tree
        (so a Hybrid's Mamba segments keep theirs).  Subclasses may also extend the set."""
        params = dict(self.named_parameters())
        names = {n for n, p in params.items() if p.ndim < 2}
        for prefix, module in self.named_modules():
            for local in getattr(module, "NO_WEIGHT_DECAY", ()):
                name = f"{prefix}.{local}" if prefix else local
                if name in params:
                    names.add(name)
        return names

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


def _overrides(model: Any, name: str) -> bool:
    """Whether ``model``'s class defines ``name`` itself (not the base class's default)."""
    mine = getattr(type(model), name, None)
    return mine is not None and mine is not getattr(SequenceModel, name, None)


def count_floats(state: Any) -> int:
    """The numbers in a state: every tensor in it, through tuples, lists, dicts and dataclasses."""
    if isinstance(state, torch.Tensor):
        return state.numel()
    if isinstance(state, dict):
        return sum(count_floats(v) for v in state.values())
    if isinstance(state, (tuple, list)):
        return sum(count_floats(v) for v in state)
    if dataclasses.is_dataclass(state) and not isinstance(state, type):
        return sum(count_floats(getattr(state, f.name)) for f in dataclasses.fields(state))
    return 0
