"""``seqgap card``: one page that says where a model stands against the Transformer and the classic RNNs.

The *battery* is built from the studies' own building blocks, so a card's numbers are the
studies' numbers (and share their stored runs):

* **E, sample complexity** -- :func:`seqgap.studies.sample_complexity.search_cells` on a few
  parity cells (N*, with each search's bracket as its interval);
* **E, length generalisation** -- :func:`seqgap.studies.length_gen.run_cells` (normalised
  accuracy at 2L, with a 95% Wilson interval over the evaluation problems);
* **W, retrieval** -- :func:`seqgap.studies.retrieval_gap.run_cells` on a few IsTree and MQAR
  cells (accuracy with its interval, chance and the task's shortcut baseline per cell).

Batteries: ``quick`` (a reduced version of the studies' quick presets: minutes to tens of
minutes on 2 cores) and ``tiny`` (a few steps at tiny sizes, well under a minute: for tests and
for trying the pipeline).  Baselines: E's Transformer (GPT-2 style) and LSTM, W's LLaMA,
LSTM and Mamba, at their battery sizes.  Every run goes through the run store, so the
baselines train once and a second card trains only its own model's runs.

The rendering (HTML with embedded figures, Markdown, JSON) is :mod:`seqgap.report.card`.
"""
from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from seqgap.config import TrainConfig
from seqgap.errors import SeqgapError

CARD_FORMAT = 1  # the JSON layout of a card (``seqgap_card`` key)


@dataclass(frozen=True)
class Battery:
    name: str
    description: str
    # E, sample complexity: parity (modadd m=2) cells
    nstar_lengths: tuple[int, ...]
    nstar_formats: tuple[str, ...]
    nstar_settings: Any  # SearchSettings
    # E, length generalisation
    lg_length: int
    lg_formats: tuple[str, ...]
    lg_settings: Any  # SearchSettings
    lg_n_eval: int
    # W: retrieval_gap cells as (task, n, format) or (task, n, format, eval_ns): the latter a mixed
    # capacity cell (pair counts min(eval_ns)..n in one run, scored at each n); the preset for budgets
    w_cells: tuple[tuple, ...]
    w_preset: Any  # retrieval_gap.Preset
    # baselines: model -> size, per study
    e_baselines: dict[str, str] = field(default_factory=dict)
    w_baselines: dict[str, str] = field(default_factory=dict)
    # W baselines' model options on the capacity cells only: the variants that learn the task in the
    # preset (e.g. attention with a short convolution), so the row compares against a working baseline
    w_capacity_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_size: str = "tiny"  # the user's model's default named size


