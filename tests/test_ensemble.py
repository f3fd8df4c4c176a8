"""Ensemble training against its oracle: the same runs trained one by one with ``trainer.train``.

Every member of an ensemble must reproduce, up to floating-point rounding, the run
``trainer.train`` makes from the same config: same initialization (seed), same batch
order, same learning rate and schedule, same clipping, same early stopping.  The
pieces are also checked on their own against torch's reference implementations
(``torch.optim.Adam/AdamW``, ``clip_grad_norm_``, ``nn.LSTM``, each model's forward).
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from seqgap.config import RunConfig, TrainConfig
from seqgap.errors import SeqgapError
from seqgap.store import RunStore
from seqgap.training import ensemble as ens
from seqgap.training import trainer
from seqgap.training.ensemble import run_ensemble, train_ensemble

# tiny shapes keep the whole file fast; every model still has its real structure
TINY = {
    "transformer": dict(model_size="tiny", model_options={"d_model": 32, "n_layers": 2, "n_heads": 2}),
    "llama": dict(model_size="tiny", model_options={"d_model": 32, "n_layers": 1, "n_heads": 2}),
    "lstm": dict(model_size="tiny", model_options={"d_model": 32, "hidden": 48, "n_layers": 2}),
    "dense-ssm": dict(model_size="tiny", model_options={"d_model": 32, "d_input": 8}),
    "mamba": dict(model_size="tiny", model_options={"d_model": 32, "n_layers": 2, "chunk": 4}),
}


def base_config(model: str, fmt: str = "acot", **train) -> RunConfig:
    tc = dict(steps=30, eval_every=10, batch_size=16, lr=3e-3, success_loss=1e-12)
    tc.update(train)
    return RunConfig(task="modadd", task_params={"m": 3, "format": fmt}, max_length=6, n_train=120, n_val=40,
                     model=model, train=TrainConfig(**tc), **TINY[model])


def grid(base: RunConfig, lrs=(3e-3, 1e-3), seeds=(0, 1)) -> list[RunConfig]:
    return [base.replace(lr=lr, seed=s) for lr in lrs for s in seeds]


def assert_same_run(got: trainer.RunResult, want: trainer.RunResult, param_atol: float = 2e-3) -> None:
    assert got.id == want.id and got.config == want.config
    assert set(got.summary) == set(want.summary)
    for k in ("success", "stop_reason", "steps", "best_step", "n_params", "n_train", "n_val", "state_floats"):
        assert got.summary[k] == want.summary[k], k
    assert [h["step"] for h in got.history] == [h["step"] for h in want.history]
    for key in ("train_loss", "val_loss"):
        a = torch.tensor([h[key] for h in got.history])
        b = torch.tensor([h[key] for h in want.history])
        torch.testing.assert_close(a, b, rtol=2e-4, atol=2e-5, msg=key)
    ga, wa = got.model.state_dict(), want.model.state_dict()
    assert ga.keys() == wa.keys()
    for k in wa:
        torch.testing.assert_close(ga[k], wa[k], rtol=0, atol=param_atol, msg=k)


# ---- members equal separate runs ----------------------------------------------------------


def assert_identical_run(got: trainer.RunResult, want: trainer.RunResult) -> None:
    """The loop strategy runs the single run's own code: every number equal, bit for bit."""
    assert got.id == want.id and got.config == want.config
    strip = lambda hs: [{k: v for k, v in h.items() if k != "seconds"} for h in hs]  # noqa: E731
    assert strip(got.history) == strip(want.history)
    timing = {"seconds", "tokens_per_s"}
    assert {k: v for k, v in got.summary.items() if k not in timing} == \
        {k: v for k, v in want.summary.items() if k not in timing}
    for k, v in want.model.state_dict().items():
        assert torch.equal(got.model.state_dict()[k], v), k


@pytest.mark.parametrize("model", list(TINY))
def test_members_match_separate_training(model):
    configs = grid(base_config(model))
    want = [trainer.train(c) for c in configs]
    for g, w in zip(train_ensemble(configs, strategy="loop"), want):
        assert_identical_run(g, w)
    for g, w in zip(train_ensemble(configs, strategy="vmap"), want):  # the stacked path: up to rounding
        assert_same_run(g, w)
    # the comparison can fail: another seed's run is far outside the tolerance
    other = want[1].model.state_dict()
    assert max((want[0].model.state_dict()[k] - other[k]).abs().max().item() for k in other) > 1e-2


def test_default_strategy_rule():
    # a fixed rule, a function of the device alone (never of a timing or of the thread count)
    assert ens.default_strategy("cpu") == "loop"
    assert ens.default_strategy("cuda:0") == "vmap"
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert ens.default_strategy("cpu") == "loop"
    finally:
        torch.set_num_threads(prev)


