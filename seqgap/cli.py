"""Command-line interface: ``seqgap train | tasks | models | runs | study | demo``.

Every user error (unknown name, impossible size, malformed config) is printed as
one line ``seqgap: error: ...`` with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from seqgap.errors import SeqgapError


def parse_value(text: str) -> Any:
    """'3' -> 3, '1e-3' -> 0.001, 'true' -> True, 'a,b' stays a string."""
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_kv(items: Sequence[str] | None, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise SeqgapError(f"{what} must look like key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v.strip())
    return out


def int_list(text: str) -> list[int]:
    try:
        return [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SeqgapError(f"expected comma-separated integers, got {text!r}") from None


def str_list(text: str) -> list[str]:
    return [x.strip() for x in str(text).split(",") if x.strip()]


def float_list(text: str) -> list[float]:
    try:
        return [float(x) for x in str(text).split(",") if x.strip()]
    except ValueError:
        raise SeqgapError(f"expected comma-separated numbers, got {text!r}") from None


# ---- shared option groups -------------------------------------------------------------

def add_task_args(p: argparse.ArgumentParser, multi: bool = False) -> None:
    g = p.add_argument_group("task")
    g.add_argument("--task", default="modadd", help="task name (see `seqgap tasks`); default modadd")
    g.add_argument("--m", type=str if multi else int, help="modulus for modadd (parity: m=2)")
    g.add_argument("--k", type=int, help="permutation degree for permutation tasks (3..6)")
    g.add_argument("--group", help="permutation group: S (symmetric) or A (alternating)")
    g.add_argument("--format", help="supervision format (state tracking: outcome, cot, acot; istree: vanilla, cot, rag)")
    g.add_argument("--task-opt", action="append", metavar="KEY=VALUE", help="any other task option (repeatable)")
    g.add_argument("--length", "-L", type=str if multi else int, default="20" if multi else 20,
                   help="maximum length L (problems have n in 2..L); default 20")
    g.add_argument("--length-dist", default="fixed", help="fixed | uniform | short-to-long (default fixed)")


def task_params_from(args: argparse.Namespace, m: Any = None, fmt: Any = None) -> dict[str, Any]:
    params = {"m": m if m is not None else getattr(args, "m", None), "k": args.k, "group": args.group,
              "format": fmt if fmt is not None else args.format}
    params = {k: v for k, v in params.items() if v is not None}
    params.update(parse_kv(args.task_opt, "--task-opt"))
    return params


def add_model_args(p: argparse.ArgumentParser, multi: bool = False) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="lstm", help="model name (see `seqgap models`); default lstm"
                   + ("; comma-separated for several" if multi else ""))
    g.add_argument("--size", help="named size (see `seqgap models`)")
    g.add_argument("--d-model", type=int, help="model width")
    g.add_argument("--n-layers", type=int, help="number of layers")
    g.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="any other model option (repeatable)")
    g.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE",
                   help="import a module or .py file that registers extra models (repeatable)")


def model_options_from(args: argparse.Namespace) -> dict[str, Any]:
    opts = {"d_model": args.d_model, "n_layers": args.n_layers}
    opts = {k: v for k, v in opts.items() if v is not None}
    opts.update(parse_kv(args.model_opt, "--model-opt"))
    return opts


def load_plugins(args: argparse.Namespace) -> None:
    from seqgap.models.registry import load_plugin

    for target in getattr(args, "plugin", None) or []:
        load_plugin(target)


def add_train_args(p: argparse.ArgumentParser, multi: bool = False) -> None:
    g = p.add_argument_group("training")
    g.add_argument("--n-train", type=int, default=2000, help="N unique training samples (0 = fresh samples every step)")
    g.add_argument("--n-val", type=int, help="validation samples (default min(2000, 20%% of distinct samples))")
    g.add_argument("--data-seed", type=int, default=0, help="seed of the validation set and training order")
    g.add_argument("--lr", type=str if multi else float, default="1e-3" if multi else 1e-3, help="learning rate")
    g.add_argument("--optimizer", default="adamw", help="adam | adamw")
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--schedule", default="constant", help="constant | cosine (with --warmup)")
    g.add_argument("--warmup", type=int, default=0, help="linear warm-up steps")
    g.add_argument("--batch-size", type=int, default=64)
    g.add_argument("--steps", type=int, default=5000, help="step budget")
    g.add_argument("--eval-every", type=int, default=100)
    g.add_argument("--success-loss", type=float, default=1e-4, help="success = validation loss below this")
    g.add_argument("--no-early-stop", action="store_true", help="train the whole budget even after success")
    g.add_argument("--seed", type=str if multi else int, default="0" if multi else 0, help="training seed")
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    g.add_argument("--threads", type=int, help="torch CPU threads")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the training step (long runs only: compiling takes tens of seconds)")
    g.add_argument("--store", help="run store path (default $SEQGAP_STORE or seqgap_runs/runs.sqlite)")
    g.add_argument("--force", action="store_true", help="retrain even if the store has this run")
    g.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_config_from(args: argparse.Namespace):
    from seqgap.config import RunConfig, TrainConfig

    if args.length < 2:
        raise SeqgapError(f"length L must be >= 2, got {args.length}")
    if args.m is not None and args.m < 2:
        raise SeqgapError(f"m must be >= 2, got {args.m}")
    if args.k is not None and not 3 <= args.k <= 6:
        raise SeqgapError(f"k must be in 3..6, got {args.k}")
    tc = TrainConfig(lr=args.lr, optimizer=args.optimizer, weight_decay=args.weight_decay, schedule=args.schedule,
                     warmup_steps=args.warmup, batch_size=args.batch_size, steps=args.steps,
                     eval_every=args.eval_every, success_loss=args.success_loss, early_stop=not args.no_early_stop,
                     seed=args.seed, device=args.device, threads=args.threads,
                     compile=args.compile)
    return RunConfig(task=args.task, task_params=task_params_from(args), max_length=args.length,
                     length_dist=args.length_dist, n_train=args.n_train, n_val=args.n_val, data_seed=args.data_seed,
                     model=args.model, model_size=args.size, model_options=model_options_from(args), train=tc,
                     eval_lengths=tuple(int_list(args.eval_lengths)) if getattr(args, "eval_lengths", None) else ())


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
    from seqgap.training.trainer import build_model_for, build_task, check_data_size, run, validate

    load_plugins(args)
    config = run_config_from(args)
    store = RunStore(args.store)
    # fail fast on bad task/model options, before any data is generated
    validate(config)
    task = build_task(config)
    check_data_size(task, config)
    model = build_model_for(task, config)
    print(f"seqgap train: {config.model} ({model.num_params():,} params, state {model.state_size()}) on "
          f"{config.task} {json.dumps(config.task_params)} L={config.max_length} {config.length_dist} "
          f"N={config.n_train}  [run {config.hash()}]", file=sys.stderr)
    del model
    bar = ProgressBar(config.train.steps, "train", enabled=not args.no_progress)
    try:
        result = run(config, store, progress=bar, force=args.force)
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


def cmd_tasks(args: argparse.Namespace) -> int:
    from seqgap.tasks.base import TASK_HELP, TASKS
    import seqgap.tasks  # noqa: F401

    for name in sorted(TASKS):
        cls = TASKS[name]
        fmts = getattr(cls, "formats", ())
        print(f"{name:14s} {TASK_HELP.get(name, '')}" + (f"  [formats: {', '.join(fmts)}]" if fmts else ""))
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    import dataclasses

    from seqgap.models.registry import MODELS, _populate

    load_plugins(args)
    _populate()
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
    from seqgap.store import RunStore
    from seqgap.training.trainer import num

    store = RunStore(args.store)
    rows = store.all()
    if args.limit:
        rows = rows[-args.limit:]
    for r in rows:
        c, s = r["config"], r["summary"]
        if r["kind"] != "train":
            print(f"{r['id']}  [{r['kind']}]")
            continue
        print(f"{r['id']}  {'ok  ' if s.get('success') else 'fail'}  {c['model']:10s} {c['task']} "
              f"{json.dumps(c['task_params'])} L={c['max_length']} {c['length_dist']} N={c['n_train']} "
              f"lr={c['train']['lr']} seed={c['train']['seed']}  best_val_loss={num(s['best_val_loss']):.3g} "
              f"steps={s['steps']}")
    print(f"{len(store)} runs in {store.path}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from seqgap.studies.demo import run_demo

    return run_demo(out=args.out, store_path=args.store, minutes=args.minutes)


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
                       description="Train one model on one task. A run already in the store is not retrained.")
    add_task_args(p)
    add_model_args(p)
    add_train_args(p)
    p.add_argument("--eval-lengths", help="after training, also evaluate at these lengths (e.g. 40)")
    p.add_argument("--json", action="store_true", help="also print the run summary as JSON")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tasks", help="list tasks")
    p.set_defaults(func=cmd_tasks)

    p = sub.add_parser("models", help="list models and their named sizes")
    p.add_argument("--verbose", "-v", action="store_true", help="show every config option")
    p.add_argument("--plugin", action="append", metavar="MODULE_OR_FILE", help="load extra models first")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("runs", help="list runs in the store")
    p.add_argument("--store")
    p.add_argument("--limit", type=int, default=0)
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("demo", help="the main job: a small end-to-end study with its report")
    p.add_argument("--out", default="seqgap_demo", help="report directory (default seqgap_demo)")
    p.add_argument("--store", help="run store path")
    p.add_argument("--minutes", type=float, default=None, help="rough time budget (informational)")
    p.set_defaults(func=cmd_demo)

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
