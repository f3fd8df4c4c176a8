"""Model tests.

The first group runs on *every* registered model (``seqgap.models.MODELS``) at its
smallest named size, so new models are covered as soon as they register.  The
rest checks the built-in models against independent oracles: hand-counted
parameter numbers, naive attention, explicit LSTM equations, the Dense-SSM's
unnormalized matrix product.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from seqgap.errors import SeqgapError
from seqgap.models import MODELS, build_model, get_spec
from seqgap.models.embeddings import TokenEmbedding
from seqgap.models.transformer import Block, apply_rope, rope_table

V, MAX_LEN = 13, 40
NAMES = sorted(MODELS)


def smallest_size(name: str) -> str | None:
    sizes = get_spec(name).sizes
    return next((s for s in ("tiny", "small") if s in sizes), None)


def make(name: str, vocab_size: int = V, max_len: int = MAX_LEN, **overrides):
    torch.manual_seed(0)
    model = build_model(name, vocab_size=vocab_size, max_len=max_len, size=smallest_size(name), **overrides)
    return model.eval()


def tokens(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, V, (batch, length), generator=torch.Generator().manual_seed(seed))


def run_steps(model, x: torch.Tensor) -> torch.Tensor:
    """Logits from the recurrent/cached path, one token at a time: (B, T) -> (B, T, V)."""
    state = model.init_state(x.shape[0], x.device)
    out = []
    for t in range(x.shape[1]):
        logits, state = model.step(x[:, t], state)
        out.append(logits)
    return torch.stack(out, 1)


# --------------------------------------------------------------------------- every model


def test_builtin_models_registered():
    assert {"transformer", "llama", "lstm", "dense-ssm"} <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_causal(name):
    model = make(name)
    x = tokens(2, 16)
    with torch.no_grad():
        ref = model(x)
        assert ref.shape == (2, 16, V)
        for t in (0, 6, 14):
            y = x.clone()
            y[:, t + 1:] = (x[:, t + 1:] + 1 + tokens(2, 15 - t, seed=t)) % V  # every later token changes
            out = model(y)
            torch.testing.assert_close(out[:, : t + 1], ref[:, : t + 1], atol=1e-5, rtol=0)
            assert (out[:, t + 1:] - ref[:, t + 1:]).abs().max() > 0  # the test can see a change
        y = x.clone()
        y[:, 0] = (x[:, 0] + 1) % V
        assert (model(y)[:, -1] - ref[:, -1]).abs().max() > 0  # the last output does see the first token


@pytest.mark.parametrize("name", NAMES)
def test_step_matches_forward(name):
    model = make(name)
    x = tokens(3, 21)
    with torch.no_grad():
        torch.testing.assert_close(run_steps(model, x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name, overrides", [
    ("lstm", dict(d_model=16, hidden=24, n_layers=2)),
    ("dense-ssm", dict(d_model=16, hidden=24, n_layers=2, frozen_embeddings=True)),
    ("llama", dict(d_model=24, n_heads=3, d_ff=40, n_layers=3)),
    ("transformer", dict(d_model=24, n_heads=2, n_layers=1, frozen_embeddings=True)),
])
def test_step_matches_forward_other_shapes(name, overrides):
    model = make(name, **overrides)
    x = tokens(2, 13)
    with torch.no_grad():
        torch.testing.assert_close(run_steps(model, x), model(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_features_standalone(name):
    """features / features_step on arbitrary (B, T, d_model) inputs: what the Hybrid composes."""
    model = make(name)
    D = model.config.d_model
    x = torch.randn(2, 11, D, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        y = model.features(x)
        assert y.shape == (2, 11, D)
        state = model.init_state(2, "cpu")
        steps = []
        for t in range(11):
            yt, state = model.features_step(x[:, t], state)
            steps.append(yt)
        torch.testing.assert_close(torch.stack(steps, 1), y, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_frozen_embeddings(name):
    model = make(name, frozen_embeddings=True).train()
    assert isinstance(model.emb, TokenEmbedding) and model.emb.frozen
    assert list(model.emb.parameters()) == []  # neither embedding nor head is a parameter
    table = model.emb.table
    assert not table.requires_grad
    assert not any(p is table for p in model.parameters())
    before = table.clone()
    x = tokens(2, 12)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss = F.cross_entropy(model(x).flatten(0, 1), tokens(2, 12, seed=2).flatten())
    loss.backward()
    assert table.grad is None
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())
    opt.step()
    assert torch.equal(table, before)
    model.eval()
    with torch.no_grad():  # embeddings are the sinusoidal table, the head is the same table (tied)
        torch.testing.assert_close(model(x), model.features(table[x]) @ table.t())


@pytest.mark.parametrize("name", NAMES)
def test_state_size(name):
    size = make(name).state_size()
    assert size.floats > 0 and size.bits == size.floats * size.bits_per_float
    assert size.per_token == (not get_spec(name).recurrent)


@pytest.mark.parametrize("name", NAMES)
def test_named_param_counts_match_their_names(name):
    """Sizes called "0.5M", "1M", "2M" have about that many parameters (W's vocabulary ~70)."""
    for size, nominal in (("0.5M", 0.5e6), ("1M", 1e6), ("2M", 2e6)):
        if size in get_spec(name).sizes:
            n = build_model(name, vocab_size=70, max_len=128, size=size).num_params()
            assert 0.75 * nominal <= n <= 1.25 * nominal, (name, size, n)


def test_build_errors():
    with pytest.raises(SeqgapError, match="unknown model"):
        build_model("no-such-model", vocab_size=V, max_len=MAX_LEN)
    for name in ("transformer", "llama", "lstm", "dense-ssm"):
        with pytest.raises(SeqgapError, match="unknown size"):
            build_model(name, vocab_size=V, max_len=MAX_LEN, size="huge")
        with pytest.raises(SeqgapError, match="d_model"):
            build_model(name, vocab_size=V, max_len=MAX_LEN, d_model=-8)
    with pytest.raises(SeqgapError, match="flavor"):
        build_model("transformer", vocab_size=V, max_len=MAX_LEN, flavor="bert")
    with pytest.raises(SeqgapError, match="divisible"):
        build_model("llama", vocab_size=V, max_len=MAX_LEN, d_model=30, n_heads=4)
    with pytest.raises(SeqgapError, match="scan"):
        build_model("dense-ssm", vocab_size=V, max_len=MAX_LEN, scan="magic")


# --------------------------------------------------------------------------- parameter counts, by hand


def test_param_counts_by_hand():
    def count(name, size=None, vocab=V, max_len=MAX_LEN, **kw):
        return build_model(name, vocab_size=vocab, max_len=max_len, size=size, **kw).num_params()

    emb = 2 * V * 64  # learned embedding + untied head
    # GPT-2 layer: LN 2d, qkv 3d^2+3d, out d^2+d, LN 2d, MLP 4d^2+4d + 4d^2+d  = 12 d^2 + 13 d
    d = 64
    assert count("transformer", "tiny") == 2 * (12 * d * d + 13 * d) + MAX_LEN * d + 2 * d + emb
    # LLaMA layer: 2 RMSNorm d, qkv 3d^2, out d^2, SwiGLU 3 d ff (no biases)
    llama_layer = 2 * d + 4 * d * d + 3 * d * 4 * d
    assert count("llama", "tiny") == 2 * llama_layer + d + emb
    # W's 0.5M Transformer: d64 x 8 layers, ff 256, 4 heads, ~70 tokens = 0.53M
    n = count("llama", "0.5M", vocab=70, max_len=128)
    assert n == 8 * (2 * d + 4 * d * d + 3 * d * 256) + d + 2 * 70 * d
    assert 0.45e6 <= n <= 0.6e6
    assert count("llama", "0.5M", vocab=70, frozen_embeddings=True) == n - 2 * 70 * d
    # LSTM: 4 gates x (input weights + recurrent weights + two biases)
    assert count("lstm", "tiny") == 4 * (d * d + d * d + 2 * d) + emb
    h = 96  # two layers, hidden != d_model: a projection back to d_model
    assert count("lstm", d_model=d, hidden=h, n_layers=2) == (
        4 * (d * h + h * h + 2 * h) + 4 * (h * h + h * h + 2 * h) + (h * d + d) + emb)
    assert count("lstm", "paper") == 4 * (2 * 768 * 768 + 2 * 768) + 2 * V * 768
    # Dense-SSM: in LayerNorm 2d, in_proj d*32, W d^2 (32+1), h0 d, out LayerNorm 2d
    dense = 2 * d + d * 32 + d * d * 33 + d + 2 * d
    assert count("dense-ssm", "tiny") == dense + emb
    assert count("dense-ssm", "tiny", frozen_embeddings=True) == dense + d * d + d  # + linear readout


# --------------------------------------------------------------------------- transformer


def naive_attention(attn, x: torch.Tensor) -> torch.Tensor:
    """Per-head loops, explicit mask and softmax; RoPE as 2x2 rotations of pairs (2i, 2i+1)."""
    B, T, D = x.shape
    H, hd = attn.n_heads, attn.head_dim
    q, k, v = attn.qkv(x).split(D, dim=-1)
    outs = []
    for head in range(H):
        sl = slice(head * hd, (head + 1) * hd)
        qh, kh, vh = q[..., sl].clone(), k[..., sl].clone(), v[..., sl]
        if attn.rope:
            for t in range(T):
                for i in range(hd // 2):
                    theta = t * 10000.0 ** (-2 * i / hd)
                    c, s = math.cos(theta), math.sin(theta)
                    for z in (qh, kh):
                        a, b = z[:, t, 2 * i].clone(), z[:, t, 2 * i + 1].clone()
                        z[:, t, 2 * i], z[:, t, 2 * i + 1] = c * a - s * b, s * a + c * b
        scores = qh @ kh.transpose(1, 2) / math.sqrt(hd)  # (B, T, T)
        scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
        outs.append(scores.softmax(-1) @ vh)
    return attn.proj(torch.cat(outs, -1))


@pytest.mark.parametrize("flavor", ["gpt2", "llama"])
def test_attention_matches_naive(flavor):
    torch.manual_seed(0)
    block = Block(32, 4, None, flavor, max_len=12)
    for p in block.parameters():  # larger weights, so that attention is far from uniform
        torch.nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 9, 32)
    with torch.no_grad():
        torch.testing.assert_close(block.attn(x), naive_attention(block.attn, x), atol=1e-5, rtol=1e-4)


def test_rope_depends_on_relative_position_only():
    rot = rope_table(64, 16)
    q, k = torch.randn(16), torch.randn(16)
    dot = lambda m, n: apply_rope(q, rot[m]) @ apply_rope(k, rot[n])  # noqa: E731
    torch.testing.assert_close(dot(5, 2), dot(40, 37))
    torch.testing.assert_close(dot(0, 0), q @ k)
    assert not torch.allclose(dot(5, 2), dot(5, 3))
    torch.testing.assert_close(apply_rope(q, rot[17]).norm(), q.norm())  # a rotation


@pytest.mark.parametrize("flavor", ["gpt2", "llama"])
def test_block_cache_step(flavor):
    """The Block API on its own: step with a preallocated KV cache written in place equals forward."""
    torch.manual_seed(0)
    block = Block(32, 4, 64, flavor, max_len=10).eval()
    x = torch.randn(3, 10, 32)
    cache = block.init_cache(3, "cpu")
    k_ptr = cache[0].data_ptr()
    assert cache[0].shape == (3, 4, 10, 8)
    with torch.no_grad():
        ys = []
        for t in range(10):
            y, cache = block.step(x[:, t], cache, t)
            ys.append(y)
        assert cache[0].data_ptr() == k_ptr  # no reallocation per token
        torch.testing.assert_close(torch.stack(ys, 1), block(x), atol=1e-5, rtol=1e-4)
        with pytest.raises(SeqgapError, match="max_len"):
            block.step(x[:, 0], cache, 10)


@pytest.mark.parametrize("name", ["transformer", "llama"])
def test_transformer_longer_than_max_len(name):
    model = make(name, max_len=8)
    with pytest.raises(SeqgapError, match="max_len"):
        model(tokens(1, 9))


def test_flavours():
    gpt2, llama = make("transformer"), make("llama")
    assert gpt2.config.flavor == "gpt2" and llama.config.flavor == "llama"
    assert isinstance(gpt2.norm, torch.nn.LayerNorm) and gpt2.pos is not None
    assert llama.pos is None and not any(n.endswith("bias") for n, _ in llama.named_parameters())


# --------------------------------------------------------------------------- LSTM


def test_lstm_matches_explicit_equations():
    """Gate equations written out (i, f, g, o), two layers, hidden != d_model."""
    model = make("lstm", d_model=16, hidden=24, n_layers=2)
    x = torch.randn(2, 7, 16)
    with torch.no_grad():
        inp = x
        for layer in range(2):
            W_ih, W_hh = getattr(model.lstm, f"weight_ih_l{layer}"), getattr(model.lstm, f"weight_hh_l{layer}")
            b = getattr(model.lstm, f"bias_ih_l{layer}") + getattr(model.lstm, f"bias_hh_l{layer}")
            h, c, hs = torch.zeros(2, 24), torch.zeros(2, 24), []
            for t in range(7):
                i, f, g, o = (inp[:, t] @ W_ih.t() + h @ W_hh.t() + b).chunk(4, -1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                hs.append(h)
            inp = torch.stack(hs, 1)
        expected = inp @ model.out.weight.t() + model.out.bias
        torch.testing.assert_close(model.features(x), expected, atol=1e-5, rtol=1e-4)
    assert model.state_size().floats == 2 * 24 * 2


# --------------------------------------------------------------------------- Dense-SSM


@pytest.mark.parametrize("length", [1, 2, 7, 33])
def test_dense_ssm_paths_agree(length):
    """Loop (forward), log-depth parallel scan, and normalize(A_T ... A_1 h_0) in float64."""
    model = make("dense-ssm", d_model=24, d_input=5, n_layers=1, init_scale=1.0)
    layer = model.layers[0]
    with torch.no_grad():
        torch.nn.init.normal_(layer.weight, std=0.15)  # far from orthogonal: normalization matters
        x = torch.randn(3, length, 24)
        loop = model.features(x)
        layer.scan = "parallel"
        parallel = model.features(x)
        layer.scan = "loop"
        # oracle: A(x)_ij = sum_k W_ijk x_k with W_ijk = weight[j, k, i]; no per-step normalization
        W = layer.weight.double().permute(2, 0, 1)  # (i, j, k)
        u = layer.inputs(x).double()  # (B, T, K), last coordinate = 1
        h = layer.h0.double().expand(3, -1)
        states = []
        for t in range(length):
            h = torch.einsum("ijk,bj,bk->bi", W, h, u[:, t])
            states.append(h / h.pow(2).mean(-1, keepdim=True).sqrt())
        expected = layer.readout(torch.stack(states, 1).float())
    torch.testing.assert_close(loop, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(parallel, expected, atol=1e-4, rtol=1e-4)


def test_dense_ssm_starts_near_orthogonal():
    model = make("dense-ssm")
    layer = model.layers[0]
    with torch.no_grad():
        A = layer.transitions(layer.inputs(model.emb(torch.arange(V))))  # (V, d, d): one per token
        sv = torch.linalg.svdvals(A)
    assert sv.min() > 0.95 and sv.max() < 1.05
    assert (A - torch.eye(A.shape[-1])).abs().max() > 1e-3  # but input dependent


def test_dense_ssm_learns_parity():
    """Aligned CoT parity (prefix XOR at every position) within 150 steps: the state-tracking bias."""
    torch.manual_seed(0)
    model = build_model("dense-ssm", vocab_size=3, max_len=16, size="tiny").train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        bits = torch.randint(0, 2, (32, 12), generator=g)
        loss = F.cross_entropy(model(bits + 1).flatten(0, 1), (bits.cumsum(1) % 2 + 1).flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    bits = torch.randint(0, 2, (256, 16), generator=g)  # longer than training
    with torch.no_grad():
        acc = (model(bits + 1).argmax(-1) == bits.cumsum(1) % 2 + 1).float().mean()
    assert acc > 0.99


# --------------------------------------------------------------------------- dtypes


def test_llama_survives_dtype_conversion():
    """``.to(torch.float32)`` and ``.double()`` keep RoPE (a real (cos, sin) table, not a complex
    buffer that ``.to`` would cast to real) and so the forward."""
    import copy

    model = make("llama", d_model=32, n_heads=4)
    x = tokens(2, 17)
    with torch.no_grad():
        ref = model(x)
        as_f32 = copy.deepcopy(model).to(torch.float32)
        assert as_f32.blocks[0].attn.rot.dtype == torch.float32
        torch.testing.assert_close(as_f32(x), ref, atol=0, rtol=0)
        as_f64 = copy.deepcopy(model).double()
        assert as_f64.blocks[0].attn.rot.dtype == torch.float64
        out = as_f64(x)
        assert out.dtype == torch.float64
        torch.testing.assert_close(out, ref.double(), atol=1e-5, rtol=1e-4)
        assert not torch.equal(out, ref.double())  # it did compute in float64
        back = as_f64.to(torch.float32)  # and back again
        torch.testing.assert_close(back(x), ref, atol=1e-6, rtol=1e-5)


def test_rope_real_form_for_other_dtypes():
    """bfloat16 has no complex type: apply_rope rotates with real cos/sin products instead."""
    rot = rope_table(32, 16)
    x = torch.randn(3, 32, 16)
    ref = apply_rope(x, rot)
    torch.testing.assert_close(apply_rope(x, rot.double()), ref.double(), atol=1e-6, rtol=1e-5)  # real form
    low = apply_rope(x.bfloat16(), rot.bfloat16())
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), ref, atol=0.05, rtol=0.02)


def every_builtin():
    """(name, overrides) for every built-in model, the hybrid with each of its RNNs."""
    from seqgap.models.registry import BUILTIN_MODELS

    out = [(name, {}) for name in sorted(BUILTIN_MODELS)]
    return out + [("hybrid", dict(rnn="lstm", attn_position=1)), ("hybrid", dict(rnn="dense-ssm", attn_position=0))]


@pytest.mark.parametrize("name, overrides", every_builtin())
def test_double_model_generates_in_float64(name, overrides):
    """init_state follows the parameters' dtype (and device): a .double() model's step equals its forward."""
    model = make(name, **overrides).double()
    x = tokens(2, 13)
    state = model.init_state(2)  # device defaults to the model's
    dtypes = {t.dtype for t in _tensors(state)}
    assert dtypes == {torch.float64}, dtypes
    with torch.no_grad():
        steps = run_steps(model, x)
        assert steps.dtype == torch.float64
        torch.testing.assert_close(steps, model(x), atol=1e-10, rtol=1e-10)


def _tensors(state):
    """Every tensor in a model state (tensors, lists/tuples, dataclasses)."""
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, (list, tuple)):
        return [t for s in state for t in _tensors(s)]
    if hasattr(state, "__dataclass_fields__"):
        return [t for f in state.__dataclass_fields__ for t in _tensors(getattr(state, f))]
    return []


# --------------------------------------------------------------------------- weight decay


@pytest.mark.parametrize("name, overrides", every_builtin())
def test_no_weight_decay(name, overrides):
    model = make(name, **overrides)
    params = dict(model.named_parameters())
    no_decay = model.no_weight_decay()
    assert no_decay <= set(params)
    assert {n for n, p in params.items() if p.ndim < 2} <= no_decay  # biases, norm gains, D, h0
    extra = {n for n in no_decay if params[n].ndim >= 2}
    mamba_mixers = [n for n, _ in model.named_modules() if n.endswith("mixer")]
    assert extra == {f"{m}.A_log" for m in mamba_mixers}  # only Mamba adds a matrix: A_log
    if mamba_mixers:
        assert {f"{m}.D" for m in mamba_mixers} <= no_decay
    assert any(params[n].ndim >= 2 for n in set(params) - no_decay)  # the weight matrices do decay
