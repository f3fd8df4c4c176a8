"""Weights next to the store (--save-model, safetensors), `seqgap eval` without retraining, and tasks
that plug in like models with an oracle-test helper (issue 12, item 6)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from seqgap.cli import main as cli_main
from seqgap.errors import SeqgapError
from seqgap.tasks import catalog
from seqgap.tasks.base import BOS, EOS, PAD, Example, Task, Vocab
from seqgap.tasks.testing import check_task
from seqgap.training import trainer

TRAIN = ["train", "--task", "parity", "-L", "6", "--format", "cot", "--model", "transformer", "--size", "tiny",
         "--n-train", "50", "--steps", "30", "--eval-every", "10", "--eval-lengths", "8", "--n-eval", "40",
         "--no-progress"]


def _run_id(store: str) -> str:
    from seqgap.store import RunStore

    return RunStore(store).all(kind="train")[-1]["id"]


def test_save_model_then_eval_reproduces_the_runs_numbers(tmp_path, capsys, monkeypatch):
    store = str(tmp_path / "runs.sqlite")
    assert cli_main(TRAIN + ["--store", store, "--save-model"]) == 0
    rid = _run_id(store)
    path = tmp_path / "runs.models" / f"{rid}.safetensors"
    assert path.is_file()
    raw = path.read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])  # safetensors: JSON header, no pickle
    assert header["__metadata__"]["run_id"] == rid and json.loads(header["__metadata__"]["config"])["model"] == "transformer"
    from seqgap.store import RunStore

    stored = RunStore(store).get(rid)["summary"]["eval_lengths"]["8"]
    capsys.readouterr()
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("eval retrained"))
    assert cli_main(["eval", rid[:8], "--lengths", "8,12", "--n-eval", "40", "--store", store, "--json"]) == 0
    out = capsys.readouterr()
    lines = [x for x in out.out.splitlines() if x.startswith("run ")]
    assert len(lines) == 2 and "length 8:" in lines[0] and "length 12:" in lines[1]
    got = json.loads(out.out[out.out.index("{"):])["eval_lengths"]
    assert got["8"] == stored  # the same problems, the same weights: the run's own numbers
    assert "untrained" in out.err  # learned positions beyond those trained are said so


def test_save_model_for_a_stored_run_without_weights_trains_it_again(tmp_path, capsys):
    store = str(tmp_path / "runs.sqlite")
    argv = TRAIN + ["--store", store, "--model", "lstm"]
    assert cli_main(argv) == 0
    rid = _run_id(store)
    capsys.readouterr()
    assert cli_main(["eval", rid, "--lengths", "8", "--store", store]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no saved weights" in err[0] and "--save-model" in err[0]
    assert cli_main(argv + ["--save-model"]) == 0
    assert "training it again" in capsys.readouterr().err
    assert (tmp_path / "runs.models" / f"{rid}.safetensors").is_file()
    assert cli_main(["eval", rid, "--lengths", "8", "--store", store, "--n-eval", "20"]) == 0


def test_eval_errors_are_one_line(tmp_path, capsys):
    store = str(tmp_path / "runs.sqlite")
    assert cli_main(["eval", "nope", "--lengths", "8", "--store", store]) == 2
    assert capsys.readouterr().err.strip().startswith("seqgap: error: no run 'nope'")


def test_weights_with_tied_embeddings_round_trip(tmp_path):
    import torch

    from seqgap.models import build_model
    from seqgap.weights import load_weights, save_weights

    torch.manual_seed(0)
    a = build_model("llama", vocab_size=9, max_len=16, size="tiny", frozen_embeddings=True)
    p = save_weights(a, tmp_path / "m.safetensors", "x")
    torch.manual_seed(1)
    b = build_model("llama", vocab_size=9, max_len=16, size="tiny", frozen_embeddings=True)
    load_weights(b, p)
    x = torch.randint(0, 9, (2, 7))
    assert torch.equal(a(x), b(x))
    with pytest.raises(SeqgapError, match="do not fit"):
        load_weights(build_model("lstm", vocab_size=9, max_len=16, size="tiny"), p)


# ---- a task of one's own ------------------------------------------------------------------

class Reverse(Task):
    """Copy a sequence of symbols backwards after [SEP] (next-token, answer = the reversed input)."""

    family = "retrieval"

    def __init__(self, alphabet: int = 3, min_length: int | None = None, bug: str = ""):
        super().__init__(min_length)
        self.alphabet, self.bug = int(alphabet), bug
        self.symbols = [f"s{i}" for i in range(self.alphabet)]
        self.vocab = Vocab([PAD, BOS, "[SEP]", EOS, *self.symbols])

    def sample_problem(self, rng, length):
        return tuple(int(x) for x in rng.integers(0, self.alphabet, size=length))

    def num_problems(self, length):
        return self.alphabet ** length

    def encode(self, problem):
        syms = [self.symbols[i] for i in problem]
        answer = syms[::-1] if self.bug != "wrong" else syms
        seq = np.array(self.vocab.ids([BOS, *syms, "[SEP]", *answer, EOS]), dtype=np.int64)
        prompt = len(syms) + 2
        inputs, targets = seq[:-1], seq[1:]
        mask = np.zeros(len(inputs), dtype=bool)
        mask[prompt - 1:] = True
        if self.bug == "prompt":
            mask[0] = True
        return Example(inputs, targets, mask, prompt_len=prompt, meta={"length": len(problem)})

    @property
    def chance_accuracy(self):
        return 1.0 / self.alphabet

    def max_tokens(self, length):
        return 2 * length + 2

    def describe(self):
        return {"name": self.name, "alphabet": self.alphabet}


def reverse_oracle(problem):
    return [f"s{i}" for i in reversed(problem)] + [EOS]


def test_check_task_passes_a_good_task_and_names_each_bug():
    results = check_task(Reverse(), oracle=reverse_oracle, lengths=[2, 3, 5])
    assert [r.name for r in results] == ["sample", "encode", "batch", "unique", "count", "chance", "oracle"]
    assert all(r.ok for r in results)
    with pytest.raises(AssertionError, match="oracle: .*the oracle says"):
        check_task(Reverse(bug="wrong"), oracle=reverse_oracle)
    with pytest.raises(AssertionError, match="encode: .*inside the prompt"):
        check_task(Reverse(bug="prompt"))
    bad = check_task(Reverse(bug="wrong"), oracle=reverse_oracle, raise_on_failure=False)
    assert [r.name for r in bad if not r.ok] == ["oracle"]


def test_check_task_passes_the_built_in_tasks():
    from seqgap.tasks import make_task

    for name, params in [("modadd", dict(m=3, format="cot")), ("permutation", dict(k=3, format="acot")),
                         ("mqar", {}), ("istree", dict(format="rag"))]:
        assert all(r.ok for r in check_task(make_task(name, **params)))


PLUGIN_TASK = '''
import numpy as np
from seqgap.tasks import register_task
from seqgap.tasks.base import BOS, EOS, PAD, Example, Task, Vocab


@register_task("reverse", help="reverse a sequence (plugin task)", version="1")
class Reverse(Task):
    family = "retrieval"

    def __init__(self, alphabet=3, min_length=None):
        super().__init__(min_length)
        self.alphabet = int(alphabet)
        self.symbols = [f"s{i}" for i in range(self.alphabet)]
        self.vocab = Vocab([PAD, BOS, "[SEP]", EOS, *self.symbols])

    def sample_problem(self, rng, length):
        return tuple(int(x) for x in rng.integers(0, self.alphabet, size=length))

    def num_problems(self, length):
        return self.alphabet ** length

    def encode(self, problem):
        syms = [self.symbols[i] for i in problem]
        seq = np.array(self.vocab.ids([BOS, *syms, "[SEP]", *syms[::-1], EOS]), dtype=np.int64)
        prompt = len(syms) + 2
        mask = np.zeros(len(seq) - 1, dtype=bool)
        mask[prompt - 1:] = True
        return Example(seq[:-1], seq[1:], mask, prompt_len=prompt, meta={"length": len(problem)})

    @property
    def chance_accuracy(self):
        return 1.0 / self.alphabet

    def max_tokens(self, length):
        return 2 * length + 2

    def describe(self):
        return {"name": self.name, "alphabet": self.alphabet}
'''


@pytest.fixture
def task_table(monkeypatch):
    monkeypatch.setattr(catalog, "TASKS", catalog._TaskTable(catalog.BUILTIN))
    monkeypatch.setattr(catalog, "TASK_HELP", dict(catalog.TASK_HELP))


def test_a_plugin_file_registers_a_task_that_trains_and_evaluates(tmp_path):
    plugin = tmp_path / "reverse_task.py"
    plugin.write_text(PLUGIN_TASK)
    store = str(tmp_path / "runs.sqlite")
    base = [sys.executable, "-m", "seqgap"]
    p = subprocess.run(base + ["tasks", "--plugin", str(plugin)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "reverse" in p.stdout and "plugin task" in p.stdout
    p = subprocess.run(base + ["train", "--plugin", str(plugin), "--task", "reverse", "-L", "4", "--model", "lstm",
                               "--size", "tiny", "--n-train", "40", "--steps", "10", "--eval-every", "5",
                               "--no-progress", "--store", store, "--save-model"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    rid = _run_id(store)
    p = subprocess.run(base + ["eval", rid, "--lengths", "4,6", "--n-eval", "10", "--store", store],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "unknown task 'reverse'" in p.stderr  # without its plugin
    p = subprocess.run(base + ["eval", rid, "--lengths", "4,6", "--n-eval", "10", "--store", store, "--plugin",
                               str(plugin)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert len([x for x in p.stdout.splitlines() if x.startswith("run ")]) == 2


def test_task_entry_points_are_loaded_on_first_look_up(task_table, monkeypatch, tmp_path):
    import importlib.metadata as md

    mod = tmp_path / "seqgap_ep_task.py"
    mod.write_text(PLUGIN_TASK.replace('"reverse"', '"ep-reverse"'))
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = md.EntryPoint("ep-reverse", "seqgap_ep_task", "seqgap.tasks")
    real = md.entry_points
    monkeypatch.setattr(md, "entry_points", lambda **kw: [ep] if kw.get("group") == "seqgap.tasks" else real(**kw))
    import seqgap.entry_points as eps

    monkeypatch.setattr(eps, "_LOADED", set())  # not loaded yet
    assert "ep-reverse" in catalog.TASKS
    task = catalog.make_task("ep-reverse", alphabet=2)
    assert task.name == "ep-reverse" and all(r.ok for r in check_task(task))
    assert catalog.task_version("ep-reverse") == "1"
