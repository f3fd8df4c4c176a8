"""Study E's end-to-end orchestration and its findings check, on synthetic results.

The findings are the study's verdicts, so each check is exercised both ways (a case
that shows the claim and one that does not or cannot), and the orchestration is
checked to run each part with exactly the cells that part's own command would use.
"""
from types import SimpleNamespace

import pytest

from seqgap.studies import induction_bias as ib
from seqgap.studies import length_gen, sample_complexity, sharing
from seqgap.studies.sample_complexity import Cell, CellResult
from seqgap.studies.search import SearchResult
from seqgap.studies.sharing import Kappa


def parse(study, *argv):
    from seqgap.studies import study_parser

    return study_parser(study).parse_args(list(argv))


def test_each_study_plan_applies_its_preset_defaults():
    cells, settings = sample_complexity.plan(parse(sample_complexity, "--preset", "quick"))
    assert {c.max_length for c in cells} == {5, 10, 15} and {c.task_params["m"] for c in cells} == {2}
    assert {c.length_dist for c in cells} == {"fixed"} and settings.n_max == 4096
    bases, _, min_n = sharing.plan(parse(sharing, "--preset", "quick"))
    assert {(c.max_length, c.task_params["m"]) for c in bases} == {(5, 5)} and min_n == 3
    assert sharing.plan(parse(sharing, "--preset", "quick", "--min-n", "2", "-L", "4"))[2] == 2
    lg_cells, lg_settings = length_gen.plan(parse(length_gen, "--preset", "quick"))
    assert {c.max_length for c in lg_cells} == {8} and lg_settings.n_max == 2048
    assert {c.length_dist for c in lg_cells} == {"uniform"}
    # explicit options win over the preset
    lg_cells, lg_settings = length_gen.plan(parse(length_gen, "--preset", "quick", "-L", "6", "--n-max", "100"))
    assert {c.max_length for c in lg_cells} == {6} and lg_settings.n_max == 100


def cell_result(model, fmt, L, n_star, n_cap=4096, m=2, last_fail="exact"):
    """A hand-made cell; by default its search bracket is closed (N* known exactly: the interval
    [n_star, n_star]); pass ``last_fail`` for an open bracket (last_fail, n_star]."""
    cell = Cell("modadd", {"m": m, "format": fmt}, L, "fixed", model, "tiny")
    if last_fail == "exact":
        last_fail = n_cap if n_star is None else n_star - 1
    exact = n_star is not None and last_fail is not None and n_star - last_fail <= 1
    return CellResult(cell, SearchResult(n_star, n_cap, last_fail, [], exact), n_cap, 1, 0, 0.0)


def nstar_grid(t_acot, rnn_acot, t_cot=(10, 20, 40), rnn_cot=(500, 900, 2000)):
    rs = []
    for i, L in enumerate((5, 10, 15)):
        rs.append(cell_result("transformer", "acot", L, t_acot[i]))
        rs.append(cell_result("transformer", "cot", L, t_cot[i]))
        for model in ("lstm", "dense-ssm"):
            rs.append(cell_result(model, "acot", L, rnn_acot[i]))
            rs.append(cell_result(model, "cot", L, rnn_cot[i]))
    return rs


def test_finding_a_growth_with_length():
    assert ib.finding_a(nstar_grid((20, 800, 4000), (5, 6, 7)))[0] == "shown"
    assert ib.finding_a(nstar_grid((20, 800, None), (5, 6, 7)))[0] == "shown"  # >= growth, still faster
    assert ib.finding_a(nstar_grid((20, 30, 40), (5, 50, 500)))[0] == "not shown"
    verdict, detail = ib.finding_a(nstar_grid((None, None, None), (5, 6, 7)))
    assert verdict == "inconclusive" and "no length below the longest" in detail
    assert ib.finding_a(nstar_grid((20, 800, 4000), (5, 6, None)))[0] == "inconclusive"  # RNN only a bound


def test_finding_b_format_preference():
    assert ib.finding_b(nstar_grid((200, 800, 4000), (5, 6, 7)))[0] == "shown"
    # the Transformer preferring ACoT breaks the claim
    assert ib.finding_b(nstar_grid((2, 3, 4), (5, 6, 7), t_cot=(100, 200, 300)))[0] == "not shown"


