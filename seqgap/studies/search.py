"""E's hybrid geometric/binary search for N*, the smallest training-set size that succeeds.

Protocol (Ebrahimi et al. 2026, "On the 'Induction Bias' in Sequence Models"):
start at N_max; while it succeeds, shrink geometrically by a factor M; then
bisect between the last failure and the last success; at most S evaluations.
Success is assumed monotone in N (more data never hurts); with nested training
sets (``train[:N]``) this is as close to true as training noise allows.

The search is written against a plain ``succeeds(N) -> bool`` so it can be
tested against a synthetic oracle and reused by every study.  ``succeeds`` may
also return ``(success, n_succeeded, n_finished)``: how many members of the
hyperparameter grid had reached the criterion, among those that finished, when
the grid stopped at that N; the search records them per evaluation
(``SearchResult.grid``).

Uncertainty (N* is one noisy draw of a noisy process): each search reports its
bracket ``(last_fail, n_star]`` and the grid counts at every N tried; several
independent searches of one cell (*replicates*: other data seeds and training
orders) are summarised by :func:`summarize` as the median and range of N*.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence


@dataclass
class SearchResult:
    n_star: int | None  # smallest successful N found; None when even N_max fails ("> N_max")
    n_max: int
    last_fail: int | None  # largest N known to fail (the bracket is (last_fail, n_star])
    evaluations: list[tuple[int, bool]] = field(default_factory=list)
    exact: bool = False  # True when the bracket is closed: last_fail + 1 == n_star (or n_star == n_min)
    # per evaluation: (N, success, grid members that reached the criterion, members that finished
    # before the grid stopped); the counts are None when ``succeeds`` returned a plain bool
    grid: list[tuple[int, bool, int | None, int | None]] = field(default_factory=list)

    @property
    def solved(self) -> bool:
        return self.n_star is not None

    def interval(self) -> tuple[int, int | None]:
        """What the search knows about N*, as a closed integer interval ``[low, high]``.

        Solved: ``low = last_fail + 1`` (``n_star`` itself when the search reached n_min, 1 when
        the step limit hit while still succeeding), ``high = n_star``.  Unsolved: ``low =
        n_max + 1``, ``high = None`` (unbounded: "> n_max")."""
        if self.n_star is None:
            return self.n_max + 1, None
        if self.last_fail is not None:
            return self.last_fail + 1, self.n_star
        return (self.n_star if self.exact else 1), self.n_star

    def bracket(self) -> str:
        """``(last_fail, n_star]`` as text: ``(197, 209]``; ``> 4,096`` when unsolved."""
        if self.n_star is None:
            return f"> {self.n_max:,}"
        if self.exact and self.last_fail is None:  # succeeded down to n_min
            return f"[{self.n_star:,}]"
        lo = f"{self.last_fail:,}" if self.last_fail is not None else "0"
        return f"({lo}, {self.n_star:,}]"

    def counts_at(self, n: int | None) -> tuple[int, int] | None:
        """(succeeded, finished) grid members at N = n, if the search evaluated n with counts."""
        for e in self.grid:
            if e[0] == n and e[2] is not None:
                return e[2], e[3]
        return None

    def counts_label(self) -> str:
        """Grid members that reached the criterion at N* (``1/2``); at N_max when unsolved."""
        c = self.counts_at(self.n_star if self.n_star is not None else self.n_max)
        return "" if c is None else f"{c[0]}/{c[1]}"

    def table_label(self) -> str:
        """N*, its bracket and the grid count at N*: ``209 (197, 209] 1/2``."""
        if self.n_star is None:
            head = f"> {self.n_max:,}"
        elif self.last_fail is None and not self.exact:
            head = f"<= {self.n_star:,}"
        else:
            head = f"{self.n_star:,}"
        parts = [head]
        if self.n_star is not None and not (self.exact and self.last_fail is None):
            parts.append(self.bracket())
        c = self.counts_label()
        if c:
            parts.append(c)
        return " ".join(parts)

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
                "evaluations": [list(e) for e in self.evaluations], "exact": self.exact, "label": self.label(),
                "grid": [list(e) for e in self.grid], "interval": list(self.interval()), "bracket": self.bracket()}

    @classmethod
    def from_dict(cls, d: dict) -> "SearchResult":
        return cls(d["n_star"], d["n_max"], d["last_fail"], [tuple(e) for e in d["evaluations"]], d["exact"],
                   [tuple(e) for e in d.get("grid", [])])


@dataclass
class ReplicateSummary:
    """R independent searches of one cell: the median and range of N*.

    Unsolved replicates count as "> cap" (above every solved value); the median is then a
    lower bound when it falls on one (``median is None``: "> cap")."""
    n_stars: list[int | None]
    n_max: int
    median: float | None  # None: the median replicate is unsolved ("> n_max")
    low: int | None  # smallest N* (None: no replicate solved)
    high: int | None  # largest N* (None: some replicate is unsolved, range open above)

    @property
    def replicates(self) -> int:
        return len(self.n_stars)

    @property
    def solved(self) -> int:
        return sum(v is not None for v in self.n_stars)

    def interval(self) -> tuple[int, int | None]:
        """The replicates' range as a closed interval [low, high]; high None: unbounded."""
        return (self.low if self.low is not None else self.n_max + 1), self.high

    def label(self) -> str:
        cap = f"> {self.n_max:,}"
        med = cap if self.median is None else f"{self.median:,.0f}" if self.median == int(self.median) \
            else f"{self.median:,.1f}"
        lo = cap if self.low is None else f"{self.low:,}"
        hi = cap if self.high is None else f"{self.high:,}"
        return f"median {med} [{lo} .. {hi}] ({self.solved}/{self.replicates} solved)"

    def to_dict(self) -> dict:
        return {"n_stars": self.n_stars, "n_max": self.n_max, "median": self.median, "low": self.low,
                "high": self.high, "solved": self.solved, "replicates": self.replicates, "label": self.label()}


