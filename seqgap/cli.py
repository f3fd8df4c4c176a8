"""Command-line interface: ``seqgap train | tasks | models | runs | study | demo``.

Every user error (unknown name, impossible size, malformed config) is printed as
one line ``seqgap: error: ...`` with exit code 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Sequence

# OpenMP threads that spin while waiting collapse training throughput when the few cores of a
# laptop are shared (docs/performance.md).  Set where a process starts, before torch loads.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from seqgap.config import RunConfig, TrainConfig  # noqa: E402
from seqgap.errors import SeqgapError  # noqa: E402
from seqgap.models.registry import load_plugin  # noqa: E402
from seqgap.options import (SHARED, add_config_options, apply_overrides, given, guess_value, parse_kv,  # noqa: E402
                            shared_parser, typed_model_options)


# ---- the train command's options: generated from the config dataclasses ----------------

_RUN_FIELDS_SKIP = ("task", "task_params", "model", "model_size", "model_options", "train")


def add_task_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("task")
    g.add_argument("--task", default="modadd", help="task name (see `seqgap tasks`); default modadd")
    g.add_argument("--m", help="modulus for modadd (parity: m=2)")
    g.add_argument("--k", help="permutation degree for permutation tasks (3..6)")
    g.add_argument("--group", help="permutation group: S (symmetric) or A (alternating)")
    g.add_argument("--format", help="supervision format (state tracking: outcome, cot, acot; istree: vanilla, cot, rag)")
    g.add_argument("--task-opt", action="append", metavar="KEY=VALUE", help="any other task option (repeatable)")


def task_params_from(args: argparse.Namespace) -> dict[str, Any]:
    params = {"m": args.m, "k": args.k, "group": args.group, "format": args.format}
    params = {k: guess_value(v) for k, v in params.items() if v is not None}
    params.update({k: guess_value(v) for k, v in parse_kv(args.task_opt, "--task-opt").items()})
    return params


def add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="lstm", help="model name (see `seqgap models`); default lstm")
    g.add_argument("--size", help="named size (see `seqgap models`)")
    g.add_argument("--d-model", help="model width")
    g.add_argument("--n-layers", help="number of layers")
    g.add_argument("--model-opt", action="append", metavar="KEY=VALUE",
                   help="any other model option (repeatable); typed by the model's config")


def model_options_from(args: argparse.Namespace) -> dict[str, Any]:
    """Model options as strings; the model registry types them by the model's config fields."""
    opts = {k: v for k, v in {"d_model": args.d_model, "n_layers": args.n_layers}.items() if v is not None}
    opts.update(parse_kv(args.model_opt, "--model-opt"))
    return opts


def load_plugins(args: argparse.Namespace) -> None:
    for target in getattr(args, "plugin", None) or []:
        load_plugin(target)


def add_run_args(p: argparse.ArgumentParser) -> tuple[list[str], list[str]]:
    """Every RunConfig and TrainConfig field as a flag; returns (run fields, train fields)."""
    run_fields = add_config_options(p.add_argument_group("data and evaluation"), RunConfig, skip=_RUN_FIELDS_SKIP)
    g = p.add_argument_group("training")
    train_fields = add_config_options(g, TrainConfig, skip=SHARED)
    g.add_argument("--no-early-stop", dest="early_stop", action="store_false", default=None,
                   help="train the whole budget even after success (= --early-stop no)")
    return run_fields, train_fields


def run_config_from(args: argparse.Namespace) -> RunConfig:
    """The RunConfig the parsed ``args`` ask for (TrainConfig/RunConfig defaults where not given)."""
    train = TrainConfig(**given(args, args.train_fields), **given(args, SHARED))
    config = RunConfig(task=args.task, task_params=task_params_from(args), model=args.model, model_size=args.size,
                       model_options=model_options_from(args), train=train, **given(args, args.run_fields))
    config = apply_overrides(config, parse_kv(args.overrides, "--set"))
    # model options typed by the model's own config fields (bool from yes/no, ints strictly)
    return dataclasses.replace(config, model_options=typed_model_options(config.model, config.model_options))


