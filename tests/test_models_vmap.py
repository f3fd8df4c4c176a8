"""Every built-in model under ``torch.func.vmap`` over stacked members, as an ensemble runs it.

E differently seeded copies are stacked (``stack_module_state``) and run through
``vmap(functional_call(model, ...))``; a backward of the summed loss must give each copy
the logits and parameter gradients of its own forward/backward.  Each model makes itself
traceable in its own file: attention picks the math SDPA kernel under vmap, Mamba's scan
has a vmap rule, the LSTM a per-member rule around torch's kernel.
"""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from seqgap.models import build_model
from seqgap.models.mamba import selective_scan, selective_scan_ref
from seqgap.models.registry import BUILTIN_MODELS

V, T, B, E = 7, 9, 2, 3
ATTENTION = {"transformer", "llama", "hybrid"}
CASES = [(name, {}) for name in sorted(BUILTIN_MODELS)] + [
    ("hybrid", dict(rnn="lstm", attn_position=1)),
    ("hybrid", dict(rnn="dense-ssm", attn_position=0)),
    ("lstm", dict(hidden=24)),  # a projection after the LSTM
    ("llama", dict(frozen_embeddings=True)),  # a buffer (the frozen table) besides the parameters
    ("mamba", dict(frozen_embeddings=True)),
]


def members(name: str, **overrides):
    kw = dict(d_model=16, n_layers=2, **({"n_heads": 2} if name in ATTENTION else {}))
    kw.update(overrides)
    models = []
    for seed in range(E):
        torch.manual_seed(seed)
        models.append(build_model(name, vocab_size=V, max_len=12, size="tiny", **kw))
    return models


def data(seed: int, shape=(B, T)) -> torch.Tensor:
    return torch.randint(0, V, shape, generator=torch.Generator().manual_seed(seed))


def loss_of(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


@pytest.mark.parametrize("per_member_tokens", [False, True])
@pytest.mark.parametrize("name, overrides", CASES)
def test_vmap_matches_each_member(name, overrides, per_member_tokens):
    models = members(name, **overrides)
    base = models[0]
    params, buffers = stack_module_state(models)
    x = data(0, (E, B, T)) if per_member_tokens else data(0)
    y = data(1, (E, B, T)) if per_member_tokens else data(1).expand(E, B, T)

    def one(p, b, tokens):
        return functional_call(base, (p, b), (tokens,))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        logits = vmap(one, in_dims=(0, 0, 0 if per_member_tokens else None))(params, buffers, x)  # (E, B, T, V)
        total = sum(loss_of(logits[e], y[e]) for e in range(E))
        grads = torch.autograd.grad(total, list(params.values()))
    # no batching-rule fallback (e.g. the CPU flash attention kernel's per-sample loop)
    assert not [w for w in caught if "batching rule" in str(w.message)], [str(w.message) for w in caught]
    assert logits.shape == (E, B, T, V)
    for e, model in enumerate(models):
        xe = x[e] if per_member_tokens else x
        own = model(xe)
        torch.testing.assert_close(logits[e], own, atol=1e-5, rtol=1e-5)
        own_grads = torch.autograd.grad(loss_of(own, y[e]), list(model.parameters()))
        for n, g, g_own in zip(params, grads, own_grads):
            torch.testing.assert_close(g[e], g_own, atol=1e-5, rtol=1e-4, msg=f"{name} member {e}: {n}")
    assert any(g.abs().max() > 0 for g in grads)
    assert not torch.equal(logits[0], logits[1])  # the members really differ


@pytest.mark.parametrize("name", ["lstm", "mamba", "llama"])
def test_functorch_grad_of_one_member(name):
    """torch.func.grad (no vmap) through the models' own functions (the LSTM's recomputing backward,
    the scan's hand-written one) equals autograd."""
    model = members(name)[1].double()
    x, y = data(2), data(3)
    named = dict(model.named_parameters())
    g = grad(lambda p: loss_of(functional_call(model, p, (x,)), y))(named)
    ref = torch.autograd.grad(loss_of(model(x), y), list(named.values()))
    for (n, a), b in zip(g.items(), ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-10, msg=n)


def test_scan_vmap_rule():
    """The scan's vmap rule (members folded into the batch) against one call per member, float64,
    with per-member A, a shared B and a vmapped dimension that is not the first."""
    g = torch.Generator().manual_seed(0)
    Bt, Tn, Di, N = 2, 11, 3, 4
    u = torch.randn(Bt, E, Tn, Di, generator=g, dtype=torch.float64, requires_grad=True)  # member dim 1
    delta = (torch.rand(E, Bt, Tn, Di, generator=g, dtype=torch.float64) * 0.5 + 0.01).requires_grad_()
    A = (-torch.rand(E, Di, N, generator=g, dtype=torch.float64) * 3 - 0.1).requires_grad_()
    Bm = torch.randn(Bt, Tn, N, generator=g, dtype=torch.float64, requires_grad=True)  # shared by the members
    C = torch.randn(E, Bt, Tn, N, generator=g, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(E, Bt, Di, N, generator=g, dtype=torch.float64, requires_grad=True)
    y, h = vmap(lambda *a: selective_scan(*a, chunk=4), in_dims=(1, 0, 0, None, 0, 0))(u, delta, A, Bm, C, h0)
    w = torch.randn(y.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad((y * w).sum() + h.pow(2).sum(), (u, delta, A, Bm, C, h0))
    ys, hs = zip(*(selective_scan_ref(u[:, e], delta[e], A[e], Bm, C[e], h0[e]) for e in range(E)))
    ys, hs = torch.stack(ys), torch.stack(hs)
    torch.testing.assert_close(y, ys, atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(h, hs, atol=1e-10, rtol=1e-10)
    ref = torch.autograd.grad((ys * w).sum() + hs.pow(2).sum(), (u, delta, A, Bm, C, h0))
    for n, a, b in zip(("u", "delta", "A", "B", "C", "h0"), grads, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-9, msg=n)