def _batteries() -> dict[str, Battery]:
    from seqgap.studies import retrieval_gap as rg
    from seqgap.studies import sample_complexity as sc

    q = sc.QUICK_SETTINGS
    quick = Battery(
        name="quick",
        description=("a reduced version of the studies' quick presets: E's N* search (quick settings: N_max 4,096, "
                     "lr {3e-3, 1e-2} x seed 0, 2,000 steps, criterion val loss < 1e-2) on parity at L = 5 and 10 "
                     "in CoT and ACoT; length generalisation on parity trained at L = 8 (uniform 2..8), tested "
                     "to 16; W's IsTree n = 8 (vanilla, CoT) and zoology's MQAR (pair counts 2..16 mixed in one "
                     "run, scored at 2 / 4 / 8 / 16) at the quick budgets, its Transformer baseline with a "
                     "kernel-3 short convolution and its Mamba baseline 128 wide x 1 layer, d_state 4 (W quick's "
                     "capacity cells)"),
        nstar_lengths=(5, 10), nstar_formats=("acot", "cot"), nstar_settings=q,
        lg_length=8, lg_formats=("acot", "cot"), lg_settings=dataclasses.replace(q, n_max=2048), lg_n_eval=500,
        w_cells=(("istree", 8, "vanilla"), ("istree", 8, "cot"), ("mqar-zoology", 16, "vanilla", (2, 4, 8, 16))),
        w_preset=rg.QUICK,
        e_baselines={m: sc.QUICK_MODELS[m] for m in ("transformer", "lstm")},
        w_baselines={"llama": "tiny", "lstm": "small", "mamba": "small"},
        w_capacity_options={"llama": {"short_conv": 3}, "mamba": {"d_model": 128, "n_layers": 1, "d_state": 4}},
        user_size="tiny",
    )
    tiny_train = TrainConfig(steps=120, eval_every=30, batch_size=32, success_loss=5e-2, schedule="constant",
                             patience_evals=0)
    tiny_search = sc.SearchSettings(n_max=64, factor=4, max_steps=2, bisect="geometric", lrs=(1e-2,), seeds=(0,),
                                    train=tiny_train)
    tiny_w = dataclasses.replace(rg.QUICK, name="card-tiny", steps={"vanilla": 100, "cot": 100, "rag": 60, "ar": 100,
                                                                    "mqar": 100, "mqar-zoology": 100},
                                 batch_size={"*": 32}, eval_every={"*": 50}, n_val=100, gen_eval=40,
                                 description="card battery tiny: 100 steps, batch 32, 100 validation samples")
    tiny = Battery(
        name="tiny",
        description=("a smoke-test battery (well under a minute on 2 cores; its numbers mean little): N* on parity "
                     "ACoT at L = 6 (N_max 64, 2 search steps, 120 steps); length generalisation trained at L = 4, "
                     "tested to 8 (120 steps); IsTree n = 6 (vanilla) and zoology's MQAR, 2..4 pairs mixed (100 steps)"),
        nstar_lengths=(6,), nstar_formats=("acot",), nstar_settings=tiny_search,
        lg_length=4, lg_formats=("acot",), lg_settings=tiny_search, lg_n_eval=100,
        w_cells=(("istree", 6, "vanilla"), ("mqar-zoology", 4, "vanilla", (2, 4))),
        w_preset=tiny_w,
        e_baselines={"transformer": "tiny", "lstm": "tiny"},
        w_baselines={"llama": "tiny", "lstm": "tiny", "mamba": "tiny"},
        w_capacity_options={"llama": {"short_conv": 3}},
        user_size="tiny",
    )
    return {"quick": quick, "tiny": tiny}


BATTERY_NAMES = ("quick", "tiny")


def battery(name: str) -> Battery:
    b = _batteries()
    if name not in b:
        raise SeqgapError(f"unknown battery {name!r}; choose from {', '.join(BATTERY_NAMES)}")
    return b[name]


# ---- the user's model: check, size, parameter matching ---------------------------------------

@dataclass
class Subject:
    """A model on the card: its name, named size (None: options only) and options."""

    model: str
    size: str | None
    options: dict[str, Any]
    role: str  # "model" | "baseline"

    @property
    def key(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in sorted(self.options.items()))
        return f"{self.model}:{self.size or 'custom'}" + (f"({opts})" if opts else "")


def _vocab_and_len(b: Battery) -> tuple[int, int]:
    """The largest vocabulary and sequence length among the battery's tasks (for check-model and sizing)."""
    from seqgap.tasks.catalog import make_task
    from seqgap.studies import retrieval_gap as rg

    vocab, length = 0, 0
    for fmt in b.nstar_formats + b.lg_formats:
        t = make_task("modadd", m=2, format=fmt)
        vocab = max(vocab, len(t.vocab))
        length = max(length, t.max_tokens(2 * max(b.nstar_lengths + (b.lg_length,))))
    cells = [rg.Cell(task, n, "lstm", "tiny", fmt, eval_ns=ns) for task, n, fmt, ns in map(_w_cell, b.w_cells)]
    alphabet = rg.capacity_alphabet(cells)
    for c in cells:
        t = make_task(c.task, **rg.task_params(c, b.w_preset, alphabet))
        vocab = max(vocab, len(t.vocab))
        length = max(length, t.max_tokens(c.n))
    return vocab, length


def _w_cell(entry: tuple) -> tuple[str, int, str, tuple[int, ...]]:
    """A battery's W cell as (task, n, format, eval_ns); eval_ns () for a plain cell."""
    task, n, fmt, *rest = entry
    return task, n, fmt, tuple(rest[0]) if rest else ()


