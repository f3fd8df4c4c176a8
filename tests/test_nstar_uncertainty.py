"""N* with its uncertainty: search brackets, grid counts per N, replicates (median and range),
and the findings checks on intervals (issue 10 item 4)."""
import dataclasses
import random
from types import SimpleNamespace

import pytest

from seqgap.studies import induction_bias as ib
from seqgap.studies import sample_complexity as sc
from seqgap.studies.search import SearchResult, find_n_star, find_n_star_replicates, summarize
from seqgap.studies.sharing import Kappa, kappa_interval


def noisy_grid_oracle(rep, members=4, t=300, width=200):
    """A grid of ``members`` runs; a run succeeds at N with probability rising from 0 (N <= t - width)
    to 1 (N >= t + width); the grid stops at the first success (members after it are not finished)."""
    rng = random.Random(1234 + rep)
    log = {}

    def succeeds(n):
        p = min(1.0, max(0.0, (n - (t - width)) / (2 * width)))
        finished, ok = 0, 0
        for _ in range(members):
            finished += 1
            if rng.random() < p:
                ok += 1
                break
        log[n] = (ok > 0, ok, finished)
        return ok > 0, ok, finished

    return succeeds, log


def test_noisy_oracle_counts_per_n_and_replicate_range():
    logs = []

    def make(rep):
        f, log = noisy_grid_oracle(rep)
        logs.append(log)
        return f

    results, summary = find_n_star_replicates(make, 6, 4096, factor=4, max_steps=12)
    assert len(results) == 6 and summary.replicates == 6
    for r, log in zip(results, logs):
        # every evaluation's counts are the oracle's own, in order, and agree with evaluations
        assert [(n, ok) for n, ok, _, _ in r.grid] == r.evaluations
        for n, ok, k, done in r.grid:
            assert log[n] == (ok, k, done)
            assert 0 <= k <= done <= 4
        lo, hi = r.interval()
        assert hi == r.n_star and 100 < hi <= 4096  # never below the region where success is possible
        assert lo == r.last_fail + 1 and lo <= hi
        assert r.counts_label() == f"{log[r.n_star][1]}/{log[r.n_star][2]}"
    vals = sorted(r.n_star for r in results)
    assert summary.low == vals[0] and summary.high == vals[-1]
    assert summary.median == pytest.approx((vals[2] + vals[3]) / 2)
    assert summary.low < summary.high  # noisy success: the replicates disagree, giving a range
    assert summary.interval() == (vals[0], vals[-1])


def test_plain_bool_oracle_has_no_counts():
    r = find_n_star(lambda n: n >= 7, 100, factor=2, max_steps=40)
    assert all(k is None for _, _, k, _ in r.grid) and r.counts_label() == ""
    assert r.table_label() == "7 (6, 7]"


def test_summary_counts_unsolved_as_above_cap():
    s = summarize([SearchResult(10, 100, 9, exact=True), SearchResult(None, 100, 100),
                   SearchResult(None, 100, 100)])
    assert s.median is None and s.low == 10 and s.high is None and s.solved == 1
    assert s.label() == "median > 100 [10 .. > 100] (1/3 solved)"
    assert s.interval() == (10, None)
    s = summarize([SearchResult(10, 100, 9, exact=True), SearchResult(30, 100, 20), SearchResult(None, 100, 100)])
    assert s.median == 30 and s.label() == "median 30 [10 .. > 100] (2/3 solved)"


def test_intervals_and_labels():
    r = SearchResult(209, 4096, 197, [(4096, True), (197, False), (209, True)], False,
                     [(4096, True, 2, 2), (197, False, 0, 2), (209, True, 1, 2)])
    assert r.interval() == (198, 209) and r.bracket() == "(197, 209]"
    assert r.table_label() == "209 (197, 209] 1/2"
    un = SearchResult(None, 820, 820, [(820, False)], False, [(820, False, 0, 2)])
    assert un.interval() == (821, None) and un.table_label() == "> 820 0/2"
    assert SearchResult(3, 5000, None, exact=True).interval() == (3, 3)  # reached n_min
    assert SearchResult(500, 1000, None).interval() == (1, 500)  # step limit while still succeeding
    assert SearchResult.from_dict(r.to_dict()) == r


def _cell(model, fmt, L, m=2):
    return sc.Cell("modadd", {"m": m, "format": fmt}, L, "fixed", model, "tiny")


def cr(model, fmt, L, n_star, last_fail, n_cap=4096, grid=None, reps=None):
    sr = SearchResult(n_star, n_cap, last_fail, [], n_star is not None and last_fail is not None
                      and n_star - last_fail <= 1, grid or [])
    return sc.CellResult(_cell(model, fmt, L), sr, n_cap, 1, 0, 0.0, reps or [])