def kappa_row(model, fmt, value, relation="="):
    return (Cell("modadd", {"m": 5, "format": fmt}, 5, "fixed", model, "tiny"),
            Kappa(value, relation, {}, None, 0), [])


def test_finding_c_kappa():
    rows = [kappa_row("lstm", "acot", 2.0, ">"), kappa_row("dense-ssm", "acot", 2.3),
            kappa_row("transformer", "cot", 0.1, "<"), kappa_row("lstm", "cot", 0.9)]
    assert ib.finding_c(rows)[0] == "shown"
    rows[1] = kappa_row("dense-ssm", "acot", 1.1)
    assert ib.finding_c(rows)[0] == "not shown"
    assert ib.finding_c(rows[:2])[0] == "inconclusive"  # no Transformer row


def lg_result(model, fmt, at_2l):
    cell = Cell("modadd", {"m": 2, "format": fmt}, 8, "uniform", model, "tiny")
    return length_gen.LengthGenResult(cell, 100, {16: at_2l}, {16: at_2l}, 0.0, model == "transformer", "id")


def test_finding_d_length_generalisation():
    lg = [lg_result("lstm", "acot", 1.0), lg_result("dense-ssm", "acot", 0.95), lg_result("transformer", "cot", 0.0)]
    assert ib.finding_d(lg)[0] == "shown"
    lg.append(lg_result("transformer", "acot", 0.9))
    assert ib.finding_d(lg)[0] == "not shown"
    assert ib.finding_d(lg[:2])[0] == "inconclusive"


def test_study_runs_each_parts_own_plan_and_writes_findings(tmp_path, monkeypatch):
    seen = {}

    def fake_search(cells, settings, store, workers, log=print, **engine):
        seen.setdefault("sc", []).append(cells)
        return [cell_result(c.model, c.format, c.max_length, 10 * c.max_length) for c in cells]

    def fake_kappas(bases, settings, store, workers, log=print, min_n=2, **engine):
        seen["sharing"] = (bases, min_n)
        return [(b, Kappa(2.0, "=", {}, None, 0), []) for b in bases]

    def fake_lg(cells, settings, store, workers, n_eval, log=print, **engine):
        seen["lg"] = (cells, settings.n_max, n_eval)
        return [lg_result(c.model, c.format, 1.0) for c in cells]

    monkeypatch.setattr(sample_complexity, "search_cells", fake_search)
    monkeypatch.setattr(sharing, "compute_kappas", fake_kappas)
    monkeypatch.setattr(length_gen, "run_cells", fake_lg)
    args = SimpleNamespace(preset="quick", workers=1, store=str(tmp_path / "s.sqlite"), out=str(tmp_path / "out"),
                           device="cpu")
    assert ib.main(args) == 0
    want_sc, _ = sample_complexity.plan(parse(sample_complexity, "--preset", "quick"))
    assert seen["sc"] == [want_sc]
    want_bases, _, want_min = sharing.plan(parse(sharing, "--preset", "quick"))
    assert seen["sharing"] == (want_bases, want_min)
    want_lg, want_settings = length_gen.plan(parse(length_gen, "--preset", "quick"))
    assert seen["lg"] == (want_lg, want_settings.n_max, 500)
    summary = (tmp_path / "out" / "summary.md").read_text()
    # the fake numbers make every N* grow alike: (a) is not shown; (d) is not (Transformer 1.0 at 2L)
    assert "**(a) Transformer N* grows faster with L than the RNNs' (ACoT): not shown.**" in summary
    assert "**(d) RNNs with ACoT length-generalise, the Transformer does not: not shown.**" in summary
    assert "**(c) RNN kappa under ACoT clearly > 1, Transformer's not: not shown.**" in summary  # T kappa 2.0
    assert (tmp_path / "out" / "sample_complexity" / "nstar_vs_length.png").exists()


@pytest.mark.parametrize("preset", ["quick", "paper"])
def test_plans_build_without_training(preset):
    # every preset's cells are valid (unknown tasks/models would fail here, in one line)
    for study in (sample_complexity, sharing, length_gen):
        assert study.plan(parse(study, "--preset", preset))[0]