def _w_subject(s: Subject, task: str, b: Battery) -> Subject:
    """The subject as it trains on a W cell: a baseline gets its capacity options on capacity tasks."""
    extra = b.w_capacity_options.get(s.model, {}) if s.role == "baseline" and task != "istree" else {}
    return dataclasses.replace(s, options={**s.options, **extra}) if extra else s


def check_subject(s: Subject, b: Battery) -> None:
    """``seqgap check-model`` for the card's model (generation required: the battery generates)."""
    from seqgap.models.check import require_model_ok

    vocab, length = _vocab_and_len(b)
    require_model_ok(s.model, vocab, s.size, s.options, needs_generation=True, max_len=min(length, 64))


def count_params(model: str, size: str | None, options: dict[str, Any], vocab: int, max_len: int) -> int:
    from seqgap.models.registry import build_model

    return int(build_model(model, vocab_size=vocab, max_len=max_len, size=size, **options).num_params())


WIDTH_FIELDS = ("d_model", "hidden", "hidden_size", "width", "d_hidden", "dim")


def match_params(s: Subject, targets: Sequence[int], vocab: int, max_len: int) -> tuple[Subject, dict[str, Any]]:
    """Resize ``s`` (its ``d_model`` / ``hidden`` / ... field) so its parameter count is within ~10% of
    the mean of ``targets`` (the baselines' counts); the closest width is kept, with a note when
    10% cannot be reached."""
    from seqgap.models.registry import get_spec, make_config

    target = sum(targets) / len(targets)
    spec = get_spec(s.model)
    names = {f.name for f in dataclasses.fields(spec.config)}
    config = make_config(s.model, s.size, **s.options)
    fields = [w for w in WIDTH_FIELDS if w in names and isinstance(getattr(config, w), int)]
    if not fields:
        raise SeqgapError(f"--match-params: model {s.model} has none of the width fields {', '.join(WIDTH_FIELDS)} "
                          f"in its config; give --size or --model-opt instead")

    def growth(w: str) -> float:  # the width that drives the parameter count (Dense-SSM: hidden, not d_model)
        v = int(getattr(config, w))
        try:
            a = count_params(s.model, s.size, s.options, vocab, max_len)
            b = count_params(s.model, s.size, {**s.options, w: 2 * v}, vocab, max_len)
        except Exception:
            return 0.0
        return b / max(a, 1)

    width = max(fields, key=growth) if len(fields) > 1 else fields[0]
    start = int(getattr(config, width))
    cache: dict[int, int | None] = {}

    def params(w: int) -> int | None:
        if w not in cache:
            try:
                cache[w] = count_params(s.model, s.size, {**s.options, width: w}, vocab, max_len)
            except Exception:  # e.g. a width the heads do not divide
                cache[w] = None
        return cache[w]

    lo, hi = 1, max(2, start)
    while (params(hi) or 0) < target and hi < 1 << 16:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # parameters grow with the width
        mid = (lo + hi) // 2
        p = params(mid)
        if p is not None and p < target:
            lo = mid
        else:
            hi = mid
    cands = [w for w in range(max(1, lo - 8), hi + 9) if params(w) is not None]
    if not cands:
        raise SeqgapError(f"--match-params: no width of {s.model}.{width} near {hi} builds")
    best = min(cands, key=lambda w: abs(params(w) - target))
    got = params(best)
    info = {"field": width, "from": start, "to": best, "target_params": round(target), "params": got,
            "relative_error": (got - target) / target, "within_10pct": abs(got - target) <= 0.1 * target}
    if not info["within_10pct"]:
        print(f"card: --match-params: closest {s.model} has {got:,} params for a target of {target:,.0f} "
              f"({info['relative_error']:+.0%})", file=sys.stderr)
    return Subject(s.model, s.size, {**s.options, width: best}, s.role), info


# ---- running the battery ------------------------------------------------------------------------

