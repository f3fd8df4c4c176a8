"""Unique-sample datasets: uniqueness, disjointness, nesting, length distributions, errors."""
import itertools
import time
from collections import Counter

import numpy as np
import pytest

import seqgap.tasks.dataset as ds
from seqgap.errors import SeqgapError
from seqgap.tasks import make_task
from seqgap.tasks.base import Task, Vocab
from seqgap.tasks.dataset import LENGTH_DISTS, build_splits, count_problems, default_n_val


class FreeTask(Task):
    """A task with no count of its problems (like retrieval / IsTree): random tuples."""

    name = "free"

    def __init__(self, alphabet=10):
        self.alphabet = alphabet
        self.vocab = Vocab(["[PAD]"] + [str(i) for i in range(alphabet)])

    def sample_problem(self, rng, length):
        return tuple(int(v) for v in rng.integers(0, self.alphabet, size=length))

    def encode(self, problem):
        raise NotImplementedError

    @property
    def chance_accuracy(self):
        return 0.5

    def max_tokens(self, length):
        return length


def check_unique_disjoint(s):
    assert len(set(s.train)) == len(s.train)
    assert len(set(s.val)) == len(s.val)
    assert not set(s.train) & set(s.val)


# (task, L): pools of every kind -- permutation (m=2), Feistel (m=5, n=20), rejection (m=10, n=20)
CASES = [("modadd", {"m": 2}, 10), ("modadd", {"m": 5}, 20), ("modadd", {"m": 10}, 20),
         ("permutation", {"k": 4, "group": "A"}, 6)]


@pytest.mark.parametrize("name,params,L", CASES)
@pytest.mark.parametrize("dist", LENGTH_DISTS)
def test_unique_disjoint_nested_stable_val(name, params, L, dist):
    task = make_task(name, **params)
    small = build_splits(task, L, dist, 60, seed=3)
    big = build_splits(task, L, dist, 300, seed=3)
    for s in (small, big):
        check_unique_disjoint(s)
        assert all(task.min_length <= len(p) <= L for p in s.train + s.val)
        assert set(map(len, s.train + s.val)) <= set(s.lengths)
    assert big.train[:60] == small.train  # nested
    assert big.val == small.val  # validation does not depend on n_train
    assert len(small.val) == default_n_val(task, L, dist)
    other = build_splits(task, L, dist, 60, seed=4)
    assert other.val != small.val and other.train != small.train


def test_val_shared_by_uniform_and_short_to_long():
    task = make_task("modadd", m=3)
    a = build_splits(task, 7, "uniform", 100, seed=1)
    b = build_splits(task, 7, "short-to-long", 300, seed=1)
    assert a.val == b.val


def test_rejection_pools_of_unknown_size():
    task = FreeTask(alphabet=1000)
    a = build_splits(task, 6, "uniform", 50, n_val=40, seed=0)
    b = build_splits(task, 6, "uniform", 500, n_val=40, seed=0)
    check_unique_disjoint(b)
    assert b.train[:50] == a.train and a.val == b.val and a.max_train is None
    assert default_n_val(task, 6, "uniform") == 2000 and count_problems(task, 6, "uniform") is None
    with pytest.raises(SeqgapError, match="short-to-long"):
        build_splits(task, 6, "short-to-long", 10)
    # a task that secretly has only 2**2 problems per length: the pool runs dry with a clear error
    with pytest.raises(SeqgapError, match="distinct problems"):
        build_splits(FreeTask(alphabet=2), 2, "fixed", 10, n_val=0)


def test_fixed_lengths():
    task = make_task("modadd", m=3)
    s = build_splits(task, 9, "fixed", 500)
    assert s.lengths == (9,) and {len(p) for p in s.train + s.val} == {9}
    assert s.max_train == 3**9 - len(s.val)


def test_exhaust_everything_fixed():
    task = make_task("modadd", m=2)
    n_val = default_n_val(task, 5, "fixed")
    assert n_val == 32 // 5
    s = build_splits(task, 5, "fixed", 32 - n_val)
    assert sorted(s.train + s.val) == list(itertools.product(range(2), repeat=5))


def test_short_to_long_exhausts_each_length_first():
    task = make_task("modadd", m=2)
    L = 6
    s = build_splits(task, L, "short-to-long", 100)
    total = sum(2**n for n in range(2, L + 1))
    assert s.max_train == total - len(s.val)
    lens = [len(p) for p in s.train]
    assert lens == sorted(lens)  # never back to a shorter length
    val_count = Counter(map(len, s.val))
    train_count = Counter(lens)
    last = lens[-1]
    for n in range(2, last):  # every length before the current one is used up
        assert train_count[n] + val_count[n] == 2**n
    # the first training samples are exactly the length-2 problems validation left over
    k = 4 - val_count[2]
    assert sorted(s.train[:k]) == sorted(set(itertools.product(range(2), repeat=2)) - set(s.val))
    # within a length the order is random, not lexicographic
    s5 = build_splits(make_task("modadd", m=3), 5, "short-to-long", 250)
    block = [p for p in s5.train if len(p) == 4]
    assert block != sorted(block)


