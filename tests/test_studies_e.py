"""Study E plumbing: search over real (tiny) training runs, resumption, kappa arithmetic, reports."""
import dataclasses

import pytest

from seqgap.config import TrainConfig
from seqgap.store import RunStore
from seqgap.studies import sample_complexity as sc
from seqgap.studies.sharing import kappa, sharing_cells
from seqgap.training import trainer

SETTINGS = sc.SearchSettings(n_max=12, factor=2, max_steps=4, lrs=(3e-2,), seeds=(0, 1),
                             train=TrainConfig(steps=80, eval_every=10, batch_size=8, success_loss=0.3))
CELL = sc.Cell("modadd", {"m": 2, "format": "acot"}, 4, "fixed", "lstm", "tiny")


def test_kappa_arithmetic():
    k = kappa({2: 3, 3: 5, 4: 12}, joint=10)
    assert k.value == pytest.approx(2.0) and k.relation == "=" and k.label() == "2.00"
    k = kappa({2: 3, 3: None}, joint=4, caps={3: 9})
    assert k.value == pytest.approx(3.0) and k.relation == ">" and k.label() == "> 3.00"
    assert kappa({2: 3}, joint=None).label() == "n/a"
    k = kappa({2: 3, 3: 5}, joint=None, joint_cap=80)  # joint failed with all 80 samples
    assert k.relation == "<" and k.value == pytest.approx(0.1) and k.label() == "< 0.10"
    assert kappa({2: None, 3: 5}, joint=None, caps={2: 4}, joint_cap=80).label() == "n/a"
    assert kappa({2: 30, 3: 30}, joint=120).value == pytest.approx(0.5)


def test_sharing_cells_cover_2_to_L():
    fixed, joint = sharing_cells(dataclasses.replace(CELL, max_length=5))
    assert [c.max_length for c in fixed] == [2, 3, 4, 5]
    assert all(c.length_dist == "fixed" for c in fixed)
    assert joint.length_dist == "uniform" and joint.max_length == 5


def test_nmax_capped_by_distinct_samples():
    # m=2, L=4: 16 sequences, 3 held out -> 13 training samples
    assert sc.available_train(CELL, SETTINGS) == 13


class Killed(BaseException):
    """Stands in for the process being killed mid-search."""


def test_search_resumes_after_interruption_and_never_trains_twice(tmp_path, monkeypatch):
    store_path = str(tmp_path / "s.sqlite")
    settings = dataclasses.replace(SETTINGS, ensemble=False)  # one run at a time (ensemble: test_ensemble.py)
    real_train = trainer.train
    trained = []
    kill_at = [3]

    def counting_train(cfg, *a, **k):
        trained.append(cfg.hash())
        if len(trained) == kill_at[0]:
            kill_at[0] = -1
            raise Killed  # the sweep is killed mid-search
        return real_train(cfg, *a, **k)

    monkeypatch.setattr(trainer, "train", counting_train)
    with pytest.raises(Killed):
        sc.search_cell(CELL, settings, store_path)
    assert len(trained) == 3 and len(RunStore(store_path)) == 2  # two finished runs were stored

    trained.clear()
    first = sc.search_cell(CELL, settings, store_path)
    assert len(set(trained)) == len(trained), "no run trained twice"
    assert first.trained == len(trained) and first.runs >= first.trained + 2 - 0  # the 2 stored runs were reused
    stored_ids = {r["id"] for r in RunStore(store_path).all("train")}
    assert set(trained) <= stored_ids

    trained.clear()
    again = sc.search_cell(CELL, settings, store_path)  # whole cell cached
    assert trained == [] and again.search.n_star == first.search.n_star
    RunStore(store_path).delete(sc.cell_id(CELL, settings))
    redo = sc.search_cell(CELL, settings, store_path)  # cell row gone: every run comes from the store
    assert trained == [] and redo.trained == 0 and redo.search.n_star == first.search.n_star


def test_reports_written(tmp_path):
    store_path = str(tmp_path / "s.sqlite")
    results = [sc.search_cell(dataclasses.replace(CELL, model=m), SETTINGS, store_path) for m in ("lstm", "dense-ssm")]
    from seqgap.report.state_tracking import write_sample_complexity_report

    md = write_sample_complexity_report(results, SETTINGS, tmp_path / "rep")
    assert "| lstm | acot | 2 |" in md and (tmp_path / "rep" / "nstar_vs_length.png").stat().st_size > 1000
    assert (tmp_path / "rep" / "results.json").exists()


def test_cell_ids_are_pinned_and_ignore_placement():
    """A cell's id keys its stored N* result: it must not move when an option that does not
    change results (device, threads, compile) is added or set, nor when a training option is added
    at its default (ids keep non-default training options only).  Values as of RESULTS_VERSION 2."""
    cell = sc.Cell("modadd", {"m": 2, "format": "acot"}, 10, "fixed", "lstm", "tiny")
    assert sc.cell_id(cell, sc.QUICK_SETTINGS) == "nstar-932aca9acc6b673c2329"
    assert sc.cell_id(cell, sc.PAPER_SETTINGS) == "nstar-1421fc6ea5f1aafd29c3"
    placed = dataclasses.replace(sc.QUICK_SETTINGS, train=dataclasses.replace(
        sc.QUICK_SETTINGS.train, device="cuda", threads=4, compile=True))
    assert sc.cell_id(cell, placed) == sc.cell_id(cell, sc.QUICK_SETTINGS)
