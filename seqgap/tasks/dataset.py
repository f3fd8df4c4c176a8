"""Datasets of *unique* problems: a validation set and nested training sets.

Study E draws samples without replacement, so every sample is distinct (this
matters when m and L are small: there are only m**n sequences of length n).
"Distinct" is under the task's identity, ``task.problem_key`` (IsTree: the edge
set, so a validation graph never comes back in training with its edges
shuffled).  ``build_splits`` returns

* ``val``: drawn first, from generators seeded only by ``seed``: identical for
  every ``n_train`` (and the same for "uniform" and "short-to-long", which
  both validate on all lengths);
* ``train``: drawn from the problems left over, as a prefix of one fixed
  stream: the N-sample training set is ``train[:N]`` of any larger one.

Lengths n run over ``task.min_length..L``:

* ``fixed``: n = L only.  Validation: length L.
* ``uniform``: each training sample's n is uniform over the lengths whose
  problems are not used up.  Bias: once a short length is exhausted its share
  goes to the remaining lengths, so with small m the histogram is "all
  problems of the short lengths, the rest spread evenly over the long ones"
  (e.g. m=2, L=6, N=100: length 2 gets its 3 training problems, not 20).
* ``short-to-long``: every problem of length n (random order) before any of
  length n + 1.
  Validation for both: n uniform over all lengths, but no length gives more
  than 20% of its problems (at least 1) while other lengths still can, so tiny
  short lengths are not swallowed by validation; the cap is lifted only if
  ``n_val`` cannot be reached otherwise.

Each length has its own pool: a fixed pseudo-random order of its problems,
which validation consumes first and training continues.  The order is exact
(without replacement) whatever the pool size:

* ``num_problems(n) <= 2**20``: a random permutation of the indices
  (``problem_from_index``);
* ``<= 2**62``: a keyed Feistel permutation of the indices, evaluated lazily
  (a pseudo-random permutation, no memory, can still be exhausted, e.g. by
  short-to-long with m = 2 and n > 20);
* larger, unknown (``num_problems`` is None), or not enumerable (IsTree: the
  sampler is not uniform over its edge sets): rejection sampling against the
  keys already drawn (collisions are negligible when the pool is astronomically
  large).

Streamed training (``n_train = 0``, fresh problems every step) goes through
:class:`TrainStream`, which rejects every problem whose key is a validation key;
:func:`measure_overlap` counts validation keys found in a training set.

Optional vectorised task hooks, used when present: ``problems_from_indices(n,
indices)`` and ``sample_problems(rng, n, count)`` (see ``state_tracking.py``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Iterable, Sequence

import numpy as np

from seqgap.errors import SeqgapError
from seqgap.tasks.base import Task

LENGTH_DISTS = ("fixed", "uniform", "short-to-long")

_PERM_MAX = 2**20  # pools up to this size get a true random permutation
_FEISTEL_MAX = 2**62  # pools up to this size get a Feistel permutation, larger ones rejection sampling
_CHUNK = 1 << 14  # random floats drawn at a time for uniform length choices (fixed: keeps streams nested)
_MAX_REJECTS = 100_000  # consecutive duplicates before we decide a pool of unknown size is used up
_VAL_SHARE = 5  # validation takes at most 1/_VAL_SHARE of a length's problems (while it can)
# Stream tags for np.random.default_rng([seed, tag, ...]): independent generators per purpose.
_TAG_POOL, _TAG_VAL, _TAG_TRAIN = 11, 12, 13


@dataclass
class Splits:
    train: list  # problems (hashables), in sampling order; train[:N] is the N-sample training set
    val: list  # validation problems, disjoint from train, identical for every n_train given the seed
    lengths: tuple[int, ...]  # lengths in play
    max_train: int | None  # how many distinct training problems exist (None = effectively unlimited)
    val_keys: frozenset = field(default_factory=frozenset)  # task.problem_key of every validation problem


def problem_keys(task: Task, problems: Iterable[Hashable]) -> set:
    """The identities (``task.problem_key``) of ``problems``."""
    return {task.problem_key(p) for p in problems}


def measure_overlap(task: Task, train_problems: Iterable[Hashable], val_problems: Iterable[Hashable]) -> int:
    """How many distinct validation problems (keys) also occur in ``train_problems``."""
    return len(problem_keys(task, val_problems) & problem_keys(task, train_problems))


# ---- exact without-replacement orders ---------------------------------------------------


def _mix64(z: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser (Steele et al. 2014): a fast, well-mixing hash of uint64s."""
    z = z * np.uint64(0xBF58476D1CE4E5B9)
    z ^= z >> np.uint64(27)
    z = z * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


