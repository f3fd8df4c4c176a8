"""Study W (retrieval gap): IsTree generation hooks, the evaluation loop with the live tool, the study CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from seqgap.cli import main as cli_main
from seqgap.config import RunConfig, TrainConfig
from seqgap.models.base import SequenceModel, StateSize
from seqgap.tasks.istree import (DASH_ID, EOS_ID, ES_ID, FAILED_ID, FALSE_ID, NODE0, TRUE_ID, IsTree,
                                 parse_answer)
from seqgap.training import trainer
from seqgap.tasks.retrieval_tool import RetrievalTool


def unique_problems(task: IsTree, n: int, count: int, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    seen: dict = {}
    while len(seen) < count:
        p = task.sample_problem(rng, n)
        seen[p] = None
    return list(seen)


# ---- fake models -------------------------------------------------------------------------------

class OracleModel(SequenceModel):
    """Replays the reference sequence of whichever graph its prompt shows -- except at the positions
    whose token the retrieval tool writes: there it predicts a wrong token on purpose, so a trace
    can only come out right if the generation loop really takes the live tool's results."""

    def __init__(self, task: IsTree, problems: list):
        super().__init__()
        self.vocab_size = len(task.vocab)
        self._dummy = torch.nn.Parameter(torch.zeros(1))
        self.refs: dict[tuple, tuple[list[int], set[int]]] = {}
        for p in problems:
            ex = task.encode(p)
            seq = ex.sequence.tolist()
            tool_pos = set() if ex.no_loss is None else set((np.flatnonzero(ex.no_loss) + 1).tolist())
            self.refs[tuple(seq[: ex.prompt_len])] = (seq, tool_pos)
        self.prompt_len = ex.prompt_len

    def _predict(self, context: list[int]) -> int:
        if len(context) < self.prompt_len:  # still reading the prompt: the output is ignored
            return 0
        seq, tool_pos = self.refs[tuple(context[: self.prompt_len])]
        t = len(context)  # predicting token t
        if t >= len(seq):
            return EOS_ID
        if t in tool_pos:  # the oracle does not know the search results
            return DASH_ID if seq[t] != DASH_ID else EOS_ID
        return seq[t]

    def _one_hot(self, ids: list[int]) -> torch.Tensor:
        out = torch.full((len(ids), self.vocab_size), -10.0)
        out[torch.arange(len(ids)), torch.tensor(ids)] = 10.0
        return out

    def forward(self, tokens):  # (B, T) -> (B, T, V)
        rows = []
        for row in tokens.tolist():
            rows.append(torch.stack([self._one_hot([self._predict(row[: t + 1])])[0] for t in range(len(row))]))
        return torch.stack(rows)

    def init_state(self, batch_size, device=None):
        return [[] for _ in range(batch_size)]

    def step(self, tokens, state):  # (B,) -> (B, V)
        state = [s + [int(t)] for s, t in zip(state, tokens.tolist())]
        return self._one_hot([self._predict(s) for s in state]), state

    def state_size(self):
        return StateSize(1)


class GarbageModel(SequenceModel):
    """Random logits: emits arbitrary tokens, including junk retrieval queries."""

    def __init__(self, vocab_size: int, seed: int = 0):
        super().__init__()
        self.vocab_size = vocab_size
        self._dummy = torch.nn.Parameter(torch.zeros(1))
        self.gen = torch.Generator().manual_seed(seed)

    def forward(self, tokens):
        return torch.randn(*tokens.shape, self.vocab_size, generator=self.gen)

    def init_state(self, batch_size, device=None):
        return None

    def step(self, tokens, state):
        return torch.randn(tokens.shape[0], self.vocab_size, generator=self.gen), state

    def state_size(self):
        return StateSize(1)


# ---- IsTree generation hooks ------------------------------------------------------------------

def test_generation_hooks():
    for fmt in ("vanilla", "cot", "rag"):
        task = IsTree(format=fmt, max_nodes=8)
        assert task.generation_stop_ids() == {TRUE_ID, FALSE_ID}
        assert isinstance(task.generation_tool(), RetrievalTool) == (fmt == "rag")
        for p in unique_problems(task, 8, 40, seed=1):
            ex = task.encode(p)
            cont = ex.sequence[ex.prompt_len:].tolist()
            assert task.max_new_tokens(ex) >= len(cont)  # covers every trace, tool results included
            assert task.generation_metrics(ex, cont) == {"acc": 1.0, "trace_acc": 1.0}
            wrong = cont[:-1] + [TRUE_ID if cont[-1] == FALSE_ID else FALSE_ID]
            assert task.generation_metrics(ex, wrong) == {"acc": 0.0, "trace_acc": 0.0}
            assert task.generation_metrics(ex, []) == {"acc": 0.0, "trace_acc": 0.0}
        if fmt == "rag":  # a tree's RAG trace is exactly 45n - 30 tokens: the budget must cover it
            tree = (8, tuple((0, v) for v in range(1, 8)))
            ex = task.encode(tree)
            assert len(ex.sequence) - ex.prompt_len == 45 * 8 - 30 <= task.max_new_tokens(ex)


