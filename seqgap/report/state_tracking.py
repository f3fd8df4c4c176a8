"""Figures (PNG) and Markdown summaries for study E (sample complexity, sharing, length generalisation).

Every writer returns the Markdown it wrote to ``out/summary.md`` and also
writes ``out/results.json`` with the raw numbers behind it.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from seqgap.report.figures import line_plot, md_table
from seqgap.tasks.catalog import TASKS


def state_size(cell) -> Any:
    """A cell's state-space size (m, k, ...), through its task's own ``size_param``."""
    cls = TASKS.get(cell.task)
    return cls.size_of(cell.task_params) if cls is not None else None


def size_header(cells) -> str:
    """The column name for the state-space size: the tasks' own option name (m, k, ...)."""
    names = {TASKS[c.task].size_param for c in cells if c.task in TASKS and TASKS[c.task].size_param}
    return "/".join(sorted(names)) or "size"


def _n_point(x, r) -> tuple:
    """A plot point: N*, or the cell's own cap drawn as a lower bound (open marker) when unsolved."""
    return (x, float(r.n_cap), True) if r.search.n_star is None else (x, float(r.search.n_star), False)


def _settings_line(settings) -> str:
    t = settings.train
    return (f"N_max {settings.n_max:,}, shrink factor M={settings.factor:g}, at most {settings.max_steps} N per cell "
            f"({settings.bisect} bisection), grid lr {list(settings.lrs)} x seeds {list(settings.seeds)}, "
            f"budget {t.steps:,} steps (batch {t.batch_size}, eval every {t.eval_every}), success = validation loss "
            f"< {t.success_loss:g}, plateau stop after {t.patience_evals or 'never'} stalled evaluations"
            + (f", {settings.replicates} replicate searches per cell (data seed + r, seeds + 1000 r)"
               if getattr(settings, "replicates", 1) != 1 else ""))


def _cell_label(r) -> str:
    """A cell's table entry: N* with its bracket and grid count, or its replicates' median and range."""
    label = getattr(r, "label", None)
    return label() if callable(label) else r.search.label()


def write_sample_complexity_report(results: Sequence[Any], settings, out: Path) -> str:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps([r.to_dict() for r in results], indent=1))
    lines = ["# Sample complexity N*", "", _settings_line(settings), "",
             "N* = smallest training-set size at which a run of the grid reaches the criterion; "
             "`> N` = failed even at the largest N available (N_max capped by the distinct samples). "
             "Each entry reads `N* (last failing N, N*] k/n`: the search's bracket, and k of the n grid runs "
             "that finished at N* had reached the criterion when the grid stopped (it stops at the first "
             "success, so k/n is a lower bound on the grid's success rate there). With replicates: the median "
             "N* and the range [min .. max] over independent searches (unsolved counted as `> cap`).", ""]
    # table: rows (model, format, m), columns L
    by_row: dict[tuple, dict[int, str]] = defaultdict(dict)
    Ls = sorted({r.cell.max_length for r in results})
    for r in results:
        m = state_size(r.cell)
        by_row[(r.cell.model, r.cell.format, m)][r.cell.max_length] = _cell_label(r)
    rows = [[mod, fmt, str(m)] + [by_row[(mod, fmt, m)].get(L, "") for L in Ls]
            for (mod, fmt, m) in sorted(by_row, key=lambda k: (k[1], k[0], str(k[2])))]
    lines += md_table(["model", "format", size_header(r.cell for r in results), *[f"L={L}" for L in Ls]], rows)
    lines.append("")
    lines += _search_traces(results)

    # figures: N* vs L per model (one panel line per model/format), N* vs m
    series_L: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    series_m: dict[str, list[tuple[float, float | None]]] = defaultdict(list)
    for r in results:
        m = state_size(r.cell)
        series_L[f"{r.cell.model} / {r.cell.format} / m={m}"].append(_n_point(r.cell.max_length, r))
        series_m[f"{r.cell.model} / {r.cell.format} / L={r.cell.max_length}"].append(_n_point(m, r))
    if Ls:
        line_plot(series_L, "max length L", "N* (log)", "Sample complexity vs length", out / "nstar_vs_length.png",
                  logy=True, cap=settings.n_max)
        lines.append("![N* vs L](nstar_vs_length.png)")
    if len({state_size(r.cell) for r in results}) > 1:
        line_plot(series_m, "m (state-space size)", "N* (log)", "Sample complexity vs m", out / "nstar_vs_m.png",
                  logy=True, cap=settings.n_max)
        lines.append("![N* vs m](nstar_vs_m.png)")
    lines += ["", "Unsolved cells are drawn at their cap (the training samples available) with open "
                  "markers: N* is above them.", ""]
    lines += findings_sample_complexity(results)
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    return md