def _e_cells(subjects: Sequence[Subject], lengths, formats, length_dist: str):
    from seqgap.studies.sample_complexity import make_cells

    cells = []
    for s in subjects:
        cells += make_cells("modadd", [2], list(lengths), list(formats), [s.model], {s.model: s.size},
                            length_dist=length_dist, model_options=s.options)
    return cells


def _subject_of(subjects: Sequence[Subject], model: str, size: str | None, options: dict[str, Any]) -> Subject:
    for s in subjects:
        if s.model == model and s.size == size and dict(s.options) == dict(options):
            return s
    raise KeyError(model)


def _state_of(model: str, size: str | None, options: dict[str, Any], vocab: int, max_len: int) -> dict[str, Any]:
    from seqgap.models.registry import build_model

    m = build_model(model, vocab_size=vocab, max_len=max_len, size=size, **options)
    st = m.state_size()
    return {"n_params": int(m.num_params()), "state_floats": int(st.floats), "state_per_token": bool(st.per_token),
            "state_bits": int(st.bits)}


def run_battery(user: Subject, b: Battery, store_path: str, workers: int | None, log=print,
                **engine: Any) -> dict[str, Any]:
    """Run the battery for ``user`` and the baselines; the card's data (see :mod:`seqgap.report.card`)."""
    from seqgap.report.retrieval import wilson_interval
    from seqgap.store import RunStore
    from seqgap.studies import length_gen
    from seqgap.studies import retrieval_gap as rg
    from seqgap.studies import sample_complexity as sc
    from seqgap.tasks.catalog import make_task

    t_all = time.perf_counter()
    store = RunStore(store_path)
    before = {r["id"] for r in store.all()}
    store.close()
    e_subjects = [user] + [Subject(m, z, {}, "baseline") for m, z in b.e_baselines.items() if m != user.model]
    w_subjects = [user] + [Subject(m, z, {}, "baseline") for m, z in b.w_baselines.items() if m != user.model]
    caps: list[dict[str, Any]] = []
    timings: dict[str, float] = {}

    # E: sample complexity
    t0 = time.perf_counter()
    cells = _e_cells(e_subjects, b.nstar_lengths, b.nstar_formats, "fixed")
    sc.validate_cells(cells)
    log(f"card [1/3] E sample complexity: {len(cells)} cells")
    res = sc.search_cells(cells, b.nstar_settings, store_path, workers, log=log, **engine)
    rows = []
    for fmt in b.nstar_formats:
        for L in b.nstar_lengths:
            vocab = len(make_task("modadd", m=2, format=fmt).vocab)
            max_len = make_task("modadd", m=2, format=fmt).max_tokens(L)
            entries = []
            for c, r in zip(cells, res):
                if c.format != fmt or c.max_length != L:
                    continue
                s = _subject_of(e_subjects, c.model, c.model_size, c.model_options)
                e = {"model": s.model, "size": s.size, "options": dict(s.options), "role": s.role, "key": s.key,
                     **_state_of(s.model, s.size, s.options, vocab, max_len),
                     "config": {"cell": dataclasses.asdict(c), "settings": b.nstar_settings.to_dict(),
                                "cell_id": sc.cell_id(c, b.nstar_settings)},
                     "seeds": list(b.nstar_settings.seeds), "data_seed": b.nstar_settings.data_seed}
                if r is None:
                    e.update(ok=False, value=None, interval=None, label="failed")
                else:
                    lo, hi = r.interval()
                    e.update(ok=True, value=r.search.n_star, interval=[lo, hi], label=r.label(), n_cap=r.n_cap,
                             solved=r.search.n_star is not None, runs=r.runs, trained=r.trained)
                entries.append(e)
            rows.append({"setting": f"parity (m=2) {fmt.upper()} L={L}", "task": "modadd", "format": fmt, "L": L,
                         "entries": entries,
                         "shortcut": {"name": "none (a fixed training set; N* is the size of the smallest one "
                                              "that reaches the criterion)", "accuracy": None}})
    caps.append({"id": "nstar", "study": "E", "title": "State tracking: sample complexity N*",
                 "metric": "N* (training samples; lower is better)", "better": "lower", "rows": rows,
                 "rule": ("solved when the search reaches val loss < "
                          f"{b.nstar_settings.train.success_loss:g} within its budget at some N <= N_max; "
                          "against a baseline: fewer / more samples when the N* intervals (each search's bracket "
                          "(last failing N, N*], unsolved = (cap, inf)) do not overlap, otherwise indistinguishable")})
    timings["nstar"] = time.perf_counter() - t0

    # E: length generalisation
    t0 = time.perf_counter()
    cells = _e_cells(e_subjects, (b.lg_length,), b.lg_formats, "uniform")
    sc.validate_cells(cells)
    log(f"card [2/3] E length generalisation: {len(cells)} cells")
    lg = length_gen.run_cells(cells, b.lg_settings, store_path, workers, b.lg_n_eval, log=log, **engine)
    rows = []
    L2 = 2 * b.lg_length
    for fmt in b.lg_formats:
        task = make_task("modadd", m=2, format=fmt)
        chance = float(task.chance_accuracy) if hasattr(task, "chance_accuracy") else 0.5
        entries = []
        for c in cells:
            if c.format != fmt:
                continue
            s = _subject_of(e_subjects, c.model, c.model_size, c.model_options)
            r = next((x for x in lg if x.cell == c), None)
            e = {"model": s.model, "size": s.size, "options": dict(s.options), "role": s.role, "key": s.key,
                 **_state_of(s.model, s.size, s.options, len(task.vocab), task.max_tokens(L2)),
                 "config": {"cell": dataclasses.asdict(c), "settings": b.lg_settings.to_dict(),
                            "eval_lengths": list(length_gen.eval_lengths_for(b.lg_length)), "n_eval": b.lg_n_eval},
                 "seeds": list(b.lg_settings.seeds), "data_seed": b.lg_settings.data_seed}
            if r is None:
                e.update(ok=False, value=None, interval=None, label="failed")
            else:
                raw = r.raw.get(L2, r.curve[L2])
                ci = wilson_interval(raw, b.lg_n_eval)
                norm = (lambda a: (a - chance) / (1 - chance))
                e.update(ok=True, value=r.at_2L, interval=[norm(ci[0]), norm(ci[1])], raw_acc=raw,
                         label=f"{r.at_2L:.2f}", curve={str(k): v for k, v in sorted(r.curve.items())},
                         at_L=r.curve.get(b.lg_length), run_id=r.run_id, n_train=r.n_train,
                         learned_positions=r.learned_positions)
                e["config"]["run_id"] = r.run_id
            entries.append(e)
        rows.append({"setting": f"parity {fmt.upper()} trained on L=2..{b.lg_length}, tested at {L2}", "task": "modadd",
                     "format": fmt, "L": b.lg_length, "entries": entries,
                     "shortcut": {"name": "chance (normalised to 0)", "accuracy": 0.0, "chance": chance}})
    caps.append({"id": "length_gen", "study": "E", "title": "State tracking: length generalisation",
                 "metric": "accuracy at 2L, normalised (0 = chance, 1 = perfect)", "better": "higher", "rows": rows,
                 "rule": ("generalises when the 95% Wilson interval of the normalised accuracy at 2L lies at or above "
                          "0.8, does not when it lies below 0.8, inconclusive otherwise; against a baseline: better / "
                          "worse when the intervals do not overlap")})
    timings["length_gen"] = time.perf_counter() - t0

    # W: retrieval
    t0 = time.perf_counter()
    wcells, subj = [], []
    for task, n, fmt, ns in map(_w_cell, b.w_cells):
        for s in w_subjects:
            wcells.append(rg.Cell(task, n, s.model, s.size, fmt, eval_ns=ns))
            subj.append(_w_subject(s, task, b))
    alphabet = rg.capacity_alphabet(wcells)
    configs = []
    for c, s in zip(wcells, subj):
        cfg = rg.run_config(c, b.w_preset, alphabet)
        if s.options:
            cfg = dataclasses.replace(cfg, model_options={**cfg.model_options, **s.options})
        configs.append(cfg)
    from seqgap.training.trainer import build_task

    rg.check_configs(configs)
    log(f"card [3/3] W retrieval: {len(wcells)} cells")
    outs = rg.run_cells(wcells, configs, store_path, workers, log=log, **engine)
    recs = []  # (cell at one scored n, subject, config, record): a mixed cell gives one per n
    for c, s, cfg, o in zip(wcells, subj, configs, outs):
        try:
            for r in rg.records_for(c, cfg, o):
                recs.append((dataclasses.replace(c, n=r["n"], eval_ns=()), s, cfg, r))
        except SeqgapError as e:  # e.g. the cell's data cannot be built: shown as a failed entry
            recs.extend((dataclasses.replace(c, n=k, eval_ns=()), s, cfg, {"ok": False, "error": str(e)})
                        for k in (c.eval_ns or (c.n,)))
    rows = []
    settings = [(task, n, fmt, ns) for task, n_cell, fmt, ns in map(_w_cell, b.w_cells) for n in ns or (n_cell,)]
    for task, n, fmt, ns in settings:
        entries, short = [], None
        for c, s, cfg, rec in recs:
            if (c.task, c.n, c.format) != (task, n, fmt):
                continue
            short = short or {"name": (rec.get("baseline") or {}).get("name", "none"),
                              "accuracy": (rec.get("baseline") or {}).get("accuracy"), "chance": rec.get("chance")}
            e = {"model": s.model, "size": s.size, "options": dict(s.options), "role": s.role, "key": s.key,
                 "config": cfg.to_dict(), "run_id": cfg.hash(), "seeds": [cfg.train.seed], "data_seed": cfg.data_seed,
                 "baseline": rec.get("baseline"), "chance": rec.get("chance")}
            if not rec["ok"] or rec.get("acc") is None:
                e.update(ok=False, value=None, interval=None, label="failed" if not rec["ok"] else "not measured",
                         error=rec.get("error"))
            else:
                ci = wilson_interval(rec["acc"], rec.get("acc_n"))
                e.update(ok=True, value=rec["acc"], interval=list(ci) if ci else None, label=f"{rec['acc']:.3f}",
                         acc_scores=rec.get("acc_scores"), acc_n=rec.get("acc_n"), seconds=rec.get("seconds"))
            for k in ("n_params", "state_floats", "state_per_token", "state_bits"):
                if k in rec:
                    e[k] = rec[k]
            if "n_params" not in e:
                try:
                    tk = build_task(cfg)
                    e.update(_state_of(s.model, s.size, s.options, len(tk.vocab), tk.max_tokens(n)))
                except SeqgapError:
                    pass
            entries.append(e)
        what = f"IsTree n={n} {fmt}" if task == "istree" else f"{task.upper()} {n} pairs" + (
            f" (trained on {min(ns)}..{max(ns)} mixed)" if ns else "")
        rows.append({"setting": what, "task": task, "n": n, "format": fmt, "entries": entries, "shortcut": short})
    caps.append({"id": "retrieval", "study": "W", "title": "In-context retrieval (IsTree, MQAR)",
                 "metric": "accuracy (IsTree: answer by free generation; MQAR: per query, teacher-forced)",
                 "better": "higher", "rows": rows,
                 "rule": ("beats the shortcut baseline when the lower end of the 95% Wilson interval is above "
                          "max(shortcut baseline, chance), otherwise at baseline; against a baseline model: better / "
                          "worse when the intervals do not overlap")})
    timings["retrieval"] = time.perf_counter() - t0

    store = RunStore(store_path)
    new = [r for r in store.all(kind="train") if r["id"] not in before]
    store.close()
    trained: dict[str, int] = {}
    for r in new:
        key = r["config"].get("model", "?")
        trained[key] = trained.get(key, 0) + 1
    return {"capabilities": caps, "timings": timings, "wall_seconds": time.perf_counter() - t_all,
            "trained_runs": trained, "store": store_path}


