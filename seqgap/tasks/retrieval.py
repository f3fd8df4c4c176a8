"""In-context retrieval tasks (study W, Wen et al. 2024, section "Retrieval tasks").

W proves that a constant-size Transformer solves each of these while an RNN
with o(n) bits of state cannot, whatever its CoT.  All are answered directly,
next-token style: ``inputs = seq[:-1]``, ``targets = seq[1:]``, only the
answer token(s) are scored, and ``prompt_len`` is where generation of the
(first) answer starts.  ``meta["answer"]`` is the (first) answer's token id,
``meta["answers"]`` all of them.  ``length`` = n, the task's size (see each task).

Sequences (n = 4; tokens: data ``x*``, keys ``k*``, values ``v*``, positions
``p*``, counts ``#*``; ``B``/``S`` = [BOS]/[SEP]; the scored answer last)::

    index     B x3 x0 x3 x1 S p2 x3               the token at 0-based position 2
    ar        B k5 v2 k0 v7 k3 v1 k9 v0 S k3 v1    n = 4 key-value pairs, distinct keys
    mqar      B k5 v2 k0 v7 k3 v1 k9 v0 S k3 v1 k5 v2 k9 v0 k0 v7   every query's value scored
    cgram     B x1 x2 x1 x0 S x2 x1 x0             c = 3: the 2-gram "x2 x1" occurs once; it is followed by x0
    counting  B x1 x0 x1 x1 S x1 #2 1              does x1 occur more than 2 times? 1 = yes, 0 = no

Vocabularies: ``[PAD] [BOS] [SEP] [EOS]`` first (the base specials; [EOS] is
unused), then the task's tokens in the order above.  Index and Counting need a
token per position / count, so their vocabulary is sized by ``max_length``
(default 64): one vocabulary serves every n <= max_length.
"""
from __future__ import annotations

import math
from typing import Any, Hashable, Sequence

import numpy as np

from seqgap.errors import SeqgapError
from seqgap.tasks.base import BOS, SEP, SPECIALS, Example, Task, Vocab, as_int, check_symbols

FORMATS = ("vanilla",)  # answered directly; W's retrieval tasks need no CoT
_BOS_ID, _SEP_ID = SPECIALS.index(BOS), SPECIALS.index(SEP)
_COUNT_LIMIT = 2**62  # num_problems above this is "astronomically many" (None)


def _int_option(task: str, name: str, value: Any, low: int) -> int:
    out = as_int(name, task, value)
    if out < low:
        raise SeqgapError(f"{task}: {name} must be >= {low}, got {out}")
    return check_symbols(task, name, out)


def _small(count: int) -> int | None:
    return count if count < _COUNT_LIMIT else None


def _log2_perm(a: int, n: int) -> float:
    """log2 of math.perm(a, n) (a >= n >= 0), without computing it."""
    return (math.lgamma(a + 1) - math.lgamma(a - n + 1)) / math.log(2)


def _too_many(log2_count: float) -> bool:
    """Whether a count of about 2**log2_count is surely above _COUNT_LIMIT (checked before the exact
    integer is materialised; a margin covers the float rounding of the estimate)."""
    return log2_count > math.log2(_COUNT_LIMIT) + 1


def _digits(index: int, base: int, count: int) -> tuple[int, ...]:
    """``count`` base-``base`` digits of ``index``, most significant first."""
    out = [0] * count
    for j in range(count - 1, -1, -1):
        index, out[j] = divmod(index, base)
    return tuple(out)


def _partial_permutation(index: int, pool: int, count: int) -> tuple[int, ...]:
    """The ``index``-th ordered selection of ``count`` distinct items of range(pool) (Lehmer code)."""
    left, out = list(range(pool)), []
    radices = [pool - j for j in range(count)]
    for j in range(count - 1, -1, -1):  # least significant digit = last pick
        index, radices[j] = divmod(index, radices[j])
    for r in radices:
        out.append(left.pop(r))
    return tuple(out)


