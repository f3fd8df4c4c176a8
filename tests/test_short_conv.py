"""The short causal convolution option of the attention models (``short_conv``: zoology's Based-config trick)."""
import pytest
import torch

from seqgap.errors import SeqgapError
from seqgap.models import build_model
from seqgap.models.registry import model_config

V, MAX_LEN = 13, 40


def make(name, **overrides):
    torch.manual_seed(0)
    return build_model(name, vocab_size=V, max_len=MAX_LEN, size="tiny", **overrides).eval()


def tokens(b, t, seed=1):
    return torch.randint(0, V, (b, t), generator=torch.Generator().manual_seed(seed))


def run_steps(model, x):
    state = model.init_state(x.shape[0])
    out = []
    for t in range(x.shape[1]):
        logits, state = model.step(x[:, t], state)
        out.append(logits)
    return torch.stack(out, 1)


@pytest.mark.parametrize("name", ["llama", "transformer"])
@pytest.mark.parametrize("k", [1, 3, 4])
def test_step_matches_forward(name, k):
    model = make(name, short_conv=k)
    x = tokens(3, 21)
    with torch.no_grad():
        torch.testing.assert_close(run_steps(model, x), model(x), atol=1e-4, rtol=1e-4)
        assert model.init_state(2).conv.shape == (2, k - 1, model.config.d_model)


@pytest.mark.parametrize("name", ["llama", "transformer"])
def test_causal(name):
    model = make(name, short_conv=3)
    x = tokens(2, 16)
    with torch.no_grad():
        ref = model(x)
        for t in (0, 1, 6, 14):
            y = x.clone()
            y[:, t + 1:] = (x[:, t + 1:] + 1) % V
            torch.testing.assert_close(model(y)[:, : t + 1], ref[:, : t + 1], atol=1e-5, rtol=0)
            assert (model(y)[:, t + 1:] - ref[:, t + 1:]).abs().max() > 0


def test_conv_reaches_exactly_k_minus_1_back():
    """Without blocks the conv is the only mixer: output t sees tokens t-k+1..t, not t-k."""
    from seqgap.models.transformer import LlamaConfig, Transformer

    torch.manual_seed(0)
    model = Transformer(LlamaConfig(d_model=16, n_layers=0, n_heads=2, short_conv=3), V, MAX_LEN).eval()
    x = tokens(1, 10)
    with torch.no_grad():
        ref = model(x)
        y = x.clone()
        y[:, 4] = (x[:, 4] + 1) % V
        d = (model(y) - ref).abs().amax(-1)[0]
        assert (d[:4] == 0).all() and (d[4:7] > 0).all() and (d[7:] == 0).all()


def test_off_by_default_and_checked():
    assert model_config("llama", "tiny", {}).short_conv == 0
    assert make("llama").short_conv is None and make("llama").init_state(1).conv is None
    base, conv = make("llama"), make("llama", short_conv=3)
    assert conv.num_params() - base.num_params() == 64 * 3 + 64  # depthwise weights + bias
    assert make("llama", short_conv=0).short_conv is None  # 0 is allowed: off
    for bad in (-1, "x"):
        with pytest.raises(SeqgapError) as e:
            make("llama", short_conv=bad)
        assert "\n" not in str(e.value)
