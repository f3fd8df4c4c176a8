"""Study E, part 1: sample complexity N* per cell.

A *cell* is (task, m or group, max length L, length distribution, format,
model).  Its N* is the smallest training-set size at which at least one run
of a hyperparameter grid (learning rates x seeds) reaches the success
criterion within the step budget, found by E's hybrid geometric/binary search
(:mod:`seqgap.studies.search`).  Every training run goes through the run store,
so an interrupted study resumes where it stopped and a repeated one trains
nothing.  Finished cells are stored too (kind ``"nstar"``).

Cost control (documented, configurable):
* the grid short-circuits: at a given N the runs are tried in order and the
  first success ends that N (success is "at least one run").  With
  ``SearchSettings.ensemble`` (the default) the grid trains as one vectorized
  ensemble instead (:mod:`seqgap.training.ensemble`): every run is the one
  ``trainer.run`` would make, and training stops at the first evaluation where a
  member succeeds (the unfinished others are dropped, not stored);
* runs that succeed stop at once; failing runs stop early only by the plateau
  rule of :class:`seqgap.config.TrainConfig` (best validation loss improved by
  less than 1% over ``patience_evals`` evaluations, after 25% of the budget).
  Rationale: learning curves on these tasks show long plateaus followed by
  sharp drops (grokking-like), so the rule only fires after a quarter of the
  budget and a long stall; the paper preset disables it (``patience_evals=0``).
"""
from __future__ import annotations

import dataclasses
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from seqgap.config import RunConfig, TrainConfig, check_train, config_hash, train_identity
from seqgap.errors import SeqgapError
from seqgap.models.registry import load_plugin
from seqgap.options import (add_config_options, engine_options, float_list, given, int_list, parse_kv, str_list,
                            typed_model_options)
from seqgap.studies.models import check_run_models, parse_models, resolve_sizes
from seqgap.studies.search import ReplicateSummary, SearchResult, find_n_star, summarize

NAME = "sample-complexity"
HELP = "N*: the smallest training set at which a model learns a state-tracking cell (E's protocol)"


@dataclass
class Cell:
    task: str = "modadd"
    task_params: dict[str, Any] = field(default_factory=dict)  # includes "format"
    max_length: int = 10
    length_dist: str = "fixed"
    model: str = "lstm"
    model_size: str | None = None
    model_options: dict[str, Any] = field(default_factory=dict)

    @property
    def format(self) -> str:
        return self.task_params.get("format", "")

    def label(self) -> str:
        p = " ".join(f"{k}={v}" for k, v in self.task_params.items())
        return f"{self.model} {self.task} {p} L={self.max_length} {self.length_dist}"


@dataclass
class SearchSettings:
    n_max: int = 16_000_000
    factor: float = 1000.0  # M, geometric shrink factor
    max_steps: int = 20  # S, evaluations of N
    n_min: int = 1
    bisect: str = "arithmetic"
    lrs: tuple[float, ...] = (1e-3, 1e-4, 1e-5)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=250_000, eval_every=1000))
    n_val: int | None = None  # default: min(2000, 20% of distinct samples)
    data_seed: int = 0
    # train the whole lr x seed grid at one N as one vectorized ensemble (seqgap.training.ensemble);
    # the same runs and the same N*, only faster, so not part of the cell's identity
    ensemble: bool = True
    # independent searches per cell (N*'s uncertainty): replicate r uses data_seed + r and the grid's
    # seeds + REPLICATE_SEED_STRIDE * r; replicate 0 is the plain search (its stored cell is reused).
    # Part of the cell's identity only when != 1, so today's ids do not move.
    replicates: int = 1

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d.pop("ensemble")
        if self.replicates == 1:
            d.pop("replicates")
        # as for a run's hash: non-default training options only, without placement
        d["train"] = train_identity(self.train)
        d["lrs"], d["seeds"] = list(self.lrs), list(self.seeds)
        return d


REPLICATE_SEED_STRIDE = 1000  # replicate r trains with seed + 1000 * r (grids hold far fewer seeds)


