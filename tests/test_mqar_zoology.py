"""mqar-zoology against an independent, loop-based transcription of zoology's MQAR rule
(HazyResearch/zoology, zoology/data/multiquery_ar.py, as its docstring describes it), plus invariants."""
import math
import random

import numpy as np
import pytest

from seqgap.errors import SeqgapError
from seqgap.tasks.catalog import make_task
from seqgap.tasks.dataset import build_splits

OFFSET = 4  # zoology id z is seqgap token 4 + z


# ---- the transcription: written from the rule, with plain loops ----------------------------------

def ref_layout(V, T, keys, values, gaps, fill):
    """zoology's sequence: k1 v1 .. kn vn, then the query region; key j at 2n + 2 g_j, label v_j there;
    the other query-region positions take ``fill`` in order. Returns (inputs, labels with -100)."""
    n = len(keys)
    inputs = [None] * T
    labels = [-100] * T
    for j in range(n):
        inputs[2 * j] = keys[j]
        inputs[2 * j + 1] = values[j]
    for j in range(n):
        pos = 2 * n + 2 * gaps[j]
        inputs[pos] = keys[j]
        labels[pos] = values[j]
    it = iter(fill)
    for t in range(2 * n, T):
        if inputs[t] is None:
            inputs[t] = next(it)
    assert next(it, None) is None
    return inputs, labels


def ref_sample(rnd, V, T, n, power_a, noise):
    """Draw a problem by the rule, one choice at a time (Python's random, not numpy)."""
    half = V // 2
    key_pool, value_pool = list(range(1, half)), list(range(half, V))
    keys = [key_pool.pop(rnd.randrange(len(key_pool))) for _ in range(n)]
    values = [value_pool.pop(rnd.randrange(len(value_pool))) for _ in range(n)]
    space = (T - 2 * n) // 2
    weight = {g: power_a * (g + 1) ** (power_a - 1) for g in range(space)}
    gaps = []
    for _ in range(n):  # successive weighted draws among the slots left
        left = [g for g in range(space) if g not in gaps]
        gaps.append(rnd.choices(left, weights=[weight[g] for g in left])[0])
    fill = [rnd.randrange(V) if noise else 0 for _ in range(T - 3 * n)]
    return tuple(keys), tuple(values), tuple(gaps), tuple(fill)


CONFIGS = [dict(vocab_size=32, seq_len=24), dict(vocab_size=128, seq_len=64), dict(vocab_size=16, seq_len=None),
           dict(vocab_size=64, seq_len=40, noise=False), dict(vocab_size=40, seq_len=32, power_a=1.0)]


def _T(task, n):
    return task.seq_len if task.seq_len is not None else 16 * n