# ---- the command --------------------------------------------------------------------------------

def make_card(model: str, size: str | None = None, options: dict[str, Any] | None = None,
              battery_name: str = "quick", match: bool = False, store_path: str | None = None,
              out: str | Path | None = None, workers: int | None = None, plugins: Sequence[str] = (),
              log=None, **engine: Any) -> dict[str, Any]:
    """Check, (resize,) run the battery, write ``card.html`` / ``card.md`` / ``card.json``; the card dict."""
    import seqgap
    from seqgap.models.registry import get_spec, load_plugin
    from seqgap.options import typed_model_options
    from seqgap.report.card import write_card
    from seqgap.store import default_store_path

    from seqgap.sweep.driver import log_line

    log = log or log_line
    for p in plugins:
        load_plugin(p)
    get_spec(model)
    b = battery(battery_name)
    if size and match:
        raise SeqgapError("card: give --size or --match-params, not both")
    opts = typed_model_options(model, dict(options or {}))
    user = Subject(model, size if size else (b.user_size if (b.user_size in get_spec(model).sizes) else None),
                   opts, "model")
    vocab, length = _vocab_and_len(b)
    matched = None
    if match:
        targets = [count_params(m, z, {}, vocab, length) for m, z in {**b.e_baselines, **b.w_baselines}.items()]
        user, matched = match_params(user, targets, vocab, length)
        log(f"card: --match-params: {model}.{matched['field']} {matched['from']} -> {matched['to']} "
            f"({matched['params']:,} params, target {matched['target_params']:,})")
    check_subject(user, b)  # a failed check is one SeqgapError line, before anything trains
    if workers is None and b.name == "tiny":  # seconds of training: worker start-up would dominate
        workers = 1
    from seqgap.models import registry

    if plugins and (workers or 2) > 1 and engine.get("backend", "local") == "local" \
            and not hasattr(registry, "LOADED_PLUGINS"):
        # an engine whose spawned workers do not reload --plugin files would not know the model
        log("card: a --plugin model trains in this process (--workers 1): worker processes do not load plugins")
        workers = 1
    store_path = store_path or default_store_path()
    out = Path(out or f"seqgap_out/card_{model}")
    t0 = time.perf_counter()
    data = run_battery(user, b, store_path, workers, log=log, **engine)
    card = {
        "seqgap_card": CARD_FORMAT, "model": model, "size": user.size, "options": user.options, "key": user.key,
        "battery": b.name, "battery_description": b.description, "seqgap_version": seqgap.__version__,
        "date": time.strftime("%Y-%m-%d %H:%M"), "wall_seconds": time.perf_counter() - t0,
        "match_params": matched, "plugins": list(plugins),
        "baselines": {"E": dict(b.e_baselines), "W": dict(b.w_baselines)},
        **{k: v for k, v in data.items() if k != "wall_seconds"},
    }
    card["summary"] = _summary(card)
    write_card(card, out)
    return card


