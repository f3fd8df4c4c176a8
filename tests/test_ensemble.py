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
from seqgap.models import MODELS, build_model, get_spec
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
    tc = dict(steps=30, eval_every=10, batch_size=16, lr=3e-3, success_loss=0.0)
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


BATCHED = {"lstm": "lstm", "transformer": "transformer", "llama": "transformer"}


@pytest.mark.parametrize("model", list(TINY))
def test_members_match_separate_training(model):
    configs = grid(base_config(model))
    got = train_ensemble(configs, forward=BATCHED.get(model, "vmap"))  # the batched path
    want = [trainer.train(c) for c in configs]
    for g, w in zip(got, want):
        assert_same_run(g, w)
    # the comparison can fail: another seed's run is far outside the tolerance
    other = want[1].model.state_dict()
    assert max((got[0].model.state_dict()[k] - other[k]).abs().max().item() for k in other) > 1e-2


def test_transformer_under_vmap_matches_too():
    # the generic vmap path still handles the Transformer (e.g. for a subclass with another block)
    configs = grid(base_config("transformer", steps=20), lrs=(3e-3,))
    for g, w in zip(train_ensemble(configs, forward="vmap"), [trainer.train(c) for c in configs]):
        assert_same_run(g, w)


@pytest.mark.parametrize("model", ["transformer", "lstm"])
def test_one_member_at_a_time_and_default_strategy_match(model):
    configs = grid(base_config(model, steps=20), lrs=(3e-3,), seeds=(0, 1))
    want = [trainer.train(c) for c in configs]
    for g, w in zip(train_ensemble(configs, forward="loop"), want):
        assert_same_run(g, w)
    prev = torch.get_num_threads()
    try:
        for threads, expected in [(1, "loop"), (2, BATCHED[model])]:  # the fixed rule, no timing
            torch.set_num_threads(threads)
            got = train_ensemble(configs)
            assert train_ensemble.last_forward == expected
            for g, w in zip(got, want):
                assert_same_run(g, w)
    finally:
        torch.set_num_threads(prev)


def test_default_strategy_rule():
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert ens.default_strategy("vmap", "cpu") == "loop"
        assert ens.default_strategy("transformer", "cuda:0") == "transformer"
        assert ens.default_strategy("loop", "cuda") == "loop"
        torch.set_num_threads(2)
        assert ens.default_strategy("lstm", "cpu") == "lstm"
    finally:
        torch.set_num_threads(prev)


def test_reruns_are_bit_identical():
    # the strategy no longer depends on a timing: the same configs give the same numbers, exactly
    configs = grid(base_config("transformer", steps=20), lrs=(3e-3,))
    a, b = train_ensemble(configs), train_ensemble(configs)
    for x, y in zip(a, b):
        assert [h["val_loss"] for h in x.history] == [h["val_loss"] for h in y.history]
        for k, v in x.model.state_dict().items():
            assert torch.equal(v, y.model.state_dict()[k]), k


def test_batched_transformer_with_frozen_embeddings_and_llama_rope():
    E, V = 3, 9
    for name, opts in [("transformer", {"frozen_embeddings": True}), ("llama", {})]:
        models = []
        for s in range(E):
            torch.manual_seed(s)
            models.append(build_model(name, vocab_size=V, max_len=12, size="tiny", d_model=32, n_layers=2, **opts))
        stack = ens.StackedParams(models)
        x = torch.randint(0, V, (E, 4, 7))
        y = ens.forward_transformer(models[0], stack.all_params(), stack.shared_buffers, x, E)
        torch.testing.assert_close(y, torch.stack([m(x[e]) for e, m in enumerate(models)]), rtol=1e-4, atol=1e-5)
    with pytest.raises(SeqgapError, match="max_len"):
        ens.forward_transformer(models[0], stack.all_params(), stack.shared_buffers, torch.zeros(E, 1, 13,
                                dtype=torch.long), E)


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


@pytest.mark.parametrize("optimizer,wd", [("adam", 0.0), ("adam", 0.05), ("adamw", 0.05)])
def test_stacked_adam_equals_torch_optim(optimizer, wd):
    torch.manual_seed(0)
    models = [torch.nn.Linear(5, 3) for _ in range(3)]
    lrs = [1e-2, 3e-3, 1e-3]
    stack = ens.StackedParams(models)
    opt = ens.StackedAdam(stack, weight_decay=wd, decoupled=optimizer == "adamw")
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    refs = [cls(m.parameters(), lr=lr, weight_decay=wd) for m, lr in zip(models, lrs)]
    for step in range(4):
        grads = torch.randn(3, stack.flat.shape[1])
        stack.grad.copy_(grads)
        opt.step(stack.flat, stack.grad, lrs)
        for e, (m, o) in enumerate(zip(models, refs)):
            off = 0
            for p in m.parameters():
                p.grad = grads[e, off:off + p.numel()].view_as(p).clone()
                off += p.numel()
            o.step()
    for e, m in enumerate(models):
        torch.testing.assert_close(stack.flat[e], torch.cat([p.detach().reshape(-1) for p in m.parameters()]),
                                   rtol=0, atol=1e-7)