def replicate_settings(settings: SearchSettings, r: int) -> SearchSettings:
    """Settings of replicate r: other data (data_seed + r) and other training orders/inits (seeds
    shifted by 1000 r); one plain search each (replicates=1), so replicate 0 is today's cell."""
    return dataclasses.replace(settings, replicates=1, data_seed=settings.data_seed + r,
                               seeds=tuple(s + REPLICATE_SEED_STRIDE * r for s in settings.seeds))


@dataclass
class CellResult:
    cell: Cell
    search: SearchResult  # replicate 0 (the only search when replicates == 1)
    n_cap: int  # N_max actually used (capped by the number of distinct training samples)
    runs: int  # training runs made or reused
    trained: int  # runs actually trained in this call (0 when everything came from the store)
    seconds: float
    replicates: list[SearchResult] = field(default_factory=list)  # every replicate's search, r = 0..R-1

    @property
    def searches(self) -> list[SearchResult]:
        return self.replicates or [self.search]

    @property
    def summary(self) -> ReplicateSummary:
        return summarize(self.searches)

    def interval(self) -> tuple[int, int | None]:
        """What is known about N*: with one search its bracket [last_fail + 1, n_star]; with
        replicates the range of their N* ([min, max]); high None: unbounded ("> cap")."""
        if len(self.searches) > 1:
            return self.summary.interval()
        return self.search.interval()

    def label(self) -> str:
        """Table text: ``209 (197, 209] 1/2``, or with replicates ``median 209 [197 .. 400] (3/3 solved)``."""
        if len(self.searches) > 1:
            return self.summary.label()
        return self.search.table_label()

    def to_dict(self) -> dict[str, Any]:
        d = {"cell": dataclasses.asdict(self.cell), "search": self.search.to_dict(), "n_cap": self.n_cap,
             "runs": self.runs, "trained": self.trained, "seconds": self.seconds,
             "interval": list(self.interval()), "label": self.label()}
        if len(self.searches) > 1:
            d["replicates"] = [r.to_dict() for r in self.replicates]
            d["replicate_summary"] = self.summary.to_dict()
        return d


def run_config(cell: Cell, settings: SearchSettings, n: int, lr: float, seed: int) -> RunConfig:
    return RunConfig(task=cell.task, task_params=dict(cell.task_params), max_length=cell.max_length,
                     length_dist=cell.length_dist, n_train=n, n_val=settings.n_val, data_seed=settings.data_seed,
                     model=cell.model, model_size=cell.model_size, model_options=dict(cell.model_options),
                     train=dataclasses.replace(settings.train, lr=lr, seed=seed))


def available_train(cell: Cell, settings: SearchSettings) -> int | None:
    """How many distinct training samples the cell has (None: unlimited)."""
    from seqgap.tasks.catalog import make_task
    from seqgap.tasks.dataset import count_problems, default_n_val

    task = make_task(cell.task, **cell.task_params)
    total = count_problems(task, cell.max_length, cell.length_dist)
    if total is None:
        return None
    n_val = settings.n_val if settings.n_val is not None else default_n_val(task, cell.max_length, cell.length_dist)
    return max(0, total - n_val)


def cell_id(cell: Cell, settings: SearchSettings) -> str:
    from seqgap.config import RESULTS_VERSION

    return "nstar-" + config_hash({"cell": dataclasses.asdict(cell), "settings": settings.to_dict(),
                                   "results_version": RESULTS_VERSION})


