"""The W capacity part with zoology's MQAR: mixed-pair-count cells, one record per n, lr sweeps as rows,
the report's capacity table, the slope fit and the named check W-d (fake records; nothing trained)."""
import pytest

from seqgap.report.retrieval import capacity_rows, check_w_d, write_retrieval_gap_report
from seqgap.studies.retrieval_gap import QUICK, Cell, Grid, records_for, run_config


def zr(n, acc, model="lstm", size="tiny", state_bits=4096, lr=3e-3, opts=None, per_token=False, n_params=50_000):
    base = {2: 0.54, 4: 0.29, 8: 0.17, 16: 0.12}.get(n, 1 / n)
    return dict(task="mqar-zoology", format="vanilla", n=n, model=model, size=size, model_options=opts or {},
                recurrent=not per_token, ok=True, cached=False, steps=1000, samples_seen=64000, seconds=60.0,
                n_params=n_params, state_floats=state_bits // 32, state_per_token=per_token, state_bits=state_bits,
                val_loss=1.0, best_val_loss=1.0, val_token_acc=acc, val_seq_acc=0.0, val_final_acc=acc,
                n_val=500, chance=1 / 64, lr=lr, tokens=64,
                baseline={"name": "query-order guess", "accuracy": base, "exact": False},
                acc=acc, acc_n=500 * n, acc_scores="per query, teacher-forced")


def attention(accs=(1.0, 1.0, 1.0, 0.999)):
    return [zr(n, a, model="llama", per_token=True, state_bits=8192, opts={"short_conv": 3}, lr=1e-3,
               n_params=148_000) for n, a in zip((2, 4, 8, 16), accs)]


def lstm(bits, accs, lr=3e-3):
    return [zr(n, a, state_bits=bits, lr=lr, opts={"hidden": bits // 64}) for n, a in zip((2, 4, 8, 16), accs)]


def test_w_d_shown(tmp_path):
    recs = (attention() + lstm(1024, (0.95, 0.3, 0.1, 0.1)) + lstm(4096, (0.99, 0.97, 0.2, 0.1))
            + lstm(8192, (1.0, 0.99, 0.95, 0.2)) + lstm(8192, (0.5, 0.2, 0.1, 0.1), lr=1e-2))
    rows = capacity_rows(recs, 0.9)
    assert len([r for r in rows if r["model"] == "lstm"]) == 4  # the lr sweep: one row per lr
    verdict, detail = check_w_d(rows, 0.9)
    assert verdict == "shown", detail
    assert "slope" in detail and "grows" in detail
    md = write_retrieval_gap_report(recs, {"threshold": 0.9}, tmp_path)
    assert "## Checks" in md and "**W-d (capacity law): shown.**" in md
    assert "| mqar-zoology | llama |" in md and "lr 0.001" in md
    assert (tmp_path / "capacity_law.png").stat().st_size > 0
    assert "log-log slope of largest-solved n against state bits" in md


def test_w_d_not_shown_and_inconclusive():
    flat = attention() + lstm(1024, (0.5, 0.2, 0.1, 0.1)) + lstm(4096, (0.5, 0.25, 0.1, 0.06))
    v, d = check_w_d(capacity_rows(flat, 0.9), 0.9)
    assert v == "not shown" and "none" in d and "slope not fitted" in d
    weak_attention = attention((1.0, 1.0, 0.5, 0.1)) + lstm(1024, (0.95, 0.3, 0.1, 0.1)) + lstm(4096, (1, 1, .2, .1))
    assert check_w_d(capacity_rows(weak_attention, 0.9), 0.9)[0] == "not shown"
    one_size = attention() + lstm(1024, (0.95, 0.3, 0.1, 0.1))
    assert check_w_d(capacity_rows(one_size, 0.9), 0.9)[0] == "inconclusive"
    # attention at 0.9 over few queries: the interval straddles the threshold
    few = [dict(r, acc=0.91, acc_n=100) for r in attention()] + lstm(1024, (0.95, .3, .1, .1)) + lstm(4096, (1, 1, .2, .1))
    assert check_w_d(capacity_rows(few, 0.9), 0.9)[0] == "inconclusive"


def test_mixed_cell_expands_into_one_record_per_n():
    g = Grid(("mqar-zoology",), ("lstm",), ("tiny",), (2, 4, 8, 16), options=((("hidden", 16),), (("hidden", 32),)),
             lrs=(3e-3, 1e-2), mixed=True)
    cells = g.cells()
    assert len(cells) == 4 and all(c.n == 16 and c.eval_ns == (2, 4, 8, 16) for c in cells)
    cell = cells[0]
    preset = QUICK if "mqar-zoology" in QUICK.task_options else None
    if preset is None:
        pytest.skip("quick preset has no mqar-zoology options")
    cfg = run_config(cell, preset, n_val=20)
    assert cfg.length_dist == "uniform" and cfg.max_length == 16 and cfg.eval_lengths == (2, 4, 8, 16)
    assert cfg.task_params["min_length"] == 2 and cfg.model_options["hidden"] == 16 and cfg.train.lr == 3e-3
    ev = {str(n): {"val_loss": 1.0, "val_token_acc": a, "val_seq_acc": 0.0, "val_final_acc": a}
          for n, a in ((2, 0.9), (4, 0.5), (8, 0.2), (16, 0.1))}
    summary = dict(steps=100, seconds=3.0, n_params=10_000, n_trainable_params=10_000, state_floats=32,
                   state_per_token=False, val_loss=1.0, best_val_loss=1.0, val_token_acc=0.3, val_seq_acc=0.0,
                   val_final_acc=0.3, n_val=20, chance_accuracy=1 / 64, eval_lengths=ev)
    recs = records_for(cell, cfg, {"summary": summary, "cached": False})
    assert [r["n"] for r in recs] == [2, 4, 8, 16] and [r["acc"] for r in recs] == [0.9, 0.5, 0.2, 0.1]
    assert [r["acc_n"] for r in recs] == [20 * n for n in (2, 4, 8, 16)]
    assert len({r["run_id"] for r in recs}) == 1 and all(r["baseline"]["accuracy"] >= 1 / r["n"] - 0.05 for r in recs)
    assert all(r["lr"] == 3e-3 and r["tokens"] == cfg.task_params.get("seq_len", r["tokens"]) for r in recs)
    rows = capacity_rows(recs, 0.9)
    assert len(rows) == 1 and rows[0]["largest_solved"] == 2
    failed = records_for(cell, cfg, None)
    assert len(failed) == 4 and not any(r["ok"] for r in failed)
