"""Mamba and Hybrid: the fast chunked scan against the naive loop and the per-token step, gradients
against autograd through the loop, parameter counts by hand, hybrid layouts."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqgap.errors import SeqgapError
from seqgap.models import build_model
from seqgap.models.mamba import selective_scan, selective_scan_ref

V = 13


def scan_inputs(Bt, T, Di, N, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(Bt, T, Di, generator=g, dtype=dtype)
    delta = torch.rand(Bt, T, Di, generator=g, dtype=dtype) * 0.8 + 0.01
    A = -torch.rand(Di, N, generator=g, dtype=dtype) * 4 - 0.1
    B = torch.randn(Bt, T, N, generator=g, dtype=dtype)
    C = torch.randn(Bt, T, N, generator=g, dtype=dtype)
    h0 = torch.randn(Bt, Di, N, generator=g, dtype=dtype)
    return [t.requires_grad_() for t in (u, delta, A, B, C, h0)]


def scan_steps(u, delta, A, B, C, h0):
    """The recurrence written per element with Python scalars-free loops over (t, d, n): a second oracle."""
    Bt, T, Di = u.shape
    h = h0.detach().clone()
    y = torch.zeros(Bt, T, Di, dtype=u.dtype)
    for t in range(T):
        for d in range(Di):
            h[:, d] = torch.exp(delta[:, t, d, None] * A[d]) * h[:, d] + delta[:, t, d, None] * u[:, t, d, None] * B[:, t]
            y[:, t, d] = (h[:, d] * C[:, t]).sum(-1)
    return y, h


@pytest.mark.parametrize("T, chunk", [(1, 4), (3, 4), (4, 4), (13, 4), (16, 16), (37, 16), (40, 8)])
def test_fast_scan_matches_loops(T, chunk):
    ins = scan_inputs(2, T, 5, 3, seed=T)
    y, h = selective_scan(*ins, chunk=chunk)
    y_ref, h_ref = selective_scan_ref(*ins)
    y_el, h_el = scan_steps(*[t.detach() for t in ins])
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h, h_ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(y, y_el, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(h, h_el, rtol=1e-10, atol=1e-10)
    u, delta, A, B, C, h0 = ins
    y_empty, h_empty = selective_scan(u[:, :0], delta[:, :0], A, B[:, :0], C[:, :0], h0, chunk=chunk)
    assert y_empty.shape == (2, 0, 5) and torch.equal(h_empty, ins[5])
    y0, _ = selective_scan(*ins[:5], chunk=chunk)  # h0=None means zeros
    torch.testing.assert_close(y0, selective_scan_ref(*ins[:5])[0])


@pytest.mark.parametrize("T, chunk", [(1, 4), (7, 4), (8, 4), (21, 8)])
def test_fast_scan_gradients(T, chunk):
    ins = scan_inputs(2, T, 4, 3, seed=10 + T)
    g = torch.Generator().manual_seed(1)
    wy, wh = torch.randn(2, T, 4, generator=g, dtype=torch.float64), torch.randn(2, 4, 3, generator=g, dtype=torch.float64)

    def loss(fn):
        y, h = fn(*ins)
        return (y * wy).sum() + (h * wh).sum()

    fast = torch.autograd.grad(loss(lambda *a: selective_scan(*a, chunk=chunk)), ins)
    ref = torch.autograd.grad(loss(selective_scan_ref), ins)
    for name, a, b in zip(("u", "delta", "A", "B", "C", "h0"), fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, chunk=chunk), ins)


def test_fast_scan_per_sequence_A():
    """A (Bt, Di, N), one per sequence (what the vmap rule folds members into): each sequence
    scanned on its own with its A, values and gradients."""
    u, delta, _, B, C, h0 = scan_inputs(3, 9, 4, 2, seed=3)
    A = (-torch.rand(3, 4, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64) * 4 - 0.1).requires_grad_()
    ins = (u, delta, A, B, C, h0)
    y, h = selective_scan(*ins, chunk=4)
    y_ref, h_ref = selective_scan_ref(*ins)
    torch.testing.assert_close(y, y_ref, rtol=1e-10, atol=1e-10)
    for b in range(3):
        yb, hb = selective_scan(*(t[b:b + 1] for t in ins), chunk=4)
        torch.testing.assert_close(yb[0], y[b], rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(hb[0], h[b], rtol=1e-12, atol=1e-12)
    w = torch.randn(3, 9, 4, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    fast = torch.autograd.grad((y * w).sum() + h.sum(), ins)
    ref = torch.autograd.grad((y_ref * w).sum() + h_ref.sum(), ins)
    for name, a, b in zip(("u", "delta", "A", "B", "C", "h0"), fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=name)
    assert torch.autograd.gradcheck(lambda *a: selective_scan(*a, chunk=4), ins)


def test_fast_scan_float32_long():
    ins = [t.detach().float() for t in scan_inputs(3, 150, 6, 4, seed=5)]
    y, h = selective_scan(*ins, chunk=16)
    y_ref, h_ref = selective_scan_ref(*ins)
    torch.testing.assert_close(y, y_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(h, h_ref, rtol=1e-4, atol=1e-4)


def make(name="mamba", max_len=64, double=True, **kw):
    torch.manual_seed(0)
    model = build_model(name, vocab_size=V, max_len=max_len, **kw).eval()
    return model.double() if double else model


def run_steps(model, x):
    state = model.init_state(x.shape[0], "cpu")
    out = []
    for t in range(x.shape[1]):
        logits, state = model.step(x[:, t], state)
        out.append(logits)
    return torch.stack(out, 1), state


@pytest.mark.parametrize("T", [1, 3, 17, 33])
@pytest.mark.parametrize("chunk", [4, 16])
def test_mamba_forward_ref_step_agree(T, chunk):
    model = make(d_model=16, n_layers=2, d_state=4, chunk=chunk)
    x = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(T))
    with torch.no_grad():
        fast, ref = model(x), model(x, scan="ref")
        steps, state = run_steps(model, x)
        torch.testing.assert_close(fast, ref, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(fast, steps, rtol=1e-10, atol=1e-10)
        logits, pre = model.prefill(x)  # the state after the prompt, in one parallel call
        torch.testing.assert_close(logits, fast)
        for (c1, h1), (c2, h2) in zip(pre, state):
            torch.testing.assert_close(c1, c2)
            torch.testing.assert_close(h1, h2, rtol=1e-10, atol=1e-10)


def test_mamba_training_gradients_match_reference():
    model = make(d_model=16, n_layers=2, d_state=4, chunk=4).train()
    x = torch.randint(0, V, (2, 11), generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, V, (2, 11), generator=torch.Generator().manual_seed(1))
    grads = []
    for scan in ("fast", "ref"):
        model.zero_grad()
        F.cross_entropy(model(x, scan=scan).flatten(0, 1), y.flatten()).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for n in grads[0]:
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=1e-9, atol=1e-11, msg=n)
    assert all(g.abs().max() > 0 for g in grads[0].values())  # every parameter is used


def test_mamba_param_count_by_hand():
    d, n_layers, N, K = 64, 16, 16, 4
    Di, R = 2 * d, math.ceil(d / 16)
    layer = (d * 2 * Di  # in_proj
             + Di * K + Di  # depthwise conv + bias
             + Di * (R + 2 * N)  # x_proj -> delta (low rank), B, C
             + R * Di + Di  # dt_proj
             + Di * N + Di  # A_log, D
             + Di * d  # out_proj
             + d)  # RMSNorm
    model = build_model("mamba", vocab_size=70, max_len=128, size="0.5M", frozen_embeddings=True)
    assert model.num_params() == n_layers * layer + d
    assert 0.5e6 <= model.num_params() <= 0.55e6  # W: "Mamba d64 x 16 layers = 0.52M"
    assert model.state_size().floats == n_layers * (Di * N + Di * (K - 1))
    learned = build_model("mamba", vocab_size=70, max_len=128, size="0.5M")
    assert learned.num_params() == model.num_params() + 2 * 70 * d
    assert build_model("mamba", vocab_size=V, max_len=8, d_model=40, dt_rank=7).layers[0].mixer.dt_rank == 7


def test_mamba_out_proj_rescaled_by_depth():
    """The reference's rescale_prenorm_residual: out_proj ~ kaiming-uniform (nn.Linear's default,
    bound 1/sqrt(fan_in)) divided by sqrt(n_layers), per layer."""
    for n_layers in (1, 4, 16):
        model = build_model("mamba", vocab_size=V, max_len=8, d_model=32, n_layers=n_layers)
        bound = model.layers[0].mixer.d_inner ** -0.5 / math.sqrt(n_layers)
        for layer in model.layers:
            w = layer.mixer.out_proj.weight.abs()
            assert w.max() <= bound and w.max() > 0.95 * bound  # uniform in [-bound, bound]
            assert abs(w.mean().item() - bound / 2) < 0.05 * bound


def test_mamba_no_weight_decay():
    model = build_model("mamba", vocab_size=V, max_len=8, size="tiny")
    no_decay = model.no_weight_decay()
    for i in range(2):
        assert {f"layers.{i}.mixer.A_log", f"layers.{i}.mixer.D", f"layers.{i}.mixer.conv_bias",
                f"layers.{i}.mixer.dt_proj.bias", f"layers.{i}.norm.weight"} <= no_decay
        assert not {f"layers.{i}.mixer.in_proj.weight", f"layers.{i}.mixer.out_proj.weight",
                    f"layers.{i}.mixer.conv_weight"} & no_decay
    assert "norm_f.weight" in no_decay and "emb.embed.weight" not in no_decay
    hybrid = build_model("hybrid", vocab_size=V, max_len=8, size="tiny", attn_position=1)
    assert {"before.layers.0.mixer.A_log", "after.layers.0.mixer.A_log"} <= hybrid.no_weight_decay()


def test_mamba_s4d_init():
    m = build_model("mamba", vocab_size=V, max_len=8, size="tiny").layers[0].mixer
    A = -torch.exp(m.A_log)
    torch.testing.assert_close(A[0], -torch.arange(1, 17, dtype=torch.float32))
    dt = F.softplus(m.dt_proj.bias)
    assert dt.min() >= 0.001 * 0.999 and dt.max() <= 0.1 * 1.001


# --------------------------------------------------------------------------- hybrid


@pytest.mark.parametrize("rnn, opts", [("mamba", {"d_state": 4}), ("lstm", {}), ("dense-ssm", {"d_input": 8})])
@pytest.mark.parametrize("attn_position", [0, 1, 3, None])
def test_hybrid_layouts_causal_and_step(rnn, opts, attn_position):
    # float32 (float64 generation of every model: test_models.test_double_model_generates_in_float64)
    model = make("hybrid", max_len=24, double=False, d_model=16, n_layers=3, n_heads=2, rnn=rnn,
                 attn_position=attn_position, rnn_options=opts)
    n_before = 3 if attn_position is None else attn_position
    assert (model.before is None) == (n_before == 0) and (model.after is None) == (n_before == 3)
    assert (model.norm is None) == (model.after is not None)
    x = torch.randint(0, V, (2, 19), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
        y = x.clone()
        y[:, 9:] = (y[:, 9:] + 1) % V
        out = model(y)
        torch.testing.assert_close(out[:, :9], ref[:, :9], rtol=0, atol=1e-6)  # causal
        assert (out[:, 9:] - ref[:, 9:]).abs().max() > 1e-6
        steps, state = run_steps(model, x)
        torch.testing.assert_close(steps, ref, rtol=1e-4, atol=1e-4)
        assert state.pos == 19
        logits, pre = model.prefill(x[:, :11])  # generation: the prompt in one call, then steps
        torch.testing.assert_close(logits, ref[:, :11], rtol=1e-4, atol=1e-4)
        for t in range(11, 19):
            logits, pre = model.step(x[:, t], pre)
            torch.testing.assert_close(logits, ref[:, t], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rnn", ["mamba", "lstm", "dense-ssm"])
def test_hybrid_has_no_unused_parameters(rnn):
    model = make("hybrid", double=False, d_model=16, n_layers=2, n_heads=2, rnn=rnn, attn_position=1).train()
    x = torch.randint(0, V, (2, 9), generator=torch.Generator().manual_seed(0))
    model(x).pow(2).mean().backward()
    unused = [n for n, p in model.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert unused == []
    assert not any("emb" in n for n, _ in model.named_parameters() if not n.startswith("emb."))


def test_hybrid_sizes_and_state():
    model = build_model("hybrid", vocab_size=70, max_len=128, size="0.5M", frozen_embeddings=True)
    mamba12 = build_model("mamba", vocab_size=70, max_len=128, size="0.5M", n_layers=12, frozen_embeddings=True)
    d = 64
    llama_block = 2 * d + 4 * d * d + 3 * d * 256
    # the Mamba stack keeps its output RMSNorm; the hybrid adds a final one after the (last) attention layer
    assert model.num_params() == mamba12.num_params() + llama_block + d
    assert 0.43e6 <= model.num_params() <= 0.49e6  # W: "Hybrid d64, 12 Mamba + 1 attention = 0.46M"
    size = model.state_size()
    assert size.per_token and size.floats == 2 * d and size.fixed_floats == mamba12.state_size().floats
    assert "per token" in str(size) and "fixed" in str(size)


def test_hybrid_errors():
    with pytest.raises(SeqgapError, match="attn_position"):
        build_model("hybrid", vocab_size=V, max_len=8, n_layers=2, attn_position=3)
    with pytest.raises(SeqgapError, match="recurrent"):
        build_model("hybrid", vocab_size=V, max_len=8, rnn="llama")
    with pytest.raises(SeqgapError, match="unknown model"):
        build_model("hybrid", vocab_size=V, max_len=8, rnn="gru")
    with pytest.raises(SeqgapError, match="rnn_options"):
        build_model("hybrid", vocab_size=V, max_len=8, rnn_options={"d_model": 8})
    with pytest.raises(SeqgapError, match="max_len"):
        build_model("hybrid", vocab_size=V, max_len=8, size="tiny")(torch.zeros(1, 9, dtype=torch.long))
    model = build_model("hybrid", vocab_size=V, max_len=8, size="tiny", attn_flavor="gpt2")
    assert model(torch.zeros(1, 5, dtype=torch.long)).shape == (1, 5, V)
    # rnn_options from the command line: "k=v,k=v" or JSON
    for opts in ("d_state=4,expand=1", '{"d_state": 4, "expand": 1}'):
        mixer = build_model("hybrid", vocab_size=V, max_len=8, size="tiny", rnn_options=opts).before.layers[0].mixer
        assert (mixer.d_state, mixer.d_inner) == (4, 64)
    with pytest.raises(SeqgapError, match="rnn_options"):
        build_model("hybrid", vocab_size=V, max_len=8, rnn_options="d_state")
