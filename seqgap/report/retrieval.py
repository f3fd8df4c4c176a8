"""Figures (PNG) and the Markdown summary of study W, the retrieval gap.

``write_retrieval_gap_report(records, meta, out)`` writes ``out/summary.md``,
``out/results.json`` (the raw rows behind every number) and the figures:

* ``istree_acc_vs_size_n{n}.png``: answer accuracy (free generation; RAG with the
  live tool) against parameter count, one panel per format, one line per model;
  RAG panels also show the whole-trace accuracy (dashed);
* ``{task}_acc_vs_pairs.png``: AR / MQAR per-query accuracy against the number of
  key-value pairs, one line per model and size;
* ``capacity_law.png``: the largest number of pairs solved against state size in
  bits, log-log (W's law: linear in the state for RNNs).  Attention carries a KV
  cache that grows with the context; it is drawn at the cache size of the
  longest context it solved (open squares).

Every statement under "What the numbers say" is computed from the rows; no
expected value is assumed.  Words used: "near-perfect" = accuracy >= 0.95.

Baselines: every row is shown next to chance and to the task's strongest shortcut baseline
(``Task.shortcut_baseline`` on that cell's validation split, computed by the study and passed in
``record["baseline"]``; rows without one fall back to :func:`context_guess_baseline` for AR/MQAR).
A model **beats** the baseline when the lower end of the 95% Wilson interval of its accuracy
(over ``record["acc_n"]`` scored examples) is above max(baseline, chance); otherwise the report
says **at baseline**, and never "solved" or "near-perfect" for it.  Every accuracy says what it
scores (``record["acc_scores"]``); the teacher-forced last-token accuracy of a CoT/RAG run
(``val_final_acc``: the token closing the trace) is never presented as an answer accuracy.
Every row names the model, its named size, parameter count and options.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from seqgap.report.figures import md_table, plt

NEAR_PERFECT = 0.95


def _f(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def _params(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


def _bits(b: float) -> str:
    return f"{b / 1e6:.2f}M" if b >= 1e6 else f"{b / 1e3:.1f}k" if b >= 1e3 else f"{b:.0f}"


def _ok(records: Sequence[dict], **match: Any) -> list[dict]:
    return [r for r in records if r["ok"] and all(r.get(k) == v for k, v in match.items())]


def _scored(records: Sequence[dict], **match: Any) -> list[dict]:
    """Trained cells that have an accuracy (a CoT/RAG cell without free generation has none)."""
    return [r for r in _ok(records, **match) if r.get("acc") is not None]


def _opts(r: dict) -> str:
    """The model options of a row ("default" when none)."""
    o = r.get("model_options") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(o.items())) or "default"


def _opts_key(r: dict) -> str:
    return json.dumps(r.get("model_options") or {}, sort_keys=True, default=str)


# ---- baselines and intervals -----------------------------------------------------------------

def wilson_interval(acc: float, n: int | None, z: float = 1.96) -> tuple[float, float] | None:
    """95% Wilson score interval of a binomial proportion ``acc`` over ``n`` trials (None without n)."""
    if n is None or n <= 0 or acc is None:
        return None
    p = min(max(float(acc), 0.0), 1.0)
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return max(0.0, mid - half), min(1.0, mid + half)


def baseline_of(r: dict) -> dict[str, Any] | None:
    """The row's shortcut baseline ``{"name", "accuracy", "exact", "source"}``: the task's, measured
    on the cell's validation split (``r["baseline"]``), or for AR/MQAR rows without it the
    distinct-values formula :func:`context_guess_baseline`; None when there is none."""
    b = r.get("baseline")
    if b:
        return {**b, "source": "task, validation split"}
    if r.get("task") in ("ar", "mqar"):
        return {"name": "context guess (formula, distinct values)", "exact": True, "source": "formula",
                "accuracy": context_guess_baseline(r["task"], r["n"])}
    return None


def reference_accuracy(r: dict) -> float | None:
    """What a model must beat: max(shortcut baseline, chance)."""
    vals = [v for v in ((baseline_of(r) or {}).get("accuracy"), r.get("chance")) if v is not None]
    return max(vals) if vals else None


def beats_baseline(r: dict, acc: float | None = None, n: int | None = None) -> bool | None:
    """True when the lower end of the 95% Wilson interval of the accuracy is above
    max(baseline, chance); False: "at baseline"; None when there is no accuracy or no reference.
    Without a number of scored examples the point value is compared."""
    acc = r.get("acc") if acc is None else acc
    n = r.get("acc_n") if n is None else n
    ref = reference_accuracy(r)
    if acc is None or ref is None:
        return None
    ci = wilson_interval(acc, n)
    return (ci[0] if ci else acc) > ref


def _verdict(r: dict) -> str:
    b = beats_baseline(r)
    return "-" if b is None else "beats" if b else "at baseline"


def _ci(r: dict) -> str:
    ci = wilson_interval(r.get("acc"), r.get("acc_n"))
    return "-" if ci is None else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _base_str(r: dict, digits: int = 3) -> str:
    b = baseline_of(r)
    return "-" if b is None else f"{b['accuracy']:.{digits}f} ({b['name']})"


# ---- capacity ---------------------------------------------------------------------------------

def capacity_rows(records: Sequence[dict], threshold: float) -> list[dict[str, Any]]:
    """Per (task, model, size): accuracy by n, the largest n solved, and the state size."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        if r["task"] != "istree" and r["ok"] and r.get("acc") is not None:
            # one row per learning rate too (an lr sweep is several rows of the same model)
            groups[(r["task"], r["model"], r["size"], _opts_key(r), r.get("lr") or 0.0)].append(r)
    out = []
    for (task, model, size, _, lr), rs in sorted(groups.items(),
                                                 key=lambda kv: (kv[0][0], kv[0][1], kv[1][0]["n_params"],
                                                                 kv[0][3], kv[0][4])):
        rs = sorted(rs, key=lambda r: r["n"])
        acc = {r["n"]: r["acc"] for r in rs}
        beats = {r["n"]: beats_baseline(r) is not False for r in rs}
        # "solves n": accuracy >= threshold *and* above the shortcut baseline (interval's lower end)
        solved = [n for n in acc if acc[n] >= threshold and beats[n]]
        largest = max(solved) if solved else None
        # is "solved" a prefix of the grid (no solved n above an unsolved one)?
        monotone = all(acc[n] >= threshold and beats[n] for n in acc if largest is not None and n <= largest)
        per_token = bool(rs[0]["state_per_token"])
        tokens_at_largest = None
        if per_token and largest is not None:
            at = next(r for r in rs if r["n"] == largest)
            if at.get("tokens"):  # the study records the sequence length of each cell
                tokens_at_largest = at["tokens"]
            elif task in ("ar", "mqar"):
                from seqgap.tasks.catalog import make_task

                tokens_at_largest = make_task(task, alphabet=64 if largest <= 64 else largest).max_tokens(largest)
        out.append({"task": task, "model": model, "size": size, "model_options": rs[0].get("model_options") or {},
                    "lr": lr or None,
                    "n_params": rs[0]["n_params"],
                    "beats_by_n": beats, "ci_by_n": {r["n"]: wilson_interval(r["acc"], r.get("acc_n")) for r in rs},
                    "baseline_by_n": {r["n"]: baseline_of(r) for r in rs},
                    "chance": rs[0].get("chance"), "acc_scores": rs[0].get("acc_scores", "per query, teacher-forced"),
                    "recurrent": rs[0]["recurrent"], "state_per_token": per_token,
                    "state_floats": rs[0]["state_floats"], "state_bits": rs[0]["state_bits"],
                    "acc_by_n": acc, "largest_solved": largest, "solved_prefix": monotone,
                    "solves_all": len(solved) == len(acc),
                    "kv_bits_at_largest": (rs[0]["state_bits"] * tokens_at_largest) if tokens_at_largest else None})
    return out


