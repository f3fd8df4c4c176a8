"""seqgap's benchmark suite: every speed claim as a ratio against a reference measured in the same run.

    bash benchmarks/run.sh                     # everything (installs mambapy / transformers first)
    bash benchmarks/run.sh --quick             # shorter runs, same comparisons
    bash benchmarks/run.sh --only mamba,llama  # a subset: ensemble, mamba, llama, generate, data

Sections (target in brackets):

* ``ensemble``  15 runs (3 lrs x 5 seeds) of a d64 model on modadd, trained as one
  ensemble vs one after another with ``trainer.train``                       [>= 3x]
* ``mamba``     seqgap Mamba vs ``mambapy`` 1.2.0 (parallel scan), d64 x 16 layers,
  batch 64, sequence 128: training tokens/s, and peak memory (maxrss) of each  [>= 10x]
* ``llama``     seqgap ``llama`` vs HF ``LlamaForCausalLM`` (built locally from a
  ``LlamaConfig``), d64, 8 layers, 4 heads, ff 256: training tokens/s, eager and
  with the trainer's ``--compile`` (``torch.compile``)                         [>= 1.3x]
* ``generate``  greedy decoding of 500 tokens, cached/recurrent vs recomputing the
  whole prefix per token, Transformer and Mamba (``seqgap.training.generate``) [>= 5x]
* ``data``      IsTree CoT / RAG sample generation vs the dense reference in
  ``benchmarks/reference_istree.py`` [>= 10x]; state-tracking batch generation as a
  fraction of a training step [small]; the live retrieval tool's cost per query

Every measurement uses ``--threads`` torch threads (default: all cores; on a machine
shared with other jobs use ``--threads 1``: several OpenMP threads per process
competing for busy cores can slow a small model down by orders of magnitude).  Every training measurement runs in a fresh subprocess (so ``ru_maxrss`` is that
model's peak) and also reports achieved GFLOP/s (matmul FLOPs of one step counted
with ``torch.utils.flop_counter``, divided by the step time) against the machine's
fp32 matmul peak, measured first with a large ``torch.mm``.  Wall-clock ratios are
sensitive to other processes on the machine: the load average is printed and
recorded; ``--write`` puts the table into docs/performance.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECTIONS = ("ensemble", "mamba", "llama", "generate", "data")


# --------------------------------------------------------------------------- helpers


def machine() -> dict:
    import torch

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        cpu = platform.processor() or "unknown"
    return {"date": time.strftime("%Y-%m-%d %H:%M"), "nproc": len(os.sched_getaffinity(0)), "cpu": cpu,
            "torch": torch.__version__, "python": platform.python_version(), "threads": torch.get_num_threads()}


def loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except OSError:
        return float("nan")


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def matmul_peak(n: int = 2048, seconds: float = 2.0) -> float:
    """fp32 GFLOP/s of a large torch.mm (best of repeated timings)."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def step_flops(fn) -> float:
    """Matmul FLOPs of one call of ``fn`` (forward + backward), counted by torch."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def run_worker(kind: str, **kw) -> dict:
    """Run one measurement in a fresh Python process; returns its JSON result."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, "--args", json.dumps(kw)]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(f"worker {kind} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed_steps(step, steps: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return times


# --------------------------------------------------------------------------- workers (fresh processes)


def _train_loop(model, vocab: int, batch: int, seq: int, steps: int, warmup: int, lr: float = 1e-3,
                logits_of=lambda m, x: m(x), compile: bool = False) -> dict:
    """Median AdamW step of ``model`` on random tokens; ``compile``: as ``TrainConfig.compile``
    does (torch.compile of the forward; the warm-up steps absorb the compilation)."""
    import torch
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, vocab, (batch, seq + 1), generator=g)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    forward = model

    def fwd_bwd():
        logits = logits_of(forward, x[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x[:, 1:].reshape(-1))
        loss.backward()
        return loss

    def step():
        opt.zero_grad(set_to_none=True)
        fwd_bwd()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    flops = step_flops(fwd_bwd)  # counted on the eager model
    if compile:
        forward = torch.compile(model)
    times = timed_steps(step, steps, warmup)
    t = statistics.median(times)
    return {"step_s": t, "tokens_per_s": batch * seq / t, "flops_per_step": flops, "gflops": flops / t / 1e9,
            "n_params": sum(p.numel() for p in model.parameters()), "maxrss_mb": maxrss_mb()}


def worker_seqgap_train(name: str, vocab: int, batch: int, seq: int, steps: int, warmup: int, size=None,
                        compile: bool = False, **opts) -> dict:
    import torch

    from seqgap.models import build_model

    torch.manual_seed(0)
    model = build_model(name, vocab_size=vocab, max_len=seq, size=size, **opts)
    return _train_loop(model, vocab, batch, seq, steps, warmup, compile=compile)


def worker_mambapy_train(vocab: int, batch: int, seq: int, steps: int, warmup: int, d_model: int, n_layers: int) -> dict:
    import torch
    from mambapy.mamba import Mamba, MambaConfig, RMSNorm

    class LM(torch.nn.Module):  # mambapy.lm.LM's layout (that module also imports mamba2, which needs CUDA)
        def __init__(self, config: MambaConfig):
            super().__init__()
            self.embedding = torch.nn.Embedding(vocab, config.d_model)
            self.mamba = Mamba(config)
            self.norm_f = RMSNorm(config.d_model, config.rms_norm_eps)
            self.lm_head = torch.nn.Linear(config.d_model, vocab, bias=False)

        def forward(self, tokens):
            return self.lm_head(self.norm_f(self.mamba(self.embedding(tokens))))

    torch.manual_seed(0)
    model = LM(MambaConfig(d_model=d_model, n_layers=n_layers, pscan=True))
    return _train_loop(model, vocab, batch, seq, steps, warmup)


def worker_hf_llama_train(vocab: int, batch: int, seq: int, steps: int, warmup: int, d_model: int, n_layers: int,
                          n_heads: int, d_ff: int) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=d_model, intermediate_size=d_ff, num_hidden_layers=n_layers,
                      num_attention_heads=n_heads, num_key_value_heads=n_heads, max_position_embeddings=seq,
                      tie_word_embeddings=False, attention_dropout=0.0)
    model = LlamaForCausalLM(cfg)  # local config, random init: nothing is downloaded
    model.train()
    return _train_loop(model, vocab, batch, seq, steps, warmup, logits_of=lambda m, x: m(input_ids=x).logits)