def _search_traces(results) -> list[str]:
    """Every N each search tried, in order, with ok/fail and the grid count k/n at that N."""
    out = ["Search trace per cell (N tried, in order: `ok`/`fail` and grid runs that reached the criterion "
           "/ runs that finished when the grid stopped):", ""]
    any_row = False
    for r in sorted(results, key=lambda r: (r.cell.format, r.cell.model, str(state_size(r.cell)), r.cell.max_length)):
        searches = getattr(r, "searches", None) or [r.search]
        for i, sr in enumerate(searches):
            steps = []
            for e in (sr.grid or [(n, ok, None, None) for n, ok in sr.evaluations]):
                n, ok, k, done = e
                steps.append(f"{n:,} {'ok' if ok else 'fail'}" + (f" {k}/{done}" if k is not None else ""))
            if not steps:
                continue
            rep = f" replicate {i}" if len(searches) > 1 else ""
            out.append(f"- {r.cell.model} {r.cell.format} {size_header([r.cell])}={state_size(r.cell)} "
                       f"L={r.cell.max_length}{rep}: " + ", ".join(steps))
            any_row = True
    return out + [""] if any_row else []


def _growth(results, model, fmt) -> tuple[float | None, str]:
    """N*(largest L) / N*(smallest L) for a model/format (lower bound if the largest is unsolved)."""
    rs = sorted([r for r in results if r.cell.model == model and r.cell.format == fmt], key=lambda r: r.cell.max_length)
    if len(rs) < 2 or rs[0].search.n_star is None:
        return None, "n/a"
    lo = rs[0].search.n_star
    hi = rs[-1].search.n_star
    if hi is None:
        return rs[-1].n_cap / lo, f">= {rs[-1].n_cap / lo:.1f}x"
    return hi / lo, f"{hi / lo:.1f}x"


def findings_sample_complexity(results) -> list[str]:
    """Plain statements computed from the measured numbers (no expected values are assumed)."""
    out = ["## What the numbers say", ""]
    models = sorted({r.cell.model for r in results})
    formats = sorted({r.cell.format for r in results})
    for fmt in formats:
        parts = []
        for model in models:
            g, label = _growth(results, model, fmt)
            if g is not None:
                parts.append(f"{model} {label}")
        if parts:
            Ls = sorted({r.cell.max_length for r in results})
            out.append(f"- growth of N* from L={Ls[0]} to L={Ls[-1]} under {fmt}: " + ", ".join(parts))
    # format preference per model: sum over cells of N* (cap for unsolved)
    for model in models:
        tot = {}
        for fmt in formats:
            rs = [r for r in results if r.cell.model == model and r.cell.format == fmt]
            if rs:
                tot[fmt] = sum((r.search.n_star if r.search.n_star is not None else 2 * r.n_cap) for r in rs)
        if len(tot) > 1:
            best = min(tot, key=tot.get)
            out.append(f"- {model} needs the fewest samples with {best} "
                       f"(sum of N* over cells, unsolved counted as 2 x N_max: "
                       + ", ".join(f"{f} {v:,}" for f, v in tot.items()) + ")")
    out.append("")
    return out