def search_cell(cell: Cell, settings: SearchSettings, driver=None, verbose: bool = False) -> CellResult:
    """Find N* for one cell: a driver program (``sweep/driver.py``) that asks for one grid point
    at a time; every run comes from the store or is trained by the driver's engine.  ``driver``:
    a Driver, or a store path (None: the default store) to search this one cell on this process."""
    from seqgap.sweep.driver import Driver, run_programs
    from seqgap.training.trainer import num

    if not isinstance(driver, Driver) and not hasattr(driver, "train"):
        outcome = run_programs([lambda d: search_cell(cell, settings, d, verbose)], driver, workers=1)[0]
        if not outcome.ok:
            raise SeqgapError(outcome.error)
        return outcome.value

    if settings.replicates < 1:
        raise SeqgapError(f"replicates must be >= 1, got {settings.replicates}")
    if settings.replicates > 1:  # R plain searches, each stored as its own cell (replicate 0 = today's)
        t0 = time.perf_counter()
        reps = [search_cell(cell, replicate_settings(settings, r), driver, verbose)
                for r in range(settings.replicates)]
        return CellResult(cell, reps[0].search, reps[0].n_cap, sum(r.runs for r in reps),
                          sum(r.trained for r in reps), time.perf_counter() - t0, [r.search for r in reps])

    cid = cell_id(cell, settings)
    cached = driver.with_store(lambda store: store.get(cid))
    if cached is not None:
        s = cached["summary"]
        return CellResult(cell, SearchResult.from_dict(s["search"]), s["n_cap"], s["runs"], 0, 0.0)

    avail = available_train(cell, settings)
    n_cap = settings.n_max if avail is None else min(settings.n_max, avail)
    if n_cap < max(1, settings.n_min):
        raise SeqgapError(f"{cell.label()}: no training samples available (all {avail} are held out?)")
    counts = {"runs": 0, "trained": 0}
    t0 = time.perf_counter()

    def count(cfg: RunConfig, res) -> None:
        counts["runs"] += 1
        counts["trained"] += 0 if res.cached else 1
        if verbose:
            print(f"  {cell.label()} N={cfg.n_train} lr={cfg.train.lr} seed={cfg.train.seed}: "
                  f"{'ok' if res.success else 'fail'} (loss {num(res.summary['best_val_loss']):.2g})", file=sys.stderr)

    def succeeds(n: int) -> tuple[bool, int, int]:
        """(success, members that reached the criterion, members that finished) at N = n."""
        grid = [run_config(cell, settings, n, lr, seed) for lr in settings.lrs for seed in settings.seeds]
        if settings.ensemble:  # the grid trains together; it stops once a member succeeds (runs cut short: None)
            results = driver.train(grid, stop_on_success=True)
            done = [res for res in results if res is not None]
            for cfg, res in zip(grid, results):
                if res is not None:
                    count(cfg, res)
            n_ok = sum(bool(res.success) for res in done)
            return n_ok > 0, n_ok, len(done)
        finished = 0
        for cfg in grid:
            res = driver.train([cfg])[0]
            count(cfg, res)
            finished += 1
            if res.success:
                return True, 1, finished
        return False, 0, finished

    sr = find_n_star(succeeds, n_cap, factor=settings.factor, max_steps=settings.max_steps,
                     n_min=settings.n_min, bisect=settings.bisect)
    result = CellResult(cell, sr, n_cap, counts["runs"], counts["trained"], time.perf_counter() - t0)
    driver.with_store(lambda store: store.put(cid, {"cell": dataclasses.asdict(cell), "settings": settings.to_dict()},
                                              result.to_dict(), kind="nstar"))
    return result


def search_cells(cells: Sequence[Cell], settings: SearchSettings, store_path: str | None = None,
                 workers: int | None = None, log=print, **engine: Any) -> list[CellResult | None]:
    """Search many cells at once on an engine (local cores or Ray); failed cells are logged, not raised."""
    from seqgap.sweep.driver import run_each

    return run_each(cells, lambda cell, driver: search_cell(cell, settings, driver), store_path, Cell.label,
                    lambda _, r: f"N* = {r.label()}  ({r.runs} runs, {r.trained} trained)", log, workers, **engine)


# ---- presets ----------------------------------------------------------------------------

# The published protocol (E): for a cluster.
PAPER_MODELS = {"transformer": "paper-e", "lstm": "paper", "dense-ssm": "paper"}
PAPER_SETTINGS = SearchSettings(
    n_max=16_000_000, factor=1000, max_steps=20, lrs=(1e-3, 1e-4, 1e-5), seeds=(0, 1, 2, 3, 4),
    train=TrainConfig(steps=250_000, eval_every=1000, batch_size=64, success_loss=1e-4, patience_evals=0),
)
# "sizes": the state-space sizes per task (m for modadd, k for permutation; see Task.size_param)
PAPER_GRID = {"sizes": {"modadd": [2, 3, 5, 10, 15, 20, 50, 75, 100], "permutation": [5]}, "length": [5, 10, 20, 30],
              "format": ["outcome", "cot", "acot"], "model": list(PAPER_MODELS)}