def _ensemble_configs(model: str, steps: int):
    from seqgap.config import RunConfig, TrainConfig

    threads = int(os.environ.get("SEQGAP_BENCH_THREADS", "1"))  # each run at the benchmark's thread count
    base = RunConfig(task="modadd", task_params={"m": 5, "format": "acot"}, max_length=10, n_train=5000, n_val=500,
                     model=model, model_size="tiny",
                     train=TrainConfig(steps=steps, eval_every=100, batch_size=64, success_loss=1e-12, threads=threads))
    return [base.replace(lr=lr, seed=s) for lr in (1e-3, 3e-4, 1e-4) for s in range(5)]


def worker_ensemble(model: str, steps: int, mode: str, runs: int) -> dict:
    """Train the 15-run grid as an ensemble (``mode`` = its strategy: loop or vmap), or ``runs``
    of it one after another (``mode`` = sequential)."""
    from seqgap.training.ensemble import train_ensemble
    from seqgap.training.trainer import train

    configs = _ensemble_configs(model, steps)
    w0, c0 = time.perf_counter(), time.process_time()
    strategy = "trainer.train"
    if mode != "sequential":
        train_ensemble(configs, keep_model=False, strategy=mode)
        n, strategy = len(configs), mode
    else:
        for c in configs[:runs]:
            train(c, keep_model=False)
        n = runs
    return {"runs": n, "strategy": strategy, "wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
            "member_steps_per_s": n * steps / (time.perf_counter() - w0), "maxrss_mb": maxrss_mb()}


def worker_generate(name: str, size: str, new_tokens: int, batch: int, prompt: int) -> dict:
    import torch

    from seqgap.models import build_model
    from seqgap.training.generate import greedy_generate

    torch.manual_seed(0)
    model = build_model(name, vocab_size=32, max_len=prompt + new_tokens + 1, size=size)
    g = torch.Generator().manual_seed(1)
    prompts = torch.randint(1, 32, (batch, prompt), generator=g).tolist()
    out = {}
    for cached in (True, False):
        t0 = time.perf_counter()
        res = greedy_generate(model, prompts, max_new_tokens=new_tokens, use_cache=cached)
        out["cached" if cached else "uncached"] = time.perf_counter() - t0
        out["tokens_" + ("cached" if cached else "uncached")] = [r.context for r in res]
    out["same_tokens"] = out.pop("tokens_cached") == out.pop("tokens_uncached")
    return out