class RetrievalTask(Task):
    """Shared machinery: vocab of named token groups, next-token examples scored at the answers."""

    family = "retrieval"
    formats = FORMATS
    min_length = 1

    def __init__(self, format: str, groups: dict[str, list[str]], min_length: int | None = None,
                 floor: int | None = None):
        super().__init__(min_length, floor=floor)
        if format not in FORMATS:
            raise SeqgapError(f"{self.name}: unknown format {format!r}; choose from {', '.join(FORMATS)}")
        self.format = format
        symbols, self.offset = list(SPECIALS), {}
        for group, syms in groups.items():
            self.offset[group] = len(symbols)
            symbols += syms
        self.vocab = Vocab(symbols)

    def _example(self, seq: list[int], answer_at: Sequence[int], n: int) -> Example:
        """``answer_at``: indices into ``seq`` of the scored answer tokens."""
        seq_arr = np.array(seq, dtype=np.int64)
        mask = np.zeros(len(seq) - 1, dtype=bool)
        mask[np.asarray(answer_at) - 1] = True  # target t is seq[t + 1]
        answers = [int(seq_arr[a]) for a in answer_at]
        meta = {"length": n, "answer": answers[0], "answers": answers, "answer_positions": list(answer_at)}
        return Example(seq_arr[:-1], seq_arr[1:], mask, prompt_len=int(answer_at[0]), meta=meta)

    def score_generation(self, example: Example, continuation: Sequence[int]) -> bool:
        """The first generated token is the (first) answer."""
        cont = list(continuation)
        return len(cont) > 0 and int(cont[0]) == example.meta["answer"]

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, **self._options()}

    def _options(self) -> dict[str, Any]:
        raise NotImplementedError


def _data_symbols(alphabet: int) -> list[str]:
    return [f"x{i}" for i in range(alphabet)]


class Index(RetrievalTask):
    """Index: ``[BOS] x_0..x_{n-1} [SEP] p_i x_i`` (0-based positions; tokens iid uniform)."""

    name = "index"
    help = ("Index (W): n tokens, then a position i; answer the i-th token. "
            "options alphabet, max_length")

    def __init__(self, alphabet: int = 16, max_length: int = 64, format: str = "vanilla",
                 min_length: int | None = None):
        self.alphabet = _int_option("index", "alphabet", alphabet, 2)
        self.max_length = _int_option("index", "max_length", max_length, 1)
        super().__init__(format, {"x": _data_symbols(self.alphabet),
                                  "p": [f"p{i}" for i in range(self.max_length)]}, min_length)

    def check_length(self, length: int) -> None:
        super().check_length(length)
        if int(length) > self.max_length:
            raise SeqgapError(f"index: n = {length} exceeds max_length = {self.max_length} (set max_length)")

    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple[tuple[int, ...], int]:
        n = int(length)
        self.check_length(n)
        return tuple(rng.integers(0, self.alphabet, size=n).tolist()), int(rng.integers(n))

    def num_problems(self, length: int) -> int | None:
        n = int(length)
        if _too_many(math.log2(max(n, 1)) + n * math.log2(self.alphabet)):
            return None
        return _small(n * self.alphabet ** n)

    def problem_from_index(self, length: int, index: int) -> tuple[tuple[int, ...], int]:
        n = int(length)
        rest, i = divmod(int(index), n)
        return _digits(rest, self.alphabet, n), i

    def encode(self, problem: Hashable) -> Example:
        xs, i = problem
        n = len(xs)
        self.check_length(n)
        x0, p0 = self.offset["x"], self.offset["p"]
        seq = [_BOS_ID, *(x0 + x for x in xs), _SEP_ID, p0 + i, x0 + xs[i]]
        return self._example(seq, [n + 3], n)

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.alphabet

    def shortcut_baseline(self, val_problems: Sequence[Hashable],
                          train_problems: Sequence[Hashable] = ()) -> dict[str, Any] | None:
        """Guess the context's most frequent token, ignoring the position: its expected accuracy
        on ``val_problems`` (the queried position is uniform, so per problem: max count / n)."""
        if not val_problems:
            return None
        acc = [max(np.bincount(xs)) / len(xs) for xs, _ in val_problems]
        return {"name": "context guess (most frequent token)", "accuracy": float(np.mean(acc)), "exact": False}

    def max_tokens(self, length: int) -> int:
        return int(length) + 3

    def _options(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet, "max_length": self.max_length}