def context_guess_baseline(task: str, n: int) -> float:
    """Per-query accuracy of a model that knows *which values* are in the context but not which key
    they belong to.  AR: 1/n.  MQAR (every key queried once, earlier answers shown): at query j it can
    rule out the j - 1 values already answered, so ~1/(n - j + 1); the mean is H_n / n.  (Repeated
    values make the true figure slightly higher.)  A curve near it means retrieval was not learned."""
    if task == "mqar":
        return sum(1.0 / k for k in range(1, n + 1)) / n
    return 1.0 / n


def fit_loglog_slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of log y on log x (None with fewer than two distinct x)."""
    pts = [(math.log(x), math.log(y)) for x, y in points if x > 0 and y > 0]
    if len({p[0] for p in pts}) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx


# ---- figures -----------------------------------------------------------------------------------

def _model_style(model: str) -> dict[str, Any]:
    colors = {"llama": "C0", "transformer": "C5", "mamba": "C1", "lstm": "C2", "hybrid": "C3", "dense-ssm": "C4"}
    return {"color": colors.get(model)}


def _log_axis(ax, values: Sequence[float], fmt) -> None:
    """Log x axis over ``values`` with some margin, readable major labels and no minor labels."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    lo, hi = min(values), max(values)
    ax.set_xlim(lo / 2, hi * 2)
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt(x)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_istree(records: Sequence[dict], n: int, path: Path) -> Path:
    rs = _scored(records, task="istree", n=n)
    formats = [f for f in ("vanilla", "cot", "rag") if any(r["format"] == f for r in rs)]
    fig, axes = plt.subplots(1, len(formats), figsize=(4.2 * len(formats), 4), squeeze=False, sharey=True)
    for ax, fmt in zip(axes[0], formats):
        by_variant: dict[tuple, list[dict]] = defaultdict(list)
        for r in rs:
            if r["format"] == fmt:
                by_variant[(r["model"], _opts_key(r))].append(r)
        for (model, _), mr in sorted(by_variant.items()):
            mr = sorted(mr, key=lambda r: r["n_params"])
            xs = [r["n_params"] for r in mr]
            tag = model if _opts(mr[0]) == "default" else f"{model} [{_opts(mr[0])}]"
            ax.plot(xs, [r["acc"] for r in mr], marker="o", label=f"{tag} answer", **_model_style(model))
            if fmt == "rag":
                ax.plot(xs, [r.get("gen_trace_acc", float("nan")) for r in mr], marker="x", ls="--",
                        label=f"{tag} whole trace", **_model_style(model))
            for r in mr:
                ax.annotate(r["size"], (r["n_params"], r["acc"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        fr = [r for r in rs if r["format"] == fmt]
        chance = fr[0].get("chance", 0.5) if fr else 0.5
        ax.axhline(0.5 if chance is None else chance, color="gray", ls=":", lw=1, label="chance")
        bases = [baseline_of(r) for r in fr if baseline_of(r)]
        if bases:
            ax.axhline(max(b["accuracy"] for b in bases), color="k", ls="-.", lw=1,
                       label=f"shortcut baseline ({bases[0]['name']})")
        _log_axis(ax, [r["n_params"] for r in rs], lambda x: _params(int(x)))
        ax.set_ylim(-0.02, 1.05)
        ax.set_xlabel("parameters")
        ax.set_title(f"IsTree n={n}, {fmt}" + (" (live tool)" if fmt == "rag" else ""))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("answer accuracy (" + (rs[0].get("acc_scores") or "free greedy generation") + ")"
                          if rs else "answer accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pairs(rows: Sequence[dict], task: str, threshold: float, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for row in rows:
        if row["task"] != task:
            continue
        ns = sorted(row["acc_by_n"])
        kind = "KV cache" if row["state_per_token"] else f"state {_bits(row['state_bits'])} bits"
        ax.plot(ns, [row["acc_by_n"][n] for n in ns], marker="o" if row["recurrent"] else "s",
                label=f"{_row_name(row)} ({kind})", **_model_style(row["model"]))
    base = task_baselines(rows, task)
    ns = sorted(base)
    if ns:
        names = sorted({b["name"] for b in base.values()})
        ax.plot(ns, [base[n]["accuracy"] for n in ns], color="gray", ls=":",
                label="shortcut baseline: " + "; ".join(names))
    ax.axhline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:g}")
    ax.set_xscale("log", base=2)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("key-value pairs n")
    ax.set_ylabel("per-query accuracy (teacher-forced)")  # what every capacity accuracy scores
    ax.set_title(f"{task.upper()}: accuracy vs number of pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def task_baselines(rows: Sequence[dict], task: str) -> dict[int, dict[str, Any]]:
    """n -> the shortcut baseline of ``task`` at n (the validation split is the same for every cell of
    a task and n; where rows disagree, the strongest is kept)."""
    out: dict[int, dict[str, Any]] = {}
    for row in rows:
        if row["task"] != task:
            continue
        for n, b in row.get("baseline_by_n", {}).items():
            if b and (n not in out or b["accuracy"] > out[n]["accuracy"]):
                out[n] = b
    return out


def _row_name(row: dict) -> str:
    """model:size (params, options[, lr]) of a capacity row."""
    lr = f", lr {row['lr']:g}" if row.get("lr") else ""
    return f"{row['model']}:{row['size']} ({_params(row['n_params'])}, {_opts(row)}{lr})"


def any_solved(rows: Sequence[dict]) -> bool:
    return any(row["largest_solved"] is not None for row in rows)


def plot_capacity_law(rows: Sequence[dict], path: Path) -> tuple[Path, float | None]:
    """Largest n solved vs state bits (log-log); returns the fitted slope over the fixed-state models."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    rnn_pts, xs_all = [], []
    smallest_n = min((min(r["acc_by_n"]) for r in rows), default=1)
    for row in rows:
        style = _model_style(row["model"])
        label = f"{row['task']} {_row_name(row)}"
        if row["state_per_token"]:
            if row["kv_bits_at_largest"]:
                xs_all.append(row["kv_bits_at_largest"])
                ax.scatter([row["kv_bits_at_largest"]], [row["largest_solved"]], marker="s", s=70,
                           facecolors="none", edgecolors=style["color"], linewidths=2,
                           label=label + " (KV cache at that context)")
            else:  # nothing solved: its per-token cache, below the grid
                xs_all.append(row["state_bits"])
                ax.scatter([row["state_bits"]], [smallest_n / 2], marker="s", s=70, facecolors="none",
                           edgecolors=style["color"], linewidths=2, label=label + " (KV cache per token; none solved)")
            continue
        xs_all.append(row["state_bits"])
        if row["largest_solved"] is None:  # nothing solved: drawn below the grid, open circle
            ax.scatter([row["state_bits"]], [smallest_n / 2], marker="o", s=70, facecolors="none",
                       edgecolors=style["color"], linewidths=2, label=label + " (none solved)")
            continue
        rnn_pts.append((row["state_bits"], row["largest_solved"]))
        ax.scatter([row["state_bits"]], [row["largest_solved"]], marker="o", s=60, label=label, **style)
    slope = fit_loglog_slope(rnn_pts)
    if rnn_pts:  # slope-1 guide through the geometric mean of the RNN points: W's linear law
        gx = math.exp(sum(math.log(p[0]) for p in rnn_pts) / len(rnn_pts))
        gy = math.exp(sum(math.log(p[1]) for p in rnn_pts) / len(rnn_pts))
        xs = [gx / 8, gx * 8]
        ax.plot(xs, [gy * x / gx for x in xs], color="gray", ls=":", lw=1, label="slope 1 (linear in state)")
        xs_all += xs
    if xs_all:
        _log_axis(ax, xs_all, _bits)
    ax.set_yscale("log", base=2)
    ax.set_xlabel("state size (bits, 32-bit floats)")
    ax.set_ylabel(f"largest n solved (n={smallest_n / 2:g}: none solved)")
    ax.set_title("Capacity: largest number of pairs solved vs state size"
                 + (f" (RNN fit slope {slope:.2f})" if slope is not None else ""))
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path, slope


# ---- findings -----------------------------------------------------------------------------------

def _nearest(candidates: Sequence[dict], r: dict) -> dict:
    """The candidate whose parameter count is closest to r's (in ratio)."""
    return min(candidates, key=lambda x: abs(math.log(x["n_params"] / r["n_params"])))


def _name(r: dict) -> str:
    """Which model produced a row: model:named size (parameter count, options)."""
    return f"{r['model']}:{r['size']} ({_params(r.get('n_params'))}, {_opts(r)})"


def _acc_v(r: dict) -> str:
    """accuracy [95% CI], and "at baseline" when it does not beat the shortcut baseline."""
    ci = wilson_interval(r["acc"], r.get("acc_n"))
    out = f"{r['acc']:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")
    return out + (" (at baseline)" if beats_baseline(r) is False else "")


def findings_istree(records: Sequence[dict]) -> list[str]:
    out: list[str] = []
    rs = _scored(records, task="istree")
    for n in sorted({r["n"] for r in rs}):
        at_n = [r for r in rs if r["n"] == n]
        for fmt in ("vanilla", "cot", "rag"):
            fr = sorted([r for r in at_n if r["format"] == fmt], key=lambda r: -r["acc"])
            if not fr:
                continue
            parts = ", ".join(f"{_name(r)} {_acc_v(r)}" for r in fr)
            extra = ""
            if fmt == "rag":
                extra = " (whole generated trace: " + ", ".join(f"{_name(r)} {_f(r.get('gen_trace_acc'), 2)}"
                                                                for r in fr) + ")"
            near = [_name(r) for r in fr if r["acc"] >= NEAR_PERFECT and beats_baseline(r) is not False]
            at_base = [_name(r) for r in fr if beats_baseline(r) is False]
            scores = sorted({r.get("acc_scores") or "answer" for r in fr})
            out.append(f"- n={n}, {fmt}: answer accuracy ({'; '.join(scores)}; 95% Wilson interval) {parts}{extra}; "
                       f"chance {_f(fr[0].get('chance'), 2)}, shortcut baseline {_base_str(fr[0], 2)}; "
                       f"near-perfect: {', '.join(near) if near else 'none'}; "
                       f"at baseline: {', '.join(at_base) if at_base else 'none'}.")
        # the Transformer against each fixed-state model with CoT, at the closest parameter count
        cot = [r for r in at_n if r["format"] == "cot"]
        for attn_model in sorted({r["model"] for r in cot if not r["recurrent"] and r["model"] != "hybrid"}):
            attn = [r for r in cot if r["model"] == attn_model]
            for r in sorted([r for r in cot if r["recurrent"]], key=lambda r: (r["model"], r["n_params"])):
                a = _nearest(attn, r)
                d = round(a["acc"] - r["acc"], 2) + 0.0
                rel = f"ahead by {d:.2f}" if d > 0 else f"behind by {-d:.2f}" if d < 0 else "level"
                out.append(f"- n={n}, cot answer accuracy: {_name(r)} {_acc_v(r)} vs {_name(a)} {_acc_v(a)}: the "
                           f"Transformer is {rel} (parameter ratio {a['n_params'] / r['n_params']:.2f}).")
        # what the live retrieval tool adds, per model (CoT cell of the nearest parameter count)
        for r in sorted([r for r in at_n if r["format"] == "rag"], key=lambda r: (r["model"], r["n_params"])):
            base = [c for c in at_n if c["format"] == "cot" and c["model"] == r["model"]]
            if base:
                c = _nearest(base, r)
                out.append(f"- n={n}, {r['model']}: CoT {_name(c)} answer {_acc_v(c)} -> RAG with the live tool "
                           f"{_name(r)} answer {_acc_v(r)}, whole generated trace {_f(r.get('gen_trace_acc'), 2)} "
                           f"(teacher-forced whole-trace accuracy {c['val_seq_acc']:.2f} -> {r['val_seq_acc']:.2f}).")
        # the hybrid against the plain Mamba in the same format, at the closest parameter count
        for h in sorted([r for r in at_n if r["model"] == "hybrid"], key=lambda r: (r["format"], r["n_params"])):
            m = [r for r in at_n if r["model"] == "mamba" and r["format"] == h["format"]]
            if m:
                m0 = _nearest(m, h)
                d = round(h["acc"] - m0["acc"], 2) + 0.0
                out.append(f"- n={n}, {h['format']} answer accuracy: {_name(h)} {_acc_v(h)} vs {_name(m0)} "
                           f"{_acc_v(m0)} ({d:+.2f} for the Mamba stack with one attention layer).")
        fails = [r for r in at_n if r.get("gen_failures")]
        for r in fails:
            out.append(f"- n={n}, {r['format']}: {_name(r)}: {r['gen_failures']} of {r.get('gen_n')} generations "
                       f"failed (recorded, scored wrong).")
    # the teacher-forced last token of a CoT/RAG sequence closes the trace: say so where it would mislead
    ok = _ok(records, task="istree")
    tf_trivial = [r for r in ok if r["format"] != "vanilla" and r.get("val_final_acc", 0) >= 0.999
                  and (r.get("acc") is None or r["acc"] < 0.9)]
    if tf_trivial:
        names = "; ".join(f"n={r['n']} {r['format']} {_name(r)}: last token {r['val_final_acc']:.2f}, generated "
                          f"answer {_f(r.get('acc'), 2)}" for r in tf_trivial)
        out.append(f"- {len(tf_trivial)} CoT/RAG cell(s) score ~1.00 on the teacher-forced *last token* but below "
                   f"0.9 (or unmeasured) on the generated answer: {names}. The last token of a CoT/RAG sequence "
                   f"is scored with the whole reference trace given, so it is not an answer accuracy; only "
                   f"generated answers are reported as accuracy.")
    unmeasured = [r for r in ok if r.get("acc") is None]
    for r in unmeasured:
        out.append(f"- n={r['n']}, {r['format']}: {_name(r)}: no answer accuracy (no free generation was run; "
                   f"teacher-forced whole-trace accuracy {r['val_seq_acc']:.2f}).")
    return out


def findings_capacity(rows: Sequence[dict], threshold: float, slope: float | None) -> list[str]:
    out: list[str] = []
    for row in rows:
        ns = sorted(row["acc_by_n"])
        curve = ", ".join(f"n={n}: {row['acc_by_n'][n]:.2f}" + ("" if row.get("beats_by_n", {}).get(n, True)
                                                                 else " (at baseline)") for n in ns)
        largest = row["largest_solved"]
        state = ("KV cache " + _bits(row["state_bits"]) + " bits per token" if row["state_per_token"]
                 else f"state {_bits(row['state_bits'])} bits")
        lead = f"- {row['task']} {_row_name(row)} ({state}), {row.get('acc_scores', 'per query, teacher-forced')}: {curve}; "
        if largest is None:
            lead += f"no n reaches {threshold:g} above the shortcut baseline"
        elif row["solves_all"]:
            lead += f"solves every n tried (up to {largest})"
        else:
            first_fail = min(n for n in ns if n not in _solved_ns(row, threshold))
            lead += f"largest n solved {largest}, first failure at n={first_fail}"
            if not row["solved_prefix"]:
                lead += " (not monotone: some smaller n failed)"
        change = round(row["acc_by_n"][ns[-1]] - row["acc_by_n"][ns[0]], 2) + 0.0  # + 0.0: no "-0.00"
        bases = row.get("baseline_by_n") or {n: baseline_of({"task": row["task"], "n": n}) for n in ns}
        margins = [row["acc_by_n"][n] - bases[n]["accuracy"] for n in ns if bases.get(n)]
        names = sorted({bases[n]["name"] for n in ns if bases.get(n)})
        out.append(lead + (f"; accuracy change from n={ns[0]} to n={ns[-1]}: {change:+.2f}" if len(ns) > 1 else "")
                   + (f"; largest margin over the shortcut baseline ({'; '.join(names)}): {max(margins):+.2f}."
                      if margins else "."))
    rnn = [r for r in rows if not r["state_per_token"]]
    att = [r for r in rows if r["state_per_token"]]
    if rnn and att:
        out.append(f"- fixed-state models solving every n tried: {sum(r['solves_all'] for r in rnn)} of {len(rnn)}; "
                   f"attention-state models: {sum(r['solves_all'] for r in att)} of {len(att)}.")
    if slope is not None:
        out.append(f"- log-log slope of largest-solved n against state bits over the fixed-state models: {slope:.2f} "
                   f"(W's law: linear, slope 1, as an upper bound on retrieval).")
    elif rnn and any_solved(rows):
        out.append("- too few fixed-state models with a solved n and distinct state sizes to fit the capacity law.")
    return out


def _ci_text(r: dict) -> str:
    ci = wilson_interval(r["acc"], r.get("acc_n"))
    return f"{r['acc']:.3f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def _who(r: dict) -> str:
    return f"{r['model']}:{r['size']} ({r['n_params'] / 1e3:.0f}k)"


def _near_perfect(r: dict) -> bool | None:
    """True: the 95% interval's lower end >= NEAR_PERFECT and beats the baseline; False: its upper end
    is below it or it is at baseline; None: the interval straddles it."""
    ci = wilson_interval(r["acc"], r.get("acc_n")) or (r["acc"], r["acc"])
    if beats_baseline(r) is False or ci[1] < NEAR_PERFECT:
        return False
    return True if ci[0] >= NEAR_PERFECT else None


def _check_verdict(flags: Sequence[bool | None]) -> str:
    if not flags:
        return "inconclusive"
    if any(f is False for f in flags):
        return "not shown"
    return "shown" if all(f is True for f in flags) else "inconclusive"


def _is_transformer(r: dict) -> bool:
    """Attention only (the Hybrid has attention too, but it is the model W-c asks about)."""
    return not r.get("recurrent", True) and r["model"] != "hybrid"


def _istree(records: Sequence[dict], fmt: str) -> list[dict]:
    return [r for r in _ok(records, task="istree", format=fmt) if r.get("acc") is not None]


def check_w_a(records: Sequence[dict]) -> tuple[str, str]:
    """**W-a**: attention (a non-recurrent model) with CoT is near-perfect on IsTree at every n of the run.
    Rule: at every n, some attention CoT cell's answer accuracy is near-perfect (95% Wilson interval's
    lower end >= 0.95 and above the shortcut baseline); not shown when at some n every one is clearly
    below; inconclusive otherwise or without such cells."""
    cells = [r for r in _istree(records, "cot") if _is_transformer(r)]
    flags, parts = [], []
    for n in sorted({r["n"] for r in cells}):
        at_n = [r for r in cells if r["n"] == n]
        best = [_near_perfect(r) for r in at_n]
        flags.append(True if True in best else (None if None in best else False))
        parts.append(f"n={n}: " + ", ".join(f"{_who(r)} {_ci_text(r)}" for r in at_n))
    return _check_verdict(flags), "rule: attention + CoT near-perfect (95% CI >= 0.95, above baseline) at every n; " + (
        "; ".join(parts) or "no attention CoT cell")


def _gap_growth(pts: Sequence[tuple[dict, dict]]) -> tuple[float, float]:
    """(growth, its 95% half-width): the Transformer-minus-RNN accuracy gap at the largest n minus the
    gap at the smallest, and 1.96 x the standard error of that difference of four independent
    binomial proportions."""
    (a0, t0), (a1, t1) = pts[0], pts[-1]
    var = sum(r["acc"] * (1 - r["acc"]) / max(r.get("acc_n") or 1, 1) for r in (a0, t0, a1, t1))
    return (t1["acc"] - a1["acc"]) - (t0["acc"] - a0["acc"]), 1.96 * math.sqrt(var)


def _variant(r: dict) -> str:
    """One fixed model: its family, named size and model options (e.g. ``mamba:small d_state=1``)."""
    o = _opts(r)
    return f"{r['model']}:{r['size']}" + ("" if o == "default" else f" {o}")


def check_w_b(records: Sequence[dict]) -> tuple[str, str]:
    """**W-b**: an RNN with CoT is clearly below the Transformer at about the same parameter count, the gap
    growing with n.  Judged per RNN *variant* (family, named size and model options: a fixed model across
    n, so a small-state Mamba is judged apart from the default one, as issue 11 suggests), over the n where
    it and a Transformer both have a cell (parameter ratio within 0.5..2; the best such pair per n):
    *below* = at the largest n the RNN's 95% Wilson interval lies wholly below the Transformer's;
    *growing* = the gap at the largest n exceeds the gap at the smallest n by more than the 95% half-width
    of that difference (:func:`_gap_growth`), so an RNN that is at its baseline at every n (a flat gap)
    does not count.  A variant shows it when both hold, does not when it is not below at the largest n
    (intervals overlap or it is ahead), and is inconclusive otherwise (one n cannot show a growing gap).
    The check is about "an RNN" (issue 11): shown when some variant shows it, and the detail names which,
    with Mamba's (W's case) own verdict beside it (its best variant's); not shown when every variant does
    not; inconclusive otherwise."""
    cot = _istree(records, "cot")
    att = [r for r in cot if _is_transformer(r)]
    out, per_variant, family = [], {}, {}
    rnns = [r for r in cot if r.get("recurrent", True) and r["model"] != "hybrid"]
    for var in sorted({_variant(r) for r in rnns}):
        pts = []
        for n in sorted({r["n"] for r in cot}):
            rnn = [r for r in rnns if _variant(r) == var and r["n"] == n]
            tr = [r for r in att if r["n"] == n]
            pairs = [(a, t) for a in rnn for t in tr if 0.5 <= a["n_params"] / max(t["n_params"], 1) <= 2]
            if not pairs:
                continue
            pts.append(max(pairs, key=lambda p: p[0]["acc"]))
            a, t = pts[-1]
            out.append(f"n={n}: {var} ({a['n_params'] / 1e3:.0f}k) {_ci_text(a)} vs {_who(t)} {_ci_text(t)} "
                       f"(gap {t['acc'] - a['acc']:+.3f})")
        if not pts:
            continue
        family[var] = pts[0][0]["model"]
        a, t = pts[-1]
        ca = wilson_interval(a["acc"], a.get("acc_n")) or (a["acc"], a["acc"])
        ct = wilson_interval(t["acc"], t.get("acc_n")) or (t["acc"], t["acc"])
        if ca[1] >= ct[0]:
            per_variant[var] = "not shown"
        elif len(pts) == 1:
            per_variant[var] = "inconclusive (below at the one n tried)"
        else:
            growth, half = _gap_growth(pts)
            grows = growth > half
            per_variant[var] = ("shown" if grows else "inconclusive") + \
                f" (gap grows by {growth:+.3f} +- {half:.3f} from n={pts[0][0]['n']} to n={a['n']})"
    verdicts = [v.split(" (")[0] for v in per_variant.values()]
    shown_by = [k for k, v in per_variant.items() if v.startswith("shown")]
    if shown_by:
        verdict = "shown"
    elif verdicts and all(v == "not shown" for v in verdicts):
        verdict = "not shown"
    else:
        verdict = "inconclusive"
    mamba = [v for k, v in per_variant.items() if family[k] == "mamba"]
    mamba_word = next((w for w in ("shown", "inconclusive", "not shown")
                       if any(v.startswith(w) for v in mamba)), "no cells")
    fams = "; ".join(f"{k}: {v}" for k, v in per_variant.items())
    which = f"shown for {', '.join(shown_by)}; Mamba (W's case): {mamba_word}; " if shown_by else ""
    return verdict, (f"rule: at the largest n the RNN + CoT 95% CI lies wholly below the Transformer's at "
                     f"matched size, and the gap grows from the smallest to the largest n by more than its 95% "
                     f"half-width (per RNN variant); {which}per variant: {fams or 'no cells'}; " + "; ".join(out))


def check_w_c(records: Sequence[dict]) -> tuple[str, str]:
    """**W-c**: in-context RAG with the live tool lifts each RNN to near-perfect, and the Hybrid closes
    the gap with CoT.  Rule: every RNN family's RAG cell is near-perfect (as in W-a) at every n, and the
    Hybrid's CoT cell at each n is near-perfect or its 95% interval overlaps the best attention CoT
    cell's; each RNN is judged separately and listed."""
    rag = [r for r in _istree(records, "rag") if r.get("recurrent", True) and r["model"] != "hybrid"]
    cot = _istree(records, "cot")
    flags, parts = [], []
    for fam in sorted({r["model"] for r in rag}):
        for n in sorted({r["n"] for r in rag if r["model"] == fam}):
            cells = [r for r in rag if r["model"] == fam and r["n"] == n]
            f = [_near_perfect(r) for r in cells]
            flag = True if True in f else (None if None in f else False)
            flags.append(flag)
            parts.append(f"RAG {fam} n={n}: " + ", ".join(f"{_who(r)} {_ci_text(r)}" for r in cells)
                         + f" ({ {True: 'lifted', False: 'not lifted', None: 'unclear'}[flag] })")
    for r in [r for r in cot if r["model"] == "hybrid"]:
        att = [t for t in cot if _is_transformer(t) and t["n"] == r["n"]]
        ch = wilson_interval(r["acc"], r.get("acc_n")) or (r["acc"], r["acc"])
        close = _near_perfect(r) is True or any(
            (wilson_interval(t["acc"], t.get("acc_n")) or (t["acc"], t["acc"]))[0] <= ch[1] for t in att)
        flags.append(bool(close))
        parts.append(f"Hybrid CoT n={r['n']}: {_who(r)} {_ci_text(r)} ({'closes the gap' if close else 'gap remains'})")
    return _check_verdict(flags), "rule: each RNN + RAG near-perfect, Hybrid CoT near-perfect or within the " \
                            "Transformer's interval; " + ("; ".join(parts) or "no RAG or Hybrid cell")


def check_w_d(rows: Sequence[dict], threshold: float) -> tuple[str, str]:
    """Issue 11's check **W-d** (W's capacity law on AR / MQAR): ``(verdict, detail)``, verdict one of
    "shown" / "not shown" / "inconclusive".

    Rule, declared before any run:
    (a) attention solves every n: some attention-state (KV cache) row has, at every n of its grid, the
        lower end of the 95% Wilson interval of its per-query accuracy >= the threshold and beats the
        shortcut baseline ("no" at an n: the upper end is below the threshold or the point is at
        baseline; otherwise "unclear");
    (b) each fixed-state family's largest solved n grows with its state size: per family (model name)
        and state size the best row over its variants (learning rates, options) counts; shown when the
        largest solved n (0 = none) never falls as the state grows and is larger at the largest state
        than at the smallest; not shown when it is flat (e.g. nothing solved at any size) or lower at the
        largest state; inconclusive when it rises but not monotonically, or a family has one state size;
    (c) the log-log slope of largest solved n against state bits over those best points is fitted and
        printed (it does not decide the verdict: W's law predicts about 1, as an upper bound).
    Verdict: shown when (a) and (b) for every family are shown; not shown when (a) is not shown or
    some family's (b) is not shown; inconclusive otherwise (also without attention or RNN rows)."""
    att = [r for r in rows if r["state_per_token"]]
    rnn = [r for r in rows if not r["state_per_token"] and r.get("recurrent", True)]
    parts: list[str] = []

    def status(row: dict, n: int) -> str:
        a, ci, beats = row["acc_by_n"][n], row.get("ci_by_n", {}).get(n), row.get("beats_by_n", {}).get(n, True)
        lo, hi = ci if ci else (a, a)
        if not beats or hi < threshold:
            return "no"
        return "yes" if lo >= threshold else "unclear"

    a_rows = []
    for row in att:
        st = {n: status(row, n) for n in sorted(row["acc_by_n"])}
        a_rows.append(all(v == "yes" for v in st.values()) or ("no" if "no" in st.values() else "unclear"))
        cis = ", ".join(f"n={n}: {row['acc_by_n'][n]:.3f}"
                        + (f" [{row['ci_by_n'][n][0]:.3f}, {row['ci_by_n'][n][1]:.3f}]" if row.get("ci_by_n", {}).get(n)
                           else "") for n in sorted(row["acc_by_n"]))
        parts.append(f"(a) {row['task']} {_row_name(row)}: {cis}")
    if not att:
        a_ok = None
        parts.append("(a) no attention row")
    elif any(v is True for v in a_rows):
        a_ok = True
    elif all(v == "no" for v in a_rows):
        a_ok = False
    else:
        a_ok = None
    fam_ok: dict[str, bool | None] = {}
    points: list[tuple[float, float]] = []
    for model in sorted({r["model"] for r in rnn}):
        best: dict[int, tuple[int, dict]] = {}
        for r in (r for r in rnn if r["model"] == model):
            L = r["largest_solved"] or 0
            if r["state_bits"] not in best or L > best[r["state_bits"]][0]:
                best[r["state_bits"]] = (L, r)
        bits = sorted(best)
        Ls = [best[b][0] for b in bits]
        seq = ", ".join(f"{_bits(b)} bits ({_opts(best[b][1])}"
                        + (f", lr {best[b][1]['lr']:g}" if best[b][1].get("lr") else "") + f"): "
                        + (str(best[b][0]) if best[b][0] else "none") for b in bits)
        if len(bits) < 2:
            ok = None
        elif Ls[-1] > Ls[0] and all(y >= x for x, y in zip(Ls, Ls[1:])):
            ok = True
        elif Ls[-1] <= Ls[0]:
            ok = False
        else:
            ok = None
        fam_ok[model] = ok
        word = {True: "grows", False: "does not grow", None: "unclear"}[ok]
        parts.append(f"(b) {model}: largest n solved by state size (best variant) {seq}: {word}")
        points += [(b, best[b][0]) for b in bits if best[b][0]]
    if not rnn:
        parts.append("(b) no fixed-state row")
    slope = fit_loglog_slope(points)
    parts.append(f"(c) slope of log largest-solved n on log state bits: {slope:.2f} over {len(points)} points"
                 if slope is not None else
                 f"(c) slope not fitted: {len(points)} fixed-state point(s) with a solved n (needs two distinct "
                 f"state sizes)")
    if a_ok is False or any(v is False for v in fam_ok.values()):
        verdict = "not shown"
    elif a_ok is True and fam_ok and all(v is True for v in fam_ok.values()):
        verdict = "shown"
    else:
        verdict = "inconclusive"
    rule = (f"rule: attention's 95% interval >= {threshold:g} and above the shortcut baseline at every n; each "
            f"RNN family's largest solved n rising with its state size; slope fitted and printed")
    return verdict, rule + ". " + "; ".join(parts) + "."


def _solved_ns(row: dict, threshold: float) -> set[int]:
    beats = row.get("beats_by_n", {})
    return {n for n, a in row["acc_by_n"].items() if a >= threshold and beats.get(n, True)}


NO_CAPACITY_PLOT = "No model solves any n (accuracy >= {t:g} and above the shortcut baseline): no capacity plot is drawn."


# ---- the report -------------------------------------------------------------------------------

def write_retrieval_gap_report(records: Sequence[dict], meta: dict[str, Any], out: Path) -> str:
    """``records``: the study's rows (:func:`seqgap.studies.retrieval_gap.record`); reads, per row,
    ``acc`` / ``acc_n`` / ``acc_scores`` and ``chance`` / ``baseline`` (rows built by hand may omit the
    last five: no interval, and AR/MQAR fall back to the formula baseline).  Trains nothing."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threshold = meta.get("threshold", 0.9)
    rows = capacity_rows(records, threshold)
    (out / "results.json").write_text(json.dumps({"meta": meta, "cells": list(records), "capacity": rows},
                                                 indent=1, default=str))
    lines = ["# The retrieval gap (study W)", "",
             f"Preset **{meta.get('preset')}**: {meta.get('description', '')}", "",
             f"Training data: {meta.get('n_train', '')}. Run on {meta.get('date', '')}: "
             f"{meta.get('trained', 0)} runs trained, {meta.get('from_store', 0)} read from the store, "
             f"{meta.get('failed', 0)} failed; wall time of this invocation {meta.get('wall_seconds', 0):.0f} s; "
             f"training time summed over the cells (as recorded when each was trained) "
             f"{meta.get('train_seconds_total', 0):.0f} s.", "",
             "Every accuracy is shown with its 95% Wilson interval over the scored examples, next to chance and "
             "to the task's strongest shortcut baseline (computed from the task on that cell's validation "
             "problems). *beats* = the interval's lower end is above max(baseline, chance); otherwise "
             "*at baseline*, and the cell is never called solved or near-perfect. Every row names the model, "
             "its named size, parameter count and options.", ""]
    failed = [r for r in records if not r["ok"]]
    ist = sorted(_ok(records, task="istree"), key=lambda r: (r["n"], r["format"], r["model"], r["n_params"],
                                                            _opts_key(r)))
    if ist:
        lines += ["## IsTree", "",
                  "Accuracy of the final model on held-out graphs. *answer acc* = the first [TRUE]/[FALSE] of free "
                  "greedy generation (RAG: with the live regex retrieval tool); *scored on* says how many graphs "
                  "and how (a vanilla cell without generation: the teacher-forced answer token; a CoT/RAG cell "
                  "without generation has no answer accuracy: its teacher-forced last token closes the trace "
                  "and is given away). *gen. trace* = the whole generated continuation equals the reference "
                  "(W's RAG criterion); *TF trace* = teacher-forced, every model-written token right.", ""]
        table = []
        for r in ist:
            how = (r.get("acc_scores") or "answer").replace("answer, ", "")
            scored = (f"{r['acc_n']} graphs, " if r.get("acc_n") else "") + how
            table.append([str(r["n"]), r["format"], r["model"], r["size"], _params(r["n_params"]), _opts(r),
                          f"{r['samples_seen']:,}", _f(r.get("acc")), _ci(r), scored, _f(r.get("chance")),
                          _base_str(r), _verdict(r), _f(r.get("gen_trace_acc")), _f(r["val_seq_acc"]),
                          f"{r.get('gen_failures', 0)}/{r.get('gen_n', '-')}", f"{r['seconds']:.0f}"])
        lines += md_table(["n", "format", "model", "size", "params", "options", "samples", "answer acc", "95% CI",
                           "scored on", "chance", "shortcut baseline", "vs baseline", "gen. trace", "TF trace",
                           "gen. failures", "train s"], table)
        lines.append("")
        for n in sorted({r["n"] for r in ist}):
            if not _scored(records, task="istree", n=n):
                continue
            name = f"istree_acc_vs_size_n{n}.png"
            plot_istree(records, n, out / name)
            lines.append(f"![IsTree n={n}]({name})")
        lines.append("")
    slope = None
    if rows:
        lines += ["## Capacity: AR / multi-query AR", "",
                  f"Teacher-forced per-query accuracy on held-out key-value sets (the number in every cell; "
                  f"95% interval over all scored queries). *solves n* = accuracy >= {threshold:g} and above the "
                  f"shortcut baseline; † = at baseline. State: floats carried between tokens x 32 bits "
                  f"(attention: KV cache per token).", ""]
        all_ns = sorted({n for r in rows for n in r["acc_by_n"]})
        table = []

        def cell(row: dict, n: int) -> str:
            a = row["acc_by_n"].get(n)
            if a is None:
                return "-"
            return _f(a, 2) + ("" if row["beats_by_n"].get(n, True) else "†")

        for row in rows:
            state = f"{_bits(row['state_bits'])}/token" if row["state_per_token"] else _bits(row["state_bits"])
            opts = _opts(row) + (f"; lr {row['lr']:g}" if row.get("lr") else "")
            table.append([row["task"], row["model"], row["size"], _params(row["n_params"]), opts, state,
                          *[cell(row, n) for n in all_ns],
                          "none" if row["largest_solved"] is None else str(row["largest_solved"])])
        base_notes = []
        for task in sorted({r["task"] for r in rows}):
            base = task_baselines(rows, task)
            names = sorted({b["name"] + (" (formula)" if b.get("source") == "formula" else "")
                            for b in base.values()})
            table.append([task, "*shortcut baseline*", "", "", "", "", *[_f(base[n]["accuracy"], 2) if n in base
                                                                         else "-" for n in all_ns], ""])
            chance = next((r["chance"] for r in rows if r["task"] == task and r.get("chance") is not None), None)
            if chance is not None:
                table.append([task, "*chance*", "", "", "", "", *[_f(chance, 3) for _ in all_ns], ""])
            base_notes.append(f"{task}: {'; '.join(names) or 'none'}")
        lines += md_table(["task", "model", "size", "params", "options", "state bits", *[f"n={n}" for n in all_ns],
                           "largest solved"], table)
        lines += ["", "*shortcut baseline* shown: " + ", ".join(base_notes) + ". The task's context guess "
                  "(`Task.shortcut_baseline`, measured on the validation split) knows which values occur in the "
                  "context (MQAR: minus those already answered) and answers with the most frequent of them; it is "
                  "what the distinct-values formula H_n/n (MQAR) or 1/n (AR) measures, and higher when values "
                  "repeat. Accuracy near it means key-value retrieval was not learned.", ""]
        lines.append("")
        for task in sorted({r["task"] for r in rows}):
            name = f"{task}_acc_vs_pairs.png"
            plot_pairs(rows, task, threshold, out / name)
            lines.append(f"![{task} accuracy vs pairs]({name})")
        if any_solved(rows):
            _, slope = plot_capacity_law(rows, out / "capacity_law.png")
            lines += ["![capacity law](capacity_law.png)", ""]
        else:
            (out / "capacity_law.png").unlink(missing_ok=True)  # no stale plot from an earlier report
            lines += ["", NO_CAPACITY_PLOT.format(t=threshold), ""]
    lines += ["## What the numbers say", "",
              f"(Computed from the table rows; near-perfect = accuracy >= {NEAR_PERFECT} and above the shortcut "
              f"baseline; intervals are 95% Wilson intervals.)", ""]
    lines += findings_istree(records)
    lines += findings_capacity(rows, threshold, slope)
    for r in failed:
        lines.append(f"- cell {r['model']}:{r['size']} ({_opts(r)}) {r['task']}/{r['format']} n={r['n']} FAILED "
                     f"(see the log); it is missing from the tables.")
    checks = []
    if _istree(records, "cot") or _istree(records, "rag"):
        for name, (verdict, detail) in (("W-a (Transformer + CoT near-perfect on IsTree)", check_w_a(records)),
                                        ("W-b (an RNN + CoT clearly below the Transformer, gap growing with n)",
                                         check_w_b(records)),
                                        ("W-c (RAG lifts each RNN; the Hybrid closes the gap)", check_w_c(records))):
            checks.append(f"- **{name}: {verdict}.** {detail}")
    if rows:
        verdict, detail = check_w_d(rows, threshold)
        checks.append(f"- **W-d (capacity law): {verdict}.** {detail}")
    if checks:
        lines += ["", "## Checks", ""] + checks
    md = "\n".join(lines) + "\n"
    (out / "summary.md").write_text(md)
    return md
