"""Study W's report (report/retrieval.py) from hand-built records, its rows (studies/retrieval_gap.record)
and `seqgap runs`: shortcut baselines next to chance, "at baseline" instead of "learned", every number
labelled with what it scores, every row with its model, size and options."""
from __future__ import annotations

import json

import pytest

from seqgap.cli import main as cli_main
from seqgap.report.retrieval import (NO_CAPACITY_PLOT, beats_baseline, capacity_rows, context_guess_baseline,
                                     findings_istree, wilson_interval, write_retrieval_gap_report)

DEGREES = {"name": "node degrees", "accuracy": 0.59375, "exact": True}


def ist(**kw):
    r = dict(task="istree", format="cot", n=8, model="llama", size="tiny", model_options={}, recurrent=False,
             ok=True, cached=False, steps=1500, samples_seen=96000, seconds=10.0, n_params=131_000,
             n_trainable_params=131_000, state_floats=64, state_per_token=True, state_bits=2048, val_loss=0.1,
             best_val_loss=0.1, val_token_acc=0.9, val_seq_acc=0.5, val_final_acc=0.97, n_val=500, chance=0.5,
             baseline=DEGREES, gen_acc=0.9, gen_trace_acc=0.5, gen_failures=0, gen_n=200,
             acc_scores="answer, free greedy generation")
    r.update(kw)
    r.setdefault("acc", r["gen_acc"])
    r.setdefault("acc_n", r["gen_n"])
    return r


def mq(n, acc, model="lstm", size="tiny", base=None, **kw):
    r = dict(task="mqar", format="vanilla", n=n, model=model, size=size, model_options={}, recurrent=True,
             ok=True, cached=False, steps=2000, samples_seen=128000, seconds=5.0, n_params=50_000,
             state_floats=128, state_per_token=False, state_bits=4096, val_loss=1.0, best_val_loss=1.0,
             val_token_acc=acc, val_seq_acc=0.0, val_final_acc=acc, n_val=500, chance=1 / 64,
             baseline={"name": "context guess (values in context)",
                       "accuracy": context_guess_baseline("mqar", n) if base is None else base, "exact": False},
             acc=acc, acc_n=500 * n, acc_scores="per query, teacher-forced")
    r.update(kw)
    return r


def test_wilson_interval_and_beats():
    lo, hi = wilson_interval(0.5, 100)
    assert abs(lo - 0.4038) < 1e-3 and abs(hi - 0.5962) < 1e-3
    assert wilson_interval(1.0, 4)[1] == 1.0 and wilson_interval(0.0, 4)[0] == 0.0
    assert wilson_interval(0.5, None) is None and wilson_interval(0.5, 0) is None
    # 0.65 over 200 graphs: lower end 0.58 < 0.594 -> at baseline; over 2000: 0.63 > 0.594 -> beats
    assert beats_baseline(ist(gen_acc=0.65, gen_n=200)) is False
    assert beats_baseline(ist(gen_acc=0.65, gen_n=2000)) is True
    # no baseline: chance is the reference
    assert beats_baseline(ist(gen_acc=0.65, gen_n=2000, baseline=None)) is True
    assert beats_baseline(ist(acc=None)) is None