class ProgressBar:
    """tqdm bar over training steps, updated at each evaluation."""

    def __init__(self, total: int, desc: str, enabled: bool = True):
        self.bar = None
        self.last = 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="step", file=sys.stderr, leave=False, dynamic_ncols=True)

    def __call__(self, step: int, rec: dict[str, Any]) -> None:
        if self.bar is None:
            return
        self.bar.update(step - self.last)
        self.last = step
        self.bar.set_postfix(val_loss=f"{rec['val_loss']:.2e}", seq_acc=f"{rec['val_seq_acc']:.3f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# ---- commands -------------------------------------------------------------------------

def cmd_train(args: argparse.Namespace) -> int:
    from seqgap.store import RunStore
    from seqgap.training.trainer import prepare, run

    load_plugins(args)
    config = run_config_from(args)
    task, model = prepare(config)  # every check, before the store is touched or data generated
    check_run_model(config, task)  # the model contract (seqgap check-model): one line on a failure
    store = RunStore(args.store, readonly=False)  # a store it cannot write is refused before training
    if config.train.checkpoint_dir is None:  # long runs checkpoint next to the store, and resume from it
        config = config.replace(checkpoint_dir=checkpoint_dir_for(store))
    print(f"seqgap train: {config.model} ({model.num_params():,} params, state {model.state_size()}) on "
          f"{config.task} {json.dumps(config.task_params)} L={config.max_length} {config.length_dist} "
          f"N={config.n_train}  [run {config.hash()}]", file=sys.stderr)
    del model
    bar = ProgressBar(config.train.steps, "train", enabled=not args.no_progress)
    try:
        result = run(config, store, progress=bar, force=args.force, keep_model=args.save_model)
        if args.save_model:  # the final weights next to the store (safetensors)
            from seqgap.weights import keep_weights

            result, weights = keep_weights(result, config, store, progress=bar)
            print(f"seqgap train: weights of run {result.id} in {weights}", file=sys.stderr)
    finally:
        bar.close()
    print(result.line())
    if result.summary.get("eval_lengths"):
        for L, m in result.summary["eval_lengths"].items():
            print(f"  length {L}: answer acc {m['acc']:.3f} (normalized {m['acc_normalized']:.3f}), "
                  f"teacher-forced seq acc {m['val_seq_acc']:.3f}")
    if args.json:
        print(json.dumps({"id": result.id, "summary": result.summary}, indent=2))
    return 0


def checkpoint_dir_for(store) -> str:
    """Checkpoints live next to the store: runs.sqlite -> runs.checkpoints/."""
    from pathlib import Path

    return str(Path(store.path).with_suffix(".checkpoints"))


def cmd_tasks(args: argparse.Namespace) -> int:
    from seqgap.tasks.catalog import TASK_HELP, TASKS

    load_plugins(args)
    for name in sorted(TASKS):
        cls = TASKS[name]
        fmts = getattr(cls, "formats", ())
        print(f"{name:14s} {TASK_HELP.get(name, '')}" + (f"  [formats: {', '.join(fmts)}]" if fmts else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import dataclasses

    from seqgap.models.registry import MODELS

    load_plugins(args)
    for name in sorted(MODELS):
        spec = MODELS[name]
        kind = "recurrent" if spec.recurrent else "attention"
        print(f"{name:12s} ({kind}) {spec.help}")
        if spec.sizes:
            print(f"{'':12s} sizes: {', '.join(spec.sizes)}")
        if args.verbose:
            fields = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(spec.config)
                               if f.default is not dataclasses.MISSING)
            print(f"{'':12s} options: {fields}")
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    """One row per run: the success criterion stated (``loss<1e-4: no``) next to the best accuracy
    (labelled: gen = free generation, TF = teacher-forced), and the model with its named size,
    parameter count and options (two variants of one model are told apart)."""
    from seqgap.store import RunStore
    from seqgap.training.trainer import num

    def best_acc(s: dict[str, Any]) -> str:
        parts = []
        if "gen_acc" in s:
            parts.append(f"answer_acc(gen)={s['gen_acc']:.3f}")
        if "best_val_seq_acc" in s:
            parts.append(f"best_seq_acc(TF)={s['best_val_seq_acc']:.3f}")
        elif "val_seq_acc" in s:
            parts.append(f"seq_acc(TF)={s['val_seq_acc']:.3f}")
        if "val_token_acc" in s:
            parts.append(f"token_acc(TF)={s['val_token_acc']:.3f}")
        return " ".join(parts) or "acc=-"

    def line(r: dict[str, Any]) -> str:
        c, s = r["config"], r["summary"]
        t = c.get("train", {})
        size = c.get("model_size") or "custom"
        opts = ",".join(f"{k}={v}" for k, v in sorted((c.get("model_options") or {}).items())) or "default"
        params = s.get("n_params")
        params = "-" if params is None else f"{params / 1e6:.2f}M" if params >= 1e6 else f"{params / 1e3:.0f}k"
        thr = float(t.get("success_loss", 1e-4))
        thr_s = f"{thr:g}" if thr >= 1e-3 else f"{thr:.0e}".replace("e-0", "e-")
        crit = f"loss<{thr_s}: {'yes' if s.get('success') else 'no'}"
        return (f"{r['id']}  {crit}  {best_acc(s)}  {c['model']}:{size} ({params}, {opts})  {c['task']} "
                f"{json.dumps(c['task_params'])} L={c['max_length']} {c['length_dist']} N={c['n_train']} "
                f"lr={t.get('lr')} seed={t.get('seed')}  best_val_loss={num(s['best_val_loss']):.3g} "
                f"steps={s['steps']}")

    from seqgap.export import filter_runs

    store = RunStore(args.store)
    load_plugins(args)
    rows = filter_runs(store.all(), args.model, args.task, args.kind, args.success)
    if args.limit:
        rows = rows[-args.limit:]
    if args.export:
        return export_runs(store, rows, args.export)
    for r in rows:
        if r["kind"] != "train":
            print(f"{r['id']}  [{r['kind']}]")
            continue
        print(line(r))
    print(f"{len(store)} runs in {store.path} (success = the run's criterion, validation loss below its "
          f"success_loss; accuracies: gen = free generation, TF = teacher-forced)", file=sys.stderr)
    return 0


def export_runs(store: Any, rows: list[dict[str, Any]], path: str) -> int:
    """``seqgap runs --export FILE``: the (filtered) runs as flat records, CSV / JSON / Parquet."""
    from seqgap.export import export, records

    out = export(records(store, rows), path)
    print(f"exported {len(rows)} of {len(store)} runs in {store.path} to {out}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """``seqgap eval RUN_ID --lengths 10,20``: re-evaluate a stored run from its saved weights."""
    from seqgap.options import int_list
    from seqgap.store import RunStore
    from seqgap.weights import eval_stored_run

    load_plugins(args)
    lengths = int_list(args.lengths, "--lengths")
    store = RunStore(args.store)
    rid, metrics, notes = eval_stored_run(store, args.run_id, lengths, args.n_eval, device=args.device, seed=args.seed)
    for note in notes:
        print(f"seqgap eval: note: {note}", file=sys.stderr)
    for L, m in metrics.items():
        gen = f", generated answer acc {m['gen_acc']:.3f}" if "gen_acc" in m else ""
        print(f"run {rid} length {L}: answer acc {m['acc']:.3f} (normalized {m['acc_normalized']:.3f}), "
              f"teacher-forced seq acc {m['val_seq_acc']:.3f}, token acc {m['val_token_acc']:.3f}{gen} "
              f"[{args.n_eval} problems]")
    if args.json:
        print(json.dumps({"id": rid, "eval_lengths": metrics}, indent=2))
    return 0


def load_sweep_file(path: str) -> list[RunConfig]:
    """The configs of a sweep file: a Python file that defines ``configs`` (or ``SWEEP``), a list of
    RunConfig (zoology style); one line for anything else."""
    import runpy

    try:
        namespace = runpy.run_path(path)
    except FileNotFoundError:
        raise SeqgapError(f"sweep file {path} not found") from None
    except Exception as e:  # the user's file: any failure is theirs, say which
        raise SeqgapError(f"sweep file {path}: {type(e).__name__}: {e}") from None
    configs = namespace.get("configs", namespace.get("SWEEP"))
    if not isinstance(configs, (list, tuple)) or not all(isinstance(c, RunConfig) for c in configs):
        raise SeqgapError(f"sweep file {path} must define `configs`, a list of seqgap.config.RunConfig")
    if not configs:
        raise SeqgapError(f"sweep file {path}: `configs` is empty")
    return list(configs)


def cmd_sweep(args: argparse.Namespace) -> int:
    from seqgap.options import engine_options
    from seqgap.sweep.driver import run_programs
    from seqgap.training.trainer import prepare

    load_plugins(args)
    configs = [apply_overrides(c, parse_kv(args.overrides, "--set")) for c in load_sweep_file(args.file)]
    for c in configs:  # every config checked before anything trains
        prepare(c)
    opts = engine_options(args)
    print(f"seqgap sweep: {len(configs)} runs from {args.file} on the {opts['backend']} engine", file=sys.stderr)
    outcome = run_programs([lambda driver: driver.train_each(configs)], args.store, **opts)[0]
    if not outcome.ok:
        raise SeqgapError(outcome.error.splitlines()[0])
    for r in outcome.value:
        print(f"{r.id}  {r.line()}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seqgap.studies.demo import run_demo

    return run_demo(out=args.out or "seqgap_demo", store_path=args.store)


# ---- check-model, runs --stale ----------------------------------------------------------

def needs_generation(config: RunConfig, task: Any) -> bool:
    """Whether a run of ``config`` generates (free generation from prompts: gen_eval, or answers at
    extra lengths, on a generative format such as CoT/RAG)."""
    if not (config.gen_eval or config.eval_lengths):
        return False
    import numpy as np

    example = task.encode(task.sample_problem(np.random.default_rng(0), config.max_length))
    return example.prompt_len is not None


def check_run_model(config: RunConfig, task: Any) -> None:
    """``seqgap check-model`` for the model of one run, before training (one SeqgapError line)."""
    from seqgap.models.check import require_model_ok

    require_model_ok(config.model, len(task.vocab), config.model_size, config.model_options,
                     needs_generation=needs_generation(config, task))


def cmd_check_model(args: argparse.Namespace) -> int:
    """Check a model against the contract (docs/models.md): one line per check, exit 1 on a failure."""
    from seqgap.models.check import check_model, failures
    from seqgap.models.registry import build_model

    load_plugins(args)
    options = typed_model_options(args.model, parse_kv(args.model_opt, "--model-opt"))
    try:
        model = build_model(args.model, vocab_size=args.vocab_size, max_len=args.seq_len, size=args.size, **options)
        print(f"check-model: {args.model}" + (f" size {args.size}" if args.size else "")
              + f" ({model.num_params():,} params), vocab {args.vocab_size}, {args.seq_len} tokens")
        del model
    except SeqgapError:
        raise
    except Exception:  # the check's own build reports it
        print(f"check-model: {args.model}")
    results = check_model(args.model, args.vocab_size, args.size, options, needs_generation=args.generation,
                          seq_len=args.seq_len)
    for r in results:
        print(r.line())
    bad = failures(results)
    print(f"{len(bad)} check(s) failed" if bad else "all checks passed", file=sys.stderr)
    return 1 if bad else 0


def stale_runs(store: Any) -> list[tuple[dict[str, Any], str]]:
    """Stored training runs whose id is no longer their config's id (an outdated model or task
    version, plugin source or RESULTS_VERSION), each with the reason; runs of a model or task that
    is not registered (a plugin not loaded) are reported as such."""
    out = []
    for r in store.all(kind="train"):
        try:
            cfg = RunConfig.from_dict(r["config"])
            current = cfg.hash()
        except SeqgapError as e:
            out.append((r, f"cannot check: {e} (load it with --plugin)"))
            continue
        if current == r["id"]:
            continue
        old = r["config"].get("versions") or {}
        now = cfg.versions()
        changed = [f"{k} {r['config'].get(k)} version {old.get(k, '?')} -> {now[k]}" for k in ("model", "task")
                   if old.get(k) != now[k]]
        out.append((r, "; ".join(changed) if old and changed else f"made by an older seqgap (current id {current})"))
    return out


def cmd_runs_stale(args: argparse.Namespace) -> int:
    from seqgap.store import RunStore

    load_plugins(args)
    store = RunStore(args.store)
    stale = stale_runs(store)
    for r, why in stale:
        c = r["config"]
        print(f"{r['id']}  {c.get('model')} on {c.get('task')} {json.dumps(c.get('task_params', {}))}  {why}")
    print(f"{len(stale)} of {len(store)} runs in {store.path} are stale (retrained when asked for again)",
          file=sys.stderr)
    return 0


def _cmd_runs_or_stale(args: argparse.Namespace) -> int:
    return cmd_runs_stale(args) if args.stale else cmd_runs(args)


# ---- card, report ------------------------------------------------------------------------

def cmd_card(args: argparse.Namespace) -> int:
    """``seqgap card --model NAME``: the battery for a model and the baselines, one self-contained page;
    ``seqgap card --index DIR``: one page comparing every card in a folder."""
    from pathlib import Path

    from seqgap.studies.card import load_cards, make_card

    if args.index:
        from seqgap.report.card import write_index

        cards = load_cards(args.index)
        paths = write_index(cards, args.out or args.index)
        print(f"seqgap card --index: {len(cards)} cards -> {paths['html']}")
        return 0
    if not args.model:
        raise SeqgapError("card: give --model NAME (or --index DIR)")
    from seqgap.options import engine_options

    opts = engine_options(args)
    card = make_card(args.model, size=args.size, options=parse_kv(args.model_opt, "--model-opt"),
                     battery_name=args.battery, match=args.match_params, store_path=args.store,
                     out=args.out, plugins=args.plugin or [], **opts)
    out = Path(args.out or f"seqgap_out/card_{args.model}")
    print(f"seqgap card: {card['key']} ({card['battery']} battery, {card['wall_seconds']:.0f} s, trained "
          f"{sum(card['trained_runs'].values())} runs) -> {out / 'card.html'}, card.md, card.json")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    """``seqgap report PATH``: a study's output folder, or a run store (.sqlite), as one self-contained HTML page."""
    from pathlib import Path

    from seqgap.report.html import report_page, runs_page

    src = Path(args.path)
    if src.is_file():  # a run store
        from seqgap.store import RunStore

        try:
            store = RunStore(str(src))
            rows = store.all(kind="train")
            store.close()
        except SeqgapError:
            raise
        except Exception as e:
            raise SeqgapError(f"report: {src} is neither a study output folder nor a run store ({e})") from None
        text = runs_page(rows, str(src))
        out = Path(args.out or src.with_suffix(".html"))
    elif src.is_dir():
        text = report_page(src)
        out = Path(args.out or src / "report.html")
    else:
        raise SeqgapError(f"report: {src} does not exist")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"seqgap report: {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from seqgap import __version__

    parser = argparse.ArgumentParser(
        prog="seqgap",
        description="Measure where recurrent models and Transformers part ways: in-context retrieval and state tracking.",
        epilog="Examples:\n"
               "  seqgap train --task modadd --m 5 -L 20 --format acot --model lstm --size small --n-train 2000\n"
               "  seqgap study sample-complexity --preset quick\n"
               "  seqgap demo",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"seqgap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train one model on one task (cached in the run store)",
                       parents=[shared_parser(workers=False, out=False)],
                       description="Train one model on one task. A run already in the store is not retrained. "
                                   "Every RunConfig/TrainConfig field is a flag; --set reaches any field by path.")
    add_task_args(p)
    add_model_args(p)
    run_fields, train_fields = add_run_args(p)
    p.add_argument("--force", action="store_true", help="retrain even if the store has this run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="also print the run summary as JSON")
    p.add_argument("--save-model", action="store_true",
                   help="keep the final weights next to the store (<store>.models/<run_id>.safetensors)")
    p.set_defaults(func=cmd_train, run_fields=run_fields, train_fields=train_fields)

    p = sub.add_parser("tasks", help="list tasks")
    p.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="load extra tasks first")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("models", help="list models and their named sizes")
    p.add_argument("--verbose", "-v", action="store_true", help="show every config option")
    p.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="load extra models first")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("runs", help="list runs in the store")
    p.add_argument("--store")
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--stale", action="store_true",
                   help="list only runs made by an outdated model/task version or plugin source")
    p.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="load extra models/tasks first")
    p.add_argument("--model", help="only runs of these models (comma list)")
    p.add_argument("--task", help="only runs of these tasks (comma list)")
    p.add_argument("--kind", help="only records of these kinds (train, nstar, ...)")
    p.add_argument("--success", help="yes: only runs that met their criterion; no: only those that did not")
    p.add_argument("--export", metavar="FILE", help="write the (filtered) runs as flat records to FILE: .csv, .json "
                                                    "or .parquet (pyarrow: pip install 'seqgap[export]')")
    p.set_defaults(func=_cmd_runs_or_stale)

    p = sub.add_parser("eval", help="re-evaluate a stored run at other lengths from its saved weights (no training)",
                       description="Rebuild a stored run's task and model, load its weights (saved by "
                                   "`seqgap train --save-model`) and evaluate at --lengths on fresh problems.")
    p.add_argument("run_id", metavar="RUN_ID", help="the run's id (or a unique prefix), see `seqgap runs`")
    p.add_argument("--lengths", required=True, help="lengths to evaluate at, e.g. 10,20")
    p.add_argument("--store", help="run store path (default $SEQGAP_STORE or seqgap_runs/runs.sqlite)")
    p.add_argument("--n-eval", type=int, default=500, help="problems per length (default 500)")
    p.add_argument("--seed", type=int, help="seed of the evaluation problems (default: the run's data_seed)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    p.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="load extra models/tasks first")
    p.add_argument("--json", action="store_true", help="also print the metrics as JSON")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("check-model", help="check a model against the model contract (docs/models.md)",
                       description="Build the model on random tokens and check: output shape (B, T, V), finite "
                                   "outputs, causality, step == forward, gradients to every parameter, state size. "
                                   "One line per check; exit 1 on a failure.")
    p.add_argument("--model", required=True, help="model name (see `seqgap models`)")
    p.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="load extra models first")
    p.add_argument("--size", help="named size")
    p.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    p.add_argument("--generation", action=argparse.BooleanOptionalAction, default=False,
                   help="require init_state/step (CoT/RAG formats, gen_eval need them; default: a model "
                        "without step passes with a note)")
    p.add_argument("--vocab-size", type=int, default=11, help="vocabulary size to build with (default 11)")
    p.add_argument("--seq-len", type=int, default=12, help="tokens per test sequence (default 12)")
    p.set_defaults(func=cmd_check_model)

    p = sub.add_parser("sweep", help="train a sweep file (a Python list of RunConfig) on the local or Ray engine",
                       parents=[shared_parser(out=False)],
                       description="Train every RunConfig of a sweep file (it defines `configs`), each run once: "
                                   "stored runs are reused, the rest spread over the engine's workers.")
    p.add_argument("file", help="a .py file defining configs = [RunConfig(...), ...]")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("demo", help="the main job: a small end-to-end study with its report")
    p.add_argument("--out", default="seqgap_demo", help="report directory (default seqgap_demo)")
    p.add_argument("--store", help="run store path")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("card", help="a gap card: the battery for a model and the baselines, one HTML page",
                       parents=[shared_parser()],
                       description="Run a battery (E: N*, length generalisation; W: IsTree, MQAR) for a model and "
                                   "the baselines (stored runs reused) and write card.html (self-contained), card.md "
                                   "and card.json; --index DIR compares every card in a folder.")
    p.add_argument("--model", help="the model (see `seqgap models`; a plugin's name with --plugin)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--size", help="named size of the model (default: tiny when it has one)")
    g.add_argument("--match-params", action="store_true",
                   help="resize the model (d_model / hidden) to the baselines' parameter count (within ~10%%)")
    p.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="model option (repeatable)")
    p.add_argument("--battery", choices=["quick", "tiny"], default="quick",
                   help="quick (reduced quick presets) or tiny (well under a minute; numbers mean little)")
    p.add_argument("--index", metavar="DIR", help="write DIR/index.html comparing every card JSON under DIR")
    p.set_defaults(func=cmd_card)

    p = sub.add_parser("report", help="render a finished study's output folder (or a run store) as one HTML page")
    p.add_argument("path", help="a study's output folder (summary.md, results.json, figures) or a runs.sqlite")
    p.add_argument("--out", help="HTML file to write (default: FOLDER/report.html, or STORE.html)")
    p.set_defaults(func=cmd_report)

    from seqgap.studies import add_study_parsers

    add_study_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except SeqgapError as e:
        print(f"seqgap: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("seqgap: interrupted (finished runs are kept in the store)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