# Scaled down for a 2-core laptop (~20 minutes for the whole E study; see docs/studies.md).
# Calibrated on this machine: a tiny LSTM reaches ~1e-2 validation loss quickly but needs
# thousands of Adam steps to creep from 1e-2 to 1e-3, so with a 2,000-step budget the success
# criterion is 1e-2 (the paper's 1e-4 needs its 250k-step budget); lr 1e-2 suits the RNNs,
# 3e-3 the Transformer, so the grid holds both.
QUICK_MODELS = {"transformer": "tiny", "lstm": "tiny", "dense-ssm": "tiny"}
QUICK_SETTINGS = SearchSettings(
    n_max=4096, factor=4, max_steps=8, bisect="geometric", lrs=(3e-3, 1e-2), seeds=(0,),
    train=TrainConfig(steps=2000, eval_every=50, batch_size=64, success_loss=1e-2, schedule="constant",
                      patience_evals=8, patience_min_frac=0.3),
    # replicates: 1.  Estimate (not measured): the whole quick E study took 23.2 min on 2 idle cores
    # (docs/studies.md); replicates multiply the N* searches of the sample-complexity and sharing
    # parts (42 of its 48 cells; only length generalisation is untouched), so R = 2 would take about
    # 23 + ~20 = ~43 min and R = 3 about an hour: over the 20-25 min budget.  N*'s uncertainty in
    # the quick preset therefore comes from each search's bracket and grid counts; use
    # --replicates 3 (or more) when the time is there.
    replicates=1,
)
QUICK_GRID = {"sizes": {"modadd": [2], "permutation": [3]}, "length": [5, 10, 15], "format": ["cot", "acot"], "model": list(QUICK_MODELS)}

PRESETS = {"paper": (PAPER_SETTINGS, PAPER_GRID, PAPER_MODELS), "quick": (QUICK_SETTINGS, QUICK_GRID, QUICK_MODELS)}


def make_cells(task: str, sizes_axis: Sequence[Any], lengths: Sequence[int], formats: Sequence[str],
               models: Sequence[str | tuple[str, str | None]], sizes: dict[str, str | None], length_dist: str = "fixed",
               extra_task_params: dict[str, Any] | None = None, model_options: dict[str, Any] | None = None) -> list[Cell]:
    """Every combination of the axes; ``sizes_axis`` holds values of the task's own state-space
    parameter (``size_param``: m for modadd, k for permutation; [None] for a task without one).
    A ``models`` entry is a name (its size from ``sizes``) or a ``(name, size)`` pair."""
    size_param = task_class(task).size_param
    cells = []
    for entry in models:
        model, size = entry if isinstance(entry, tuple) else (entry, sizes.get(entry))
        opts = typed_model_options(model, dict(model_options or {}))
        for fmt in formats:
            for v in sizes_axis:
                for L in lengths:
                    tp = {"format": fmt, **(extra_task_params or {})}
                    if v is not None and size_param:
                        tp = {size_param: v, **tp}
                    cells.append(Cell(task, tp, L, length_dist, model, size, dict(opts)))
    return cells


def task_class(name: str):
    from seqgap.tasks.catalog import TASKS

    if name not in TASKS:
        raise SeqgapError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def state_size_of(cell: Cell) -> int | None:
    """The cell's state-space size (m, k, ...), read through its task's own ``size_param``."""
    return task_class(cell.task).size_of(cell.task_params)


# ---- CLI ----------------------------------------------------------------------------------

# training options a study exposes (the grid's lr and seed come from --lrs/--seeds; device and
# threads from the shared options); defaults: the preset's TrainConfig
STUDY_TRAIN_SKIP = ("lr", "seed", "device", "threads", "compile")


