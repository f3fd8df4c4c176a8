"""Small plotting and table helpers shared by every study report (matplotlib, headless)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return out


def line_plot(series: dict[str, list[tuple[float, float | None]]], xlabel: str, ylabel: str, title: str,
              path: Path, logy: bool = False, cap: float | None = None, logx: bool = False) -> Path:
    """One line per series.  A point ``(x, y, True)`` is a lower bound (unsolved at y): open marker.
    A None y is drawn at ``cap`` as a lower bound."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (name, pts) in enumerate(sorted(series.items())):
        pts = sorted(pts, key=lambda p: p[0])
        pts = [(p[0], cap, True) if p[1] is None else (p[0], p[1], bool(p[2]) if len(p) > 2 else False)
               for p in pts]
        xs = [p[0] for p in pts]
        ys = [p[1] if p[1] is not None else float("nan") for p in pts]
        line, = ax.plot(xs, ys, marker="o", label=name, alpha=0.9)
        unsolved = [(x, y) for x, y, low in pts if low and y is not None]
        if unsolved:
            ax.scatter([u[0] for u in unsolved], [u[1] for u in unsolved], s=90, facecolors="none",
                       edgecolors=line.get_color(), linewidths=2, zorder=5)
    if cap and logy:
        ax.axhline(cap, color="gray", ls=":", lw=1)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    return _finish(fig, ax, ylabel, title, path, legend_size=7, grid_axis="both")


def bar_plot(series: dict[str, list[tuple[str, float]]], ylabel: str, title: str, path: Path,
             hline: float | None = None, logy: bool = False) -> Path:
    """Grouped bars: one group per x label, one bar per series."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    labels = sorted({x for pts in series.values() for x, _ in pts})
    width = 0.8 / max(1, len(series))
    for i, (name, pts) in enumerate(sorted(series.items())):
        d = dict(pts)
        xs = [j + i * width for j in range(len(labels))]
        ax.bar(xs, [d.get(lab, 0.0) for lab in labels], width=width, label=name)
    ax.set_xticks([j + width * (len(series) - 1) / 2 for j in range(len(labels))])
    ax.set_xticklabels(labels)
    if hline is not None:
        ax.axhline(hline, color="k", ls="--", lw=1)
    if logy:
        ax.set_yscale("log")
    return _finish(fig, ax, ylabel, title, path, legend_size=8, grid_axis="y")


def _finish(fig, ax, ylabel: str, title: str, path: Path, legend_size: int, grid_axis: str) -> Path:
    """Labels, legend, grid, save, close: the common tail of every plot."""
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3, axis=grid_axis)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def relink_part(md: str, sub: str) -> str:
    """A part's report inside a larger one: its image links point into its subfolder, its title demoted."""
    import re

    md = re.sub(r"\]\(([^)]+\.png)\)", lambda m: f"]({sub}/{m.group(1)})", md)
    return md.replace("\n# ", "\n## ").replace("# ", "## ", 1)