def test_validation_caps_protect_short_lengths():
    task = make_task("modadd", m=2)
    s = build_splits(task, 6, "uniform", 10)
    c = Counter(map(len, s.val))
    assert len(s.val) == 124 // 5
    # 20% caps (at least 1) give 1+1+3+6+12 = 23 < 24: one more is drawn with the caps lifted
    assert c[2] <= 2 and c[3] <= 2 and c[6] >= 12  # short lengths keep most problems for training


def test_uniform_histogram():
    task = make_task("modadd", m=50)
    L, N = 6, 5000
    s = build_splits(task, L, "uniform", N)
    counts = np.array([sum(1 for p in s.train if len(p) == n) for n in range(2, L + 1)])
    expected = N / (L - 1)
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 25, counts  # 4 degrees of freedom: p < 1e-4
    vcounts = np.array([sum(1 for p in s.val if len(p) == n) for n in range(2, L + 1)])
    ve = len(s.val) / (L - 1)
    assert ((vcounts - ve) ** 2 / ve).sum() < 25, vcounts


def test_uniform_redistributes_exhausted_lengths():
    task = make_task("modadd", m=2)
    s = build_splits(task, 6, "uniform", 100)
    c = Counter(map(len, s.train))
    v = Counter(map(len, s.val))
    assert c[2] + v[2] == 4 and c[3] + v[3] == 8  # short lengths used up...
    assert c[6] > c[5] > c[4]  # ...and their share went to the longer ones
    s_all = build_splits(task, 6, "uniform", s.max_train)
    assert len(set(s_all.train) | set(s_all.val)) == 124


def test_problems_are_uniform_within_a_length():
    """The Feistel order (m=5, n=20 pools) must look like uniform sampling: digit histograms."""
    task = make_task("modadd", m=5)
    s = build_splits(task, 20, "fixed", 10_000, seed=7)
    X = np.array(s.train)
    for col in (0, 9, 19):
        counts = np.bincount(X[:, col], minlength=5)
        assert ((counts - 2000) ** 2 / 2000).sum() < 25, counts
    sums = np.bincount(X.sum(axis=1) % 5, minlength=5)
    assert ((sums - 2000) ** 2 / 2000).sum() < 25, sums


@pytest.mark.parametrize("size", [2, 3, 1000, 1025, 4099, 2**21 + 17])
def test_feistel_is_a_permutation(size):
    prp = ds._FeistelPermutation(size, np.random.default_rng(size))
    out = prp(np.arange(size, dtype=np.int64))
    assert np.array_equal(np.sort(out), np.arange(size))
    if size > 100:
        assert not np.array_equal(out, np.arange(size))


@pytest.mark.parametrize("regime", ["feistel", "rejection"])
def test_small_pools_through_other_regimes(regime, monkeypatch):
    monkeypatch.setattr(ds, "_PERM_MAX", 0)
    if regime == "rejection":
        monkeypatch.setattr(ds, "_FEISTEL_MAX", 0)
    task = make_task("modadd", m=2)
    small = build_splits(task, 7, "short-to-long", 40)
    if regime == "feistel":  # exact order: can be run to exhaustion
        s = build_splits(task, 7, "short-to-long", 252 - len(small.val))
        assert len(set(s.train) | set(s.val)) == 252
    else:
        s = build_splits(task, 7, "short-to-long", 100)
    check_unique_disjoint(s)
    assert s.train[:40] == small.train and s.val == small.val


def test_too_many_samples_names_the_maximum():
    task = make_task("modadd", m=2)
    with pytest.raises(SeqgapError) as e:
        build_splits(task, 5, "fixed", 100)
    msg = str(e.value)
    assert "at most 26 training samples" in msg and "32 distinct" in msg and "6 held out" in msg
    assert "modadd m=2" in msg and "\n" not in msg
    build_splits(task, 5, "fixed", 26)  # exactly the maximum is fine


@pytest.mark.parametrize("kwargs", [
    {"length_dist": "geometric"}, {"max_length": 1}, {"n_train": -1}, {"n_val": 40},
])
def test_bad_params(kwargs):
    args = {"task": make_task("modadd", m=2), "max_length": 5, "length_dist": "fixed", "n_train": 1}
    args.update(kwargs)
    with pytest.raises(SeqgapError):
        build_splits(**args)


def test_counts():
    task = make_task("modadd", m=5)
    assert count_problems(task, 20, "fixed") == 5**20
    assert count_problems(task, 4, "uniform") == 25 + 125 + 625
    assert default_n_val(task, 20, "uniform") == 2000
    assert default_n_val(task, 2, "fixed") == 5
    assert default_n_val(make_task("parity"), 2, "fixed") == 1  # at least 1


@pytest.mark.slow
def test_speed_100k_length_20():
    for m in (2, 5, 10):
        t0 = time.perf_counter()
        s = build_splits(make_task("modadd", m=m), 20, "fixed", 100_000)
        assert time.perf_counter() - t0 < 5 and len(s.train) == 100_000
