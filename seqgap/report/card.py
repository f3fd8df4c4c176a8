"""The gap card's rendering: ``card.json`` (every number), ``card.md`` and ``card.html`` (self-contained).

A card (built by :mod:`seqgap.studies.card`) holds, per capability, rows (one battery setting
each) of entries (the user's model and each baseline) with the number, its interval, the
parameter count and state size, the exact config and seeds.  This module states each
verdict with its rule and draws one figure per capability; it reads the card dict only.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Sequence

from seqgap.report.figures import md_table

INF = float("inf")


def _iv(e: dict[str, Any]) -> tuple[float, float] | None:
    iv = e.get("interval")
    if not iv:
        return None
    lo, hi = iv
    return float(lo), (INF if hi is None else float(hi))


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v == INF:
            return "inf"
        return f"{v:.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def interval_text(cap: dict[str, Any], e: dict[str, Any]) -> str:
    iv = _iv(e)
    if iv is None:
        return "-"
    lo, hi = iv
    if cap["id"] == "nstar":
        return f"[{lo:,.0f}, inf)" if hi == INF else (f"{lo:,.0f}" if lo == hi else f"[{lo:,.0f}, {hi:,.0f}]")
    return f"[{lo:.2f}, {hi:.2f}]"


def state_text(e: dict[str, Any]) -> str:
    bits = e.get("state_bits")
    if bits is None:
        return "-"
    b = f"{bits / 1e6:.2f}M" if bits >= 1e6 else f"{bits / 1e3:.1f}k" if bits >= 1e3 else str(bits)
    return f"{b} bits" + ("/token (KV cache)" if e.get("state_per_token") else "")


def params_text(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k"


def compare(cap: dict[str, Any], mine: dict[str, Any], other: dict[str, Any]) -> str:
    """``better`` / ``worse`` / ``indistinguishable`` / ``n/a``: the two intervals, in the capability's direction."""
    a, b = _iv(mine), _iv(other)
    if a is None or b is None:
        return "n/a"
    lower_better = cap.get("better") == "lower"
    if a[1] < b[0]:
        return "better" if lower_better else "worse"
    if a[0] > b[1]:
        return "worse" if lower_better else "better"
    return "indistinguishable"


def verdict_of(cap: dict[str, Any], row: dict[str, Any], e: dict[str, Any]) -> tuple[str, str]:
    """(verdict, detail) of one entry against the capability's rule (``cap["rule"]``)."""
    if not e.get("ok"):
        return "no result", e.get("label") or "failed"
    iv = _iv(e)
    if cap["id"] == "nstar":
        if e.get("solved"):
            return "solved", f"N* = {e['label']} (interval {interval_text(cap, e)})"
        return "not solved", f"failed with every one of its {e.get('n_cap', '?'):,} training samples"
    if cap["id"] == "length_gen":
        lo, hi = iv
        v = "generalises" if lo >= 0.8 else "does not generalise" if hi < 0.8 else "inconclusive"
        return v, f"normalised acc at 2L {e['value']:.2f}, 95% interval [{lo:.2f}, {hi:.2f}] vs 0.8"
    # retrieval: against max(shortcut baseline, chance)
    base = (e.get("baseline") or {}).get("accuracy")
    ref = max([v for v in (base, e.get("chance")) if v is not None], default=None)
    if ref is None:
        return "no reference", "no shortcut baseline or chance for this cell"
    lo = iv[0] if iv else e["value"]
    return ("beats the shortcut" if lo > ref else "at baseline"), \
        f"acc {e['value']:.3f}, 95% interval {interval_text(cap, e)}, reference max(baseline, chance) = {ref:.3f}"


def _css(v: str) -> str:
    good = ("solved", "generalises", "beats the shortcut", "better")
    bad = ("not solved", "does not generalise", "at baseline", "worse", "no result")
    return "good" if v in good else "bad" if v in bad else "unsure"


# ---- figure -------------------------------------------------------------------------------------