def test_report_shows_brackets_counts_and_replicates(tmp_path):
    from seqgap.report.state_tracking import write_sample_complexity_report

    a = cr("transformer", "cot", 10, 209, 197, grid=[(4096, True, 2, 2), (197, False, 0, 2), (209, True, 1, 2)])
    reps = [SearchResult(20, 4096, 10), SearchResult(40, 4096, 30), SearchResult(None, 4096, 4096)]
    b = sc.CellResult(_cell("lstm", "acot", 10), reps[0], 4096, 3, 0, 0.0, reps)
    settings = dataclasses.replace(sc.QUICK_SETTINGS, replicates=3)
    md = write_sample_complexity_report([a, b], settings, tmp_path)
    assert "| transformer | cot | 2 | 209 (197, 209] 1/2 |" in md
    assert "median 40 [20 .. > 4,096] (2/3 solved)" in md
    assert "3 replicate searches per cell" in md
    assert "4,096 ok 2/2, 197 fail 0/2, 209 ok 1/2" in md  # search trace with counts per N
    import json

    data = json.loads((tmp_path / "results.json").read_text())
    assert data[0]["interval"] == [198, 209] and data[0]["search"]["grid"][2] == [209, True, 1, 2]
    assert data[1]["replicate_summary"]["n_stars"] == [20, 40, None]


def test_replicates_setting_ids_and_flag():
    cell = _cell("lstm", "acot", 10)
    two = dataclasses.replace(sc.QUICK_SETTINGS, replicates=2)
    assert sc.cell_id(cell, dataclasses.replace(sc.QUICK_SETTINGS, replicates=1)) == "nstar-932aca9acc6b673c2329"
    assert sc.cell_id(cell, two) != sc.cell_id(cell, sc.QUICK_SETTINGS)
    r1 = sc.replicate_settings(two, 1)
    assert r1.data_seed == two.data_seed + 1 and r1.seeds == tuple(s + 1000 for s in two.seeds)
    assert r1.replicates == 1
    assert sc.cell_id(cell, sc.replicate_settings(two, 0)) == sc.cell_id(cell, sc.QUICK_SETTINGS)
    from seqgap.studies import study_parser

    args = study_parser(sc).parse_args(["--preset", "quick", "--replicates", "3"])
    assert sc.plan(args)[1].replicates == 3
    assert sc.plan(study_parser(sc).parse_args(["--preset", "quick"]))[1].replicates == sc.QUICK_SETTINGS.replicates


def test_search_cell_replicates_with_fake_training(tmp_path, monkeypatch):
    """search_cell runs R searches (other data seeds and seeds), records grid counts per N."""
    from seqgap.store import RunStore

    seen = []

    class FakeDriver:  # the study program against a stand-in driver: trains nothing
        store = RunStore(str(tmp_path / "s.sqlite"))

        def with_store(self, fn):
            return fn(self.store)

        def train(self, grid, stop_on_success=True):
            return fake_run_ensemble(grid, None, stop_on_success)

    def fake_run_ensemble(grid, store, stop_on_success=True):
        cfg0 = grid[0]
        seen.append((cfg0.data_seed, tuple(c.train.seed for c in grid)))
        t = 50 + 100 * cfg0.data_seed  # replicate r's threshold: other data, other N*
        out = []
        for i, c in enumerate(grid):
            ok = c.n_train >= t and i == len(grid) - 1  # only the last member learns
            out.append(SimpleNamespace(success=ok, cached=False, summary={"best_val_loss": 0.0 if ok else 1.0}))
        return out

    settings = dataclasses.replace(sc.QUICK_SETTINGS, n_max=1000, max_steps=20, bisect="arithmetic",
                                   replicates=3, seeds=(0, 1))
    res = sc.search_cell(_cell("lstm", "acot", 10), settings, FakeDriver())
    assert [s.n_star for s in res.searches] == [50, 150, 250]
    assert {d for d, _ in seen} == {0, 1, 2}
    assert (2, (2000, 2001, 2000, 2001)) in seen  # lrs x seeds, seeds shifted by 1000 r
    assert all(k == (1 if ok else 0) and done == 4 for s in res.searches for _, ok, k, done in s.grid)
    assert res.summary.median == 150 and res.interval() == (50, 250)
    assert res.label() == "median 150 [50 .. 250] (3/3 solved)"
    again = sc.search_cell(_cell("lstm", "acot", 10), settings, FakeDriver())  # from the store
    assert [s.grid for s in again.searches] == [s.grid for s in res.searches]


# ---- findings on intervals ----------------------------------------------------------------