def test_reruns_are_bit_identical():
    configs = grid(base_config("transformer", steps=20), lrs=(3e-3,))
    for strategy in ens.STRATEGIES:
        a, b = train_ensemble(configs, strategy=strategy), train_ensemble(configs, strategy=strategy)
        for x, y in zip(a, b):
            assert [h["val_loss"] for h in x.history] == [h["val_loss"] for h in y.history]
            for k, v in x.model.state_dict().items():
                assert torch.equal(v, y.model.state_dict()[k]), k


def test_threads_restored_and_numbers_independent_of_the_callers_threads():
    configs = grid(base_config("lstm", steps=10, eval_every=5), lrs=(3e-3,))
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        a = train_ensemble(configs)
        assert torch.get_num_threads() == 2  # restored
        torch.set_num_threads(1)
        b = train_ensemble(configs)
    finally:
        torch.set_num_threads(prev)
    for x, y in zip(a, b):
        assert_identical_run(x, y)


def test_cot_format_and_uniform_lengths_match():
    # ragged batches (padded per member by trainer, per ensemble here) and next-token format
    base = dataclasses.replace(base_config("transformer", fmt="cot"), length_dist="uniform", max_length=5)
    configs = grid(base, lrs=(3e-3,), seeds=(0, 3))
    for g, w in zip(train_ensemble(configs), [trainer.train(c) for c in configs]):
        assert_same_run(g, w)


def test_per_member_early_stopping_and_plateau():
    # lr 1e-2 reaches the success loss after 10 steps, lr 1e-5 plateaus: members stop at different steps
    base = base_config("lstm", steps=60, eval_every=5, success_loss=1.2, patience_evals=2, patience_rel=0.2,
                       patience_min_frac=0.1)
    configs = grid(base, lrs=(1e-2, 1e-5), seeds=(0,))
    got = train_ensemble(configs)
    want = [trainer.train(c) for c in configs]
    assert {w.summary["stop_reason"] for w in want} == {"success", "plateau"}
    for g, w in zip(got, want):
        assert_same_run(g, w)


def test_warmup_cosine_weight_decay_adam_and_no_clip():
    for opt in ("adam", "adamw"):
        base = base_config("lstm", steps=20, schedule="cosine", warmup_steps=5, weight_decay=0.1, optimizer=opt,
                           grad_clip=0.0)
        configs = grid(base, lrs=(3e-3, 1e-3), seeds=(2,))
        for g, w in zip(train_ensemble(configs), [trainer.train(c) for c in configs]):
            assert_same_run(g, w)


def test_eval_lengths_and_progress():
    base = dataclasses.replace(base_config("lstm", steps=10, eval_every=5), eval_lengths=(8,), n_eval=20)
    configs = grid(base, lrs=(3e-3,), seeds=(0, 1))
    calls = []
    got = train_ensemble(configs, progress=lambda i, step, rec: calls.append((i, step)))
    assert sorted(calls) == [(0, 5), (0, 10), (1, 5), (1, 10)]
    for g, c in zip(got, configs):
        w = trainer.train(c)
        torch.testing.assert_close(g.summary["eval_lengths"]["8"]["val_loss"], w.summary["eval_lengths"]["8"]["val_loss"],
                                   rtol=1e-4, atol=1e-5)


# ---- config validation, store, N* short circuit ------------------------------------------------


def test_configs_must_differ_only_in_lr_and_seed():
    base = base_config("lstm")
    train_ensemble([base.replace(steps=1, eval_every=1)])  # a single member is fine
    with pytest.raises(SeqgapError, match="n_train"):
        ens.check_configs([base, dataclasses.replace(base, n_train=60)])
    with pytest.raises(SeqgapError, match="batch_size"):
        ens.check_configs([base, base.replace(batch_size=8, seed=3)])
    with pytest.raises(SeqgapError, match="model"):
        ens.check_configs([base, dataclasses.replace(base, model="dense-ssm")])
    with pytest.raises(SeqgapError):
        ens.check_configs([])
    ens.check_configs([base, base.replace(lr=1.0, seed=9)])


def test_run_ensemble_reuses_and_fills_the_store(tmp_path, monkeypatch):
    store = RunStore(str(tmp_path / "s.sqlite"))
    configs = grid(base_config("lstm", steps=10, eval_every=5))
    first = trainer.run(configs[2], store)  # one member finished earlier, one by one
    trained = []
    real = ens.train_ensemble
    monkeypatch.setattr(ens, "train_ensemble", lambda cs, **k: trained.append([c.hash() for c in cs]) or real(cs, **k))
    results = run_ensemble(configs + [configs[0]], store)  # a duplicate trains once
    assert trained == [[configs[i].hash() for i in (0, 1, 3)]]
    assert results[2].cached and results[2].summary == first.summary
    assert results[4].summary == results[0].summary
    # interchangeable with trainer.run: every member is now read from the store
    for c, r in zip(configs, results):
        again = trainer.run(c, store)
        assert again.cached and again.summary["best_val_loss"] == r.summary["best_val_loss"]
    trained.clear()
    assert all(r.cached for r in run_ensemble(configs, store)) and trained == []


