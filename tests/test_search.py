"""The N* search against a synthetic oracle that succeeds iff N >= t."""
import math

import pytest

from seqgap.studies.search import find_n_star


@pytest.mark.parametrize("bisect", ["arithmetic", "geometric"])
def test_finds_true_threshold_for_many_t(bisect):
    n_max = 100_000
    for t in list(range(1, 60)) + [99, 100, 101, 999, 1000, 1001, 4321, 54_321, 99_999, 100_000]:
        calls = []

        def oracle(n, t=t):
            calls.append(n)
            return n >= t

        r = find_n_star(oracle, n_max, factor=10, max_steps=40, bisect=bisect)
        assert r.n_star == t, (t, r.evaluations)
        assert r.exact
        assert len(calls) == len(set(calls)), "never evaluates the same N twice"
        assert len(calls) <= 40


def test_step_limit_respected_and_bracket_valid():
    t = 777_777
    for steps in range(1, 25):
        r = find_n_star(lambda n: n >= t, 16_000_000, factor=1000, max_steps=steps)
        assert len(r.evaluations) <= steps
        assert r.n_star >= t  # always an upper bound: only successes are reported
        if r.last_fail is not None:
            assert r.last_fail < t
    # with the paper's 20 steps the bracket is within a factor of 2^-(20-3) of the span
    r = find_n_star(lambda n: n >= t, 16_000_000, factor=1000, max_steps=20)
    assert r.n_star - r.last_fail <= math.ceil(16_000_000 / 2 ** 17) + 1


def test_fail_at_nmax_reports_greater_than():
    r = find_n_star(lambda n: False, 5000, factor=10, max_steps=20)
    assert r.n_star is None
    assert r.label() == "> 5,000"
    assert r.evaluations == [(5000, False)]


def test_success_everywhere_goes_to_n_min():
    r = find_n_star(lambda n: True, 5000, factor=10, max_steps=20, n_min=3)
    assert r.n_star == 3 and r.exact
    assert [n for n, _ in r.evaluations] == [5000, 500, 50, 5, 3]


def test_geometric_phase_shrinks_by_factor():
    r = find_n_star(lambda n: n >= 20, 16_000_000, factor=1000, max_steps=3)
    assert [n for n, _ in r.evaluations] == [16_000_000, 16_000, 16]


def test_bad_arguments():
    with pytest.raises(ValueError):
        find_n_star(lambda n: True, 10, factor=1)
    with pytest.raises(ValueError):
        find_n_star(lambda n: True, 0, n_min=1)


def test_labels():
    assert find_n_star(lambda n: n >= 7, 100, factor=2, max_steps=40).label() == "7"
    assert find_n_star(lambda n: True, 1000, factor=2, max_steps=2).label() == "<= 500"
    r = find_n_star(lambda n: n >= 300, 1000, factor=10, max_steps=3)
    assert r.label() == f"{r.n_star:,} (in ({r.last_fail:,}, {r.n_star:,}])"