def test_istree_report_baselines_labels_and_variants(tmp_path):
    recs = [
        ist(format="vanilla", gen_acc=0.58, val_final_acc=0.58),  # below the degree shortcut
        ist(format="cot", gen_acc=0.99, val_final_acc=1.0),  # beats it
        ist(format="cot", model="llama", model_options={"frozen_embeddings": True}, gen_acc=0.55,
            val_final_acc=1.0, val_loss=4.13),  # the same model and size, another option: a second row
        ist(format="rag", model="mamba", recurrent=True, n_params=131_200, gen_acc=0.97, gen_trace_acc=0.9,
            acc_scores="answer, free greedy generation with the live retrieval tool"),
    ]
    md = write_retrieval_gap_report(recs, {"preset": "test", "threshold": 0.9}, tmp_path)
    table = [l for l in md.splitlines() if l.startswith("| 8 |")]
    assert len(table) == 4
    for line in table:  # model, named size, parameter count, options in every row
        assert " tiny " in line and "131k" in line and ("default" in line or "frozen_embeddings=True" in line)
        assert "0.594 (node degrees)" in line and "0.500" in line  # baseline next to chance
    van = next(l for l in table if "| vanilla |" in l)
    assert "at baseline" in van
    cot_good = next(l for l in table if "| cot |" in l and "default" in l)
    assert "| beats |" in cot_good and "200 graphs, free greedy generation" in cot_good
    assert any("frozen_embeddings=True" in l and "at baseline" in l for l in table)
    # findings: a vanilla model below the shortcut is "at baseline", never near-perfect
    says = md.split("## What the numbers say")[1]
    van_line = next(l for l in says.splitlines() if l.startswith("- n=8, vanilla"))
    assert "at baseline: llama:tiny (131k, default)" in van_line and "near-perfect: none" in van_line
    cot_line = next(l for l in says.splitlines() if l.startswith("- n=8, cot:"))
    assert "near-perfect: llama:tiny (131k, default)" in cot_line
    assert "at baseline: llama:tiny (131k, frozen_embeddings=True)" in cot_line
    # the teacher-forced last token (1.00 at loss 4.13) is named, with its cell, and never called answer accuracy
    note = next(l for l in says.splitlines() if "CoT/RAG cell(s)" in l)
    assert note.startswith("- 1 CoT/RAG cell(s)") and "n=8 cot llama:tiny (131k, frozen_embeddings=True)" in note
    assert "last token 1.00" in note and "generated answer 0.55" in note
    assert "1.000" not in " ".join(table)  # no row prints the last-token accuracy
    assert (tmp_path / "istree_acc_vs_size_n8.png").stat().st_size > 0


def test_cot_without_generation_has_no_answer_accuracy(tmp_path):
    r = ist(format="cot", acc=None, acc_n=None, acc_scores="not measured (no free generation)", val_final_acc=1.0)
    for k in ("gen_acc", "gen_trace_acc", "gen_n", "gen_failures"):
        r.pop(k)
    md = write_retrieval_gap_report([r], {"threshold": 0.9}, tmp_path)
    row = next(l for l in md.splitlines() if l.startswith("| 8 |"))
    assert "not measured" in row and "1.000" not in row
    assert "no answer accuracy (no free generation was run" in md
    assert any("CoT/RAG cell(s)" in l and "n=8 cot llama:tiny" in l for l in findings_istree([r]))


def test_capacity_nothing_solved_draws_no_plot(tmp_path):
    (tmp_path / "capacity_law.png").write_bytes(b"stale")
    recs = [mq(2, 0.76), mq(4, 0.50), mq(8, 0.30)]
    md = write_retrieval_gap_report(recs, {"threshold": 0.9}, tmp_path)
    assert NO_CAPACITY_PLOT.format(t=0.9) in md and not (tmp_path / "capacity_law.png").exists()
    assert "capacity_law.png" not in md
    row = next(l for l in md.splitlines() if l.startswith("| mqar | lstm |"))
    assert "50k" in row and "default" in row and "0.76†" in row and "| none |" in row
    assert "*shortcut baseline*" in md and "*chance*" in md and "context guess (values in context)" in md
    assert "no n reaches 0.9 above the shortcut baseline" in md
    assert "too few fixed-state models" not in md


def test_capacity_solved_needs_to_beat_the_baseline(tmp_path):
    # values repeat at n=2: the task's baseline (0.97) is above the formula (0.75) and above 0.95
    recs = [mq(2, 0.95, base=0.97), mq(4, 0.99), mq(8, 0.3),
            mq(2, 1.0, model="llama", size="tiny", recurrent=False, state_per_token=True, n_params=131_000),
            mq(4, 1.0, model="llama", size="tiny", recurrent=False, state_per_token=True, n_params=131_000),
            mq(8, 1.0, model="llama", size="tiny", recurrent=False, state_per_token=True, n_params=131_000)]
    rows = capacity_rows(recs, 0.9)
    lstm = next(r for r in rows if r["model"] == "lstm")
    assert lstm["beats_by_n"] == {2: False, 4: True, 8: False}
    assert lstm["largest_solved"] == 4 and not lstm["solved_prefix"] and not lstm["solves_all"]
    md = write_retrieval_gap_report(recs, {"threshold": 0.9}, tmp_path)
    assert (tmp_path / "capacity_law.png").stat().st_size > 0 and NO_CAPACITY_PLOT.format(t=0.9) not in md
    assert "n=2: 0.95 (at baseline)" in md
    base_row = next(l for l in md.splitlines() if "*shortcut baseline*" in l)
    assert "0.97" in base_row  # the task's measured baseline, not the formula's 0.75