def add_search_arguments(p) -> None:
    g = p.add_argument_group("search (defaults come from --preset)")
    g.add_argument("--n-max", type=_int_opt("--n-max"), help="largest training set N_max")
    g.add_argument("--factor", type=float, help="geometric shrink factor M")
    g.add_argument("--max-search-steps", "--max-steps", dest="max_search_steps", type=_int_opt("--max-steps"),
                   help="at most this many N evaluated per cell (S)")
    g.add_argument("--bisect", choices=["arithmetic", "geometric"])
    g.add_argument("--lrs", help="learning-rate grid, e.g. 1e-3,1e-4")
    g.add_argument("--seeds", help="seed grid, e.g. 0,1,2")
    g.add_argument("--no-ensemble", action="store_true", help="train the lr x seed grid one run at a time")
    g.add_argument("--replicates", type=_int_opt("--replicates"),
                   help="independent searches per cell (replicate r: data seed + r, seeds + 1000 r); "
                        "N* is reported as their median and range")
    t = p.add_argument_group("training of every run (defaults come from --preset)")
    p.set_defaults(train_fields=add_config_options(t, TrainConfig, skip=STUDY_TRAIN_SKIP))


def _int_opt(flag: str):
    def convert(text: str) -> int:
        from seqgap.values import parse_typed
        import argparse

        try:
            return parse_typed(text, int, flag)
        except SeqgapError as e:
            raise argparse.ArgumentTypeError(str(e).split(": ", 1)[-1]) from None

    return convert


def settings_from(args) -> SearchSettings:
    base = PRESETS[args.preset][0]
    tr = dataclasses.replace(base.train, **given(args, args.train_fields), device=args.device,
                             threads=getattr(args, "threads", None))
    s = dataclasses.replace(
        base, train=tr,
        n_max=base.n_max if args.n_max is None else args.n_max,
        factor=base.factor if args.factor is None else args.factor,
        max_steps=base.max_steps if args.max_search_steps is None else args.max_search_steps,
        bisect=args.bisect or base.bisect,
        lrs=tuple(float_list(args.lrs, "--lrs")) if args.lrs else base.lrs,
        seeds=tuple(int_list(args.seeds, "--seeds")) if args.seeds else base.seeds,
        ensemble=not getattr(args, "no_ensemble", False),
        replicates=base.replicates if getattr(args, "replicates", None) is None else args.replicates,
    )
    for lr in s.lrs:  # every run of the grid is a valid run
        check_train(dataclasses.replace(tr, lr=lr))
    for seed in s.seeds:
        check_train(dataclasses.replace(tr, seed=seed))
    if s.n_max < 1 or not s.factor > 1 or s.max_steps < 1 or not s.lrs or not s.seeds or s.replicates < 1:
        raise SeqgapError("need --n-max >= 1, --factor > 1, --max-steps >= 1, --replicates >= 1 "
                          "and non-empty --lrs/--seeds")
    return s


def add_cell_arguments(p, lengths_help: str = "max lengths L, e.g. 5,10,20") -> None:
    g = p.add_argument_group("cells (defaults come from --preset)")
    g.add_argument("--task", default="modadd", help="a state-tracking task: modadd, parity or permutation")
    g.add_argument("--sizes", "--m", "--k", dest="sizes_axis",
                   help="values of the task's state-space option (m for modadd, k for permutation), e.g. 2,5,10")
    g.add_argument("--group", help="S or A (permutation tasks)")
    g.add_argument("--length", "-L", help=lengths_help)
    g.add_argument("--format", help="outcome,cot,acot")
    g.add_argument("--model", help="models, e.g. transformer,lstm,dense-ssm; NAME:SIZE gives one model its own "
                                   "size (transformer:tiny,mine:small); a plugin model by its name (--plugin)")
    g.add_argument("--size", help="named size for every model without its own NAME:SIZE (default: the preset's)")
    g.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="model option for every model")


