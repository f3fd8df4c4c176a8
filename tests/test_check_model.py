"""check-model: every built-in passes; each kind of broken model fails the right check with a clear
message; a model without step is skipped (with a note) unless generation is needed; `seqgap train`
runs the checks first and refuses a broken model in one line; a model without step trains."""
from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import seqgap.models.registry as registry
from seqgap.config import RunConfig, TrainConfig
from seqgap.errors import SeqgapError
from seqgap.models import BUILTIN_MODELS, ModelSpec, SequenceModel, StateSize
from seqgap.models.check import CHECKS, check_model, failures, require_model_ok
from seqgap.training.trainer import train

V = 7


@dataclass
class Cfg:
    d_model: int = 8


class Base(SequenceModel):
    """A correct forward-only GRU (no step): embedding, GRU, head."""

    def __init__(self, config, vocab_size, max_len):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(vocab_size, config.d_model)
        self.gru = nn.GRU(config.d_model, config.d_model, batch_first=True)
        self.head = nn.Linear(config.d_model, vocab_size)

    def hidden(self, tokens):
        return self.gru(self.embed(tokens))[0]

    def forward(self, tokens):
        return self.head(self.hidden(tokens))

    def state_size(self):
        return StateSize(self.config.d_model)


class WithStep(Base):
    def init_state(self, batch_size, device=None):
        return torch.zeros(1, batch_size, self.config.d_model)

    def step(self, tokens, h):
        y, h = self.gru(self.embed(tokens)[:, None], h)
        return self.head(y[:, 0]), h


class HiddenStates(Base):
    def forward(self, tokens):
        return self.hidden(tokens) + 0 * self.head.weight.sum()


class LastOnly(Base):
    def forward(self, tokens):
        return self.head(self.hidden(tokens)[:, -1])


class Bidirectional(Base):
    def forward(self, tokens):
        h = self.hidden(tokens)
        return self.head(h + h.mean(1, keepdim=True))  # every position sees the whole sequence


class BadStep(WithStep):
    def step(self, tokens, h):  # forgets its state
        y, _ = self.gru(self.embed(tokens)[:, None], torch.zeros_like(h))
        return self.head(y[:, 0]), h


class NaNs(Base):
    def forward(self, tokens):
        return super().forward(tokens) * float("nan")


class DeadParameter(Base):
    def __init__(self, config, vocab_size, max_len):
        super().__init__(config, vocab_size, max_len)
        self.unused = nn.Linear(config.d_model, config.d_model)


class NoStateSize(Base):
    state_size = SequenceModel.state_size


def spec(cls) -> ModelSpec:
    return ModelSpec(cls.__name__.lower(), cls, Cfg)


def by_name(results):
    return {r.name: r for r in results}


@pytest.mark.parametrize("name", sorted(BUILTIN_MODELS))
def test_builtins_pass(name):
    results = check_model(name, V, "tiny", {}, needs_generation=True)
    assert [r.name for r in results] == list(CHECKS)
    assert not failures(results) and all(r.ok and not r.skipped for r in results), [r.line() for r in results]


def test_a_correct_model_with_step_passes_every_check():
    results = check_model(spec(WithStep), V, needs_generation=True)
    assert all(r.status == "PASS" for r in results), [r.line() for r in results]


def test_no_step_is_skipped_with_a_note_unless_generation_is_needed():
    r = by_name(check_model(spec(Base), V, needs_generation=False))["step"]
    assert r.status == "SKIP" and "no init_state/step" in r.message and "generative formats" in r.message
    assert not failures(check_model(spec(Base), V, needs_generation=False))
    r = by_name(check_model(spec(Base), V, needs_generation=True))["step"]
    assert r.status == "FAIL" and "generation is needed" in r.message and "step(tokens (B,), state)" in r.message


@pytest.mark.parametrize("cls, check, words", [
    (HiddenStates, "shape", "looks like hidden states"),
    (LastOnly, "shape", "one prediction per sequence"),
    (Bidirectional, "causal", "looks at future tokens"),
    (BadStep, "step", "step disagrees with forward"),
    (NaNs, "finite", "NaN or inf"),
    (DeadParameter, "gradients", "no gradient reaches 2 of 9 trainable parameters: unused.weight, unused.bias"),
    (NoStateSize, "state_size", "reports no state"),
])
def test_a_broken_model_fails_the_right_check(cls, check, words):
    results = check_model(spec(cls), V, needs_generation=cls is BadStep)
    bad = failures(results)
    # NaN logits also make NaN gradients: the first failure names the cause
    assert [r.name for r in bad] == ([check, "gradients"] if cls is NaNs else [check]), [r.line() for r in results]
    assert words in bad[0].message and "\n" not in bad[0].line()
    if check == "shape":  # nothing else can be checked on a wrong output shape
        assert all(r.skipped for r in results[1:])


