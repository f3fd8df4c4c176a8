"""E's hybrid geometric/binary search for N*, the smallest training-set size that succeeds.

Protocol (Ebrahimi et al. 2026, "On the 'Induction Bias' in Sequence Models"):
start at N_max; while it succeeds, shrink geometrically by a factor M; then
bisect between the last failure and the last success; at most S evaluations.
Success is assumed monotone in N (more data never hurts); with nested training
sets (``train[:N]``) this is as close to true as training noise allows.

The search is written against a plain ``succeeds(N) -> bool`` so it can be
tested against a synthetic oracle and reused by every study.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class SearchResult:
    n_star: int | None  # smallest successful N found; None when even N_max fails ("> N_max")
    n_max: int
    last_fail: int | None  # largest N known to fail (the bracket is (last_fail, n_star])
    evaluations: list[tuple[int, bool]] = field(default_factory=list)
    exact: bool = False  # True when the bracket is closed: last_fail + 1 == n_star (or n_star == n_min)

    @property
    def solved(self) -> bool:
        return self.n_star is not None

    def label(self) -> str:
        if self.n_star is None:
            return f"> {self.n_max:,}"
        if self.exact:
            return f"{self.n_star:,}"
        if self.last_fail is None:  # step limit hit while still succeeding
            return f"<= {self.n_star:,}"
        return f"{self.n_star:,} (in ({self.last_fail:,}, {self.n_star:,}])"

    def to_dict(self) -> dict:
        return {"n_star": self.n_star, "n_max": self.n_max, "last_fail": self.last_fail,
                "evaluations": [list(e) for e in self.evaluations], "exact": self.exact, "label": self.label()}


def find_n_star(succeeds: Callable[[int], bool], n_max: int, factor: float = 1000.0, max_steps: int = 20,
                n_min: int = 1, bisect: str = "arithmetic") -> SearchResult:
    """Hybrid geometric/binary search.

    ``bisect="arithmetic"`` halves the integer interval (the paper's bisection);
    ``"geometric"`` splits it at the geometric mean, which needs fewer steps when
    the bracket spans orders of magnitude (useful with small step limits).
    """
    if n_max < n_min:
        raise ValueError(f"n_max ({n_max}) < n_min ({n_min})")
    if factor <= 1:
        raise ValueError(f"shrink factor must be > 1, got {factor}")
    if bisect not in ("arithmetic", "geometric"):
        raise ValueError(f"bisect must be arithmetic or geometric, got {bisect!r}")
    evals: list[tuple[int, bool]] = []

    def test(n: int) -> bool:
        ok = bool(succeeds(n))
        evals.append((n, ok))
        return ok

    if max_steps < 1 or not test(n_max):
        return SearchResult(None, n_max, n_max if evals else None, evals)
    hi, lo = n_max, None  # hi: smallest known success; lo: largest known failure

    # 1) geometric shrink while it succeeds
    while len(evals) < max_steps and hi > n_min:
        n = max(n_min, int(hi // factor))
        if n >= hi:
            n = hi - 1
        if test(n):
            hi = n
        else:
            lo = n
            break

    # 2) bisect between the last failure and the last success
    while len(evals) < max_steps and lo is not None and hi - lo > 1:
        if bisect == "geometric":
            n = int(round(math.sqrt(lo * hi)))
            n = min(max(n, lo + 1), hi - 1)
        else:
            n = (lo + hi) // 2
        if test(n):
            hi = n
        else:
            lo = n
    exact = (lo is not None and hi - lo <= 1) or (lo is None and hi == n_min)
    return SearchResult(hi, n_max, lo, evals, exact)