def plot_capability(cap: dict[str, Any], path: Path) -> Path | None:
    """Grouped bars: one group per setting, one bar per model, with the interval as error bars;
    N* on a log axis, unsolved drawn at the cap with hatching."""
    from seqgap.report.figures import plt

    rows = [r for r in cap["rows"] if r["entries"]]
    if not rows:
        return None
    keys = list(dict.fromkeys(e["key"] for r in rows for e in r["entries"]))
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.8 / max(1, len(keys))
    for k_i, key in enumerate(keys):
        xs, ys, los, his, hatch = [], [], [], [], []
        for j, r in enumerate(rows):
            e = next((x for x in r["entries"] if x["key"] == key), None)
            if e is None or not e.get("ok"):
                continue
            iv = _iv(e)
            v = e.get("value")
            if cap["id"] == "nstar" and v is None:  # unsolved: at the cap
                v, unsolved = float(e.get("n_cap") or (iv[0] if iv else 1)), True
            else:
                unsolved = False
            if v is None:
                continue
            xs.append(j + k_i * width)
            ys.append(float(v))
            lo, hi = (iv if iv else (v, v))
            los.append(max(0.0, float(v) - lo) if not unsolved else 0.0)
            his.append(max(0.0, (hi if hi != INF else v) - float(v)) if not unsolved else 0.0)
            hatch.append(unsolved)
        role = next((e["role"] for r in rows for e in r["entries"] if e["key"] == key), "baseline")
        bars = ax.bar(xs, ys, width=width, label=key + (" (this model)" if role == "model" else ""),
                      edgecolor="black" if role == "model" else None, linewidth=1.5 if role == "model" else 0)
        for b, h in zip(bars, hatch):
            if h:
                b.set_hatch("//")
        if xs:
            ax.errorbar(xs, ys, yerr=[los, his], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.set_xticks([j + width * (len(keys) - 1) / 2 for j in range(len(rows))])
    ax.set_xticklabels([r["setting"] for r in rows], fontsize=7)
    if cap["id"] == "nstar":
        ax.set_yscale("log")
        ax.set_ylabel("N* (log; hatched: unsolved, at the cap)")
    else:
        ax.set_ylabel(cap["metric"][:48])
        for r in rows:  # the shortcut baseline per setting
            b = (r.get("shortcut") or {}).get("accuracy")
            j = rows.index(r)
            if b is not None:
                ax.hlines(b, j - 0.1, j + 0.8, colors="gray", linestyles="--", lw=1)
    ax.set_title(cap["title"])
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- Markdown ------------------------------------------------------------------------------------

def card_markdown(card: dict[str, Any], figures: dict[str, str]) -> str:
    mine = card["key"]
    lines = [f"# Gap card: {mine}", "",
             f"Battery **{card['battery']}**: {card['battery_description']}.", "",
             f"seqgap {card['seqgap_version']}, {card['date']}; wall time {card['wall_seconds']:.0f} s "
             f"(E sample complexity {card['timings'].get('nstar', 0):.0f} s, length generalisation "
             f"{card['timings'].get('length_gen', 0):.0f} s, retrieval {card['timings'].get('retrieval', 0):.0f} s); "
             f"runs trained by this card: "
             + (", ".join(f"{m} {n}" for m, n in sorted(card["trained_runs"].items())) or "none (all from the store)")
             + f"; run store `{card['store']}`.", ""]
    if card.get("match_params"):
        mp = card["match_params"]
        lines += [f"Parameter-matched (`--match-params`): `{mp['field']}` {mp['from']} -> {mp['to']}, "
                  f"{mp['params']:,} parameters for a target of {mp['target_params']:,} (the baselines' mean; "
                  f"{mp['relative_error']:+.1%}).", ""]
    lines += ["Baselines: E (state tracking) " + ", ".join(f"{m}:{s}" for m, s in card["baselines"]["E"].items())
              + "; W (retrieval) " + ", ".join(f"{m}:{s}" for m, s in card["baselines"]["W"].items()) + ".", ""]
    # headline
    lines += ["## Summary", ""]
    head = []
    for cap in card["capabilities"]:
        for row in cap["rows"]:
            e = next((x for x in row["entries"] if x["role"] == "model"), None)
            if e is None:
                continue
            v, _ = verdict_of(cap, row, e)
            vs = "; ".join(f"{o['key']}: {compare(cap, e, o)}" for o in row["entries"] if o["role"] != "model")
            head.append([cap["study"], cap["title"].split(": ")[-1], row["setting"], e.get("label", "-"),
                         interval_text(cap, e), state_text(e), f"**{v}**", vs])
    lines += md_table(["study", "capability", "setting", "this model", "interval", "state", "verdict",
                       "vs baselines (intervals)"], head)
    lines.append("")
    for cap in card["capabilities"]:
        lines += [f"## {cap['title']} ({cap['study']})", "", f"Metric: {cap['metric']}.", "",
                  f"Rule: {cap['rule']}.", ""]
        for row in cap["rows"]:
            sc = row.get("shortcut") or {}
            short = sc.get("name", "-")
            if sc.get("accuracy") is not None:
                short += f" = {sc['accuracy']:.3f}"
            if sc.get("chance") is not None:
                short += f"; chance {sc['chance']:.3f}"
            lines += [f"### {row['setting']}", "", f"Shortcut baseline: {short}.", ""]
            table = []
            me = next((x for x in row["entries"] if x["role"] == "model"), None)
            for e in row["entries"]:
                v, detail = verdict_of(cap, row, e)
                cmp_ = "-" if e is me or me is None else compare(cap, me, e)
                table.append([e["key"] + (" **(this model)**" if e["role"] == "model" else ""), e.get("label", "-"),
                              interval_text(cap, e), params_text(e.get("n_params")), state_text(e), v, detail,
                              cmp_, ",".join(str(s) for s in e.get("seeds", [])), str(e.get("data_seed", "-"))])
            lines += md_table(["model", "value", "interval", "params", "state", "verdict", "rule applied",
                               "this model vs it", "seeds", "data seed"], table)
            lines.append("")
        if cap["id"] in figures:
            lines += [f"![{cap['title']}]({figures[cap['id']]})", ""]
    lines += ["## Exact configs", "", "Every entry's config as the studies store it (a run's `RunConfig`, or an N* "
              "cell with its search settings); `card.json` holds the same and every number above.", ""]
    for cap in card["capabilities"]:
        for row in cap["rows"]:
            for e in row["entries"]:
                lines += [f"<details><summary>{cap['id']} / {row['setting']} / {e['key']}</summary>", "",
                          "```json", json.dumps(e.get("config"), indent=1, default=str), "```", "", "</details>", ""]
    return "\n".join(lines) + "\n"


def write_card(card: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """``card.json``, the figures, ``card.md`` and the self-contained ``card.html`` in ``out``."""
    from seqgap.report.html import markdown_to_html, page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {}
    for cap in card["capabilities"]:
        name = f"card_{cap['id']}.png"
        if plot_capability(cap, out / name) is not None:
            figures[cap["id"]] = name
    (out / "card.json").write_text(json.dumps(card, indent=1, default=str))
    md = card_markdown(card, figures)
    (out / "card.md").write_text(md)
    body = markdown_to_html(md, base=out)
    (out / "card.html").write_text(page(f"seqgap gap card: {card['key']}", body,
                                        footer=f"seqgap {html.escape(str(card['seqgap_version']))}; "
                                               "self-contained page (figures embedded, no network)."))
    return {"json": out / "card.json", "md": out / "card.md", "html": out / "card.html"}


# ---- index of many cards ---------------------------------------------------------------------

def index_markdown(cards: Sequence[dict[str, Any]]) -> str:
    cols = list(dict.fromkeys(k for c in cards for k in c.get("summary", {})))
    titles = {}
    for c in cards:
        for k, v in c.get("summary", {}).items():
            titles[k] = v["setting"]
    lines = ["# Gap cards", "", f"{len(cards)} cards, one row per architecture: the model's number and verdict per "
             "battery setting (see each card for the baselines, intervals, rules and configs).", ""]
    rows = []
    for c in sorted(cards, key=lambda c: c["key"]):
        s = c.get("summary", {})
        first = next(iter(s.values()), {})
        cells = []
        for k in cols:
            v = s.get(k)
            cells.append("-" if v is None else f"{v['label']} ({v['verdict']})")
        rows.append([c["key"], c["battery"], params_text(first.get("n_params")), state_text(first), *cells,
                     f"{c['wall_seconds']:.0f}", str(c.get("_path", ""))])
    lines += md_table(["architecture", "battery", "params", "state", *[titles[k] for k in cols], "wall s", "card"],
                      rows)
    return "\n".join(lines) + "\n"


def write_index(cards: Sequence[dict[str, Any]], out: str | Path) -> dict[str, Path]:
    from seqgap.report.html import markdown_to_html, page

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = index_markdown(cards)
    (out / "index.md").write_text(md)
    (out / "index.html").write_text(page("seqgap gap cards", markdown_to_html(md, base=out)))
    return {"md": out / "index.md", "html": out / "index.html"}


__all__ = ["card_markdown", "compare", "plot_capability", "verdict_of", "write_card", "write_index"]