def grid_cells(t_acot, rnn_acot, t_cot, rnn_cot):
    """Each entry (n_star, last_fail); None for unsolved."""
    rs = []
    for i, L in enumerate((5, 10, 15)):
        for model, fa, fc in (("transformer", t_acot, t_cot), ("lstm", rnn_acot, rnn_cot),
                              ("dense-ssm", rnn_acot, rnn_cot)):
            for fmt, v in (("acot", fa[i]), ("cot", fc[i])):
                rs.append(cr(model, fmt, L, *(v if v is not None else (None, 4096))))
    return rs


def test_finding_b_intervals_overlap_inconclusive_separate_shown():
    sep = grid_cells(t_acot=[(900, 800)] * 3, rnn_acot=[(6, 5)] * 3, t_cot=[(30, 20)] * 3, rnn_cot=[(500, 400)] * 3)
    verdict, detail = ib.finding_b(sep)
    assert verdict == "shown" and "rule:" in detail and "[63, 90]" in detail  # T CoT sum of (20, 30] x 3
    # Transformer CoT (10, 1000] vs ACoT (800, 900]: the sums overlap
    ov = grid_cells(t_acot=[(900, 800)] * 3, rnn_acot=[(6, 5)] * 3, t_cot=[(1000, 10)] * 3, rnn_cot=[(500, 400)] * 3)
    assert ib.finding_b(ov)[0] == "inconclusive"
    # clearly the wrong way round: not shown
    bad = grid_cells(t_acot=[(30, 20)] * 3, rnn_acot=[(6, 5)] * 3, t_cot=[(900, 800)] * 3, rnn_cot=[(500, 400)] * 3)
    assert ib.finding_b(bad)[0] == "not shown"


def test_finding_a_both_variants_on_intervals():
    # Transformer ACoT grows 20 -> 4000 (exact-ish); RNNs flat
    sep = grid_cells(t_acot=[(20, 19), (800, 799), (4000, 3999)], rnn_acot=[(5, 4), (6, 5), (7, 6)],
                     t_cot=[(20, 19), (400, 399), (2000, 1999)], rnn_cot=[None] * 3)
    assert ib.finding_a(sep)[0] == "shown"
    verdict, detail = ib.finding_a_preferred(sep)
    assert verdict == "shown" and "transformer (cot)" in detail and "lstm (acot)" in detail
    # wide brackets: Transformer growth [4000/20 ... ] vs an RNN whose bracket spans (1, 500]
    ov = grid_cells(t_acot=[(20, 1), (800, 799), (40, 2)], rnn_acot=[(5, 4), (6, 5), (500, 1)],
                    t_cot=[(20, 1), (400, 399), (60, 1)], rnn_cot=[None] * 3)
    assert ib.finding_a(ov)[0] == "inconclusive"
    assert ib.finding_a_preferred(ov)[0] == "inconclusive"
    assert ib.PREFERRED_FORMAT == {"transformer": "cot", "lstm": "acot", "dense-ssm": "acot"}


def _krow(model, fmt, low, high, value=1.0):
    base = _cell(model, fmt, 5, m=5)
    return base, Kappa(value, "=", {}, None, 0, low, high), []


def test_finding_c_on_kappa_intervals():
    rows = [_krow("lstm", "acot", 2.0, 3.0), _krow("dense-ssm", "acot", 1.8, 2.5),
            _krow("transformer", "cot", 0.05, 0.2)]
    verdict, detail = ib.finding_c(rows)
    assert verdict == "shown" and "[2.00, 3.00]" in detail
    rows[1] = _krow("dense-ssm", "acot", 1.2, 2.5)  # straddles 1.5
    assert ib.finding_c(rows)[0] == "inconclusive"
    rows[1] = _krow("dense-ssm", "acot", 0.8, 1.1)
    assert ib.finding_c(rows)[0] == "not shown"


def test_kappa_interval_from_brackets():
    per = [cr("lstm", "acot", n, v, lf) for n, (v, lf) in zip((3, 4), ((10, 5), (20, 10)))]
    joint = cr("lstm", "acot", 4, 8, 4)
    lo, hi = kappa_interval(per, joint)
    assert lo == pytest.approx((6 + 11) / 8) and hi == pytest.approx(30 / 5)


def test_finding_d_binomial_intervals():
    from seqgap.studies import length_gen

    def lg(model, fmt, acc):
        return length_gen.LengthGenResult(_cell(model, fmt, 8), 100, {16: acc}, {16: acc}, 0.0, False, "id")

    rs = [lg("lstm", "acot", 0.95), lg("dense-ssm", "acot", 1.0), lg("transformer", "cot", 0.1)]
    assert ib.finding_d(rs, n_eval=500)[0] == "shown"
    # 0.82 over 20 problems: the interval straddles 0.8
    rs[0] = lg("lstm", "acot", 0.82)
    verdict, detail = ib.finding_d(rs, n_eval=20)
    assert verdict == "inconclusive" and "Wilson" in detail
