"""Problem identity (``Task.problem_key``): datasets unique under it, validation never in training --
fixed sets and streams, IsTree (edge sets) and state tracking (sequences)."""
import numpy as np
import pytest

from seqgap.errors import SeqgapError
from seqgap.tasks import make_task
from seqgap.tasks.dataset import TrainStream, build_splits, default_n_val, measure_overlap


def edge_set(problem):
    """Identity written independently of IsTree.problem_key: the set of unordered edges."""
    n, edges = problem
    return n, frozenset(frozenset(e) for e in edges)


def check_split(task, s, ident):
    val, train = [ident(p) for p in s.val], [ident(p) for p in s.train]
    assert len(set(val)) == len(val)  # validation: distinct problems
    assert len(set(train)) == len(train)  # training: distinct problems
    assert not set(val) & set(train)  # disjoint
    assert measure_overlap(task, s.train, s.val) == 0
    assert s.val_keys == frozenset(task.problem_key(p) for p in s.val)


@pytest.mark.parametrize("dist", ["binary", "random"])
def test_istree_default_n_val_counts_graphs(dist):
    task = make_task("istree", format="cot", distribution=dist)
    total4 = task.num_problems(4)
    assert total4 == {"binary": 16, "random": 20}[dist]
    assert default_n_val(task, 4, "fixed") == total4 // 5
    assert default_n_val(task, 8, "fixed") == 2000  # 24,640 binary / 1,184,040 random graphs: 20% > 2000
    assert default_n_val(task, 16, "fixed") == 2000


@pytest.mark.parametrize("dist", ["binary", "random"])
@pytest.mark.parametrize("n", [4, 8])
def test_istree_fixed_sets_disjoint_as_graphs(dist, n):
    task = make_task("istree", format="cot", distribution=dist)
    n_train = 10 if n == 4 else 3000
    s = build_splits(task, n, "fixed", n_train, seed=5)
    assert len(s.val) == default_n_val(task, n, "fixed") and len(s.train) == n_train
    check_split(task, s, edge_set)
    bigger = build_splits(task, n, "fixed", 2 * n_train if n > 4 else s.max_train, seed=5)
    assert bigger.val == s.val and bigger.train[:n_train] == s.train  # still nested, val independent of N


def test_istree_n4_can_be_exhausted():
    """16 binary graphs at n = 4: 3 held out, the other 13 are the largest training set."""
    task = make_task("istree", format="vanilla")
    s = build_splits(task, 4, "fixed", 13, seed=0)
    assert s.max_train == 13
    check_split(task, s, edge_set)
    assert len({edge_set(p) for p in s.train + s.val}) == 16
    with pytest.raises(SeqgapError, match="at most 13 training samples"):
        build_splits(task, 4, "fixed", 14, seed=0)


def test_istree_uniform_lengths_disjoint():
    task = make_task("istree", format="rag", distribution="binary", max_nodes=8)
    s = build_splits(task, 8, "uniform", 2000, seed=1)
    assert {p[0] for p in s.val} == {4, 5, 6, 7, 8}
    assert sum(p[0] == 4 for p in s.val) <= 3  # the 20% cap on the 16 graphs of n = 4
    check_split(task, s, edge_set)


@pytest.mark.parametrize("dist", ["binary", "random"])
@pytest.mark.parametrize("n", [4, 8])
def test_istree_stream_never_yields_validation_graphs(dist, n):
    task = make_task("istree", format="cot", distribution=dist)
    s = build_splits(task, n, "fixed", 0, n_val=None if n == 4 else 500, seed=42)
    val = {edge_set(p) for p in s.val}
    stream = TrainStream(task, [n], s.val_keys, np.random.default_rng([42, 1]))
    drawn = [p for _ in range(100) for p in stream.next_problems(64)]
    assert len(drawn) == 6400
    assert not {edge_set(p) for p in drawn} & val
    assert measure_overlap(task, drawn, s.val) == 0
    assert stream.rejected > 0  # there was something to reject: the stream used to yield these
    if n == 4:  # 3 of 16 graphs held out; without the check a good share of the stream was validation
        plain = np.random.default_rng([42, 1])
        old = [task.sample_problem(plain, n) for _ in range(6400)]
        assert measure_overlap(task, old, s.val) == len(val)
        assert sum(edge_set(p) in val for p in old) > 0.1 * len(old)