@pytest.mark.parametrize("opts", CONFIGS)
def test_encoding_matches_the_transcription(opts):
    task = make_task("mqar-zoology", **opts)
    rng, rnd = np.random.default_rng(1), random.Random(1)
    V = task.vocab_size
    for trial in range(300):
        n = 1 + trial % min(task.num_keys, _T(task, 7) // 4, 7)
        T = _T(task, n)
        for p in (task.sample_problem(rng, n), ref_sample(rnd, V, T, n, task.power_a, task.noise)):
            e = task.encode(p)
            ref_in, ref_lab = ref_layout(V, T, *p)
            assert e.inputs.tolist() == [OFFSET + z for z in ref_in]
            assert e.mask.tolist() == [lab != -100 for lab in ref_lab]
            assert [int(e.targets[t]) for t in range(T) if ref_lab[t] != -100] == \
                   [OFFSET + lab for lab in ref_lab if lab != -100]
            assert e.prompt_len is None and e.meta["length"] == n and len(e) == task.max_tokens(n) == T


@pytest.mark.parametrize("opts", CONFIGS)
def test_invariants(opts):
    task = make_task("mqar-zoology", **opts)
    rng = np.random.default_rng(2)
    V, half = task.vocab_size, task.vocab_size // 2
    for trial in range(300):
        n = 1 + trial % min(task.num_keys, _T(task, 7) // 4, 7)
        T = _T(task, n)
        keys, values, gaps, fill = p = task.sample_problem(rng, n)
        e = task.encode(p)
        z = e.inputs - OFFSET
        assert all(1 <= k < half for k in keys) and all(half <= v < V for v in values)  # disjoint halves
        assert len(set(keys)) == n and len(set(values)) == n and len(set(gaps)) == n  # without replacement
        assert all(0 <= g < (T - 2 * n) // 2 for g in gaps)
        assert z[0:2 * n:2].tolist() == list(keys) and z[1:2 * n:2].tolist() == list(values)
        q = np.flatnonzero(e.mask)
        assert len(q) == n and all(t >= 2 * n and (t - 2 * n) % 2 == 0 for t in q)  # masks only at queries
        kv = dict(zip(keys, values))
        for t in q:
            assert int(e.targets[t]) - OFFSET == kv[int(z[t])]  # the label is the queried key's value
            assert int(z[t]) in kv
        assert (e.targets[~e.mask] == 0).all()
        assert all(0 <= x < V for x in z)  # never a seqgap special token in the input
        if not task.noise:
            assert set(z[2 * n:].tolist()) - set(keys) <= {0}
        # the answer is never the next input token by construction of the rule (it may be by noise only)
        if not task.noise:
            assert all(int(z[t + 1]) == 0 for t in q if t + 1 < T)


def test_gap_distribution_matches_the_transcription():
    """Successive power-law draws: the frequency of each (pair, gap) agrees with the transcription's."""
    V, T, n, a = 32, 24, 3, 0.01
    task = make_task("mqar-zoology", vocab_size=V, seq_len=T, power_a=a)
    rng, rnd = np.random.default_rng(3), random.Random(3)
    space, N = (T - 2 * n) // 2, 6000
    mine, ref = np.zeros((n, space)), np.zeros((n, space))
    for _ in range(N):
        for j, g in enumerate(task.sample_problem(rng, n)[2]):
            mine[j, g] += 1
        for j, g in enumerate(ref_sample(rnd, V, T, n, a, True)[2]):
            ref[j, g] += 1
    # exact first-draw law: p(g) ~ (g + 1) ** (a - 1)
    w = np.array([(g + 1) ** (a - 1) for g in range(space)])
    first = w / w.sum()
    for counts in (mine, ref):
        assert np.abs(counts[0] / N - first).max() < 4 * math.sqrt(0.25 / N)
    assert np.abs(mine / N - ref / N).max() < 5 * math.sqrt(0.25 / N)
    # earlier pairs are queried earlier on average (the query-order shortcut exists)
    assert (mine * np.arange(space)).sum(1)[0] < (mine * np.arange(space)).sum(1)[-1]


def test_uniform_fill_and_noise_option():
    task = make_task("mqar-zoology", vocab_size=16, seq_len=64)
    fill = np.concatenate([task.sample_problem(np.random.default_rng(s), 2)[3] for s in range(200)])
    assert set(fill.tolist()) == set(range(16))  # noise over every zoology id, blank and keys/values included
    quiet = make_task("mqar-zoology", vocab_size=16, seq_len=64, noise="false")
    assert set(quiet.sample_problem(np.random.default_rng(0), 2)[3]) == {0}


def test_shortcut_baseline_and_chance():
    task = make_task("mqar-zoology", vocab_size=128, seq_len=64)
    rng = np.random.default_rng(4)
    for n, lo in ((2, 0.5), (4, 0.25), (8, 0.125), (16, 0.0625)):
        b = task.shortcut_baseline([task.sample_problem(rng, n) for _ in range(400)])
        assert b["accuracy"] >= lo - 0.03  # never below the context guess 1/n (up to sampling)
        assert b["accuracy"] < 1.5 * lo + 0.1
    assert task.chance_accuracy == 1 / 64
    assert task.shortcut_baseline([]) is None


def test_num_problems_and_mixed_lengths():
    quiet = make_task("mqar-zoology", vocab_size=8, seq_len=8, noise=False)
    n = 2  # keys 1..3, values 4..7, 2 slots: 3*2 * 4*3 * 2*1
    assert quiet.num_problems(n) == 6 * 12 * 2
    seen = {quiet.problem_key(quiet.sample_problem(np.random.default_rng(s), n)) for s in range(3000)}
    assert len(seen) == quiet.num_problems(n)
    assert make_task("mqar-zoology").num_problems(8) is None
    task = make_task("mqar-zoology", vocab_size=64, seq_len=64, min_length=2)
    s = build_splits(task, 16, "uniform", 0, 200, seed=0)
    assert s.lengths == tuple(range(2, 17)) and len({len(p[0]) for p in s.val}) > 5


def test_bad_options_are_one_line_errors():
    for opts, n in ((dict(vocab_size=7), 1), (dict(vocab_size=8), 4), (dict(seq_len=15), 1),
                    (dict(seq_len=12), 4), (dict(power_a=0), 1), (dict(power_a="x"), 1),
                    (dict(tokens_per_pair=3), 1), (dict(noise="maybe"), 1), (dict(format="cot"), 1)):
        with pytest.raises(SeqgapError) as e:
            make_task("mqar-zoology", **opts).sample_problem(np.random.default_rng(0), n)
        assert "\n" not in str(e.value)