def cell_axes(args) -> dict[str, Any]:
    for target in getattr(args, "plugin", None) or []:
        load_plugin(target)
    _, grid, sizes = PRESETS[args.preset]
    cls = task_class(args.task)
    if cls.family != "state-tracking":
        raise SeqgapError(f"{args.task} is not a state-tracking task (study E); see `seqgap tasks`")
    given_models = parse_models(args.model) or [(m, None) for m in grid["model"]]
    names = [m for m, _ in given_models]
    twice = sorted({m for m in names if names.count(m) > 1})
    if twice:  # the reports group by model name
        raise SeqgapError(f"--model: {', '.join(twice)} given with two sizes; give each model once "
                          f"(one study per size of a model)")
    models = resolve_sizes(given_models, args.size, sizes)
    sizes = dict(models)
    if cls.size_param is None:
        if args.sizes_axis:
            raise SeqgapError(f"{args.task} has no state-space size option; drop --sizes/--m/--k")
        axis: list[Any] = [None]
    elif args.sizes_axis:
        axis = [cls.check_size(v) for v in int_list(args.sizes_axis, "--sizes")]
    else:
        axis = grid["sizes"].get(args.task) or [cls.size_of({})]
    lengths = int_list(args.length, "--length") if args.length else grid["length"]
    if any(L < max(2, cls.min_length) for L in lengths):
        raise SeqgapError(f"lengths must be >= {max(2, cls.min_length)}, got {lengths}")
    extra = {"group": args.group} if args.group else {}
    return {"task": args.task, "sizes_axis": axis, "lengths": lengths,
            "formats": str_list(args.format) if args.format else grid["format"], "models": models,
            "sizes": sizes, "extra_task_params": extra, "model_options": parse_kv(args.model_opt, "--model-opt")}


def add_arguments(p) -> None:
    add_cell_arguments(p)
    p.add_argument("--length-dist", default="fixed", help="fixed | uniform | short-to-long")
    add_search_arguments(p)


def validate_cells(cells: Sequence[Cell], settings: SearchSettings | None = None, eval_lengths=None,
                   log=None) -> None:
    """Fail fast (one line) on unknown tasks/models/options before any worker starts.  With
    ``settings``: also ``check-model`` once per distinct model of the cells (for runs of those
    settings; ``eval_lengths``: a function cell -> lengths its runs are evaluated at after training)."""
    from seqgap.models.registry import make_config
    from seqgap.tasks.catalog import make_task
    from seqgap.tasks.dataset import LENGTH_DISTS

    for c in cells:
        if c.length_dist not in LENGTH_DISTS:
            raise SeqgapError(f"unknown length distribution {c.length_dist!r}; use one of {', '.join(LENGTH_DISTS)}")
        make_task(c.task, **c.task_params)
        make_config(c.model, c.model_size, **c.model_options)
    if settings is not None:
        configs = [run_config(c, settings, max(1, settings.n_min), settings.lrs[0], settings.seeds[0]) for c in cells]
        if eval_lengths is not None:
            configs = [cfg.replace(eval_lengths=tuple(eval_lengths(c))) for cfg, c in zip(configs, cells)]
        check_run_models(configs, log=log)


def plan(args) -> tuple[list[Cell], SearchSettings]:
    """The cells and search settings the parsed ``args`` ask for (preset defaults filled in)."""
    settings = settings_from(args)
    cells = make_cells(length_dist=args.length_dist, **cell_axes(args))
    validate_cells(cells, settings)
    return cells, settings


def main(args) -> int:
    from seqgap.report.state_tracking import write_sample_complexity_report

    cells, settings = plan(args)
    out = Path(args.out or f"seqgap_out/sample_complexity_{args.preset}")
    print(f"sample-complexity: {len(cells)} cells, preset {args.preset}, store "
          f"{args.store or 'default'}, report -> {out}", file=sys.stderr)
    from seqgap.sweep.driver import log_line
    results = search_cells(cells, settings, args.store, log=log_line,
                           **engine_options(args))
    md = write_sample_complexity_report([r for r in results if r is not None], settings, out)
    print(md)
    return 0 if all(r is not None for r in results) else 1