class _FeistelPermutation:
    """A keyed pseudo-random permutation of range(size), computed index by index.

    A balanced Feistel network on 2h bits (Luby-Rackoff: enough rounds of a good
    keyed round function give a pseudo-random permutation), restricted to
    range(size) by cycle walking (Black-Rogaway 2002): re-encrypt until the value
    falls in range; since 2**(2h) < 4 * size this takes < 4 rounds on average.
    """

    ROUNDS = 6

    def __init__(self, size: int, rng: np.random.Generator):
        assert 2 <= size <= _FEISTEL_MAX
        bits = (size - 1).bit_length()
        self.half = (bits + 1) // 2
        self.size = size
        self.mask = np.uint64((1 << self.half) - 1)
        self.keys = [np.uint64(k) for k in rng.integers(0, 2**63, size=self.ROUNDS, dtype=np.uint64)]

    def _encrypt(self, x: np.ndarray) -> np.ndarray:
        h = np.uint64(self.half)
        left, right = x >> h, x & self.mask
        for key in self.keys:
            left, right = right, left ^ (_mix64(right ^ key) & self.mask)
        return (left << h) | right

    def __call__(self, idx: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            y = self._encrypt(idx.astype(np.uint64))
            out = y >= np.uint64(self.size)
            while out.any():
                y[out] = self._encrypt(y[out])
                out = y >= np.uint64(self.size)
        return y.astype(np.int64)


def _from_indices(task: Task, n: int, idx: np.ndarray) -> list:
    hook = getattr(task, "problems_from_indices", None)
    if hook is not None:
        return hook(n, idx)
    return [task.problem_from_index(n, int(i)) for i in idx]


class _Pool:
    """The distinct problems of one length, in a fixed pseudo-random order; ``take`` continues it.

    ``seen`` holds the keys drawn by rejection sampling (shared by all lengths); exact
    orders of an enumerable task's indices give distinct keys by construction.
    """

    def __init__(self, task: Task, n: int, seed: int, seen: set):
        self.task, self.n, self.seen = task, n, seen
        self.size = task.num_problems(n)  # None = unknown
        self.served = 0
        self.rng = np.random.default_rng([seed, _TAG_POOL, n])
        self._order = self._prp = None
        self._buf: list = []
        self._buf_pos, self._chunk = 0, 256
        if self.size is not None and task.enumerable:
            if self.size <= _PERM_MAX:
                self._order = self.rng.permutation(self.size)
            elif self.size <= _FEISTEL_MAX:
                self._prp = _FeistelPermutation(self.size, self.rng)

    @property
    def remaining(self) -> float:
        return float("inf") if self.size is None else self.size - self.served

    def take(self, k: int) -> list:
        if k <= 0:
            return []
        if k > self.remaining:
            raise AssertionError("pool over-drawn")  # callers check counts first
        start, self.served = self.served, self.served + k
        if self._order is not None:
            return _from_indices(self.task, self.n, self._order[start:start + k])
        if self._prp is not None:
            return _from_indices(self.task, self.n, self._prp(np.arange(start, start + k, dtype=np.int64)))
        out, rejects = [], 0
        while len(out) < k:
            p = self._candidate()
            key = self.task.problem_key(p)
            if key in self.seen:
                rejects += 1
                if rejects > _MAX_REJECTS:
                    raise SeqgapError(f"{self.task.name}: found only {start + len(out)} distinct problems of "
                                      f"length {self.n} (after {_MAX_REJECTS} duplicates in a row)")
                continue
            rejects = 0
            self.seen.add(key)
            out.append(p)
        return out

    def _candidate(self) -> Hashable:
        # Candidates come in chunks of a fixed, growing schedule, so the stream does not depend on k.
        hook = getattr(self.task, "sample_problems", None)
        if hook is None:
            return self.task.sample_problem(self.rng, self.n)
        if self._buf_pos >= len(self._buf):
            self._buf, self._buf_pos = hook(self.rng, self.n, self._chunk), 0
            self._chunk = min(2 * self._chunk, 1 << 16)
        self._buf_pos += 1
        return self._buf[self._buf_pos - 1]


# ---- length sequences -----------------------------------------------------------------


def _uniform_lengths(rng: np.random.Generator, lengths: tuple[int, ...], quota: dict[int, float], count: int) -> list[int]:
    """``count`` lengths, each uniform over those with quota left; uses up ``quota`` in place.

    Equivalent to the per-sample loop "u = next float; n = active[floor(u * len(active))];
    quota[n] -= 1; drop n when its quota is 0", vectorised between exhaustion events.
    Floats are drawn in fixed-size chunks, so a longer sequence extends a shorter one.
    """
    out: list[int] = []
    active = np.array([n for n in lengths if quota[n] > 0], dtype=np.int64)
    while len(out) < count:
        if len(active) == 0:
            raise AssertionError("length quotas exhausted")  # callers check counts first
        u = rng.random(_CHUNK)
        pos = 0
        while pos < _CHUNK and len(out) < count:
            seg = u[pos:pos + count - len(out)]
            choice = active[(seg * len(active)).astype(np.int64)]
            cut = len(seg)  # accept choice[:cut]; cut just after the first exhaustion
            for n in active:
                q = quota[int(n)]
                if q <= len(seg):
                    hits = np.flatnonzero(choice == n)
                    if len(hits) >= q:
                        cut = min(cut, int(hits[int(q) - 1]) + 1)
            chosen = choice[:cut]
            for n, c in zip(*np.unique(chosen, return_counts=True)):
                quota[int(n)] -= int(c)
            out.extend(chosen.tolist())
            pos += cut
            active = active[[quota[int(n)] > 0 for n in active]]
    return out


def _interleave(pools: dict[int, _Pool], seq: list[int]) -> list:
    """Problems for a sequence of lengths: one bulk ``take`` per length, then put back in order."""
    seq_arr = np.asarray(seq, dtype=np.int64)
    out: list = [None] * len(seq)
    for n in np.unique(seq_arr):
        where = np.flatnonzero(seq_arr == n)
        for i, p in zip(where.tolist(), pools[int(n)].take(len(where))):
            out[i] = p
    return out


# ---- public API -----------------------------------------------------------------------


def _lengths(task: Task, max_length: int, length_dist: str) -> tuple[int, ...]:
    if length_dist not in LENGTH_DISTS:
        raise SeqgapError(f"unknown length distribution {length_dist!r}; use one of {', '.join(LENGTH_DISTS)}")
    L = int(max_length)
    if L < task.min_length:
        raise SeqgapError(f"{task.name}: max length must be >= {task.min_length}, got {max_length}")
    return (L,) if length_dist == "fixed" else tuple(range(task.min_length, L + 1))


def count_problems(task: Task, max_length: int, length_dist: str) -> int | None:
    """Number of distinct problems over the lengths in play (None if unknown)."""
    total = 0
    for n in _lengths(task, max_length, length_dist):
        c = task.num_problems(n)
        if c is None:
            return None
        total += c
    return total


def default_n_val(task: Task, max_length: int, length_dist: str) -> int:
    """min(2000, 20% of the distinct problems), at least 1 (E's protocol)."""
    total = count_problems(task, max_length, length_dist)
    return 2000 if total is None else max(1, min(2000, total // _VAL_SHARE))


def _describe(task: Task, L: int, length_dist: str) -> str:
    params = " ".join(f"{k}={v}" for k, v in task.describe().items() if k not in ("name", "format"))
    return f"{task.name}{' ' + params if params else ''}, L={L}, {length_dist}"


def check_sizes(task: Task, max_length: int, length_dist: str, n_train: int,
                n_val: int | None = None) -> tuple[tuple[int, ...], int, int | None]:
    """Validate the requested sizes without generating data: (lengths, n_val, total problems)."""
    lengths = _lengths(task, max_length, length_dist)
    L = lengths[-1]
    n_train = int(n_train)
    n_val = default_n_val(task, L, length_dist) if n_val is None else int(n_val)
    if n_train < 0 or n_val < 0:
        raise SeqgapError(f"n_train and n_val must be >= 0, got {n_train} and {n_val}")
    total = count_problems(task, L, length_dist)
    what = _describe(task, L, length_dist)
    if total is not None and n_val > total:
        raise SeqgapError(f"{what}: only {total} distinct problems exist, cannot hold out {n_val} for validation")
    max_train = None if total is None else total - n_val
    if max_train is not None and n_train > max_train:
        raise SeqgapError(f"{what}: at most {max_train} training samples exist "
                          f"({total} distinct, {n_val} held out for validation), asked for {n_train}")
    if length_dist == "short-to-long" and total is None:
        raise SeqgapError(f"{what}: short-to-long needs a task whose problems can be counted")
    return lengths, n_val, total


def build_splits(task: Task, max_length: int, length_dist: str, n_train: int, n_val: int | None = None,
                 seed: int = 0) -> Splits:
    """Validation set + the first ``n_train`` problems of the training stream (see module doc)."""
    lengths, n_val, total = check_sizes(task, max_length, length_dist, n_train, n_val)
    L = lengths[-1]
    n_train = int(n_train)
    max_train = None if total is None else total - n_val

    seen: set = set()  # keys drawn by rejection sampling (shared: uniqueness across lengths too)
    pools = {n: _Pool(task, n, seed, seen) for n in lengths}

    # Validation first, from generators seeded by `seed` only.
    if length_dist == "fixed":
        val = pools[L].take(n_val)
    else:
        caps = {n: min(pools[n].remaining, max(1, int(pools[n].remaining) // _VAL_SHARE)
                       if pools[n].size is not None else float("inf")) for n in lengths}
        rng_val = np.random.default_rng([seed, _TAG_VAL])
        first = min(n_val, sum(caps.values()))
        seq = _uniform_lengths(rng_val, lengths, caps, first)
        if first < n_val:  # tiny tasks: lift the 20% cap
            rest = {n: pools[n].remaining - (seq.count(n)) for n in lengths}
            seq += _uniform_lengths(rng_val, lengths, rest, n_val - first)
        val = _interleave(pools, seq)

    # Training: one deterministic stream over what is left, cut at n_train.
    if length_dist == "fixed":
        train = pools[L].take(n_train)
    elif length_dist == "short-to-long":
        train = []
        for n in lengths:
            if len(train) >= n_train:
                break
            train += pools[n].take(min(int(pools[n].remaining), n_train - len(train)))
    else:
        rng_train = np.random.default_rng([seed, _TAG_TRAIN])
        quota = {n: pools[n].remaining for n in lengths}
        train = _interleave(pools, _uniform_lengths(rng_train, lengths, quota, n_train))
    return Splits(train=train, val=val, lengths=lengths, max_train=max_train,
                  val_keys=frozenset(problem_keys(task, val)))


# ---- training order -------------------------------------------------------------------


class TrainStream:
    """One run's training problems, in the order its ``rng`` gives.

    * ``train`` given (a fixed training set): the set reshuffled each epoch;
    * ``train`` None or empty (streaming, ``n_train = 0``): fresh problems, each at a
      length drawn uniformly from ``lengths``; a problem whose key is in ``val_keys``
      is redrawn at the same length (so the length mix stays the task's), never
      yielded.  ``rejected`` counts the redraws.

    Every draw comes from ``rng`` in a fixed order (a length, then problems until one
    is accepted), so a stream is reproducible from the rng's seed and the keys; with
    no rejection it is exactly ``[task.sample_problem(rng, rng.choice(lengths)) ...]``.
    """

    def __init__(self, task: Task, lengths: Sequence[int], val_keys: Iterable[Hashable],
                 rng: np.random.Generator, train: Sequence[Hashable] | None = None):
        self.task, self.lengths, self.rng = task, list(lengths), rng
        self.val_keys = val_keys if isinstance(val_keys, (set, frozenset)) else frozenset(val_keys)
        self.train = train if train else None
        self.rejected = 0
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0

    def next_problems(self, batch_size: int) -> list:
        if self.train is None:
            return [self._fresh(int(self.rng.choice(self.lengths))) for _ in range(batch_size)]
        idx: list[int] = []
        while len(idx) < batch_size:
            if self._pos >= len(self._order):  # a new epoch: reshuffle
                self._order = self.rng.permutation(len(self.train))
                self._pos = 0
            take = min(batch_size - len(idx), len(self._order) - self._pos)
            idx.extend(self._order[self._pos:self._pos + take].tolist())
            self._pos += take
        return [self.train[i] for i in idx]

    def _fresh(self, n: int) -> Hashable:
        for _ in range(_MAX_REJECTS):
            p = self.task.sample_problem(self.rng, n)
            if not self.val_keys or self.task.problem_key(p) not in self.val_keys:
                return p
            self.rejected += 1
        raise SeqgapError(f"{self.task.name}: {_MAX_REJECTS} fresh problems of length {n} in a row were all "
                          f"validation problems; hold out fewer (n_val) or train on a fixed set")