def test_answer_is_the_first_after_the_first_eos():
    task = IsTree(format="cot", max_nodes=4)
    ex = task.encode((4, ((3, 1), (0, 1), (2, 0))))  # a tree
    nodes = [NODE0 + v for v in (0, 1, 3, 1, 0, 2, 0)]
    # a wrong tour with the right answer still scores the answer, not the trace
    m = task.generation_metrics(ex, nodes[:3] + [EOS_ID, TRUE_ID])
    assert m == {"acc": 1.0, "trace_acc": 0.0}
    assert task.generation_metrics(ex, nodes + [EOS_ID, FALSE_ID, TRUE_ID])["acc"] == 0.0
    assert parse_answer(ex.sequence) is True


# ---- the evaluation loop end to end -------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["cot", "rag"])
def test_oracle_is_perfect_through_generation_eval(fmt):
    task = IsTree(format=fmt, max_nodes=6)
    problems = unique_problems(task, 6, 12, seed=2)
    model = OracleModel(task, problems)
    out = trainer.generation_eval(model, task, problems, "cpu", batch_size=5)
    assert out["gen_acc"] == 1.0 and out["gen_trace_acc"] == 1.0
    assert out["gen_failures"] == 0 and out["gen_n"] == len(problems)


def test_oracle_without_the_tool_gets_rag_traces_wrong():
    """Control: the same oracle with the tool switched off writes its own (wrong) results."""
    task = IsTree(format="rag", max_nodes=6)
    problems = unique_problems(task, 6, 6, seed=3)
    model = OracleModel(task, problems)

    class NoTool(IsTree):
        def generation_tool(self):
            return None

    out = trainer.generation_eval(model, NoTool(format="rag", max_nodes=6), problems, "cpu")
    assert out["gen_trace_acc"] == 0.0


def test_garbage_model_never_raises():
    task = IsTree(format="rag", max_nodes=8)
    problems = unique_problems(task, 8, 16, seed=4)
    out = trainer.generation_eval(GarbageModel(len(task.vocab)), task, problems, "cpu", batch_size=8)
    assert set(out) >= {"gen_acc", "gen_trace_acc", "gen_failures", "gen_n"}
    assert out["gen_trace_acc"] == 0.0 and out["gen_n"] == 16
    assert 0 <= out["gen_failures"] <= 16
    # junk queries are answered [FAILED] by the tool, never an exception
    tool = task.generation_tool()
    rng = np.random.default_rng(0)
    for _ in range(200):
        ctx = rng.integers(0, len(task.vocab), size=rng.integers(1, 40)).tolist() + [ES_ID]
        res = tool(ctx)
        assert res is not None and len(res) == 1 and 0 <= res[0] < len(task.vocab)
    assert tool([ES_ID]) == [FAILED_ID]


def test_tiny_untrained_model_records_generation_metrics():
    cfg = RunConfig(task="istree", task_params={"format": "rag", "max_nodes": 5}, max_length=5, n_train=0,
                    n_val=8, model="lstm", model_size="tiny", gen_eval=6,
                    train=TrainConfig(steps=2, eval_every=2, batch_size=4))
    res = trainer.train(cfg, keep_model=False)
    s = res.summary
    assert s["gen_n"] == 6 and 0 <= s["gen_acc"] <= 1 and 0 <= s["gen_trace_acc"] <= 1
    assert "gen_failures" in s and 0 <= s["val_seq_acc"] <= 1
    for key, n in (("gen_acc", 6), ("gen_trace_acc", 6), ("val_seq_acc", s["n_val"])):  # counts over n examples
        assert abs(s[key] * n - round(s[key] * n)) < 1e-9, key


# ---- the study CLI --------------------------------------------------------------------------------

MICRO = ["study", "retrieval-gap", "--preset", "quick", "--task", "istree,mqar", "--format", "rag",
         "--model", "lstm", "--size", "tiny", "--n", "5", "--pairs", "4", "--steps", "3", "--n-val", "16",
         "--gen-eval", "4", "--workers", "1"]


