"""Study E, part 3: length generalisation.

Each model is trained at max length L on its largest training set (N_max,
capped by the distinct samples available), lengths uniform over 2..L by
default, then evaluated on fresh problems at longer lengths (a curve up to
2L).  Accuracy is the final-state accuracy, normalised so chance = 0 and
perfect = 1: (acc - chance) / (1 - chance).  For CoT the answer is produced
by free greedy generation (teacher forcing would hand the model every
intermediate state); for outcome and ACoT the final-position prediction is
read directly (inputs are never the model's own outputs there).

Honesty about positions: models with learned absolute positions (the GPT-2
style Transformer) get position embeddings allocated up to the longest
evaluated length, but positions beyond the training length are never trained;
the report says so next to every such model.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Sequence

from seqgap.studies.sample_complexity import (
    Cell, SearchSettings, add_cell_arguments, add_search_arguments, available_train, cell_axes, make_cells,
    run_config, settings_from, validate_cells,
)

NAME = "length-generalization"
HELP = "train at max length L, evaluate up to 2L: accuracy normalized so chance = 0, perfect = 1"


@dataclass
class LengthGenResult:
    cell: Cell
    n_train: int
    curve: dict[int, float]  # eval length -> normalized accuracy (best run of the grid)
    raw: dict[int, float]  # eval length -> raw accuracy
    best_val_loss: float
    learned_positions: bool  # model has learned absolute positions (untrained beyond training length)
    run_id: str

    @property
    def at_2L(self) -> float:
        return self.curve[2 * self.cell.max_length]


def eval_lengths_for(L: int) -> tuple[int, ...]:
    pts = sorted({L, int(round(1.25 * L)), int(round(1.5 * L)), int(round(1.75 * L)), 2 * L})
    return tuple(p for p in pts if p >= 2)


def length_gen_cell(cell: Cell, settings: SearchSettings, n_eval: int, driver) -> LengthGenResult:
    """One cell as a driver program: its lr x seed grid as separate runs (they spread over the
    engine's workers), the best by final validation loss evaluated up to 2L."""
    from seqgap.models.registry import make_config

    avail = available_train(cell, settings)
    n = settings.n_max if avail is None else min(settings.n_max, avail)
    # the whole budget, no early stop: a model stopped right at the success criterion would be a
    # weaker test of generalisation than a converged one
    grid = [run_config(cell, settings, n, lr, seed).replace(eval_lengths=eval_lengths_for(cell.max_length),
                                                            n_eval=n_eval, early_stop=False, patience_evals=0)
            for lr in settings.lrs for seed in settings.seeds]
    best = None
    for res in driver.train_each(grid):
        # pick by the FINAL validation loss: the curve is measured on the final model
        if best is None or _final_loss(res) < _final_loss(best):
            best = res
    ev = best.summary["eval_lengths"]
    curve = {int(k): v["acc_normalized"] for k, v in ev.items()}
    raw = {int(k): v["acc"] for k, v in ev.items()}
    cfg = make_config(cell.model, cell.model_size, **cell.model_options)
    learned_pos = getattr(cfg, "flavor", None) == "gpt2" or (cell.model == "transformer" and not hasattr(cfg, "flavor"))
    return LengthGenResult(cell, n, curve, raw, _final_loss(best), learned_pos, best.id)


def _final_loss(res) -> float:
    v = res.summary.get("val_loss")
    return float("inf") if v is None else float(v)


def add_arguments(p) -> None:
    add_cell_arguments(p)
    p.add_argument("--length-dist", default="uniform", help="training lengths: uniform (default) or fixed")
    p.add_argument("--n-eval", type=int, default=500, help="problems per evaluated length")
    add_search_arguments(p)


LENGTH_GEN_DEFAULTS = {"quick": {"length": [8], "sizes": {"modadd": [2]}, "n_max": 2048},
                       "paper": {"length": [10, 20], "sizes": {}, "n_max": None}}


def plan(args) -> tuple[list[Cell], SearchSettings]:
    """The cells and settings the parsed ``args`` ask for, preset defaults filled in."""
    settings = settings_from(args)
    axes = cell_axes(args)
    d = LENGTH_GEN_DEFAULTS[args.preset]
    if not args.length:
        axes["lengths"] = d["length"]
    if not args.sizes_axis and args.task in d["sizes"]:
        axes["sizes_axis"] = d["sizes"][args.task]
    if d["n_max"] and not args.n_max:
        settings = replace(settings, n_max=d["n_max"])
    cells = make_cells(length_dist=args.length_dist, **axes)
    validate_cells(cells, settings, eval_lengths=lambda c: eval_lengths_for(c.max_length))
    return cells, settings


def run_cells(cells: Sequence[Cell], settings: SearchSettings, store: str | None, workers: int | None,
              n_eval: int, log=print, **engine) -> list[LengthGenResult]:
    """Train and evaluate every cell on an engine; failed cells are logged and left out."""
    from seqgap.sweep.driver import run_each

    results = run_each(cells, lambda cell, driver: length_gen_cell(cell, settings, n_eval, driver), store, Cell.label,
                       lambda _, r: f"normalized acc at 2L = {r.at_2L:.2f}", log, workers, **engine)
    return [r for r in results if r is not None]


def main(args) -> int:
    from seqgap.report.state_tracking import write_length_gen_report

    cells, settings = plan(args)
    out = Path(args.out or f"seqgap_out/length_gen_{args.preset}")
    print(f"length-generalization: {len(cells)} cells, report -> {out}", file=sys.stderr)
    from seqgap.options import engine_options

    opts = engine_options(args)
    from seqgap.sweep.driver import log_line
    results = run_cells(cells, settings, args.store, opts.pop("workers"), args.n_eval,
                        log=log_line, **opts)
    print(write_length_gen_report(results, out))
    return 0 if len(results) == len(cells) else 1