def test_require_model_ok_is_one_line(monkeypatch):
    monkeypatch.setattr(registry, "_PLUGINS", {})
    registry.register_model("broken-bidir", config=Cfg)(Bidirectional)
    with pytest.raises(SeqgapError) as info:
        require_model_ok("broken-bidir", V)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("model broken-bidir fails check-model: causal:")
    assert require_model_ok("lstm", V, "tiny")


def test_checks_leave_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check_model("lstm", V, "tiny")
    assert torch.equal(torch.rand(3), expected)


def test_a_model_without_step_trains_without_generation(monkeypatch):
    """No init_state/step and gen_eval = 0: training finishes and the summary is written."""
    monkeypatch.setattr(registry, "_PLUGINS", {})
    registry.register_model("nostep-gru", config=Cfg, sizes={"tiny": {}})(Base)
    cfg = RunConfig(task="parity", task_params={"format": "acot"}, max_length=4, n_train=10, model="nostep-gru",
                    train=TrainConfig(steps=4, eval_every=2))
    r = train(cfg)
    assert r.summary["steps"] == 4 and r.summary["state_floats"] == 8


PLUGINS = textwrap.dedent('''
    from dataclasses import dataclass
    import torch
    from torch import nn
    from seqgap.models import register_model, SequenceModel, StateSize

    @dataclass
    class Cfg:
        d_model: int = 8

    class Good(SequenceModel):
        """forward-only GRU"""
        def __init__(self, config, vocab_size, max_len):
            super().__init__()
            self.config = config
            self.embed = nn.Embedding(vocab_size, config.d_model)
            self.gru = nn.GRU(config.d_model, config.d_model, batch_first=True)
            self.head = nn.Linear(config.d_model, vocab_size)
        def forward(self, tokens):
            return self.head(self.gru(self.embed(tokens))[0])
        def state_size(self):
            return StateSize(self.config.d_model)

    register_model("good", config=Cfg)(Good)

    @register_model("hidden-states", config=Cfg)
    class Hidden(Good):
        def forward(self, tokens):
            return self.gru(self.embed(tokens))[0] + 0 * self.head.weight.sum()
''')


def _seqgap(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "seqgap", *args], capture_output=True, text=True, timeout=timeout)


def test_cli_check_model_and_train_refuse_a_broken_model(tmp_path):
    path = tmp_path / "models.py"
    path.write_text(PLUGINS)
    p = _seqgap("check-model", "--plugin", str(path), "--model", "hidden-states")
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAIL  shape" in p.stdout and "looks like hidden states" in p.stdout
    p = _seqgap("check-model", "--plugin", str(path), "--model", "good")
    assert p.returncode == 0 and "SKIP  step" in p.stdout, p.stdout + p.stderr
    p = _seqgap("check-model", "--plugin", str(path), "--model", "good", "--generation")
    assert p.returncode == 1 and "FAIL  step" in p.stdout
    train_args = ["--plugin", str(path), "--task", "parity", "-L", "4", "--n-train", "10", "--steps", "2",
                  "--eval-every", "2", "--store", str(tmp_path / "s.sqlite"), "--no-progress"]
    p = _seqgap("train", "--model", "hidden-states", "--format", "acot", *train_args)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "fails check-model: shape: forward returned (B, T, 8)" in p.stderr
    # CoT with free generation needs step: refused before training
    p = _seqgap("train", "--model", "good", "--format", "cot", "--gen-eval", "4", *train_args)
    assert p.returncode == 2 and "fails check-model: step:" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    # teacher-forced: a model without step trains and finishes
    p = _seqgap("train", "--model", "good", "--format", "acot", *train_args)
    assert p.returncode == 0 and "good on parity" in p.stdout, p.stderr


def test_cli_check_model_typed_options():
    p = _seqgap("check-model", "--model", "lstm", "--size", "tiny", "--model-opt", "frozen_embeddings=no")
    assert p.returncode == 0 and "PASS  gradients" in p.stdout
    p = _seqgap("check-model", "--model", "lstm", "--model-opt", "d_model=abc")
    assert p.returncode == 2 and "expected an integer, got 'abc'" in p.stderr and len(p.stderr.splitlines()) == 1