def test_capacity_rows_keep_two_variants_apart():
    recs = [mq(4, 0.5), mq(4, 0.6, model_options={"frozen_embeddings": True})]
    rows = capacity_rows(recs, 0.9)
    assert len(rows) == 2 and {json.dumps(r["model_options"]) for r in rows} == {"{}", '{"frozen_embeddings": true}'}


def test_formula_fallback_for_rows_without_a_baseline():
    r = mq(4, 0.5)
    r.pop("baseline")
    from seqgap.report.retrieval import baseline_of

    b = baseline_of(r)
    assert b["source"] == "formula" and b["accuracy"] == context_guess_baseline("mqar", 4)


# ---- the study's rows -------------------------------------------------------------------------

def _summary(**kw):
    s = dict(steps=3, seconds=0.1, n_params=35_000, n_trainable_params=35_000, state_floats=64,
             state_per_token=False, val_loss=4.13, best_val_loss=4.13, val_token_acc=0.3, val_seq_acc=0.0,
             val_final_acc=1.0, n_val=16, chance_accuracy=0.5)
    s.update(kw)
    return s


def test_record_scores_and_baselines():
    from seqgap.studies.retrieval_gap import QUICK, Cell, record, run_config

    cot = Cell("istree", 8, "lstm", "small", "cot")
    cfg = run_config(cot, QUICK, n_val=40, gen_eval=10, frozen=True)
    r = record(cot, cfg, {"summary": _summary(gen_acc=0.6, gen_trace_acc=0.1, gen_n=10, gen_failures=0),
                          "cached": False})
    assert r["acc"] == 0.6 and r["acc_n"] == 10 and "free greedy generation" in r["acc_scores"]
    assert r["baseline"] == DEGREES and r["chance"] == 0.5
    assert r["model_options"] == {"frozen_embeddings": True}
    # no generation: a CoT cell has no answer accuracy (val_final_acc is the trace's closing token)
    r2 = record(cot, cfg, {"summary": _summary(), "cached": False})
    assert r2["acc"] is None and r2["acc_n"] is None
    van = Cell("istree", 8, "lstm", "small", "vanilla")
    r3 = record(van, run_config(van, QUICK, n_val=40), {"summary": _summary(n_val=40), "cached": False})
    assert r3["acc"] == 1.0 and r3["acc_n"] == 40 and "teacher-forced" in r3["acc_scores"]
    m = Cell("mqar", 4, "lstm", "tiny")
    r4 = record(m, run_config(m, QUICK, n_val=30), {"summary": _summary(n_val=30, val_token_acc=0.5),
                                                    "cached": False})
    assert r4["acc"] == 0.5 and r4["acc_n"] == 30 * 4 and r4["baseline"]["accuracy"] >= 0.5
    assert r4["acc_scores"] == "per query, teacher-forced"
    failed = record(m, run_config(m, QUICK, n_val=30), None)
    assert not failed["ok"] and failed["baseline"] is not None


# ---- seqgap runs ------------------------------------------------------------------------------

def _put(store, rid, model_options, summary):
    from seqgap.config import RunConfig, TrainConfig

    cfg = RunConfig(task="istree", task_params={"format": "cot", "max_nodes": 8}, max_length=8, n_train=0,
                    model="llama", model_size="tiny", model_options=model_options, train=TrainConfig())
    store.put(rid, cfg.to_dict(), summary)


def test_runs_shows_criterion_accuracy_size_and_options(tmp_path, capsys):
    from seqgap.store import RunStore

    path = str(tmp_path / "runs.sqlite")
    store = RunStore(path)
    base = dict(success=False, best_val_loss=2e-3, steps=1500, n_params=131_000, val_seq_acc=0.98,
                best_val_seq_acc=0.99, val_token_acc=0.995, gen_acc=0.99)
    _put(store, "a" * 16, {}, base)
    _put(store, "b" * 16, {"frozen_embeddings": True}, {**base, "success": True, "best_val_loss": 5e-5})
    store.close()
    assert cli_main(["runs", "--store", path]) == 0
    out = capsys.readouterr().out.splitlines()
    a = next(l for l in out if l.startswith("a" * 16))
    b = next(l for l in out if l.startswith("b" * 16))
    assert "loss<1e-4: no" in a and "fail" not in a and "answer_acc(gen)=0.990" in a
    assert "best_seq_acc(TF)=0.990" in a and "llama:tiny (131k, default)" in a
    assert "loss<1e-4: yes" in b and "llama:tiny (131k, frozen_embeddings=True)" in b