def write_sharing_report(rows, settings, out: Path) -> str:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = [{"cell": asdict(base), "kappa": k.value, "relation": k.relation, "label": k.label(),
             "per_length": {str(n): v for n, v in k.per_length.items()}, "joint": k.joint,
             "interval": list(k.interval())} for base, k, _ in rows]
    (out / "results.json").write_text(json.dumps(data, indent=1))
    lines = ["# Sharing factor kappa", "", _settings_line(settings), "",
             "kappa = sum_n N*_n / N*_joint over the lengths n listed in the last column (the joint cell trains on the same lengths, uniformly). > 1: data at one length helps the others; "
             "~1: each length learned in isolation; < 1: interference. `>` marks a lower bound, `<` an upper bound "
             "(some fixed-length cell failed at its cap and counts as the cap). The interval is kappa's range over the cells' "
             "N* intervals (search brackets, or replicate ranges): [sum of lows / joint's high, sum of highs / joint's low].", ""]
    table = []
    for base, k, _ in rows:
        m = state_size(base)
        per = ", ".join(f"{n}:{'>' + str(_cap(rows, base, n)) if v is None else v}" for n, v in k.per_length.items())
        lo, hi = k.interval()
        k_iv = "" if k.value is None else f"[{lo:.2f}, {'inf' if hi is None else f'{hi:.2f}'}]"
        table.append([base.model, base.format, str(m), str(base.max_length), k.label(), k_iv,
                      "fail" if k.joint is None else f"{k.joint:,}", per])
    lines += md_table(["model", "format", size_header(b for b, _, _ in rows), "L", "kappa", "kappa interval", "N*_joint", "N*_n (n:N*)"], table)
    series = defaultdict(list)
    for base, k, _ in rows:
        if k.value is not None:
            series[base.format].append((base.model, k.value))
    from seqgap.report.figures import bar_plot

    bar_plot(series, "kappa", "Sharing factor per model and format", out / "kappa.png", hline=1.0)
    lines += ["", "![kappa](kappa.png)", ""]
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    return md


def _cap(rows, base, n) -> int:
    for b, _, chunk in rows:
        if b is base:
            for r in chunk:
                if r is not None and r.cell.max_length == n and r.cell.length_dist == "fixed":
                    return r.n_cap
    return 0


def write_length_gen_report(results, out: Path) -> str:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data = [{"cell": asdict(r.cell), "n_train": r.n_train, "curve": r.curve, "raw": r.raw,
             "best_val_loss": r.best_val_loss, "learned_positions": r.learned_positions, "run": r.run_id}
            for r in results]
    (out / "results.json").write_text(json.dumps(data, indent=1))
    lines = ["# Length generalisation", "",
             "Trained at max length L on the largest training set, evaluated on fresh problems up to 2L. "
             "Accuracy of the final state, normalised: 0 = chance, 1 = perfect. CoT answers come from free greedy "
             "generation.", ""]
    table = []
    for r in results:
        m = state_size(r.cell)
        note = "learned abs. positions: untrained beyond training length" if r.learned_positions else ""
        table.append([r.cell.model, r.cell.format, str(m), str(r.cell.max_length), f"{r.n_train:,}",
                      f"{r.best_val_loss:.2g}", f"{r.curve.get(r.cell.max_length, float('nan')):.2f}",
                      f"{r.at_2L:.2f}", note])
    lines += md_table(["model", "format", size_header(r.cell for r in results), "L", "N", "final val loss", "acc@L (norm)", "acc@2L (norm)", "note"], table)
    series = {f"{r.cell.model} / {r.cell.format} / L={r.cell.max_length}":
              sorted((k / r.cell.max_length, v) for k, v in r.curve.items()) for r in results}
    line_plot(series, "evaluation length / training length", "normalized accuracy", "Length generalisation",
              out / "length_generalization.png", logy=False)
    lines += ["", "![length generalization](length_generalization.png)", ""]
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    return md
