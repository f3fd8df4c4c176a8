"""Retrieval tasks: every answer re-derived by brute force from the decoded tokens and from the raw problem."""
import math

import numpy as np
import pytest

from seqgap.errors import SeqgapError
from seqgap.tasks import make_task

NAMES = ("index", "ar", "mqar", "cgram", "counting")


def decoded(task, ex):
    """The example's sequence as symbols, split at [SEP] into (data, query part)."""
    syms = task.vocab.decode(ex.sequence)
    assert syms[0] == "[BOS]" and syms.count("[SEP]") == 1
    sep = syms.index("[SEP]")
    return syms[1:sep], syms[sep + 1:]


def check_masks(task, ex, n_answers):
    assert ex.mask.sum() == n_answers
    scored = np.flatnonzero(ex.mask)
    assert scored[0] == ex.prompt_len - 1  # generation starts right before the first answer
    assert [int(ex.targets[t]) for t in scored] == ex.meta["answers"]
    assert ex.meta["answer"] == ex.meta["answers"][0]
    assert ex.no_loss is None
    assert task.score_generation(ex, ex.sequence[ex.prompt_len:].tolist())


@pytest.mark.parametrize("n", [1, 5, 40])
def test_index(n):
    rng = np.random.default_rng(0)
    task = make_task("index", alphabet=7, max_length=40)
    for _ in range(300):
        problem = task.sample_problem(rng, n)
        ex = task.encode(problem)
        data, query = decoded(task, ex)
        assert len(data) == n and len(query) == 2 and len(ex) <= task.max_tokens(n)
        i = int(query[0][1:])
        assert query[1] == data[i] == f"x{problem[0][problem[1]]}"
        check_masks(task, ex, 1)


@pytest.mark.parametrize("n", [1, 6, 30])
def test_ar(n):
    rng = np.random.default_rng(1)
    task = make_task("ar", alphabet=30, values=5)
    for _ in range(300):
        keys, values, q = task.sample_problem(rng, n)
        ex = task.encode((keys, values, q))
        data, query = decoded(task, ex)
        assert len(data) == 2 * n and len(set(data[0::2])) == n  # distinct keys
        assert all(s[0] == "k" for s in data[0::2]) and all(s[0] == "v" for s in data[1::2])
        follow = [data[j + 1] for j in range(len(data) - 1) if data[j] == query[0]]
        assert follow == [query[1]] == [f"v{values[q]}"]
        check_masks(task, ex, 1)


@pytest.mark.parametrize("n,m", [(1, None), (8, None), (8, 3), (25, None)])
def test_mqar_every_query_answered(n, m):
    rng = np.random.default_rng(2)
    task = make_task("mqar", alphabet=32, values=9, num_queries=m)
    m = n if m is None else m
    for _ in range(200):
        ex = task.sample(rng, n)
        data, query = decoded(task, ex)
        table = dict(zip(data[0::2], data[1::2]))
        assert len(table) == n and len(query) == 2 * m and len(set(query[0::2])) == m
        assert all(table[k] == v for k, v in zip(query[0::2], query[1::2]))
        check_masks(task, ex, m)
        assert len(ex) == task.max_tokens(n)


@pytest.mark.parametrize("c,n", [(2, 10), (3, 3), (3, 30), (5, 12)])
def test_cgram(c, n):
    rng = np.random.default_rng(3)
    task = make_task("cgram", c=c, alphabet=6)
    for _ in range(300):
        ex = task.sample(rng, n)
        data, query = decoded(task, ex)
        gram, answer = query[:c - 1], query[c - 1]
        starts = [j for j in range(n - c + 2) if data[j:j + c - 1] == gram]
        assert len(starts) == 1 and starts[0] + c - 1 < n  # occurs exactly once, with a successor
        assert data[starts[0] + c - 1] == answer
        check_masks(task, ex, 1)


@pytest.mark.parametrize("n", [1, 6, 50])
def test_counting_answers_and_balance(n):
    rng = np.random.default_rng(4)
    task = make_task("counting", alphabet=5)
    N, ones = 4000, 0
    ts, counts = [], []
    for _ in range(N):
        xs, q, t = task.sample_problem(rng, n)
        ex = task.encode((xs, q, t))
        data, query = decoded(task, ex)
        count = data.count(query[0])
        assert query[1] == f"#{t}" and count == sum(x == q for x in xs)
        y = int(query[2])
        assert y == (count > t)
        ones += y
        ts.append(t)
        counts.append(count)
    check_masks(task, ex, 1)
    assert abs(ones - N / 2) < 4 * math.sqrt(N / 4)  # 4 binomial standard deviations
    if n > 1:  # t is uniform on 0..n-1 and independent of the label
        assert np.bincount(ts, minlength=n).min() > 0


def test_counting_fixed_threshold_is_balanced():
    rng = np.random.default_rng(5)
    task = make_task("counting", alphabet=4, threshold=3)
    labels = [task.encode(task.sample_problem(rng, 10)).meta["answer"] for _ in range(2000)]
    ones = sum(lab == task.vocab.id("1") for lab in labels)
    assert abs(ones - 1000) < 4 * math.sqrt(500)
    with pytest.raises(SeqgapError):
        task.sample_problem(rng, 3)  # t = 3 > n - 1


@pytest.mark.parametrize("name,options,n", [("index", dict(alphabet=3), 3), ("ar", dict(alphabet=4, values=2), 3),
                                            ("mqar", dict(alphabet=3, values=2, num_queries=2), 3)])
def test_problem_enumeration(name, options, n):
    """num_problems counts the support; problem_from_index is a bijection onto it, covering the sampler's output."""
    task = make_task(name, **options)
    total = task.num_problems(n)
    problems = [task.problem_from_index(n, i) for i in range(total)]
    assert len(set(problems)) == total
    rng = np.random.default_rng(6)
    assert {task.sample_problem(rng, n) for _ in range(500)} <= set(problems)
    for p in problems[:50]:
        task.encode(p)
    assert make_task("ar").num_problems(60) is None  # astronomically many


def test_batches_collate():
    rng = np.random.default_rng(7)
    for name in NAMES:
        task = make_task(name)
        batch = task.sample_batch(rng, 8, 6)
        assert batch.inputs.shape[0] == 8 and (batch.loss_mask == batch.mask).all()
        assert batch.mask.sum() >= 8
        assert task.chance_accuracy > 0 and task.describe()["name"] == name


def test_validation_errors():
    bad = [("index", dict(alphabet=1)), ("index", dict(max_length=0)), ("ar", dict(alphabet=1)),
           ("ar", dict(values=1)), ("mqar", dict(num_queries=0)), ("cgram", dict(c=1)),
           ("cgram", dict(alphabet=1)), ("counting", dict(threshold=-1)), ("counting", dict(alphabet="x")),
           ("ar", dict(format="cot"))]
    for name, options in bad:
        with pytest.raises(SeqgapError):
            make_task(name, **options)
    rng = np.random.default_rng(8)
    impossible = [("ar", dict(alphabet=4), 5), ("mqar", dict(alphabet=4), 5), ("mqar", dict(num_queries=4), 3),
                  ("index", dict(max_length=8), 9), ("counting", dict(max_length=8), 9), ("cgram", dict(c=4), 3),
                  ("index", {}, 0)]
    for name, options, n in impossible:
        with pytest.raises(SeqgapError):
            make_task(name, **options).sample_problem(rng, n)
    with pytest.raises(SeqgapError):  # a token seen exactly once in 400 fair coin flips: hopeless
        make_task("cgram", c=2, alphabet=2).sample_problem(rng, 400)