def test_stream_is_deterministic_and_the_plain_loop_without_rejections():
    task = make_task("istree", format="cot")
    s = build_splits(task, 8, "fixed", 0, n_val=300, seed=3)
    a = TrainStream(task, [8], s.val_keys, np.random.default_rng(7))
    b = TrainStream(task, [8], set(s.val_keys), np.random.default_rng(7))
    assert [a.next_problems(64) for _ in range(20)] == [b.next_problems(64) for _ in range(20)]
    # no validation keys: exactly the inline loop the trainer had
    task2 = make_task("modadd", m=7)
    stream = TrainStream(task2, [3, 5, 9], frozenset(), np.random.default_rng(1))
    rng = np.random.default_rng(1)
    expected = [task2.sample_problem(rng, int(rng.choice([3, 5, 9]))) for _ in range(3 * 32)]
    assert [p for _ in range(3) for p in stream.next_problems(32)] == expected
    assert stream.rejected == 0


def test_stream_keeps_the_length_mix():
    """A rejected problem is redrawn at its length: heavily held-out short lengths keep their share."""
    task = make_task("modadd", m=2)
    s = build_splits(task, 6, "uniform", 0, n_val=24, seed=0)
    stream = TrainStream(task, range(2, 7), s.val_keys, np.random.default_rng(0))
    drawn = [p for _ in range(50) for p in stream.next_problems(100)]
    counts = np.bincount([len(p) for p in drawn], minlength=7)[2:]
    assert abs(counts - 1000).max() < 4 * np.sqrt(1000 * 0.8)
    assert not {tuple(p) for p in drawn} & set(s.val)


@pytest.mark.parametrize("name,params,L,dist", [("modadd", {"m": 2}, 6, "uniform"), ("modadd", {"m": 3}, 5, "fixed"),
                                                ("permutation", {"k": 3}, 4, "short-to-long"),
                                                ("parity", {}, 8, "fixed")])
def test_state_tracking_disjoint_fixed_and_streamed(name, params, L, dist):
    task = make_task(name, **params)
    s = build_splits(task, L, dist, 40, seed=2)
    check_split(task, s, tuple)
    lengths = sorted({len(p) for p in s.val})
    stream = TrainStream(task, lengths, s.val_keys, np.random.default_rng(9))
    drawn = [p for _ in range(40) for p in stream.next_problems(64)]
    assert measure_overlap(task, drawn, s.val) == 0 and stream.rejected > 0
    fixed = TrainStream(task, lengths, s.val_keys, np.random.default_rng(9), train=s.train)
    epoch = fixed.next_problems(len(s.train))
    assert sorted(epoch) == sorted(s.train)  # a fixed set: each epoch a reshuffle of it
    assert measure_overlap(task, fixed.next_problems(500), s.val) == 0


def test_stream_refuses_a_length_held_out_entirely():
    task = make_task("parity")
    s = build_splits(task, 2, "fixed", 0, n_val=4, seed=0)  # all four problems of length 2 held out
    with pytest.raises(SeqgapError, match="validation problems"):
        TrainStream(task, [2], s.val_keys, np.random.default_rng(0)).next_problems(1)


def test_measure_overlap_counts_distinct_validation_keys():
    task = make_task("istree", format="vanilla")
    val = [(4, ((0, 1), (1, 2), (2, 3))), (4, ((0, 1), (0, 2), (1, 2)))]
    train = [(4, ((3, 2), (2, 1), (1, 0))), (4, ((2, 1), (0, 1), (3, 2))), (4, ((0, 3), (1, 2), (2, 3)))]
    assert measure_overlap(task, train, val) == 1  # the path 0-1-2-3, twice, reordered and reversed
    assert measure_overlap(task, [], val) == 0
