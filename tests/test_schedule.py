"""Results never depend on how a run was scheduled: alone, in a 1-worker or a 2-worker sweep."""
from __future__ import annotations


import torch

from seqgap.config import RunConfig, TrainConfig
from helpers import stored_metrics

from seqgap.store import RunStore
from seqgap.studies import sample_complexity as sc
from seqgap.training import trainer

SETTINGS = sc.SearchSettings(n_max=16, factor=4, max_steps=2, bisect="geometric", lrs=(1e-2, 3e-3), seeds=(0,),
                             train=TrainConfig(steps=40, eval_every=10, batch_size=8, success_loss=0.3))
CELL = sc.Cell("modadd", {"m": 2, "format": "acot"}, 4, "fixed", "transformer", "tiny")
OTHER = sc.Cell("modadd", {"m": 2, "format": "acot"}, 5, "fixed", "lstm", "tiny")



def test_a_cell_alone_or_in_a_sweep_stores_bit_identical_metrics(tmp_path):
    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # the caller's thread count must not leak into the numbers
        alone = tmp_path / "alone.sqlite"
        sc.search_cells([CELL], SETTINGS, str(alone), workers=2)  # a lone cell runs in this process
        one = tmp_path / "one.sqlite"
        sc.search_cells([CELL, OTHER], SETTINGS, str(one), workers=1)
        two = tmp_path / "two.sqlite"
        sc.search_cells([CELL, OTHER], SETTINGS, str(two), workers=2)  # a process pool
    finally:
        torch.set_num_threads(prev)
    a, b, c = stored_metrics(alone), stored_metrics(one), stored_metrics(two)
    assert a and set(a) <= set(b) and set(b) == set(c)
    for rid, numbers in a.items():
        assert b[rid] == numbers and c[rid] == numbers, rid
    assert b == c


def test_label_smoothing_is_a_real_option():
    base = RunConfig(task="modadd", task_params={"m": 3, "format": "acot"}, max_length=5, n_train=60, n_val=20,
                     model="lstm", model_size="tiny", train=TrainConfig(steps=10, eval_every=5, batch_size=8))
    smooth = base.replace(label_smoothing=0.2)
    assert smooth.hash() != base.hash() and "label_smoothing" not in str(base.identity())
    a, b = trainer.train(base), trainer.train(smooth)
    assert a.history[0]["train_loss"] != b.history[0]["train_loss"]
    # the validation loss is the plain cross-entropy in both: smoothing changes training only
    logits = torch.tensor([[[4.0, 0.0, 0.0]]])
    from seqgap.tasks.base import Batch

    batch = Batch(torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, dtype=torch.long),
                  torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 1, dtype=torch.bool), torch.ones(1))
    plain, smoothed = trainer.masked_loss(logits, batch), trainer.masked_loss(logits, batch, 0.2)
    want = -(0.8 + 0.2 / 3) * torch.log_softmax(logits[0, 0], -1)[0] - (0.2 / 3) * torch.log_softmax(logits[0, 0], -1)[1:].sum()
    torch.testing.assert_close(smoothed, want)
    assert smoothed > plain


def test_sample_complexity_on_parity_and_permutation(tmp_path, capsys):
    # the task declares its own state-space option (parity: none, permutation: k); no branching on names
    from seqgap.cli import main

    for argv in (["--task", "parity"], ["--task", "permutation", "--k", "3"]):
        code = main(["study", "sample-complexity", *argv, "-L", "3", "--model", "lstm", "--format", "acot",
                     "--n-max", "8", "--max-steps", "1", "--steps", "5", "--eval-every", "5", "--lrs", "1e-2",
                     "--store", str(tmp_path / "s.sqlite"), "--out", str(tmp_path / "rep"), "--workers", "1"])
        assert code == 0, capsys.readouterr().err
    cells = [r["config"]["cell"] for r in RunStore(tmp_path / "s.sqlite").all() if r["kind"] == "nstar"]
    assert sorted(c["task"] for c in cells) == ["parity", "permutation"]
    assert [c["task_params"] for c in cells if c["task"] == "permutation"] == [{"k": 3, "format": "acot"}]