def test_clip_rows_equals_clip_grad_norm():
    torch.manual_seed(0)
    g = torch.randn(4, 50) * torch.tensor([[0.01], [1.0], [10.0], [0.5]])
    clipped = g.clone()
    ens.clip_rows_(clipped, 1.0)
    for e in range(4):
        p = torch.nn.Parameter(torch.zeros(50))
        p.grad = g[e].clone()
        torch.nn.utils.clip_grad_norm_([p], 1.0)
        torch.testing.assert_close(clipped[e], p.grad)


def test_lstm_scan_matches_nn_lstm_forward_and_gradients():
    torch.manual_seed(0)
    E, B, T, D, H = 3, 4, 7, 5, 6
    lstms = [torch.nn.LSTM(D, H, batch_first=True) for _ in range(E)]
    x = torch.randn(E, B, T, D)
    perm = ens._lstm_perm(H, "cpu")
    w_ih = torch.stack([l.weight_ih_l0 for l in lstms]).detach().requires_grad_()
    w_hh = torch.stack([l.weight_hh_l0 for l in lstms]).detach().requires_grad_()
    bias = torch.stack([l.bias_ih_l0 + l.bias_hh_l0 for l in lstms]).detach()
    xg = ens._bmm_linear(x.transpose(1, 2), w_ih[:, perm], bias[:, perm])  # (E, T, B, 4H)
    h = ens._LSTMScan.apply(xg, w_hh[:, perm].transpose(1, 2)).transpose(1, 2)  # (E, B, T, H)
    ref = torch.stack([l(x[e])[0] for e, l in enumerate(lstms)])
    torch.testing.assert_close(h, ref, rtol=1e-5, atol=1e-6)
    g = torch.randn_like(ref)
    (h * g).sum().backward()
    (ref * g).sum().backward()
    for e, l in enumerate(lstms):
        torch.testing.assert_close(w_hh.grad[e], l.weight_hh_l0.grad, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(w_ih.grad[e], l.weight_ih_l0.grad, rtol=1e-4, atol=1e-5)


def _smallest(name: str) -> str | None:
    sizes = get_spec(name).sizes
    return next((s for s in ("tiny", "small") if s in sizes), None)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_model_stacked_forward_and_grads(name):
    """Whatever path the ensemble picks for a registered model equals the models run one by one."""
    E, V = 3, 11
    models = []
    for s in range(E):
        torch.manual_seed(s)
        models.append(build_model(name, vocab_size=V, max_len=16, size=_smallest(name)))
    stack = ens.StackedParams(models)
    path = ens.pick_forward(models[0], stack.all_params(), stack.shared_buffers)
    x = torch.randint(0, V, (E, 2, 9))
    y = ens.FORWARDS[path](models[0], stack.all_params(), stack.shared_buffers, x, E)
    ref = torch.stack([m(x[e]) for e, m in enumerate(models)])
    torch.testing.assert_close(y, ref, rtol=1e-4, atol=1e-5)
    g = torch.randn_like(ref)
    stack.backward((y * g).sum())
    (ref * g).sum().backward()
    off = 0
    for n, p in models[0].named_parameters():
        if p.requires_grad:
            for e, m in enumerate(models):
                want = dict(m.named_parameters())[n].grad
                got = stack.grad[e, off:off + p.numel()].view_as(p)
                torch.testing.assert_close(got, want if want is not None else torch.zeros_like(p), rtol=1e-3, atol=1e-5)
            off += p.numel()


def test_forced_forward_must_fit_the_model_and_compile_is_refused():
    with pytest.raises(SeqgapError, match="does not fit"):
        train_ensemble(grid(base_config("dense-ssm", steps=2)), forward="transformer")
    with pytest.raises(SeqgapError, match="does not fit"):
        train_ensemble(grid(base_config("transformer", steps=2)), forward="lstm")
    with pytest.raises(SeqgapError, match="compile"):
        train_ensemble(grid(base_config("lstm", steps=2, compile=True)))