WORKERS = {"seqgap_train": worker_seqgap_train, "mambapy_train": worker_mambapy_train,
           "hf_llama_train": worker_hf_llama_train, "ensemble": worker_ensemble, "generate": worker_generate}


# --------------------------------------------------------------------------- sections


class Report:
    def __init__(self, peak: float):
        self.rows: list[dict] = []
        self.peak = peak

    def add(self, section: str, what: str, ours: str, ref: str, ratio: float, target: float | None, note: str = ""):
        met = "" if target is None else ("met" if ratio >= target else "MISSED")
        self.rows.append(dict(section=section, what=what, ours=ours, ref=ref, ratio=ratio, target=target, met=met,
                              note=note))
        tgt = f">= {target:g}x" if target is not None else ""
        print(f"  {what}: {ours} vs {ref} -> {ratio:.2f}x {tgt} {met} {note}".rstrip(), flush=True)

    def gflops(self, r: dict) -> str:
        return f"{r['gflops']:.1f} GFLOP/s ({100 * r['gflops'] / self.peak:.0f}% of peak)"


def section_ensemble(rep: Report, quick: bool) -> None:
    steps = 40 if quick else 200
    runs = 3 if quick else 15
    print(f"[ensemble] 15 runs (3 lrs x 5 seeds), tiny d64 models, modadd m=5 L=10 acot, batch 64, {steps} steps"
          f"{'' if runs == 15 else f'; one-by-one time extrapolated from {runs} runs'}", flush=True)
    for model in ("lstm", "transformer", "dense-ssm", "mamba"):
        seq = run_worker("ensemble", model=model, steps=steps, mode="sequential", runs=runs)
        seq_wall = seq["wall_s"] * 15 / runs
        seq_cpu = seq["cpu_s"] * 15 / runs
        for strategy in ("loop", "vmap"):  # the CPU rule is loop (ensemble.default_strategy): this row says why
            ens = run_worker("ensemble", model=model, steps=steps, mode=strategy, runs=15)
            rep.add("ensemble", f"{model}: 15 runs as one ensemble ({strategy}) vs one after another",
                    f"{ens['wall_s']:.1f} s", f"{seq_wall:.1f} s", seq_wall / ens["wall_s"], 3.0,
                    f"(CPU time ratio {seq_cpu / ens['cpu_s']:.2f}x)")


def section_mamba(rep: Report, quick: bool) -> None:
    cfg = dict(vocab=64, batch=64, seq=128, d_model=64, n_layers=16)
    print("[mamba] training step, d64 x 16 layers, batch 64, sequence 128 (fresh process each)", flush=True)
    ours = run_worker("seqgap_train", name="mamba", vocab=cfg["vocab"], batch=cfg["batch"], seq=cfg["seq"],
                      steps=3 if quick else 8, warmup=1, d_model=64, n_layers=16)
    ref = run_worker("mambapy_train", steps=1 if quick else 3, warmup=1 if not quick else 0, **cfg)
    rep.add("mamba", "Mamba training tokens/s (seqgap vs mambapy 1.2.0 pscan)", f"{ours['tokens_per_s']:,.0f} tok/s",
            f"{ref['tokens_per_s']:,.0f} tok/s", ours["tokens_per_s"] / ref["tokens_per_s"], 10.0,
            f"(seqgap {rep.gflops(ours)}; mambapy {rep.gflops(ref)})")
    rep.add("mamba", "Mamba peak memory (maxrss, whole process)", f"{ours['maxrss_mb']:,.0f} MB",
            f"{ref['maxrss_mb']:,.0f} MB", ref["maxrss_mb"] / ours["maxrss_mb"], None, "(ratio = mambapy / seqgap)")


def section_llama(rep: Report, quick: bool) -> None:
    shape = dict(d_model=64, n_layers=8, n_heads=4, d_ff=256)
    print("[llama] training step, d64, 8 layers, 4 heads, ff 256, batch 64, sequence 128 (fresh process each)", flush=True)
    steps, warm = (4, 1) if quick else (12, 2)
    ours = run_worker("seqgap_train", name="llama", vocab=64, batch=64, seq=128, steps=steps, warmup=warm, **shape)
    ref = run_worker("hf_llama_train", vocab=64, batch=64, seq=128, steps=steps, warmup=warm, **shape)
    rep.add("llama", "LLaMA training tokens/s (seqgap vs HF LlamaForCausalLM)", f"{ours['tokens_per_s']:,.0f} tok/s",
            f"{ref['tokens_per_s']:,.0f} tok/s", ours["tokens_per_s"] / ref["tokens_per_s"], 1.3,
            f"(seqgap {rep.gflops(ours)}; HF {rep.gflops(ref)})")
    # the trainer's --compile option (TrainConfig.compile), against the same eager HF reference
    comp = run_worker("seqgap_train", name="llama", vocab=64, batch=64, seq=128, steps=steps, warmup=warm + 2,
                      compile=True, **shape)
    rep.add("llama", "LLaMA training tokens/s with `--compile` (seqgap compiled vs HF eager)",
            f"{comp['tokens_per_s']:,.0f} tok/s", f"{ref['tokens_per_s']:,.0f} tok/s",
            comp["tokens_per_s"] / ref["tokens_per_s"], 1.3, f"(seqgap {rep.gflops(comp)})")


