"""The model registry: an explicit table of built-ins, a separate plugin table, the read view
``MODELS``; and what a plugin RNN needs to sit inside the hybrid."""
from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn

import seqgap.models.registry as registry
from seqgap.errors import SeqgapError
from seqgap.models import MODELS, SequenceModel, StateSize, build_model, get_spec, make_config, register_model
from seqgap.models.embeddings import TokenEmbedding
from seqgap.models.registry import BUILTIN_MODELS

V = 11
MODEL_FILES = ("transformer", "lstm", "dense_ssm", "mamba", "hybrid")


@pytest.fixture
def plugins(monkeypatch):
    """An empty plugin table for the test (register_model writes into it)."""
    table: dict = {}
    monkeypatch.setattr(registry, "_PLUGINS", table)
    return table


@dataclass
class TinyConfig:
    d_model: int = 8
    n_layers: int = 1
    frozen_embeddings: bool = False


class TinyGRU(SequenceModel):
    """A user's GRU with the features interface (embedding in ``emb``)."""

    def __init__(self, config, vocab_size, max_len):
        super().__init__()
        self.config, self.vocab_size = config, vocab_size
        self.emb = TokenEmbedding(vocab_size, config.d_model, config.frozen_embeddings)
        self.gru = nn.GRU(config.d_model, config.d_model, config.n_layers, batch_first=True)

    def features(self, x):
        return self.gru(x)[0]

    def init_state(self, batch_size, device=None):
        w = self.gru.weight_hh_l0
        return torch.zeros(self.config.n_layers, batch_size, self.config.d_model, dtype=w.dtype, device=device)

    def features_step(self, x, h):
        y, h = self.gru(x[:, None], h)
        return y[:, 0], h

    def state_size(self):
        return StateSize(self.config.d_model * self.config.n_layers)


class TokensOnlyGRU(SequenceModel):
    """A model with only the token-level interface and its embedding under another name."""

    def __init__(self, config, vocab_size, max_len):
        super().__init__()
        self.config = config
        self.embedding = nn.Embedding(vocab_size, config.d_model)
        self.gru = nn.GRU(config.d_model, config.d_model, batch_first=True)
        self.head = nn.Linear(config.d_model, vocab_size)

    def forward(self, tokens):
        return self.head(self.gru(self.embedding(tokens))[0])

    def state_size(self):
        return StateSize(self.config.d_model)


def test_builtin_table_is_explicit_and_read_only():
    assert set(BUILTIN_MODELS) == {"transformer", "llama", "lstm", "dense-ssm", "mamba", "hybrid"}
    assert {n: s.recurrent for n, s in BUILTIN_MODELS.items()} == {
        "transformer": False, "llama": False, "lstm": True, "dense-ssm": True, "mamba": True, "hybrid": False}
    assert all(spec.name == name and spec.sizes and spec.help for name, spec in BUILTIN_MODELS.items())
    with pytest.raises(TypeError):
        BUILTIN_MODELS["mine"] = BUILTIN_MODELS["lstm"]  # type: ignore[index]
    with pytest.raises(TypeError):
        MODELS["mine"] = BUILTIN_MODELS["lstm"]  # type: ignore[index]
    assert get_spec("llama").config().flavor == "llama" and get_spec("transformer").config().flavor == "gpt2"


def test_model_files_do_not_import_the_registry():
    """Model files define config, class, SIZES, HELP; only registry.py knows them all (no cycle)."""
    root = Path(registry.__file__).parent
    for stem in MODEL_FILES:
        tree = ast.parse((root / f"{stem}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import) for a in node.names}
        assert "seqgap.models.registry" not in imported and "seqgap.models" not in imported, stem


def test_build_model_leaves_the_model_as_constructed():
    model = build_model("lstm", vocab_size=V, max_len=8, size="tiny")
    assert not hasattr(model, "model_name")


def test_plugin_table(plugins):
    register_model("tiny-gru", config=TinyConfig, sizes={"tiny": dict(d_model=8)})(TinyGRU)
    assert set(plugins) == {"tiny-gru"} and "tiny-gru" not in BUILTIN_MODELS
    assert "tiny-gru" in MODELS and set(BUILTIN_MODELS) < set(MODELS)
    assert get_spec("tiny-gru").help == "A user's GRU with the features interface (embedding in ``emb``)."
    assert make_config("tiny-gru", "tiny", n_layers=2) == TinyConfig(d_model=8, n_layers=2)
    model = build_model("tiny-gru", vocab_size=V, max_len=8, size="tiny")
    assert model(torch.zeros(1, 3, dtype=torch.long)).shape == (1, 3, V)


def test_plugin_cannot_take_a_builtin_name(plugins):
    for name in BUILTIN_MODELS:
        with pytest.raises(SeqgapError, match="built-in") as info:
            register_model(name, config=TinyConfig)(TinyGRU)
        assert "\n" not in str(info.value)
    assert plugins == {} and get_spec("lstm").cls.__name__ == "LSTMModel"


def test_plugin_rnn_inside_hybrid(plugins):
    """A user's RNN with the features interface sits in the hybrid like a built-in one."""
    register_model("tiny-gru", config=TinyConfig)(TinyGRU)
    torch.manual_seed(0)
    model = build_model("hybrid", vocab_size=V, max_len=12, d_model=8, n_layers=2, n_heads=2, rnn="tiny-gru",
                        attn_position=1).eval()
    assert isinstance(model.before, TinyGRU) and not hasattr(model.before, "emb")
    x = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = model(x)
        state, steps = model.init_state(2), []
        for t in range(10):
            logits, state = model.step(x[:, t], state)
            steps.append(logits)
    torch.testing.assert_close(torch.stack(steps, 1), ref, atol=1e-5, rtol=1e-4)


def test_hybrid_names_what_a_plugin_rnn_lacks(plugins):
    register_model("tokens-gru", config=TinyConfig)(TokensOnlyGRU)
    with pytest.raises(SeqgapError) as info:
        build_model("hybrid", vocab_size=V, max_len=8, d_model=8, n_layers=1, n_heads=2, rnn="tokens-gru")
    msg = str(info.value)
    assert "\n" not in msg and "'tokens-gru' (TokensOnlyGRU) lacks features, features_step, init_state, emb" in msg
    assert "seqgap.models.base" in msg