def test_study_cli_end_to_end_and_store_reuse(tmp_path, monkeypatch, capsys):
    store, out = str(tmp_path / "runs.sqlite"), tmp_path / "report"
    argv = MICRO + ["--store", store, "--out", str(out)]
    assert cli_main(argv) == 0
    md = (out / "summary.md").read_text()
    assert "IsTree" in md and "What the numbers say" in md and "Capacity" in md
    # n = 5: at n = 4 there are only 16 binary graphs, all of them validation graphs (nothing left to stream)
    assert (out / "istree_acc_vs_size_n5.png").stat().st_size > 0
    # 3 steps solve nothing: the capacity plot is drawn only when some n is solved, else a line says so
    assert (out / "mqar_acc_vs_pairs.png").stat().st_size > 0
    assert (out / "capacity_law.png").exists() == ("no capacity plot is drawn" not in md)
    assert "no capacity plot is drawn" in md
    data = json.loads((out / "results.json").read_text())
    cells = data["cells"]
    assert len(cells) == 2 and all(c["ok"] and not c["cached"] for c in cells)
    ist = next(c for c in cells if c["task"] == "istree")
    assert ist["format"] == "rag" and ist["gen_n"] == 4 and ist["steps"] == 3
    # every cell carries chance, the task's shortcut baseline on its validation split, and what acc scores
    assert ist["baseline"]["name"] == "node degrees" and abs(ist["baseline"]["accuracy"] - 0.75) < 1e-9
    assert ist["acc_n"] == 4 and "free greedy generation" in ist["acc_scores"] and ist["chance"] == 0.5
    mq = next(c for c in cells if c["task"] == "mqar")
    assert mq["baseline"]["name"].startswith("context guess") and mq["acc_n"] == 16 * 4
    assert "node degrees" in md and "at baseline" in md
    # second invocation: every run from the store, nothing trained
    monkeypatch.setattr(trainer, "train", lambda *a, **k: pytest.fail("retrained a stored run"))
    assert cli_main(argv) == 0
    data2 = json.loads((out / "results.json").read_text())
    assert all(c["cached"] for c in data2["cells"]) and data2["meta"]["trained"] == 0
    assert [c["acc"] for c in data2["cells"]] == [c["acc"] for c in cells]


def test_mixed_capacity_run_counts_once(tmp_path):
    """A mixed capacity run is one run with a report row per scored n: meta counts runs, not rows."""
    out = tmp_path / "report"
    argv = ["study", "retrieval-gap", "--preset", "quick", "--task", "mqar-zoology", "--model", "mamba",
            "--size", "tiny", "--pairs", "2,4", "--steps", "2", "--n-val", "8", "--workers", "1",
            "--store", str(tmp_path / "runs.sqlite"), "--out", str(out)]
    assert cli_main(argv) == 0
    data = json.loads((out / "results.json").read_text())
    rows = data["cells"]
    runs = {r["run_id"] for r in rows}
    assert len(runs) >= 2 and len(rows) == 2 * len(runs)  # each run scored at n = 2 and 4
    assert data["meta"]["trained"] == len(runs)
    seconds = {r["run_id"]: r["seconds"] for r in rows}
    assert abs(data["meta"]["train_seconds_total"] - sum(seconds.values())) < 1e-9


@pytest.mark.parametrize("extra", [["--model", "nope"], ["--task", "istree", "--n", "3"],
                                   ["--task", "istree", "--n", "4"],  # 16 graphs cannot hold out 500
                                   ["--task", "bogus"], ["--format", "cot,xyz"], ["--size", "huge"],
                                   ["--seed", "-1"], ["--seed", str(2**64)]])
def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, extra):
    argv = ["study", "retrieval-gap", "--dry-run", "--store", str(tmp_path / "s.sqlite"),
            "--out", str(tmp_path / "o")] + extra
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("seqgap: error:")