def section_generate(rep: Report, quick: bool) -> None:
    new = 100 if quick else 500
    print(f"[generate] greedy decoding of {new} tokens, batch 4, 16-token prompts: cached vs full-prefix recompute",
          flush=True)
    for name, size in (("transformer", "tiny" if quick else "0.5M"), ("mamba", "tiny" if quick else "0.5M")):
        r = run_worker("generate", name=name, size=size, new_tokens=new, batch=4, prompt=16)
        rep.add("generate", f"{name} ({size}) {new}-token generation, cached vs uncached", f"{r['cached']:.2f} s",
                f"{r['uncached']:.2f} s", r["uncached"] / r["cached"], 5.0,
                "(same tokens)" if r["same_tokens"] else "(TOKENS DIFFER)")


def section_data(rep: Report, quick: bool) -> None:
    import numpy as np
    import torch

    sys.path.insert(0, str(HERE))
    from reference_istree import _rate, reference_dense_sample

    from seqgap.tasks.istree import IsTree

    secs = 0.5 if quick else 2.0
    print("[data] IsTree sample generation vs the dense reference; state-tracking batches vs a training step", flush=True)
    for fmt in ("cot", "rag"):
        task = IsTree(format=fmt, distribution="binary", max_nodes=64)
        for n in ((32,) if quick else (16, 32, 64)):
            for seed in range(5):  # the same draws give the same examples
                a = task.sample(np.random.default_rng(seed), n)
                b = reference_dense_sample(np.random.default_rng(seed), n, fmt)
                assert np.array_equal(a.sequence, b.sequence)
            r1, r2 = np.random.default_rng(0), np.random.default_rng(0)
            fast = _rate(lambda: task.sample(r1, n), secs)
            ref = _rate(lambda: reference_dense_sample(r2, n, fmt), secs)
            rep.add("data", f"IsTree {fmt} n={n} samples/s", f"{fast:,.0f}/s", f"{ref:,.0f}/s", fast / ref, 10.0)

    from seqgap.config import RunConfig, TrainConfig
    from seqgap.training.trainer import RunData, build_model_for, build_task, make_optimizer, masked_loss

    for fmt, L in (("acot", 20), ("cot", 20)):
        cfg = RunConfig(task="modadd", task_params={"m": 5, "format": fmt}, max_length=L, n_train=20000, n_val=200,
                        model="lstm", model_size="tiny", train=TrainConfig(batch_size=64))
        task = build_task(cfg)
        order = RunData(task, cfg).train_order(seed=0)
        next_batch = lambda: task.encode_batch(order.next_problems(64))  # noqa: E731
        torch.manual_seed(0)
        model = build_model_for(task, cfg)
        opt = make_optimizer(model, cfg.train)
        batch = next_batch()

        def train_step():
            loss = masked_loss(model(batch.inputs), batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()

        t_data = statistics.median(timed_steps(next_batch, 50, 5))
        t_step = statistics.median(timed_steps(train_step, 20, 3))
        rep.add("data", f"modadd m=5 L={L} {fmt}: batch of 64 vs a tiny-LSTM training step",
                f"{t_data * 1e3:.2f} ms", f"{t_step * 1e3:.2f} ms", t_step / t_data, None,
                f"(data = {100 * t_data / t_step:.1f}% of a step)")

    # the live retrieval tool runs on every [ENDSEARCH] during RAG generation: its cost per query
    # against one cached decoding step of the smallest Mamba (what it adds to each generated query)
    from seqgap.models import build_model
    from seqgap.tasks.istree import ES_ID
    from seqgap.tasks.retrieval_tool import RetrievalTool

    for n in (8, 64):
        task = IsTree(format="rag", max_nodes=n)
        tool = RetrievalTool(task)
        seq = task.sample(np.random.default_rng(4), n).sequence.tolist()
        ends = [k + 1 for k, t in enumerate(seq) if t == ES_ID]
        t_query = statistics.median(timed_steps(lambda: [tool(seq[:k]) for k in ends], 20, 2)) / len(ends)
        torch.manual_seed(0)
        model = build_model("mamba", vocab_size=len(task.vocab), max_len=len(seq) + 1, size="tiny").eval()
        with torch.no_grad():
            state = model.init_state(1)
            x = torch.tensor([seq[0]])
            t_tok = statistics.median(timed_steps(lambda: model.step(x, state), 50, 5))
        rep.add("data", f"retrieval tool, one query on an IsTree RAG n={n} context vs one mamba:tiny decoding step",
                f"{t_query * 1e3:.3f} ms", f"{t_tok * 1e3:.3f} ms", t_tok / t_query, None,
                f"({len(ends)} queries in a {len(seq)}-token trace)")


# --------------------------------------------------------------------------- main


def write_markdown(rep: Report, info: dict, load0: float, load1: float, quick: bool, path: Path) -> None:
    busy = load0 > 1 or load1 > info["threads"] + 1  # at the end the load includes this run's own threads
    lines = [
        "# Performance",
        "",
        "Measured by `bash benchmarks/run.sh` (`benchmarks/bench.py`); every ratio is against a reference",
        "measured in the same run.  Regenerate with `bash benchmarks/run.sh --write`.",
        "",
        f"- date: {info['date']}{' (--quick)' if quick else ''}",
        f"- machine: {info['nproc']} cores (`nproc`), {info['cpu']}; torch {info['torch']}, {info['threads']} threads",
        f"- fp32 matmul peak (torch.mm 2048^2): {rep.peak:.0f} GFLOP/s",
        f"- load average at start / end: {load0:.2f} / {load1:.2f}"
        + ("  **Other processes were using the cores during this run: wall-clock ratios are noisy.**" if busy else ""),
        "",
        "| section | comparison | seqgap | reference | ratio | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rep.rows:
        tgt = f">= {r['target']:g}x" if r["target"] is not None else ""
        lines.append(f"| {r['section']} | {r['what']} {r['note']} | {r['ours']} | {r['ref']} | {r['ratio']:.2f}x | "
                     f"{tgt} | {r['met']} |")
    text = "\n".join(lines) + "\n"
    old = path.read_text() if path.exists() else ""
    marker = "<!-- notes below are kept by bench.py -->"
    if marker in old:
        text += "\n" + old[old.index(marker):]
    path.write_text(text)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="seqgap benchmark suite (see the module docstring)")
    ap.add_argument("--quick", action="store_true", help="shorter runs (minutes instead of tens of minutes)")
    ap.add_argument("--only", help=f"comma-separated subset of: {', '.join(SECTIONS)}")
    ap.add_argument("--write", action="store_true", help="write the results table to docs/performance.md")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("SEQGAP_BENCH_THREADS", len(os.sched_getaffinity(0)))),
                    help="torch threads for every measurement (default: all cores, as docs/performance.md "
                         "was measured; on a machine shared with other jobs --threads 1 is more robust)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--args", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    import torch

    os.environ["SEQGAP_BENCH_THREADS"] = str(args.threads)  # inherited by the worker processes
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(WORKERS[args.worker](**json.loads(args.args))))
        return 0
    only = SECTIONS if not args.only else tuple(s.strip() for s in args.only.split(","))
    unknown = set(only) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    info = machine()
    load0 = loadavg()
    print(f"seqgap benchmarks {info['date']}: {info['nproc']} cores, {info['cpu']}, torch {info['torch']}, "
          f"{info['threads']} threads, load average {load0:.2f}", flush=True)
    peak = matmul_peak(2048, 1.0 if args.quick else 3.0)
    print(f"fp32 matmul peak: {peak:.0f} GFLOP/s", flush=True)
    rep = Report(peak)
    funcs = {"ensemble": section_ensemble, "mamba": section_mamba, "llama": section_llama,
             "generate": section_generate, "data": section_data}
    for name in SECTIONS:
        if name in only:
            funcs[name](rep, args.quick)
    load1 = loadavg()
    print(f"load average at the end: {load1:.2f}" + ("  (other processes were busy: wall-clock ratios are noisy)"
                                                    if load0 > 1 or load1 > args.threads + 1 else ""))
    if args.write:
        write_markdown(rep, info, load0, load1, args.quick, ROOT / "docs" / "performance.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