def test_stop_on_success_abandons_the_rest(tmp_path):
    store = RunStore(str(tmp_path / "s.sqlite"))
    base = base_config("lstm", steps=60, eval_every=5, success_loss=1.2)
    configs = grid(base, lrs=(1e-2, 1e-5), seeds=(0,))
    results = run_ensemble(configs, store, stop_on_success=True)
    assert results[0].success and results[1] is None
    assert len(store) == 1 and store.get(configs[0].hash()) is not None
    assert results[0].summary["steps"] == trainer.train(configs[0]).summary["steps"]
    # a stored success: nothing trains, the rest stays missing
    assert run_ensemble(configs, store, stop_on_success=True)[1] is None


def test_nstar_search_same_with_and_without_ensemble(tmp_path):
    from seqgap.studies import sample_complexity as sc

    settings = sc.SearchSettings(n_max=12, factor=2, max_steps=3, lrs=(3e-2, 1e-3), seeds=(0, 1),
                                 train=TrainConfig(steps=60, eval_every=10, batch_size=8, success_loss=0.3))
    cell = sc.Cell("modadd", {"m": 2, "format": "acot"}, 4, "fixed", "lstm", "tiny")
    a = sc.search_cell(cell, settings, str(tmp_path / "a.sqlite"))
    b = sc.search_cell(cell, dataclasses.replace(settings, ensemble=False), str(tmp_path / "b.sqlite"))
    assert sc.cell_id(cell, settings) == sc.cell_id(cell, dataclasses.replace(settings, ensemble=False))
    assert a.search.evaluations == b.search.evaluations and a.search.n_star == b.search.n_star


# ---- the pieces against torch's own implementations ----------------------------------------------


def test_clip_members_equals_clip_grad_norm():
    torch.manual_seed(0)
    g = [torch.randn(4, 50) * torch.tensor([[0.01], [1.0], [10.0], [0.5]]), torch.randn(4, 3, 2)]
    clipped = [t.clone() for t in g]
    ens.clip_members_(clipped, 1.0)
    for e in range(4):
        ps = [torch.nn.Parameter(torch.zeros_like(t[e])) for t in g]
        for p, t in zip(ps, g):
            p.grad = t[e].clone()
        torch.nn.utils.clip_grad_norm_(ps, 1.0)
        for p, c in zip(ps, clipped):
            torch.testing.assert_close(c[e], p.grad)


def test_vmap_strategy_drops_finished_members_and_keeps_optimizer_state():
    # members stop at different steps (success vs plateau): the stack shrinks, the survivor goes on
    base = base_config("lstm", steps=60, eval_every=5, success_loss=1.2, patience_evals=2, patience_rel=0.2,
                       patience_min_frac=0.1)
    configs = [base.replace(lr=1e-2, seed=0), base.replace(lr=1e-2, seed=1), base.replace(lr=1e-5, seed=0)]
    want = [trainer.train(c) for c in configs]
    for g, w in zip(train_ensemble(configs, strategy="vmap"), want):
        assert_same_run(g, w)


def test_unknown_strategy_and_compile_with_vmap_are_refused():
    with pytest.raises(SeqgapError, match="strategy"):
        train_ensemble(grid(base_config("lstm", steps=2)), strategy="transformer")
    with pytest.raises(SeqgapError, match="compile"):
        train_ensemble(grid(base_config("lstm", steps=2, compile=True)), strategy="vmap")


def test_members_finished_are_stored_before_the_rest(tmp_path):
    # a killed ensemble keeps what it had finished: each member is stored as it finishes
    store = RunStore(str(tmp_path / "s.sqlite"))
    base = base_config("lstm", steps=60, eval_every=5, success_loss=1.2, patience_evals=0)
    configs = [base.replace(lr=1e-2, seed=0), base.replace(lr=1e-5, seed=0)]
    slow_step, seen = [0], []
    real_put = store.put

    def put(rid, *a, **k):
        seen.append((rid, slow_step[0]))
        return real_put(rid, *a, **k)

    def progress(i, step, rec):
        if i == 1:
            slow_step[0] = step

    store.put = put
    results = run_ensemble(configs, store, progress=progress)
    assert results[0].success and results[1].summary["steps"] == 60
    assert [rid for rid, _ in seen] == [c.hash() for c in configs]
    assert seen[0][1] < 60  # the fast member was stored while the slow one was still training


def test_every_trainer_feature_works_for_ensembles_gen_eval_and_label_smoothing():
    # the ensemble runs the single run's code, so options need no ensemble-specific support
    base = dataclasses.replace(base_config("lstm", fmt="cot", steps=10, eval_every=5, label_smoothing=0.1),
                               gen_eval=8)
    configs = grid(base, lrs=(3e-3,), seeds=(0, 1))
    for g, w in zip(train_ensemble(configs, strategy="loop"), [trainer.train(c) for c in configs]):
        assert_identical_run(g, w)
        assert g.summary["gen_n"] == 8 and "gen_acc" in g.summary