def test_preset_budget_lookup_most_specific_first():
    from seqgap.studies.retrieval_gap import QUICK, Cell, Preset

    lstm_rag = Cell("istree", 8, "lstm", "small", "rag")
    mamba_rag = Cell("istree", 8, "mamba", "tiny", "rag")
    table = {"*": 1, "rag": 2, "rag:lstm": 3, "rag@8": 4, "rag:lstm@8": 5}
    assert Preset.lookup(table, lstm_rag) == 5
    assert Preset.lookup({k: v for k, v in table.items() if k != "rag:lstm@8"}, lstm_rag) == 4
    assert Preset.lookup({"*": 1, "rag": 2, "rag:lstm": 3}, mamba_rag) == 2
    assert Preset.lookup({"*": 1}, mamba_rag) == 1
    assert QUICK.batch_for(lstm_rag) == 64 and QUICK.batch_for(mamba_rag) == 16
    cap = Cell("mqar-zoology", 16, "llama", "tiny", options=(("short_conv", 3),), eval_ns=(2, 4, 8, 16))
    assert QUICK.schedule_for(cap) == "constant" and QUICK.schedule_for(lstm_rag) == "cosine"
    assert QUICK.warmup_steps_for(cap, 3000) == 0 and QUICK.warmup_steps_for(lstm_rag, 1500) == 75


def test_medium_preset_reuses_the_quick_cells_and_adds_what_quick_cannot_show():
    """One store serves both presets: a cell of both trains once (same run id)."""
    from seqgap.studies.retrieval_gap import MEDIUM, QUICK, run_config

    quick = {c: run_config(c, QUICK).hash() for g in QUICK.grids for c in g.cells()}
    medium = {c: run_config(c, MEDIUM).hash() for g in MEDIUM.grids for c in g.cells()}
    shared = [c for c in quick if c in medium and quick[c] == medium[c]]
    assert any(c.task == "istree" and c.format == "cot" and c.n == 8 and c.model == "mamba" for c in shared)
    assert any(c.task == "mqar-zoology" and c.model == "llama" for c in shared)
    new = [c for c in medium if c not in quick or quick[c] != medium[c]]
    assert {c.n for c in new if c.task == "istree" and c.format == "cot"} == {16}
    assert {c.model for c in new if c.task == "istree" and c.format == "cot"} == {"llama", "mamba", "lstm"}
    assert all(run_config(c, MEDIUM).train.steps > run_config(c, QUICK).train.steps
               for c in new if c in quick)


def test_medium_preset_is_refused_by_studies_without_one(capsys):
    import pytest

    from seqgap.cli import main

    with pytest.raises(SystemExit):
        main(["study", "sharing", "--preset", "medium"])
    assert "invalid choice: 'medium'" in capsys.readouterr().err


def test_quick_preset_has_what_each_w_check_needs():
    """W-b needs a fixed RNN variant at two n beside the Transformer; W-d needs several state sizes per
    RNN family on the capacity task (built here: the models' own state_size(), no training)."""
    from seqgap.models.registry import build_model, get_spec
    from seqgap.studies.retrieval_gap import QUICK

    cells = [c for g in QUICK.grids for c in g.cells()]
    cot = [c for c in cells if c.task == "istree" and c.format == "cot"]
    attn_ns = {c.n for c in cot if c.model == "llama"}
    rnn_variants = {(c.model, c.size, c.options): set() for c in cot if get_spec(c.model).recurrent}
    for c in cot:
        if (c.model, c.size, c.options) in rnn_variants:
            rnn_variants[(c.model, c.size, c.options)].add(c.n)
    assert any(len(ns & attn_ns) >= 2 for ns in rnn_variants.values())
    states: dict[str, set[int]] = {}
    for c in cells:
        if c.task == "mqar-zoology" and get_spec(c.model).recurrent:
            m = build_model(c.model, 140, 64, size=c.size, **dict(c.options))
            states.setdefault(c.model, set()).add(m.state_size().floats)
    assert states and all(len(s) >= 3 for s in states.values()), states


def test_seed_makes_a_replicate_with_its_own_runs(tmp_path, capsys):
    """--seed changes every cell's training seed (new run ids), not its validation problems."""
    import re

    def run_ids(*extra):
        argv = ["study", "retrieval-gap", "--dry-run", "--task", "istree", "--format", "cot", "--model", "llama",
                "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "o"), *extra]
        assert cli_main(argv) == 0
        return re.findall(r"run ([0-9a-f]{20})", capsys.readouterr().out)

    default, again, other = run_ids(), run_ids("--seed", "42"), run_ids("--seed", "1")
    assert default and default == again  # the preset's seed is 42
    assert len(other) == len(default) and not set(other) & set(default)
    from seqgap.studies.retrieval_gap import QUICK, Cell, run_config
    import dataclasses

    cell = Cell("istree", 8, "llama", "tiny", "cot")
    a, b = run_config(cell, QUICK), run_config(cell, dataclasses.replace(QUICK, seed=1))
    assert (a.data_seed, a.train.seed) == (42, 42) and (b.data_seed, b.train.seed) == (42, 1)
