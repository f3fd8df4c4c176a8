"""Study E end to end: sample complexity + sharing + length generalisation, one report.

`seqgap study induction-bias --preset quick` runs the three parts with their
preset defaults (sharing the run store, so cells common to two parts train once)
and writes ``summary.md`` with each part's tables and figures and a "Findings"
section that checks E's four qualitative claims against the numbers measured
in this run:

(a) the Transformer's N* grows faster with L than the RNNs' (ACoT), and (a') the same with each
    model in the format E reports it prefers (Transformer CoT, RNNs ACoT: ``PREFERRED_FORMAT``);
(b) the Transformer needs fewer samples with CoT than ACoT, the RNNs fewer with ACoT than CoT;
(c) kappa of the RNNs under ACoT is clearly above 1, the Transformer's is not;
(d) RNNs with ACoT length-generalise, the Transformer does not.

Each claim is reported as "shown", "not shown" or "inconclusive" with its
rule and the numbers behind it, as intervals (N*: each search's bracket or the
replicates' range; accuracies: binomial intervals): a claim whose intervals
overlap the rule's boundary is inconclusive; nothing is assumed.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from seqgap.options import engine_options
from seqgap.report.figures import relink_part
from seqgap.report.state_tracking import state_size

NAME = "induction-bias"
HELP = "study E end to end (N*, kappa, length generalisation) with a findings check"

RNNS = ("lstm", "dense-ssm")


def add_arguments(p) -> None:
    g = p.add_argument_group("models (default: the preset's)")
    g.add_argument("--model", help="models, e.g. transformer,lstm,dense-ssm (a plugin model by its name); "
                                   "NAME:SIZE gives one model its own size (transformer:tiny,mine:small)")
    g.add_argument("--size", help="named size for every model without its own NAME:SIZE")
    g.add_argument("--model-opt", action="append", metavar="KEY=VALUE", help="model option for every model")


# options of this study that each part receives as they are
_PASSED = ("preset", "store", "workers", "device", "threads", "plugin", "model", "size", "model_opt", "backend",
           "address", "cpus_per_run", "gpus_per_run")


def _part_args(study, args, out: Path) -> argparse.Namespace:
    """The part's own options at their defaults, with this study's shared options (no argv strings)."""
    from seqgap.studies import study_parser

    ns = study_parser(study).parse_args([])
    for name in _PASSED:
        setattr(ns, name, getattr(args, name, None))
    ns.out = str(out)
    return ns


def _m(r):
    return state_size(r.cell)


def _nstar(results, model, fmt, L, m=None):
    for r in results:
        if r.cell.model == model and r.cell.format == fmt and r.cell.max_length == L and (m is None or _m(r) == m):
            return r
    return None


INF = float("inf")

# E (Ebrahimi et al. 2026, "Supervision formats" findings): "transformers prefer CoT (m=5, L=20: CoT
# needs ~1.7K samples, ACoT ~2M); RNNs prefer ACoT".  Declared before any run; the preferred-format
# variant of check (a) compares each model in this format.  Models not listed are not compared.
PREFERRED_FORMAT = {"transformer": "cot", "lstm": "acot", "dense-ssm": "acot"}


def _iv(r) -> tuple[float, float]:
    """A cell's N* as a closed interval [low, high] (high = inf when unsolved, "> cap").

    With one search: its bracket (last_fail, n_star]; with replicates: their range."""
    if hasattr(r, "interval"):
        lo, hi = r.interval()
    else:
        lo, hi = r.search.interval()
    return float(lo), (INF if hi is None else float(hi))


def _fmt_iv(lo: float, hi: float, digits: int = 0) -> str:
    f = (lambda v: f"{v:,.{digits}f}")
    if hi == INF:
        return f"[{f(lo)}, inf)"
    if lo == hi:
        return f(lo)
    return f"[{f(lo)}, {f(hi)}]"


def _verdict(parts: list[bool | None]) -> str:
    """Each part: True (holds for the whole interval), False (fails for the whole interval) or
    None (the intervals overlap the rule's boundary).  Any False: not shown; else any None:
    inconclusive; else shown."""
    if any(p is False for p in parts):
        return "not shown"
    if any(p is None for p in parts):
        return "inconclusive"
    return "shown"


def _growth_check(results, formats: dict[str, str], name: str) -> tuple[str, str]:
    """N* growth from the shortest length at which the Transformer is solved to the longest,
    each model in ``formats[model]``, compared as intervals.

    Growth interval of a model: [low(long) / high(short), high(long) / low(short)].  Rule: shown
    when the Transformer's growth interval lies wholly above every RNN's; not shown when it lies
    wholly at or below some RNN's; inconclusive when they overlap, or when an RNN's long cell is
    unsolved (its growth is then only a lower bound: the RNN did not learn that length at all).
    """
    ms = sorted({_m(r) for r in results}, key=str)
    m = ms[0]  # one state-space size: growth across different m would mix two effects
    tf = formats["transformer"]
    t_solved = sorted(r.cell.max_length for r in results if r.cell.model == "transformer"
                      and r.cell.format == tf and _m(r) == m and r.search.n_star is not None)
    Ls = sorted({r.cell.max_length for r in results if _m(r) == m})
    if not t_solved or t_solved[0] == Ls[-1]:
        return "inconclusive", f"m={m}: the Transformer ({tf}) is solved at no length below the longest"
    lo, hi = t_solved[0], Ls[-1]
    growth = {}
    for model in ("transformer", *RNNS):
        fmt = formats.get(model)
        a = _nstar(results, model, fmt, lo, m)
        b = _nstar(results, model, fmt, hi, m)
        if a is None or b is None or a.search.n_star is None:
            continue
        (alo, ahi), (blo, bhi) = _iv(a), _iv(b)
        growth[model] = (blo / ahi, bhi / max(alo, 1.0), b.search.n_star is None, fmt)
    if "transformer" not in growth or not any(k in growth for k in RNNS):
        return "inconclusive", f"missing cells ({sorted(growth)})"
    txt = "; ".join(f"{k} ({fmt}) {_fmt_iv(glo, ghi, 1)}x" + (" (long cell unsolved)" if uns else "")
                    for k, (glo, ghi, uns, fmt) in growth.items())
    detail = (f"rule: {name} shown when the Transformer's growth interval lies above every RNN's, not shown when "
              f"it lies at or below an RNN's, inconclusive when they overlap; N* intervals are each search's "
              f"bracket (last fail, N*] or the replicates' range. m={m}, N* growth from L={lo} to L={hi}: {txt}")
    if any(uns for k, (_, _, uns, _) in growth.items() if k in RNNS):
        return "inconclusive", detail + "; an RNN's growth is only a lower bound"
    tlo, thi, _, _ = growth["transformer"]
    parts = []
    for k in RNNS:
        if k in growth:
            rlo, rhi, _, _ = growth[k]
            parts.append(True if tlo > rhi else False if thi <= rlo else None)
    return _verdict(parts), detail


def finding_a(results) -> tuple[str, str]:
    """E-a, same format: every model under ACoT (the check as first defined, kept beside the variant)."""
    return _growth_check(results, {"transformer": "acot", **{k: "acot" for k in RNNS}}, "same-format (ACoT)")


def finding_a_preferred(results) -> tuple[str, str]:
    """E-a, preferred format: each model in the format E reports it prefers (PREFERRED_FORMAT)."""
    return _growth_check(results, PREFERRED_FORMAT, "preferred-format")


def finding_b(results) -> tuple[str, str]:
    """E-b on the sums of N* intervals over lengths (lengths where both formats fail at their cap are
    dropped: they say nothing about the preference)."""
    parts, verdicts, seen = [], [], 0
    for model in ("transformer", *RNNS):
        cells = {}
        for r in results:
            if r.cell.model == model and r.cell.format in ("cot", "acot"):
                cells[(r.cell.format, r.cell.max_length, str(_m(r)))] = r
        keys = {(L, m) for (_, L, m) in cells}
        if not any(k[0] == "cot" for k in cells) or not any(k[0] == "acot" for k in cells):
            continue
        seen += 1
        tot = {"cot": [0.0, 0.0], "acot": [0.0, 0.0]}
        dropped = 0
        for L, m in sorted(keys):
            c, a = cells.get(("cot", L, m)), cells.get(("acot", L, m))
            if c is None or a is None:
                continue
            if c.search.n_star is None and a.search.n_star is None:
                dropped += 1
                continue
            for fmt, r in (("cot", c), ("acot", a)):
                lo, hi = _iv(r)
                tot[fmt][0] += lo
                tot[fmt][1] += hi
        want = "cot" if model == "transformer" else "acot"
        other = "acot" if want == "cot" else "cot"
        (wlo, whi), (olo, ohi) = tot[want], tot[other]
        ok = True if whi < olo else False if ohi <= wlo else None
        verdicts.append(ok)
        got = want if ok else other if ok is False else "overlap"
        parts.append(f"{model}: CoT {_fmt_iv(*tot['cot'])} vs ACoT {_fmt_iv(*tot['acot'])} (prefers {got}"
                     + (f"; {dropped} length(s) unsolved in both dropped" if dropped else "") + ")")
    if seen < 2:
        return "inconclusive", "missing cells"
    return _verdict(verdicts), ("rule: a model prefers a format when the sum of its N* intervals over lengths lies "
                                "wholly below the other format's (unsolved cell = (cap, inf)); overlapping sums are "
                                "inconclusive. " + "; ".join(parts))


def _kappa_iv(k) -> tuple[float, float]:
    iv = getattr(k, "interval", None)
    if callable(iv):
        lo, hi = iv()
        return float(lo), (INF if hi is None else float(hi))
    return (k.value, k.value)


def finding_c(kappa_rows) -> tuple[str, str]:
    """E-c on kappa intervals: each RNN under ACoT has kappa > 1.5 over its whole interval, the
    Transformer (every format with a kappa) <= 1.2 over its whole interval."""
    parts, verdicts, have_t, have_r = [], [], False, False
    for base, k, _ in kappa_rows:
        if k.value is None and not (base.model in RNNS and base.format == "acot"):
            parts.append(f"{base.model}/{base.format} kappa n/a")
            continue
        lo, hi = _kappa_iv(k) if k.value is not None else (0.0, INF)
        parts.append(f"{base.model}/{base.format} kappa {k.label()} in {_fmt_iv(lo, hi, 2)}")
        if base.format != "acot" and base.model in RNNS:
            continue
        if base.model in RNNS:
            have_r = True
            verdicts.append(True if lo > 1.5 else False if hi <= 1.5 else None)
        elif base.model == "transformer":
            have_t = True
            verdicts.append(True if hi <= 1.2 else False if lo > 1.2 else None)
    detail = ("rule: shown when every RNN's ACoT kappa interval lies above 1.5 and every Transformer kappa interval "
              "at or below 1.2 (intervals from the N* brackets/replicate ranges); " + "; ".join(parts))
    if not (have_r and have_t):
        return "inconclusive", detail
    return _verdict(verdicts), detail


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    if n <= 0:
        return 0.0, 1.0
    p = min(max(p, 0.0), 1.0)
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / d
    return max(0.0, c - h), min(1.0, c + h)


def _acc_iv(r, n_eval: int) -> tuple[float, float]:
    """95% Wilson interval of the accuracy at 2L, on the normalised scale (0 = chance, 1 = perfect)."""
    L2 = 2 * r.cell.max_length
    norm, raw = r.curve[L2], r.raw.get(L2, r.curve[L2])
    if abs(norm - 1.0) > 1e-9:
        chance = (norm - raw) / (norm - 1.0)
    else:  # perfect: chance cannot be read back; 1/m for the task's state-space size (parity: 1/2)
        m = _m(r)
        chance = 1.0 / m if isinstance(m, int) and m > 1 else 0.5
    chance = min(max(chance, 0.0), 0.99)
    lo, hi = _wilson(raw, n_eval)
    return (lo - chance) / (1 - chance), (hi - chance) / (1 - chance)


def finding_d(lg, n_eval: int = 500) -> tuple[str, str]:
    """E-d on 95% binomial (Wilson) intervals of the accuracy at 2L over ``n_eval`` problems."""
    parts, verdicts, rnn, trans = [], [], 0, 0
    for r in lg:
        lo, hi = _acc_iv(r, n_eval)
        parts.append(f"{r.cell.model}/{r.cell.format} {r.at_2L:.2f} [{lo:.2f}, {hi:.2f}]")
        if r.cell.format == "acot" and r.cell.model in RNNS:
            rnn += 1
            verdicts.append(True if lo >= 0.8 else False if hi < 0.8 else None)
        if r.cell.model == "transformer":
            trans += 1
            verdicts.append(True if hi <= 0.5 else False if lo > 0.5 else None)
    detail = (f"rule: shown when every RNN (ACoT) interval lies at or above 0.8 and every Transformer interval at or "
              f"below 0.5; normalized accuracy at 2L with 95% Wilson intervals over {n_eval} problems: "
              + "; ".join(parts))
    if not rnn or not trans:
        return "inconclusive", detail
    return _verdict(verdicts), detail


def main(args) -> int:
    from seqgap.report.state_tracking import write_length_gen_report, write_sample_complexity_report
    from seqgap.report.state_tracking import write_sharing_report
    from seqgap.studies import length_gen, sample_complexity, sharing
    out = Path(args.out or f"seqgap_out/induction_bias_{args.preset}")
    out.mkdir(parents=True, exist_ok=True)
    store = args.store if args.store is not None else str(out / "runs.sqlite")
    t0 = time.perf_counter()
    from seqgap.sweep.driver import log_line as log

    # each part's own plan(): the same cells and preset defaults as running that study alone; all
    # three planned (options validated, every model through check-model) before anything trains
    args.store = store
    cells, settings = sample_complexity.plan(_part_args(sample_complexity, args, out / "sample_complexity"))
    bases, sh_settings, min_n = sharing.plan(_part_args(sharing, args, out / "sharing"))
    lg_args = _part_args(length_gen, args, out / "length_generalization")
    lg_cells, lg_settings = length_gen.plan(lg_args)
    # 1) sample complexity
    log(f"[1/3] sample complexity: {len(cells)} cells")
    opts = engine_options(args)
    workers = opts.pop("workers")
    sc = [r for r in sample_complexity.search_cells(cells, settings, store, workers, log=log, **opts) if r is not None]
    md1 = write_sample_complexity_report(sc, settings, out / "sample_complexity")

    # 2) sharing
    log(f"[2/3] sharing: {len(bases)} model/format combinations")
    rows = sharing.compute_kappas(bases, sh_settings, store, workers, log=log, min_n=min_n, **opts)
    md2 = write_sharing_report(rows, sh_settings, out / "sharing")

    # 3) length generalisation
    log(f"[3/3] length generalisation: {len(lg_cells)} cells")
    lg = length_gen.run_cells(lg_cells, lg_settings, store, workers, lg_args.n_eval, log=log, **opts)
    md3 = write_length_gen_report(lg, out / "length_generalization")

    findings = [("(a) Transformer N* grows faster with L than the RNNs' (ACoT)", finding_a(sc)),
                ("(a') Transformer N* grows faster with L than the RNNs', each in its preferred format "
                 "(Transformer CoT, RNNs ACoT)", finding_a_preferred(sc)),
                ("(b) Transformer prefers CoT, RNNs prefer ACoT", finding_b(sc)),
                ("(c) RNN kappa under ACoT clearly > 1, Transformer's not", finding_c(rows)),
                ("(d) RNNs with ACoT length-generalise, the Transformer does not", finding_d(lg, lg_args.n_eval))]
    wall = time.perf_counter() - t0
    lines = [f"# Induction bias (study E), preset {args.preset}", "",
             f"Wall time {wall / 60:.1f} min; run store `{store}`.", "", "## Findings (computed from this run)", ""]
    lines += [f"- **{name}: {verdict}.** {detail}" for name, (verdict, detail) in findings]
    lines += ["", "---", "", relink_part(md1, "sample_complexity"), "---", "", relink_part(md2, "sharing"), "---", "",
              relink_part(md3, "length_generalization")]
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    print(md)
    return 0
