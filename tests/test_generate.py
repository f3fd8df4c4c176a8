"""Greedy generation: cached == uncached == a one-sequence naive loop, for every model; tools, stops, limits."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seqgap.errors import SeqgapError
from seqgap.models import MODELS, build_model, get_spec
from seqgap.models.base import SequenceModel
from seqgap.training.generate import greedy_generate

V, MAX_LEN = 11, 48
NAMES = sorted(MODELS)


def make(name: str, max_len: int = MAX_LEN, **overrides):
    torch.manual_seed(0)
    sizes = get_spec(name).sizes
    size = next((s for s in ("tiny", "small") if s in sizes), None)
    model = build_model(name, vocab_size=V, max_len=max_len, size=size, **overrides).eval()
    with torch.no_grad():  # far from the initialisation: argmaxes that depend on the context
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model


def prompts(seed: int = 0, n: int = 5, lo: int = 1, hi: int = 9) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, V, size=rng.integers(lo, hi + 1)).tolist() for _ in range(n)]


def naive_generate(model, prompt, max_new_tokens, stop_ids=(), tool=None):
    """One sequence, full recomputation, no batching: the oracle."""
    ctx, gen, n_gen = list(prompt), [False] * len(prompt), 0
    while n_gen < max_new_tokens and len(ctx) <= model.max_len:
        with torch.no_grad():
            tok = int(model(torch.tensor([ctx]))[0, -1].argmax())
        ctx.append(tok)
        gen.append(True)
        n_gen += 1
        if tok in stop_ids:
            break
        extra = tool(list(ctx)) if tool else None
        if extra:
            ctx += list(extra)
            gen += [False] * len(extra)
    return ctx, gen


def every_fourth(ctx):  # a tool that fires often whatever the model does
    return [len(ctx) % V, 3] if len(ctx) % 4 == 0 else None


@pytest.mark.parametrize("name", NAMES)
def test_cached_equals_uncached_equals_naive(name):
    model = make(name)
    ps = prompts(seed=1)
    cached = greedy_generate(model, ps, max_new_tokens=12)
    uncached = greedy_generate(model, ps, max_new_tokens=12, use_cache=False)
    for p, a, b in zip(ps, cached, uncached):
        assert a.context == b.context and a.generated == b.generated and a.stop_reason == b.stop_reason
        ctx, gen = naive_generate(model, p, 12)
        assert a.context == ctx and a.generated == gen
        assert a.context[: len(p)] == p and a.num_generated == 12 and a.stop_reason == "max_new_tokens"
    assert len({tuple(r.continuation) for r in cached}) > 1  # the model's outputs depend on the prompt


@pytest.mark.parametrize("name", NAMES)
def test_tool_is_honored_in_both_paths(name):
    model = make(name)
    ps = prompts(seed=2)
    cached = greedy_generate(model, ps, max_new_tokens=10, tool=every_fourth)
    uncached = greedy_generate(model, ps, max_new_tokens=10, tool=every_fourth, use_cache=False)
    for p, a, b in zip(ps, cached, uncached):
        assert a.context == b.context and a.generated == b.generated
        ctx, gen = naive_generate(model, p, 10, tool=every_fourth)
        assert a.context == ctx and a.generated == gen
        assert a.num_generated == 10 and a.forced_positions  # tool tokens are forced, and not counted


@pytest.mark.parametrize("name, overrides", [("mamba", {}), ("hybrid", {}), ("hybrid", dict(rnn="lstm", attn_position=1))])
def test_prefill_matches_stepping(name, overrides):
    model = make(name, **overrides)
    assert hasattr(model, "prefill")
    ps = prompts(seed=3, lo=4, hi=12)
    a = greedy_generate(model, ps, max_new_tokens=8, tool=every_fourth)
    b = greedy_generate(model, ps, max_new_tokens=8, tool=every_fourth, prefill=False)
    assert [r.context for r in a] == [r.context for r in b]


# --------------------------------------------------------------------------- a model whose output we know


class Counter(SequenceModel):
    """Predicts (last token + 1) mod V, with certainty."""

    def __init__(self, max_len: int = 100):
        super().__init__()
        self.max_len, self.vocab_size = max_len, V
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, tokens):  # (B, T) -> (B, T, V)
        if tokens.shape[1] > self.max_len:
            raise SeqgapError("too long")
        return F.one_hot((tokens + 1) % V, V).float() + self.dummy

    def init_state(self, batch_size, device=None):
        return 0  # the position

    def step(self, tokens, pos):
        if pos >= self.max_len:
            raise SeqgapError("too long")
        return F.one_hot((tokens + 1) % V, V).float(), pos + 1


@pytest.mark.parametrize("use_cache", [True, False])
def test_tool_trigger_stop_and_failure(use_cache):
    def tool(ctx):  # after a generated 5, insert 9 9; a generated 2 after a 0 prompt breaks the tool
        if ctx[-1] == 5:
            return [9, 9]
        if ctx[0] == 0 and ctx[-1] == 2:
            raise RuntimeError("index out of range")
        return None

    res = greedy_generate(Counter(), [[3], [0], [7, 8]], max_new_tokens=6, stop_ids={1}, tool=tool, use_cache=use_cache)
    a, b, c = res
    assert a.context == [3, 4, 5, 9, 9, 10, 0, 1] and a.stop_reason == "stop" and a.hit_stop
    assert a.generated == [False, True, True, False, False, True, True, True] and a.forced_positions == [3, 4]
    assert b.context == [0, 1] and b.stop_reason == "stop"  # stopped at 1 before reaching the 2
    assert c.context == [7, 8, 9, 10, 0, 1] and c.stop_reason == "stop"
    res = greedy_generate(Counter(), [[0, 1], [6]], max_new_tokens=6, tool=tool, use_cache=use_cache)
    assert res[0].failed and res[0].stop_reason == "tool_error" and "index out of range" in res[0].error
    assert res[0].context == [0, 1, 2]
    assert not res[1].failed and res[1].context == [6, 7, 8, 9, 10, 0, 1] and res[1].stop_reason == "max_new_tokens"


@pytest.mark.parametrize("use_cache", [True, False])
def test_max_len_ends_sequences_without_crashing(use_cache):
    res = greedy_generate(Counter(max_len=6), [[1, 2, 3], [4], [1, 2, 3, 4, 5, 6, 7, 8]], max_new_tokens=50,
                          use_cache=use_cache)
    assert res[0].context == [1, 2, 3, 4, 5, 6, 7] and res[0].stop_reason == "max_len"  # max_len + 1 tokens
    assert res[1].context == [4, 5, 6, 7, 8, 9, 10]
    assert res[2].context == [1, 2, 3, 4, 5, 6, 7, 8] and res[2].num_generated == 0 and res[2].stop_reason == "max_len"


@pytest.mark.parametrize("name", ["llama", "mamba", "hybrid"])
def test_real_models_stop_at_max_len(name):
    model = make(name, max_len=10)
    for use_cache in (True, False):
        res = greedy_generate(model, prompts(seed=4, hi=12), max_new_tokens=30, use_cache=use_cache)
        for r in res:
            assert len(r.context) <= 11 or r.num_generated == 0
            assert r.stop_reason == "max_len"


def test_arguments():
    with pytest.raises(SeqgapError, match="at least one token"):
        greedy_generate(Counter(), [[1], []], max_new_tokens=3)
    assert greedy_generate(Counter(), [], max_new_tokens=3) == []
    res = greedy_generate(Counter(), [np.array([1, 2])], max_new_tokens=0)
    assert res[0].context == [1, 2] and res[0].stop_reason == "max_new_tokens"
    model = make("llama").train()
    greedy_generate(model, [[1]], max_new_tokens=2)
    assert model.training  # the mode is restored