class _KeyValueTask(RetrievalTask):
    """n key-value pairs with distinct keys (so every query has one answer); keys and values are disjoint token sets."""

    def __init__(self, alphabet: int, values: int | None, format: str, min_length: int | None):
        self.alphabet = _int_option(self.name, "alphabet", alphabet, 2)
        self.values = _int_option(self.name, "values", self.alphabet if values is None else values, 2)
        super().__init__(format, {"k": [f"k{i}" for i in range(self.alphabet)],
                                  "v": [f"v{i}" for i in range(self.values)]}, min_length)

    def check_length(self, length: int) -> None:
        super().check_length(length)
        if int(length) > self.alphabet:
            raise SeqgapError(f"{self.name}: {length} pairs need {length} distinct keys but alphabet = "
                              f"{self.alphabet} (raise alphabet)")

    def _pairs(self, rng: np.random.Generator, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        self.check_length(n)
        keys = rng.permutation(self.alphabet)[:n]
        return tuple(keys.tolist()), tuple(rng.integers(0, self.values, size=n).tolist())

    def _pairs_count(self, n: int) -> int:
        return math.perm(self.alphabet, n) * self.values ** n

    def _log2_pairs_count(self, n: int) -> float:
        return _log2_perm(self.alphabet, min(n, self.alphabet)) + n * math.log2(self.values)

    def _pairs_from_index(self, n: int, index: int) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """-> (rest of the index, keys, values)."""
        index, v = divmod(index, self.values ** n)
        index, k = divmod(index, math.perm(self.alphabet, n))
        return index, _partial_permutation(k, self.alphabet, n), _digits(v, self.values, n)

    def _kv_tokens(self, keys: Sequence[int], values: Sequence[int]) -> list[int]:
        k0, v0 = self.offset["k"], self.offset["v"]
        return [t for k, v in zip(keys, values) for t in (k0 + k, v0 + v)]

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.values

    def _queries(self, problem: Hashable) -> Sequence[int]:
        """Indices of the queried pairs, in query order."""
        raise NotImplementedError

    def shortcut_baseline(self, val_problems: Sequence[Hashable],
                          train_problems: Sequence[Hashable] = ()) -> dict[str, Any] | None:
        """The context guess of ``report/retrieval.py``: know *which values* the context holds, not
        which key has which, and answer each query with the most frequent value among the pairs not
        yet answered (earlier answers are shown).  Per query its expected accuracy is that value's
        count / the pairs left (the queried key is uniform among them); averaged over the queries
        of ``val_problems``.  Distinct values give 1/n (AR) and H_n / n (MQAR); repeats give more."""
        if not val_problems:
            return None
        acc = []
        for problem in val_problems:
            values = problem[1]
            left = np.bincount(values, minlength=self.values)
            remaining = len(values)
            for q in self._queries(problem):
                acc.append(left.max() / remaining)
                left[values[q]] -= 1
                remaining -= 1
        return {"name": "context guess (values in context)", "accuracy": float(np.mean(acc)), "exact": False}

    def _options(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet, "values": self.values}


class AssociativeRecall(_KeyValueTask):
    """AR: ``[BOS] k_1 v_1 .. k_n v_n [SEP] k_q v_q``; keys distinct, so "the token after k_q" is unique."""

    name = "ar"
    help = ("associative recall (W): n key-value pairs, a query key; answer its value. "
            "options alphabet (keys), values")

    def __init__(self, alphabet: int = 64, values: int | None = None, format: str = "vanilla",
                 min_length: int | None = None):
        super().__init__(alphabet, values, format, min_length)

    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        n = int(length)
        keys, values = self._pairs(rng, n)
        return keys, values, int(rng.integers(n))

    def num_problems(self, length: int) -> int | None:
        n = int(length)
        if _too_many(math.log2(max(n, 1)) + self._log2_pairs_count(n)):
            return None
        return _small(n * self._pairs_count(n))

    def problem_from_index(self, length: int, index: int) -> tuple[tuple[int, ...], tuple[int, ...], int]:
        q, keys, values = self._pairs_from_index(int(length), int(index))
        return keys, values, q

    def encode(self, problem: Hashable) -> Example:
        keys, values, q = problem
        n = len(keys)
        self.check_length(n)
        seq = [_BOS_ID, *self._kv_tokens(keys, values), _SEP_ID, *self._kv_tokens([keys[q]], [values[q]])]
        return self._example(seq, [2 * n + 3], n)

    def _queries(self, problem: Hashable) -> Sequence[int]:
        return (problem[2],)

    def max_tokens(self, length: int) -> int:
        return 2 * int(length) + 3


class MultiQueryAR(_KeyValueTask):
    """MQAR (Arora et al. 2023, "Zoology"): ``[BOS] k_1 v_1 .. k_n v_n [SEP] k_q1 v_q1 .. k_qm v_qm``.

    The m queried keys are distinct (default m = n: every key, in random
    order); every value after a query is scored.  Teacher forcing shows the
    earlier answers, which carry nothing about later ones.  Free generation
    from ``prompt_len`` answers the first query (later queries must be fed),
    so ``score_generation`` checks that one.
    """

    name = "mqar"
    help = ("multi-query associative recall (zoology): n key-value pairs, then several "
            "queries each followed by its value; options alphabet, values, num_queries")

    def __init__(self, alphabet: int = 64, values: int | None = None, num_queries: int | None = None,
                 format: str = "vanilla", min_length: int | None = None):
        self.num_queries = None if num_queries is None else _int_option("mqar", "num_queries", num_queries, 1)
        super().__init__(alphabet, values, format, min_length)

    def _m(self, n: int) -> int:
        m = n if self.num_queries is None else self.num_queries
        if m > n:
            raise SeqgapError(f"mqar: num_queries = {m} exceeds the {n} pairs (queries are distinct keys)")
        return m

    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        n = int(length)
        m = self._m(n)
        keys, values = self._pairs(rng, n)
        return keys, values, tuple(rng.permutation(n)[:m].tolist())

    def num_problems(self, length: int) -> int | None:
        n = int(length)
        if _too_many(_log2_perm(n, self._m(n)) + self._log2_pairs_count(n)):
            return None
        return _small(math.perm(n, self._m(n)) * self._pairs_count(n))

    def problem_from_index(self, length: int, index: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        n = int(length)
        q, keys, values = self._pairs_from_index(n, int(index))
        return keys, values, _partial_permutation(q, n, self._m(n))

    def encode(self, problem: Hashable) -> Example:
        keys, values, queries = problem
        n, m = len(keys), len(queries)
        self.check_length(n)
        queried = self._kv_tokens([keys[q] for q in queries], [values[q] for q in queries])
        seq = [_BOS_ID, *self._kv_tokens(keys, values), _SEP_ID, *queried]
        return self._example(seq, [2 * n + 3 + 2 * j for j in range(m)], n)

    def _queries(self, problem: Hashable) -> Sequence[int]:
        return problem[2]

    def max_tokens(self, length: int) -> int:
        n = int(length)
        return 2 * n + 2 * self._m(n) + 1

    def _options(self) -> dict[str, Any]:
        return {**super()._options(), "num_queries": self.num_queries}


class CGram(RetrievalTask):
    """c-gram retrieval: ``[BOS] x_1..x_n [SEP] g_1..g_{c-1} y``.

    Tokens are iid uniform; the query is a (c-1)-gram that occurs *exactly once*
    among all n-c+2 windows and is not the last window (so it has a completing
    token), chosen uniformly among such grams; sequences without one are redrawn.
    Default c = 3: c = 2 is AR on a free token stream, and with a small alphabet
    a token seldom occurs exactly once.
    """

    name = "cgram"
    help = ("c-gram retrieval (W): n tokens, a (c-1)-gram occurring once; answer the "
            "token completing it. options c (default 3), alphabet")

    def __init__(self, c: int = 3, alphabet: int = 16, format: str = "vanilla", min_length: int | None = None):
        self.c = _int_option("cgram", "c", c, 2)
        self.alphabet = _int_option("cgram", "alphabet", alphabet, 2)
        # a c-gram needs n >= c tokens: the shortest length depends on the option
        super().__init__(format, {"x": _data_symbols(self.alphabet)}, min_length, floor=self.c)

    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple[tuple[int, ...], int]:
        n = int(length)
        self.check_length(n)
        g = self.c - 1
        for _ in range(1000):
            xs = rng.integers(0, self.alphabet, size=n)
            windows = np.lib.stride_tricks.sliding_window_view(xs, g)  # (n-g+1, g)
            _, inverse, counts = np.unique(windows, axis=0, return_inverse=True, return_counts=True)
            unique_start = np.flatnonzero(counts[inverse.reshape(-1)][:-1] == 1)  # the last window has no successor
            if len(unique_start):
                return tuple(xs.tolist()), int(unique_start[rng.integers(len(unique_start))])
        raise SeqgapError(f"cgram: no {g}-gram occurs exactly once in 1000 random sequences of length {n}; "
                          f"raise alphabet or c")

    def encode(self, problem: Hashable) -> Example:
        xs, j = problem
        n, g = len(xs), self.c - 1
        self.check_length(n)
        x0 = self.offset["x"]
        seq = [_BOS_ID, *(x0 + x for x in xs), _SEP_ID, *(x0 + x for x in xs[j:j + g]), x0 + xs[j + g]]
        return self._example(seq, [n + g + 2], n)

    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.alphabet

    def max_tokens(self, length: int) -> int:
        return int(length) + self.c + 1

    def _options(self) -> dict[str, Any]:
        return {"c": self.c, "alphabet": self.alphabet}


class Counting(RetrievalTask):
    """Counting: ``[BOS] x_1..x_n [SEP] q #t y`` with y = 1 iff q occurs more than t times.

    Balanced by construction: y ~ Bernoulli(1/2) independent of t; t uniform on
    0..n-1 (or the fixed ``threshold``); q uniform; q is placed at exactly t + y
    uniformly random positions and the other positions get iid tokens != q.  So
    P(y = 1) = 1/2, and neither t alone nor the count of q alone predicts y
    (except at the edges: count 0 means y = 0, count n means y = 1).
    """

    name = "counting"
    help = ("Counting (W): n tokens, a token q and a number t; answer 1 if q occurs "
            "more than t times. options alphabet, max_length, threshold")

    def __init__(self, alphabet: int = 16, max_length: int = 64, threshold: int | None = None,
                 format: str = "vanilla", min_length: int | None = None):
        self.alphabet = _int_option("counting", "alphabet", alphabet, 2)
        self.max_length = _int_option("counting", "max_length", max_length, 1)
        self.threshold = None if threshold is None else _int_option("counting", "threshold t", threshold, 0)
        super().__init__(format, {"x": _data_symbols(self.alphabet),
                                  "#": [f"#{t}" for t in range(self.max_length)], "y": ["0", "1"]}, min_length)

    def check_length(self, length: int) -> None:
        super().check_length(length)
        n = int(length)
        if n > self.max_length:
            raise SeqgapError(f"counting: n = {n} exceeds max_length = {self.max_length} (set max_length)")
        if self.threshold is not None and self.threshold > n - 1:
            raise SeqgapError(f"counting: threshold t = {self.threshold} must be <= n - 1 = {n - 1} "
                              f"(else no sequence has more than t occurrences)")

    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple[tuple[int, ...], int, int]:
        n = int(length)
        self.check_length(n)
        t = self.threshold if self.threshold is not None else int(rng.integers(n))
        count = t + int(rng.integers(2))
        q = int(rng.integers(self.alphabet))
        xs = rng.integers(0, self.alphabet - 1, size=n)
        xs += xs >= q  # iid over the alphabet without q
        xs[rng.permutation(n)[:count]] = q
        return tuple(xs.tolist()), q, t

    def encode(self, problem: Hashable) -> Example:
        xs, q, t = problem
        n = len(xs)
        self.check_length(n)
        if not 0 <= t < self.max_length:
            raise SeqgapError(f"counting: t = {t} outside 0..{self.max_length - 1}")
        x0, y0 = self.offset["x"], self.offset["y"]
        y = int(sum(1 for x in xs if x == q) > t)
        seq = [_BOS_ID, *(x0 + x for x in xs), _SEP_ID, x0 + q, self.offset["#"] + t, y0 + y]
        return self._example(seq, [n + 4], n)

    @property
    def chance_accuracy(self) -> float:
        return 0.5

    def shortcut_baseline(self, val_problems: Sequence[Hashable],
                          train_problems: Sequence[Hashable] = ()) -> dict[str, Any] | None:
        """The count of q without the threshold t (exact): count = t + y, so it fixes y only at the
        edges (0 -> 0, n -> 1, probability 1/n together) and is a coin flip otherwise:
        1/2 + 1/(2n), averaged over the lengths of ``val_problems``.  With a fixed ``threshold``
        the count *is* the answer (no shortcut: that is the task), so None."""
        if self.threshold is not None or not val_problems:
            return None
        lengths = [len(xs) for xs, _, _ in val_problems]
        return {"name": "count of q alone", "accuracy": float(np.mean([0.5 + 0.5 / n for n in lengths])),
                "exact": True}

    def max_tokens(self, length: int) -> int:
        return int(length) + 4

    def _options(self) -> dict[str, Any]:
        return {"alphabet": self.alphabet, "max_length": self.max_length, "threshold": self.threshold}