def summarize(results: Sequence[SearchResult]) -> ReplicateSummary:
    """Median and range of N* over replicate searches (unsolved = "> cap", above all solved)."""
    if not results:
        raise ValueError("no searches to summarize")
    vals = [r.n_star for r in results]
    n_max = max(r.n_max for r in results)
    inf = float("inf")
    ordered = sorted(inf if v is None else v for v in vals)
    k = len(ordered)
    mid = ordered[k // 2] if k % 2 else (ordered[k // 2 - 1] + ordered[k // 2]) / 2
    solved = [v for v in vals if v is not None]
    return ReplicateSummary(vals, n_max, None if mid == inf else float(mid), min(solved) if solved else None,
                            None if len(solved) < k else max(solved))


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
    grid: list[tuple[int, bool, int | None, int | None]] = []

    def test(n: int) -> bool:
        out = succeeds(n)
        if isinstance(out, tuple):
            ok, n_ok, n_done = bool(out[0]), int(out[1]), int(out[2])
        else:
            ok, n_ok, n_done = bool(out), None, None
        evals.append((n, ok))
        grid.append((n, ok, n_ok, n_done))
        return ok

    if max_steps < 1 or not test(n_max):
        return SearchResult(None, n_max, n_max if evals else None, evals, grid=grid)
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
    return SearchResult(hi, n_max, lo, evals, exact, grid)


def find_n_star_replicates(make_succeeds: Callable[[int], Callable[[int], object]], replicates: int, n_max: int,
                           **kwargs) -> tuple[list[SearchResult], ReplicateSummary]:
    """``replicates`` independent searches; ``make_succeeds(r)`` is replicate r's oracle."""
    if replicates < 1:
        raise ValueError(f"replicates must be >= 1, got {replicates}")
    results = [find_n_star(make_succeeds(r), n_max, **kwargs) for r in range(replicates)]
    return results, summarize(results)