def _summary(card: dict[str, Any]) -> dict[str, Any]:
    """Headline per capability row for the index page: the model's label and verdict."""
    from seqgap.report.card import verdict_of

    out = {}
    for cap in card["capabilities"]:
        for row in cap["rows"]:
            mine = next((e for e in row["entries"] if e["role"] == "model"), None)
            if mine is None:
                continue
            v, _ = verdict_of(cap, row, mine)
            out[f"{cap['id']}|{row['setting']}"] = {"capability": cap["title"], "setting": row["setting"],
                                                   "label": mine.get("label"), "verdict": v,
                                                   "state_bits": mine.get("state_bits"),
                                                   "state_per_token": mine.get("state_per_token"),
                                                   "n_params": mine.get("n_params")}
    return out


def load_cards(folder: str | Path) -> list[dict[str, Any]]:
    """Every card JSON under ``folder`` (recursively), oldest model name first."""
    cards = []
    for p in sorted(Path(folder).rglob("*.json")):
        try:
            d = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("seqgap_card"):
            d["_path"] = str(p)
            cards.append(d)
    if not cards:
        raise SeqgapError(f"card --index: no card JSON files under {folder}")
    return cards


__all__ = ["BATTERY_NAMES", "Battery", "battery", "load_cards", "make_card", "match_params", "run_battery"]
