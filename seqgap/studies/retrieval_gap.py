"""Study W: the retrieval gap (Wen, Dang, Lyu 2024, "RNNs are not Transformers (Yet)").

Two parts, every training run through the run store (a repeated study trains
nothing) and the cells spread over an engine's workers (``seqgap.sweep.driver``: local cores or Ray):

* **IsTree** (W's main experiment): accuracy against model size for each model
  (Transformer = LLaMA flavour, Mamba, LSTM, Hybrid = Mamba + one attention
  layer), each format (vanilla, cot, rag) and each graph size n.  Reported per
  cell: teacher-forced full-trace accuracy (``val_seq_acc``: every model-written
  token right), and from free greedy generation on ``gen_eval`` validation
  graphs the answer accuracy (``gen_acc``: the first [TRUE]/[FALSE] after the
  edges) and the whole-trace accuracy (``gen_trace_acc``, W's RAG criterion).
  RAG generation runs with the *live* retrieval tool (a regex over the
  generated context), not with results copied from the data.
* **Capacity** (W's claim 1 on AR / multi-query AR): accuracy as the number of
  key-value pairs n grows, for each model and size; "the largest n a model
  solves" (teacher-forced per-query accuracy >= ``threshold``) against its state
  size in bits (``model.state_size()``, 32-bit floats).  W's law: an RNN's
  largest solvable n grows linearly with its state; attention's state is a
  per-token KV cache, so it should solve every n tried.

Training data is streamed (``RunConfig.n_train = 0``): fresh graphs / key-value
sets every step, as W trains on >= 1M fresh samples; the validation set is
fixed by ``data_seed`` and the same for every cell of a given task and n.
Why streaming and not a fixed N: the question here is what a model can
represent and retrieve, not how sample-efficiently it learns (that is study E),
so no cell should be limited by memorising a small training set.

Presets: ``paper`` (W's protocol, for a GPU cluster) and ``quick`` (about half
an hour on 2 CPU cores; see ``QUICK`` for the scale-downs and docs/studies.md
for measured results).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from seqgap.config import RunConfig, TrainConfig
from seqgap.errors import SeqgapError

NAME = "retrieval-gap"
HELP = ("W: the retrieval gap -- IsTree accuracy vs model size per format (vanilla / cot / rag with the live "
        "retrieval tool), and multi-query AR accuracy vs number of pairs against state size")

ISTREE_FORMATS = ("vanilla", "cot", "rag")
CAPACITY_TASKS = ("ar", "mqar", "mqar-zoology")
TASKS = ("istree", *CAPACITY_TASKS)


# ---- cells and presets ---------------------------------------------------------------------

@dataclass(frozen=True)
class Cell:
    """One trained model: a task at size n, in a format, for a model at a named size.

    ``options``: model options on top of the named size (e.g. ``(("hidden", 16),)`` or
    ``(("short_conv", 3),)``); ``lr``: this cell's learning rate (None: the preset's for the model).
    ``eval_ns``: a *mixed* capacity cell (zoology's recipe) trains on every pair count
    ``min(eval_ns)..n`` at once (uniform) and is evaluated at each n of ``eval_ns`` (one record each)."""

    task: str  # istree | ar | mqar | mqar-zoology
    n: int  # IsTree: nodes; AR/MQAR: key-value pairs (a mixed cell: the largest)
    model: str
    size: str
    format: str = "vanilla"
    options: tuple[tuple[str, Any], ...] = ()
    lr: float | None = None
    eval_ns: tuple[int, ...] = ()

    @property
    def part(self) -> str:
        return "istree" if self.task == "istree" else "capacity"

    @property
    def mixed(self) -> bool:
        return bool(self.eval_ns)

    def label(self) -> str:
        what = f"istree/{self.format}" if self.task == "istree" else self.task
        opts = "".join(f" {k}={v}" for k, v in self.options) + (f" lr={self.lr:g}" if self.lr else "")
        ns = f"n={','.join(map(str, self.eval_ns))} (mixed)" if self.eval_ns else f"n={self.n}"
        return f"{self.model}:{self.size}{opts} {what} {ns}"


@dataclass(frozen=True)
class Grid:
    """A product of axes; a preset's cells are the union of its grids."""

    tasks: tuple[str, ...]
    models: tuple[str, ...]
    sizes: tuple[str, ...]
    ns: tuple[int, ...]
    formats: tuple[str, ...] = ("vanilla",)  # IsTree only
    # per-model sizes (``--model llama:tiny``): (model, sizes) pairs that replace ``sizes`` for that model
    model_sizes: tuple[tuple[str, tuple[str, ...]], ...] = ()
    options: tuple[tuple[tuple[str, Any], ...], ...] = ((),)  # model-option variants (one cell each)
    lrs: tuple[float | None, ...] = (None,)  # learning rates (None: the preset's for the model)
    mixed: bool = False  # capacity only: one run per variant on all ns mixed, evaluated at each n

    def cells(self) -> list[Cell]:
        out = []
        own = dict(self.model_sizes)
        for task in self.tasks:
            for fmt in (self.formats if task == "istree" else ("vanilla",)):
                for model in self.models:
                    for size in own.get(model, self.sizes):
                        for opts in self.options:
                            for lr in self.lrs:
                                if self.mixed and task != "istree":
                                    ns = tuple(sorted(set(self.ns)))
                                    out.append(Cell(task, ns[-1], model, size, fmt, opts, lr, ns))
                                    continue
                                for n in self.ns:
                                    out.append(Cell(task, n, model, size, fmt, opts, lr))
        return out


@dataclass(frozen=True)
class Preset:
    name: str
    grids: tuple[Grid, ...]
    # Budgets are tables keyed by IsTree format or capacity task (``_key``), optionally narrowed to one
    # model ("rag:lstm") and / or one n ("cot@16"), and "*" for the rest: see ``Preset.lookup``.
    steps: dict[str, int]  # step budget
    lr: dict[str, float]  # per model; "*" for the others
    batch_size: dict[str, int] = field(default_factory=lambda: {"*": 64})
    schedule: dict[str, str] = field(default_factory=lambda: {"*": "cosine"})
    warmup_frac: dict[str, float] = field(default_factory=lambda: {"*": 0.02})  # linear warm-up, share of the budget
    eval_every: dict[str, int] = field(default_factory=lambda: {"*": 500})
    n_val: int = 5000
    gen_eval: int = 5000
    seed: int = 42
    data_seed: int = 42
    frozen_embeddings: bool = False
    threshold: float = 0.9  # "solves n": teacher-forced per-query accuracy >= threshold
    distribution: str = "binary"
    description: str = ""
    task_options: dict[str, dict[str, Any]] = field(default_factory=dict)  # per capacity task, e.g. vocab_size

    @staticmethod
    def lookup(table: dict[str, Any], cell: Cell) -> Any:
        """The most specific entry for ``cell``: "key:model@n", "key@n", "key:model", "key", then "*"."""
        key = _key(cell)
        for k in (f"{key}:{cell.model}@{cell.n}", f"{key}@{cell.n}", f"{key}:{cell.model}", key, "*"):
            if k in table:
                return table[k]
        raise KeyError(f"preset has no entry for {key!r} (nor '*')")

    def lr_for(self, model: str) -> float:
        return self.lr.get(model, self.lr["*"])

    def steps_for(self, cell: Cell) -> int:
        return self.lookup(self.steps, cell)

    def eval_every_for(self, cell: Cell) -> int:
        return self.lookup(self.eval_every, cell)

    def batch_for(self, cell: Cell) -> int:
        return self.lookup(self.batch_size, cell)

    def schedule_for(self, cell: Cell) -> str:
        return self.lookup(self.schedule, cell)

    def warmup_steps_for(self, cell: Cell, steps: int) -> int:
        frac = self.lookup(self.warmup_frac, cell)
        return max(1, round(frac * steps)) if frac > 0 else 0


def _key(cell: Cell) -> str:
    """Budgets are set per IsTree format and per capacity task."""
    return cell.format if cell.task == "istree" else cell.task


_PAPER_STEPS = math.ceil(1_000_000 / 64)  # >= 1M training samples at batch 64
PAPER = Preset(
    name="paper",
    grids=(
        Grid(("istree",), ("llama", "mamba", "lstm", "hybrid"), ("0.5M", "1M", "2M"), (16, 32, 64), ISTREE_FORMATS),
        Grid(("mqar",), ("llama", "mamba", "lstm", "hybrid"), ("0.5M", "1M", "2M"), (16, 32, 64, 128, 256)),
    ),
    steps={"vanilla": _PAPER_STEPS, "cot": _PAPER_STEPS, "rag": _PAPER_STEPS, "ar": _PAPER_STEPS,
           "mqar": _PAPER_STEPS, "mqar-zoology": _PAPER_STEPS},
    lr={"llama": 1e-3, "transformer": 1e-3, "mamba": 3e-4, "hybrid": 3e-4, "*": 1e-3},
    batch_size={"*": 64}, schedule={"*": "cosine"}, warmup_frac={"*": 0.02}, eval_every={"*": 500},
    n_val=5000, gen_eval=5000, seed=42, data_seed=42, frozen_embeddings=True,
    description="W's protocol: sizes 0.5M/1M/2M, n = 16/32/64, AdamW (no weight decay), cosine with a 2% linear "
                "warm-up, lr 1e-3 (Transformer, LSTM) / 3e-4 (Mamba, Hybrid), batch 64, 15,625 steps (1M fresh "
                "samples), 5,000 validation samples (all scored by free generation), seed 42, frozen sinusoidal "
                "embeddings tied to the head. MQAR capacity: n = 16..256 pairs. For a GPU cluster.",
)

# Scaled for 2 CPU cores; every lever below is a budget, a learning rate, a schedule, a size or the
# task's own pair-count mixture (none changes a task).  Calibration and results: docs/studies.md.
# * IsTree at n = 8 (binary graphs); sizes matched by parameter count where it matters:
#   llama:tiny (131k), mamba:small (131k), hybrid:tiny (131k), lstm:small (132k).
# * W-b (an RNN falling behind as n grows) with a small-state Mamba, as issue 11 suggests: mamba:small
#   with d_state 1 (110k parameters, 2,048 state floats against the default's 9,728) at n = 7 and 8,
#   llama:tiny at n = 7 beside it.  Measured 2026-12-01, seeds 42 / 1: answer accuracy 0.996 / 0.998
#   at n = 7, 0.820 / 0.726 at n = 8 (llama:tiny 1.000 / 0.998 and 0.980 / 0.988), while the default
#   d_state 16 keeps up at n = 8 (0.998 / 0.920).  n = 7, not 6: binary graphs have 16 / 130 / 1,140 /
#   5,810 distinct problems at n = 4 / 5 / 6 / 7, and with 500 held out n = 6 leaves 640 to train on
#   (llama:tiny reached 0.998 there with seed 42 but 0.928 with seed 1).  The LSTM is no help here: at
#   n = 6 and 7 it is already at its baseline (0.49 / 0.46), so its gap is flat.
# * lr 3e-3 for every model: with ~1.5k steps, 1e-3 left llama:tiny at 0.21 teacher-forced trace
#   accuracy where 3e-3 reached 0.98 (2k steps).
# * RAG: sequences are ~9x longer than CoT sequences (n = 8: 352 vs 39 tokens).  mamba:tiny reaches
#   1.00 with the live tool in 400 steps at batch 16; the LSTM stayed at baseline there (0.215) and
#   gets 1.5k steps at batch 64 (STUDIES.md: 0.83 trace accuracy after 900 such steps; it is cheap,
#   ~0.27 s a step: 407 s).
# * Capacity (W-d): zoology's MQAR (``mqar-zoology``: 128 ids, T = 64 tokens, answers only as
#   labels), pair counts 2..16 mixed in every run (zoology's recipe), scored at n = 2/4/8/16, at a
#   constant lr without warm-up.  llama:tiny with a kernel-3 short convolution (zoology's
#   Based-config trick) at lr 3e-3 for 3k steps.  Measured 2026-12-01 (docs/studies.md): attention
#   sits on a plateau and then solves every n within ~250 steps; without warm-up the plateau ended at
#   ~2.0k (seed 42) and ~1.75k steps (seed 1); with a 150-step warm-up it lasted past 3k steps
#   (seed 42: 0.45 / 0.24 / 0.14 / 0.08 at 3k) and, with weight decay 0.1, to ~2.75k; at lr 1e-3 it
#   had reached 0.70 / 0.50 / 0.36 / 0.25 after 2.5k steps.
# * The RNN half of W-d: a Mamba state-size ladder, one layer, d_state 4, width 32 / 64 / 128 (448 /
#   896 / 1,792 state floats), 2.5k steps at lr 3e-3.  Width is the lever: narrower or deeper models
#   stay on the plateau longer in a CPU budget (Okpekpe & Orvieto 2025: SSMs favour width over depth
#   on recall).  Measured 2026-12-01, seeds 42 / 1 (docs/studies.md): 64 x 1 solved n <= 2 / 4, 128 x 1
#   n <= 8 in both; 128 x 2 solved 16 with seed 42 but only 4 with seed 1 (still leaving the plateau),
#   so it is not a rung; 256 x 1 solved 16 in both (0.924 / 0.910 at n = 16) but costs ~2x 128 x 2 and
#   would take quick past 25 min.  d64 x 2 needed 4k steps to solve n = 2, d_state 16 there learned
#   less (0.73 at n = 2), 128 x 2 with d_state 1 stayed on the plateau, lr 1e-2 never left it.
# * No LSTM in the capacity grid: LSTM hidden 16..128 never rose above the context guess at lr 3e-3
#   or 1e-2 in 3k (quick) or 10k (``medium``) steps, nor h128 trained on n = 2 alone for 3k steps
#   (0.505 at T = 64, 0.521 at T = 16, 0.517 without noise): it says nothing about a state-size law
#   at this scale.  ``medium`` keeps its 10k-step sweep, and W-d judges every RNN family present.
# The CLI's --model/--format/--size/--n replace any axis to widen it.
_Q = "tiny", "small"
_PAIRS = (2, 4, 8, 16)
_CAPACITY_QUICK = (
    Grid(("mqar-zoology",), ("llama",), ("tiny",), _PAIRS, options=((("short_conv", 3),),), lrs=(3e-3,),
         mixed=True),
    Grid(("mqar-zoology",), ("mamba",), ("tiny",), _PAIRS,
         options=tuple((("d_model", w), ("n_layers", 1), ("d_state", 4)) for w in (32, 64, 128)), lrs=(3e-3,),
         mixed=True),
)
# medium's LSTM capacity sweep (see above)
_CAPACITY_LSTM = Grid(("mqar-zoology",), ("lstm",), ("tiny",), _PAIRS,
                      options=tuple((("hidden", h),) for h in (16, 32, 64, 128)), lrs=(1e-2,), mixed=True)
QUICK = Preset(
    name="quick",
    grids=(
        Grid(("istree",), ("llama", "lstm"), ("tiny",), (8,), ("vanilla",), model_sizes=(("lstm", ("small",)),)),
        Grid(("istree",), ("llama", "lstm"), ("tiny",), (8,), ("cot",), model_sizes=(("lstm", ("small",)),)),
        Grid(("istree",), ("llama",), ("tiny",), (7,), ("cot",)),
        Grid(("istree",), ("mamba",), ("small",), (8,), ("cot",)),
        Grid(("istree",), ("mamba",), ("small",), (7, 8), ("cot",), options=((("d_state", 1),),)),
        Grid(("istree",), ("hybrid",), ("tiny",), (8,), ("cot",)),
        Grid(("istree",), ("mamba",), ("tiny",), (8,), ("rag",)),
        Grid(("istree",), ("lstm",), ("small",), (8,), ("rag",)),
        *_CAPACITY_QUICK,
    ),
    steps={"vanilla": 1000, "cot": 1500, "rag": 400, "rag:lstm": 1500, "ar": 2000, "mqar": 2000,
           "mqar-zoology": 2500, "mqar-zoology:llama": 3000},
    task_options={"mqar-zoology": {"vocab_size": 128, "seq_len": 64}},
    batch_size={"*": 64, "rag": 16, "rag:lstm": 64},
    lr={"*": 3e-3},
    schedule={"*": "cosine", "mqar-zoology": "constant"},
    warmup_frac={"*": 0.05, "mqar-zoology": 0.0}, eval_every={"*": 250, "rag": 100, "rag:lstm": 250},
    n_val=500, gen_eval=500, seed=42, data_seed=42, frozen_embeddings=False,
    description="2-core CPU scale: IsTree n = 8 (binary graphs), tiny/small models matched by "
                "parameter count, plus mamba:small d_state 1 at n = 7 / 8 and llama:tiny at n = 7 (W-b), "
                "lr 3e-3 for every model (short budgets), AdamW without weight decay, cosine "
                "with a 5% warm-up, batch 64 (Mamba RAG: 16, its sequences are ~9x longer), 1.5k CoT steps / "
                "400 Mamba RAG steps / 1.5k LSTM RAG steps / 1k vanilla steps, 500 validation samples (IsTree: all "
                "500 graphs scored by free generation); capacity: zoology's MQAR (128 ids, 64 tokens), pair counts "
                "2..16 mixed in training and scored at n = 2/4/8/16 (500 problems each), constant lr without "
                "warm-up, "
                "llama:tiny + short conv 3 (lr 3e-3, 3k steps), Mamba 1 layer, d_state 4, width 32 / 64 / 128 "
                "(lr 3e-3, 2.5k steps).",
)

# ``medium``: the larger scale where the 2-core budget runs out, measured rather than a showcase
# (quick shows the findings).  All of quick's cells (same configs: one store shares them), plus:
# * IsTree CoT at n = 16 (tokens per sample ~2x n = 8) for llama:tiny, the default mamba:small and
#   lstm:small at 5k steps (STUDIES.md: after 800 / 300 steps both attention and Mamba were far from
#   solving n = 16);
# * the LSTM's MQAR sweep, hidden 16..128 at lr 1e-2 for 10k steps.
# Measured 2026-12-01: docs/studies.md (the n = 16 Mamba cell alone trains ~38 min).
MEDIUM = dataclasses.replace(
    QUICK, name="medium",
    grids=(
        *QUICK.grids,
        Grid(("istree",), ("llama", "mamba", "lstm"), ("tiny",), (16,), ("cot",),
             model_sizes=(("mamba", ("small",)), ("lstm", ("small",)))),
        _CAPACITY_LSTM,
    ),
    steps={**QUICK.steps, "cot@16": 5000, "mqar-zoology:lstm": 10_000},
    eval_every={**QUICK.eval_every, "cot@16": 500, "mqar-zoology:lstm": 500},
    description=QUICK.description + " Medium adds: IsTree CoT n = 16 (llama:tiny, mamba:small, lstm:small; "
                "5k steps), LSTM capacity hidden 16/32/64/128 at lr 1e-2 for 10k steps.",
)

PRESETS = {"quick": QUICK, "medium": MEDIUM, "paper": PAPER}
PRESET_NAMES = tuple(PRESETS)

# Cost of one training token, in microseconds on one thread: about linear in the parameters, plus for
# Mamba a term in its state (the scan's elementwise passes).  Fitted to the 2026-12-01 quick and medium
# runs (llama 15-20, LSTM 3-12, Mamba 15-89 us a token); only used to start the longest cells first
# (longest-processing-time order: a 400-s cell started last would add its whole length to the wall).
_US_PER_TOKEN_PER_KPARAM = {"lstm": 0.07, "llama": 0.13, "transformer": 0.13, "mamba": 0.2, "hybrid": 0.37}
_MAMBA_US_PER_TOKEN_PER_KSTATE = 5.2


# ---- configs ----------------------------------------------------------------------------------

def task_params(cell: Cell, preset: Preset, capacity_alphabet: int) -> dict[str, Any]:
    if cell.task == "istree":
        # one vocabulary per n (node ids 0..n-1): a model per graph size, as in W
        return {"format": cell.format, "distribution": preset.distribution, "max_nodes": cell.n}
    if cell.task == "mqar-zoology":  # zoology's own options (vocab_size, seq_len, ...), from the preset
        opts = dict(preset.task_options.get(cell.task, {}))
        if cell.mixed:
            opts["min_length"] = min(cell.eval_ns)  # the mixture's smallest pair count
        return opts
    # keys and values from one alphabet big enough for the largest n of the study
    return {"alphabet": capacity_alphabet, **preset.task_options.get(cell.task, {})}


def run_config(cell: Cell, preset: Preset, capacity_alphabet: int = 64, steps: int | None = None,
               lr: float | None = None, device: str = "cpu", frozen: bool | None = None,
               gen_eval: int | None = None, n_val: int | None = None, batch_size: int | None = None,
               model_options: dict[str, Any] | None = None) -> RunConfig:
    steps = steps or preset.steps_for(cell)
    frozen = preset.frozen_embeddings if frozen is None else frozen
    tc = TrainConfig(lr=lr or cell.lr or preset.lr_for(cell.model), optimizer="adamw", weight_decay=0.0,
                     schedule=preset.schedule_for(cell), warmup_steps=preset.warmup_steps_for(cell, steps),
                     batch_size=batch_size or preset.batch_for(cell), steps=steps,
                     eval_every=min(steps, preset.eval_every_for(cell)), seed=preset.seed, device=device)
    gen = preset.gen_eval if gen_eval is None else gen_eval
    return RunConfig(
        task=cell.task, task_params=task_params(cell, preset, capacity_alphabet), max_length=cell.n,
        # a mixed cell trains on every pair count up to n at once and is scored at each of eval_ns
        length_dist="uniform" if cell.mixed else "fixed", n_train=0, n_val=n_val or preset.n_val,
        data_seed=preset.data_seed,
        model=cell.model, model_size=cell.size,
        model_options={**dict(cell.options), **(model_options or {}),
                       **({"frozen_embeddings": True} if frozen else {})},
        train=tc,
        eval_lengths=tuple(cell.eval_ns), n_eval=n_val or preset.n_val,
        # free generation only where it measures something: IsTree (answers, live tool).
        # Retrieval tasks are scored by teacher-forced per-query accuracy.
        gen_eval=min(gen, n_val or preset.n_val) if cell.task == "istree" else 0,
    )


def check_configs(configs: Sequence[RunConfig]) -> None:
    """Fail fast, before any worker starts: every option is in range (``RunConfig.validate``, e.g.
    ``--seed``), each cell's task takes its n, and its validation pool can be held out (e.g. binary
    IsTree at n = 4 has only 16 distinct graphs).  One-line SeqgapError."""
    from seqgap.tasks.dataset import check_sizes
    from seqgap.training.trainer import build_task

    for cfg in configs:
        cfg.validate()
        task = build_task(cfg)
        task.check_length(cfg.max_length)
        check_sizes(task, cfg.max_length, cfg.length_dist, cfg.n_train, cfg.n_val)


def estimated_cost(cell: Cell, cfg: RunConfig) -> float:
    """Rough training seconds of a cell on one CPU thread (for ordering only): tokens x cost per token
    of the built model (no training)."""
    from seqgap.training.trainer import build_model_for, build_task

    task = build_task(cfg)
    model = build_model_for(task, cfg)
    us = _US_PER_TOKEN_PER_KPARAM.get(cell.model, 0.15) * model.num_params() / 1e3
    if cell.model == "mamba":
        us += _MAMBA_US_PER_TOKEN_PER_KSTATE * model.state_size().floats / 1e3
    return cfg.train.steps * cfg.train.batch_size * task.max_tokens(cell.n) * us * 1e-6


# ---- running --------------------------------------------------------------------------------

def run_cells(cells: Sequence[Cell], configs: Sequence[RunConfig], store_path: str | None,
              workers: int | None, log=print, **engine: Any) -> list[dict[str, Any] | None]:
    """Train every cell (longest first) on an engine; a failed cell is logged and left None."""
    from seqgap.sweep.driver import run_each

    def train(i: int, driver) -> dict[str, Any]:
        r = driver.train([configs[i]])[0]
        return {"id": r.id, "summary": r.summary, "cached": r.cached}

    order = sorted(range(len(cells)), key=lambda i: -estimated_cost(cells[i], configs[i]))
    done = run_each(order, train, store_path, lambda i: cells[i].label(),
                    lambda i, out: _metrics_line(cells[i], out), log, workers, **engine)
    outs: list[dict[str, Any] | None] = [None] * len(cells)
    for i, out in zip(order, done):
        outs[i] = out
    return outs


def _metrics_line(cell: Cell, res: dict[str, Any]) -> str:
    s = res["summary"]
    tag = " (from store)" if res["cached"] else f" ({s['seconds']:.0f}s)"
    if cell.task == "istree":
        gen = (f", answer acc {s['gen_acc']:.3f}, generated trace acc {s['gen_trace_acc']:.3f}, "
               f"{s.get('gen_failures', 0)} failures" if "gen_acc" in s else "")
        return f"teacher-forced trace acc {s['val_seq_acc']:.3f}{gen}{tag}"
    if cell.mixed and "eval_lengths" in s:
        accs = ", ".join(f"n={n}: {s['eval_lengths'][str(n)]['val_token_acc']:.3f}" for n in cell.eval_ns)
        return f"per-query acc {accs}{tag}"
    return f"per-query acc {s['val_token_acc']:.3f}{tag}"


_BASELINES: dict[str, dict[str, Any]] = {}  # per validation split (see shortcut_for)


def shortcut_for(cfg: RunConfig) -> dict[str, Any]:
    """Chance and the task's strongest shortcut baseline on the validation problems of ``cfg``'s run.

    The task and its splits are built exactly as the trainer builds them (``build_task`` +
    ``tasks.dataset.build_splits`` with the run's config), then ``Task.shortcut_baseline(val, train)``
    is scored on them.  Returns ``{"chance": float, "baseline": {"name", "accuracy", "exact"} | None,
    "n_val": validation problems, "n_scored_val": scored answer positions over them}`` (the last
    sizes the interval of a teacher-forced per-query accuracy).  Cached per split; no training."""
    from seqgap.tasks.dataset import build_splits
    from seqgap.training.trainer import build_task

    key = json.dumps([cfg.task, cfg.task_params, cfg.max_length, cfg.length_dist, cfg.n_train, cfg.n_val,
                      cfg.data_seed], sort_keys=True, default=str)
    if key not in _BASELINES:
        task = build_task(cfg)
        splits = build_splits(task, cfg.max_length, cfg.length_dist, cfg.n_train, cfg.n_val, seed=cfg.data_seed)
        base = task.shortcut_baseline(splits.val, splits.train)
        _BASELINES[key] = {
            "chance": float(task.chance_accuracy),
            "baseline": None if base is None else {"name": str(base["name"]), "accuracy": float(base["accuracy"]),
                                                   "exact": bool(base["exact"])},
            "n_val": len(splits.val),
            "n_scored_val": int(sum(int(task.encode(p).mask.sum()) for p in splits.val)),
        }
    return json.loads(json.dumps(_BASELINES[key]))  # a copy


def record(cell: Cell, cfg: RunConfig, res: dict[str, Any] | None) -> dict[str, Any]:
    """A flat row for the report and results.json.

    ``acc`` is the number the report calls the cell's accuracy; ``acc_scores`` says what it scores
    and ``acc_n`` over how many scored examples (for its interval).  IsTree: the answer of free
    generation (``gen_acc`` over ``gen_n`` graphs); without generation only vanilla has an answer
    accuracy (the teacher-forced answer token, ``val_final_acc``): the last token of a CoT/RAG
    sequence closes the trace and teacher forcing gives it away, so there ``acc`` is None.
    AR/MQAR: teacher-forced per-query accuracy over every scored query.  ``chance`` and
    ``baseline`` (the task's shortcut baseline on this cell's validation split) come from
    :func:`shortcut_for`."""
    from seqgap.models.registry import get_spec

    rec: dict[str, Any] = {"task": cell.task, "format": cell.format, "n": cell.n, "model": cell.model,
                           "size": cell.size, "model_options": dict(cfg.model_options),
                           "recurrent": get_spec(cell.model).recurrent,
                           "lr": cfg.train.lr, "steps_budget": cfg.train.steps, "batch_size": cfg.train.batch_size,
                           "run_id": cfg.hash(), "ok": res is not None}
    short = shortcut_for(cfg)  # its data can be built: check_configs ran before training
    rec.update({"chance": short["chance"], "baseline": short["baseline"]})
    if cell.task != "istree":  # sequence length at this n (the report's KV-cache size at the largest n solved)
        from seqgap.tasks.catalog import make_task

        rec["tokens"] = make_task(cfg.task, **cfg.task_params).max_tokens(cell.n)
    if res is None:
        return rec
    s = res["summary"]
    rec.update({
        "cached": res["cached"], "steps": s["steps"], "samples_seen": s["steps"] * cfg.train.batch_size,
        "seconds": s["seconds"], "n_params": s["n_params"], "n_trainable_params": s["n_trainable_params"],
        "state_floats": s["state_floats"], "state_per_token": s["state_per_token"],
        "state_bits": 32 * s["state_floats"], "val_loss": s["val_loss"], "best_val_loss": s["best_val_loss"],
        "val_token_acc": s["val_token_acc"], "val_seq_acc": s["val_seq_acc"], "val_final_acc": s["val_final_acc"],
        "n_val": s["n_val"], "chance": s["chance_accuracy"],
    })
    for k in ("gen_acc", "gen_trace_acc", "gen_failures", "gen_n", "val_overlap"):
        if k in s:
            rec[k] = s[k]
    if cell.task == "istree":
        # the answer: from free generation (teacher forcing would hand a CoT/RAG model its trace)
        if "gen_acc" in s:
            rec.update(acc=s["gen_acc"], acc_n=s.get("gen_n"), acc_scores="answer, free greedy generation"
                       + (" with the live retrieval tool" if cell.format == "rag" else ""))
        elif cell.format == "vanilla":
            rec.update(acc=s["val_final_acc"], acc_n=s["n_val"], acc_scores="answer token, teacher-forced")
        else:
            rec.update(acc=None, acc_n=None, acc_scores="not measured (no free generation)")
    else:
        # teacher-forced per-query accuracy over the scored answers
        rec.update(acc=s["val_token_acc"], acc_n=short["n_scored_val"] if s["n_val"] == short["n_val"] else None,
                   acc_scores="per query, teacher-forced")
    return rec


def records_for(cell: Cell, cfg: RunConfig, res: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The report's rows of one trained cell: :func:`record` for a plain cell; for a mixed capacity
    cell (trained on every pair count up to ``cell.n`` at once) one row per n of ``cell.eval_ns``,
    each with that n's teacher-forced per-query accuracy on ``cfg.n_eval`` fresh problems at n
    (``acc_n`` = n_eval * n queries) and the shortcut baseline of a fixed-n validation split drawn
    the same way (the same distribution as the problems scored)."""
    if not cell.mixed:
        return [record(cell, cfg, res)]
    out = []
    for n in cell.eval_ns:
        at_n = dataclasses.replace(cell, n=n, eval_ns=())
        fixed = dataclasses.replace(cfg, max_length=n, length_dist="fixed", n_val=cfg.n_eval, eval_lengths=())
        r = record(at_n, fixed, None if res is None else {**res, "summary": _at_length(res["summary"], n, cfg.n_eval)})
        r.update(run_id=cfg.hash(), mixed_ns=list(cell.eval_ns), lr=cfg.train.lr, steps_budget=cfg.train.steps,
                 trained_on=f"pair counts {min(cell.eval_ns)}..{cell.n} mixed (uniform)")
        out.append(r)
    return out


def _at_length(summary: dict[str, Any], n: int, n_eval: int) -> dict[str, Any]:
    """A run summary whose validation metrics are those of ``eval_lengths[n]``."""
    ev = summary["eval_lengths"][str(n)]
    s = dict(summary)
    for k in ("val_loss", "val_token_acc", "val_seq_acc", "val_final_acc"):
        if k in ev:
            s[k] = ev[k]
    s["n_val"] = n_eval
    return s


# ---- CLI ------------------------------------------------------------------------------------

def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cells (each option replaces that axis of every preset grid)")
    g.add_argument("--task", help="subset of istree,ar,mqar (default: the preset's)")
    g.add_argument("--model", help="models, e.g. llama,mamba,lstm,hybrid (see `seqgap models`; a plugin model by "
                                   "its name, --plugin); NAME:SIZE gives one model its own size (llama:tiny,mine:small)")
    g.add_argument("--size", help="named sizes for every model without its own NAME:SIZE, e.g. tiny,small or 0.5M,1M,2M")
    g.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                   help="model option for every model (repeatable), typed by each model's config")
    g.add_argument("--n", help="IsTree nodes / AR pairs, e.g. 8,16")
    g.add_argument("--pairs", help="AR/MQAR pairs only (overrides --n for them), e.g. 4,8,16,32")
    g.add_argument("--format", help="IsTree formats, subset of vanilla,cot,rag")
    t = p.add_argument_group("training (defaults from --preset)")
    t.add_argument("--steps", type=int, help="step budget of every cell")
    t.add_argument("--lr", type=float, help="learning rate of every model")
    t.add_argument("--batch-size", type=int, help="batch size of every cell")
    t.add_argument("--n-val", type=int, help="validation samples per cell")
    t.add_argument("--gen-eval", type=int, help="IsTree validation graphs scored by free generation")
    t.add_argument("--threshold", type=float, help="'solves n' = per-query accuracy >= this")
    t.add_argument("--seed", type=int, help="training seed of every cell (a replicate: its own runs in the store; "
                                            "the validation problems stay those of the preset's data seed)")
    t.add_argument("--frozen-embeddings", action=argparse.BooleanOptionalAction, default=None,
                   help="W's frozen sinusoidal embeddings tied to the head (paper preset: on; quick: off)")
    o = p.add_argument_group("execution")
    o.add_argument("--dry-run", action="store_true", help="list the cells and which are in the store; train nothing")


def cells_from(args, preset: Preset) -> list[Cell]:
    """The preset's cells with the CLI's axes substituted; validated (one-line errors)."""
    from seqgap.models.registry import get_spec, make_config
    from seqgap.options import int_list, str_list

    tasks = str_list(args.task) if args.task else None
    for t in tasks or []:
        if t not in TASKS:
            raise SeqgapError(f"retrieval-gap: unknown task {t!r}; choose from {', '.join(TASKS)}")
    formats = str_list(args.format) if args.format else None
    for f in formats or []:
        if f not in ISTREE_FORMATS:
            raise SeqgapError(f"retrieval-gap: unknown IsTree format {f!r}; choose from {', '.join(ISTREE_FORMATS)}")
    from seqgap.studies.models import parse_models

    model_list = parse_models(args.model) if args.model else None
    for m, _ in model_list or []:
        get_spec(m)  # unknown model -> SeqgapError
    models = list(dict.fromkeys(m for m, _ in model_list)) if model_list else None
    own_sizes: dict[str, list[str]] = {}
    for m, sz in model_list or []:
        if sz is not None:
            own_sizes.setdefault(m, []).append(sz)
    for m, sz in model_list or []:
        if sz is None and m in own_sizes:
            raise SeqgapError(f"retrieval-gap: --model gives {m} both with and without a size; use {m}:SIZE each time")
    sizes = str_list(args.size) if args.size else None
    ns = tuple(int_list(args.n)) if args.n else None
    pairs = tuple(int_list(args.pairs)) if args.pairs else None
    for opt, vals in (("--model", models), ("--size", sizes), ("--n", ns), ("--pairs", pairs),
                      ("--task", tasks), ("--format", formats)):
        if vals is not None and not vals:
            raise SeqgapError(f"retrieval-gap: {opt} is empty")

    cells: list[Cell] = []
    grids = list(preset.grids)
    if tasks:
        have = {t for g in grids for t in g.tasks}
        grids = [dataclasses.replace(g, tasks=tuple(t for t in g.tasks if t in tasks)) for g in grids]
        for t in tasks:  # a task the preset lacks: borrow the axes of a grid of the same part
            if t not in have:
                like = [g for g in preset.grids if (g.tasks[0] == "istree") == (t == "istree")]
                if not like:
                    raise SeqgapError(f"retrieval-gap: preset {preset.name} has no grid for {t}")
                # the borrowed grid's model variants, lr sweep and mixing belong to its own task
                grids.append(dataclasses.replace(like[0], tasks=(t,), options=((),), lrs=(None,), mixed=False))
    for g in grids:
        if not g.tasks:
            continue
        if models and tuple(models) != g.models:  # other models: the grid's model options need not apply
            g = dataclasses.replace(g, options=((),))
        g = dataclasses.replace(g, models=tuple(models) if models else g.models,
                                sizes=tuple(sizes) if sizes else g.sizes,
                                formats=tuple(formats) if formats else g.formats,
                                # the CLI's NAME:SIZE, else the grid's own (which --size replaces)
                                model_sizes=tuple((m, tuple(v)) for m, v in own_sizes.items()) if own_sizes
                                else (() if sizes else g.model_sizes))
        for task in g.tasks:
            n_axis = pairs if (pairs and task != "istree") else ns
            cells += dataclasses.replace(g, tasks=(task,), ns=n_axis or g.ns).cells()
    cells = list(dict.fromkeys(cells))  # dedupe, keep order
    if not cells:
        raise SeqgapError("retrieval-gap: no cells selected")
    for c in cells:
        if c.task == "istree" and c.n < 4:
            raise SeqgapError(f"retrieval-gap: IsTree needs n >= 4 nodes, got n = {c.n}")
        if c.n < 1:
            raise SeqgapError(f"retrieval-gap: {c.task} needs n >= 1 pairs, got n = {c.n}")
    options = model_options_from(args)
    for model, size in dict.fromkeys((c.model, c.size) for c in cells):
        make_config(model, size, **options.get(model, {}))  # unknown size or option for a model -> SeqgapError
    return cells


def model_options_from(args) -> dict[str, dict[str, Any]]:
    """``--model-opt`` per model of the study, typed by each model's config (one line for an option
    a model does not have)."""
    from seqgap.options import parse_kv, typed_model_options
    from seqgap.models.registry import get_spec

    raw = parse_kv(getattr(args, "model_opt", None), "--model-opt")
    if not raw:
        return {}
    from seqgap.studies.models import parse_models

    names = [m for m, _ in parse_models(args.model)] if args.model else \
        [m for g in PRESETS[args.preset].grids for m in g.models]
    out = {}
    for m in dict.fromkeys(names):
        get_spec(m)
        out[m] = typed_model_options(m, raw)
    return out


def capacity_alphabet(cells: Sequence[Cell]) -> int:
    """Keys (and values) of AR/MQAR: 64, or more when a cell has more pairs (keys must be distinct)."""
    return max([64] + [c.n for c in cells if c.task in ("ar", "mqar")])


def main(args) -> int:
    from seqgap.report.retrieval import write_retrieval_gap_report
    from seqgap.store import RunStore, default_store_path

    from seqgap.models.registry import load_plugin

    for target in getattr(args, "plugin", None) or []:  # plugin models and tasks, before any name is checked
        load_plugin(target)
    preset = PRESETS[args.preset]
    if args.seed is not None:
        preset = dataclasses.replace(preset, seed=args.seed)
    if args.steps is not None and args.steps <= 0:
        raise SeqgapError(f"retrieval-gap: --steps must be positive, got {args.steps}")
    if args.batch_size is not None and args.batch_size <= 0:
        raise SeqgapError(f"retrieval-gap: --batch-size must be positive, got {args.batch_size}")
    if args.lr is not None and not args.lr > 0:
        raise SeqgapError(f"retrieval-gap: --lr must be positive, got {args.lr}")
    if args.n_val is not None and args.n_val < 1:
        raise SeqgapError(f"retrieval-gap: --n-val must be >= 1, got {args.n_val}")
    if args.gen_eval is not None and args.gen_eval < 0:
        raise SeqgapError(f"retrieval-gap: --gen-eval must be >= 0, got {args.gen_eval}")
    threshold = preset.threshold if args.threshold is None else args.threshold
    if not 0 < threshold <= 1:
        raise SeqgapError(f"retrieval-gap: --threshold must be in (0, 1], got {threshold}")
    cells = cells_from(args, preset)
    alphabet = capacity_alphabet(cells)
    options = model_options_from(args)
    configs = [run_config(c, preset, alphabet, steps=args.steps, lr=args.lr, device=args.device,
                          frozen=args.frozen_embeddings, gen_eval=args.gen_eval, n_val=args.n_val,
                          batch_size=args.batch_size, model_options=options.get(c.model)) for c in cells]
    check_configs(configs)

    store_path = args.store if args.store is not None else default_store_path()
    store = RunStore(store_path)
    in_store = [cfg.hash() in store for cfg in configs]
    store.close()
    out = Path(args.out or f"seqgap_out/retrieval_gap_{preset.name}")
    from seqgap.sweep.driver import log_line as log
    log(f"retrieval-gap: preset {preset.name}, {len(cells)} cells ({sum(in_store)} already in the store "
        f"{store_path}), report -> {out}")
    if args.dry_run:
        for c, cfg, have in zip(cells, configs, in_store):
            print(f"{c.label():40s} steps {cfg.train.steps:6d} batch {cfg.train.batch_size:3d} lr {cfg.train.lr:g} "
                  f"{'in store' if have else 'to train'}  run {cfg.hash()}")
        return 0

    from seqgap.studies.models import check_run_models

    check_run_models(configs, log=log)  # check-model once per distinct model, before any training
    t0 = time.perf_counter()
    from seqgap.options import engine_options

    opts = engine_options(args)
    outs = run_cells(cells, configs, store_path, opts.pop("workers"), log=log, **opts)
    wall = time.perf_counter() - t0
    records = [r for c, cfg, o in zip(cells, configs, outs) for r in records_for(c, cfg, o)]
    per_run = {r["run_id"]: r for r in records}  # a mixed capacity run gives one row per scored n
    meta = {"preset": preset.name, "description": preset.description, "threshold": threshold,
            "wall_seconds": wall, "trained": sum(1 for r in per_run.values() if r["ok"] and not r["cached"]),
            "from_store": sum(1 for r in per_run.values() if r["ok"] and r["cached"]),
            "failed": sum(1 for r in per_run.values() if not r["ok"]), "store": store_path,
            "train_seconds_total": sum(r["seconds"] for r in per_run.values() if r["ok"]),
            "capacity_alphabet": alphabet, "workers": args.workers,
            "n_train": "streamed (fresh samples every step)",
            "date": time.strftime("%Y-%m-%d %H:%M")}
    md = write_retrieval_gap_report(records, meta, out)
    print(md)
    log(f"retrieval-gap: {meta['trained']} trained, {meta['from_store']} from the store, {meta['failed']} failed; "
        f"wall {wall:.0f}s; report {out / 'summary.md'}")
    return 0 if meta["failed"] == 0 else 1
