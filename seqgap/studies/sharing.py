"""Study E, part 2: the sharing factor kappa.

    kappa = (sum_{n=2..L} N*_n) / N*_joint

N*_n: data needed by a model trained and evaluated at fixed length n only;
N*_joint: data needed by one model trained on all lengths 2..L together
(uniform length distribution).  kappa > 1: learning is shared across lengths;
~1: each length is learned in isolation; < 1: lengths interfere.

All cells are ordinary sample-complexity cells, so they are read from the
store when another study already searched them.

Bounds: when a search fails at N_max the cell's N* is only known to exceed it.
kappa is then reported as a bound where one exists: "> 3.1" when some N*_n
are lower bounds (counted at their cap) and the joint is exact; "< 0.2" when
every N*_n is exact and the joint failed at its cap; "n/a" when both sides are
bounds pointing the same way.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from seqgap.errors import SeqgapError
from seqgap.studies.sample_complexity import (
    Cell, CellResult, SearchSettings, add_cell_arguments, add_search_arguments, cell_axes, search_cells,
    settings_from, validate_cells,
)

NAME = "sharing"
HELP = "sharing factor kappa = sum_n N*_n / N*_joint: is learning shared across lengths?"


@dataclass
class Kappa:
    value: float | None  # point value (exact when all N* are exact numbers)
    relation: str  # "=", ">", "<" or "n/a"
    per_length: dict[int, int | None]
    joint: int | None
    n_cap: int
    # kappa's interval from the cells' N* intervals (brackets or replicate ranges):
    # [sum of lows / joint's high, sum of highs / joint's low]; None: not computed (see interval())
    low: float | None = None
    high: float | None = None  # math.inf: unbounded

    def interval(self) -> tuple[float, float | None]:
        """[low, high] (high None: unbounded).  Without computed bounds, from the point value and
        its relation: "=" -> [v, v], ">" -> [v, inf), "<" -> [0, v], "n/a" -> [0, inf)."""
        if self.low is not None and self.high is not None:
            return self.low, (None if math.isinf(self.high) else self.high)
        v = self.value
        if v is None or self.relation == "n/a":
            return 0.0, None
        return {"=": (v, v), ">": (v, None), "<": (0.0, v)}[self.relation]

    def label(self) -> str:
        if self.relation == "n/a" or self.value is None:
            return "n/a"
        return f"{self.value:.2f}" if self.relation == "=" else f"{self.relation} {self.value:.2f}"


def kappa(per_length: dict[int, int | None], joint: int | None, caps: dict[int, int] | None = None,
          joint_cap: int | None = None) -> Kappa:
    """kappa from per-length N* (None = failed at its cap) and the joint N*.

    Unsolved per-length cells count as their cap (a lower bound on N*_n), which
    makes the sum, and kappa, a lower bound.
    """
    caps = caps or {}
    if joint is None:
        # N*_joint > joint_cap; with every N*_n known exactly, kappa < sum / joint_cap
        if joint_cap and per_length and all(v is not None for v in per_length.values()):
            return Kappa(sum(per_length.values()) / joint_cap, "<", per_length, joint, joint_cap)
        return Kappa(None, "n/a", per_length, joint, joint_cap or 0)
    total, lower = 0, False
    for n, v in per_length.items():
        if v is None:
            cap = caps.get(n)
            if cap is None:
                return Kappa(None, "n/a", per_length, joint, joint_cap or 0)
            total += cap
            lower = True
        else:
            total += v
    return Kappa(total / joint, ">" if lower else "=", per_length, joint, joint_cap or 0)


def sharing_cells(base: Cell, min_length: int = 2) -> tuple[list[Cell], Cell]:
    """Fixed-length cells n = min_length..L and the joint (uniform over the same n) cell."""
    from dataclasses import replace

    if min_length > base.max_length:
        raise SeqgapError(f"sharing: --min-n ({min_length}) must be <= L ({base.max_length})")
    fixed = [replace(base, max_length=n, length_dist="fixed") for n in range(min_length, base.max_length + 1)]
    joint_params = dict(base.task_params)
    if min_length != 2:
        joint_params["min_length"] = min_length
    joint = replace(base, length_dist="uniform", task_params=joint_params)
    return fixed, joint


def compute_kappas(bases: Sequence[Cell], settings, store_path: str | None, workers: int | None,
                   log=print, min_n: int = 2, **engine) -> list[tuple[Cell, Kappa, list[CellResult | None]]]:
    groups = [sharing_cells(b, min_n) for b in bases]
    flat: list[Cell] = []
    for fixed, joint in groups:
        flat.extend(fixed + [joint])
    results = search_cells(flat, settings, store_path, workers, log=log, **engine)
    out, i = [], 0
    for base, (fixed, joint) in zip(bases, groups):
        chunk = results[i:i + len(fixed) + 1]
        i += len(fixed) + 1
        if any(r is None for r in chunk):
            out.append((base, Kappa(None, "n/a", {}, None, 0), chunk))
            continue
        per = {r.cell.max_length: r.search.n_star for r in chunk[:-1]}
        caps = {r.cell.max_length: r.n_cap for r in chunk[:-1]}
        jr = chunk[-1]
        k = kappa(per, jr.search.n_star, caps, jr.n_cap)
        k.low, k.high = kappa_interval(chunk[:-1], jr)
        out.append((base, k, chunk))
    return out


def kappa_interval(per_length: Sequence[CellResult], joint: CellResult) -> tuple[float, float]:
    """kappa's range over the cells' N* intervals: [sum low_n / high_joint, sum high_n / low_joint]
    (an unsolved cell's interval is (cap, inf); inf propagates)."""
    lows, highs = 0.0, 0.0
    for r in per_length:
        lo, hi = r.interval()
        lows += lo
        highs += math.inf if hi is None else hi
    jlo, jhi = joint.interval()
    jhi = math.inf if jhi is None else jhi
    return lows / jhi, highs / max(jlo, 1)


def add_arguments(p) -> None:
    add_cell_arguments(p, lengths_help="max length L (kappa uses n = 2..L); one or more")
    p.add_argument("--min-n", type=int, help="shortest length in the sum and the joint cell (default 2; quick: 3)")
    add_search_arguments(p)


def plan(args) -> tuple[list[Cell], SearchSettings, int]:
    """The base cells (one per model/format/m/L), search settings and shortest length n
    the parsed ``args`` ask for, preset defaults filled in."""
    from seqgap.studies.sample_complexity import make_cells

    settings = settings_from(args)
    axes = cell_axes(args)
    if not args.length:
        axes["lengths"] = [SHARING_DEFAULT_L[args.preset]]
    if not args.sizes_axis and args.task in SHARING_DEFAULT_SIZES[args.preset]:
        axes["sizes_axis"] = SHARING_DEFAULT_SIZES[args.preset][args.task]
    bases = make_cells(length_dist="fixed", **axes)
    validate_cells(bases, settings)
    min_n = args.min_n if args.min_n is not None else SHARING_DEFAULT_MIN_N[args.preset]
    return bases, settings, min_n


def main(args) -> int:
    from seqgap.report.state_tracking import write_sharing_report

    bases, settings, min_n = plan(args)
    out = Path(args.out or f"seqgap_out/sharing_{args.preset}")
    print(f"sharing: {len(bases)} model/format/m/L combinations, preset {args.preset}, report -> {out}", file=sys.stderr)
    from seqgap.options import engine_options

    opts = engine_options(args)
    from seqgap.sweep.driver import log_line
    rows = compute_kappas(bases, settings, args.store, opts.pop("workers"), log=log_line,
                          min_n=min_n, **opts)
    print(write_sharing_report(rows, settings, out))
    return 0


SHARING_DEFAULT_L = {"quick": 5, "paper": 10}
SHARING_DEFAULT_SIZES = {"quick": {"modadd": [5]}, "paper": {"modadd": [2, 5, 10]}}
# The quick preset uses m = 5, where n = 2 has only 25 sequences (20 for training):
# too few for any model to generalise from, so its kappa sum starts at n = 3.
SHARING_DEFAULT_MIN_N = {"quick": 3, "paper": 2}
