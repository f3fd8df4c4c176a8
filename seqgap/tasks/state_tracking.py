"""State tracking: modular addition over Z_m (parity = Z_2) and composition in S_k / A_k.

Study E (Ebrahimi et al. 2026, "On the 'Induction Bias' in Sequence Models").
A problem is a tuple of input symbols x_1..x_n (ints in 0..G-1, G = number of
group elements).  The state after i inputs is

    s_0 = identity,   s_i = x_i o s_{i-1}         (so s_n = x_n o ... o x_1)

with (p o q)(j) = p(q(j)) for permutations and plain addition mod m for Z_m.
Inputs and states are elements of the same group, so they share one token per
element.

Group elements and their order (the symbol index used in problems):

* modadd / parity: 0..m-1, written "0".."m-1".
* permutation: a permutation is the tuple of images of 0..k-1; elements are in
  ``itertools.permutations(range(k))`` order (lexicographic, identity first),
  filtered to the even ones for A_k; written "p" + images, e.g. "p01243".

Vocabulary: ``[PAD] [BOS] [SEP] [EOS]`` then one token per element (token id =
4 + symbol index).  Formats (see STUDIES.md, E "Supervision formats"):

* ``outcome``: inputs x_1..x_n; only the last position is scored, target s_n.
* ``acot`` (aligned CoT): inputs x_1..x_n; position i is scored against s_i.
  Position-aligned, so ``prompt_len = None``.
* ``cot``: sequence ``[BOS] x_1..x_n [SEP] s_1..s_n [EOS]`` read next-token
  style (inputs = seq[:-1], targets = seq[1:]); the targets s_1..s_n and the
  final ``[EOS]`` are scored; ``prompt_len = n + 2`` (generation starts right
  after ``[SEP]``).

Every example's ``meta`` holds ``length`` (n) and ``state`` (symbol index of s_n).
Besides the :class:`~seqgap.tasks.base.Task` interface these tasks offer two
vectorised hooks that :mod:`seqgap.tasks.dataset` uses when present:
``problems_from_indices(n, indices)`` and ``sample_problems(rng, n, count)``.
"""
from __future__ import annotations

import itertools
import math
from typing import Any, Hashable, Sequence

import numpy as np
import torch

from seqgap.errors import SeqgapError
from seqgap.tasks.base import BOS, COUNT_BITS_LIMIT, EOS, PAD, SEP, SPECIALS, Batch, Example, Task, Vocab

FORMATS = ("outcome", "cot", "acot")
_OFF = len(SPECIALS)  # token id of symbol j is _OFF + j
_PAD_ID, _BOS_ID, _SEP_ID, _EOS_ID = (SPECIALS.index(s) for s in (PAD, BOS, SEP, EOS))


class StateTrackingTask(Task):
    """Common machinery: a finite group given by its multiplication table."""

    family = "state-tracking"
    formats = FORMATS
    min_length = 2

    def __init__(self, symbols: Sequence[str], format: str, min_length: int | None = None):
        super().__init__(min_length)
        if format not in FORMATS:
            raise SeqgapError(f"{self.name}: unknown format {format!r}; choose from {', '.join(FORMATS)}")
        self.format = format
        self.symbols = list(symbols)  # element names, in symbol-index order
        self.n_symbols = len(self.symbols)  # G: alphabet size == number of states
        self.vocab = Vocab(list(SPECIALS) + self.symbols)

    # ---- group operations (subclasses) ---------------------------------------
    def compose(self, a: int, b: int) -> int:
        """Symbol index of a o b."""
        raise NotImplementedError

    def prefix_states(self, x: np.ndarray) -> np.ndarray:
        """(B, n) inputs -> (B, n) states s_1..s_n.  Vectorised over the batch."""
        raise NotImplementedError

    # ---- problems --------------------------------------------------------------
    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple[int, ...]:
        self.check_length(length)
        return tuple(rng.integers(0, self.n_symbols, size=int(length)).tolist())

    def sample_problems(self, rng: np.random.Generator, length: int, count: int) -> list[tuple[int, ...]]:
        """``count`` independent uniform problems (with replacement) in one numpy call."""
        self.check_length(length)
        return list(map(tuple, rng.integers(0, self.n_symbols, size=(int(count), int(length))).tolist()))

    def num_problems(self, length: int) -> int | None:
        """G**n, exactly; None (astronomically many) when it has more than ``COUNT_BITS_LIMIT``
        bits, decided from n * log2(G) before the integer is computed."""
        n = int(length)
        if n * math.log2(self.n_symbols) > COUNT_BITS_LIMIT:
            return None
        return self.n_symbols ** n

    def problem_from_index(self, length: int, index: int) -> tuple[int, ...]:
        """Base-G digits of ``index``, most significant first (so index order = lexicographic)."""
        length, index = int(length), int(index)
        if not 0 <= index < self.n_symbols ** length:
            raise IndexError(f"{self.name}: index {index} out of range for length {length}")
        digits = [0] * length
        for j in range(length - 1, -1, -1):
            index, digits[j] = divmod(index, self.n_symbols)
        return tuple(digits)

    def problems_from_indices(self, length: int, indices: np.ndarray) -> list[tuple[int, ...]]:
        """Vectorised :meth:`problem_from_index` (needs G**length < 2**63)."""
        length = int(length)
        if length * math.log2(self.n_symbols) >= 62:  # G**length may not fit in int64
            return [self.problem_from_index(length, int(i)) for i in indices]
        idx = np.asarray(indices, dtype=np.int64).copy()
        digits = np.empty((len(idx), length), dtype=np.int64)
        for j in range(length - 1, -1, -1):
            digits[:, j] = idx % self.n_symbols
            idx //= self.n_symbols
        return list(map(tuple, digits.tolist()))

    # ---- examples --------------------------------------------------------------
    def _check_symbols(self, lo: int, hi: int, n: int) -> None:
        if n < 1:
            raise SeqgapError(f"{self.name}: a problem needs at least one symbol")
        if lo < 0 or hi >= self.n_symbols:
            raise SeqgapError(f"{self.name}: symbols must be in 0..{self.n_symbols - 1}, got {lo if lo < 0 else hi}")

    def encode(self, problem: Hashable) -> Example:
        # Plain-Python path, written independently of encode_batch (the tests compare them).
        xs = [int(v) for v in problem]
        n = len(xs)
        self._check_symbols(min(xs, default=0), max(xs, default=0), n)
        states, s = [], 0  # symbol 0 is the identity of every group here
        for x in xs:
            s = self.compose(x, s)
            states.append(s)
        meta = {"length": n, "state": states[-1]}
        x_tok = [_OFF + x for x in xs]
        s_tok = [_OFF + s for s in states]
        if self.format == "cot":
            seq = np.array([_BOS_ID] + x_tok + [_SEP_ID] + s_tok + [_EOS_ID], dtype=np.int64)
            mask = np.zeros(2 * n + 2, dtype=bool)
            mask[n + 1:] = True  # targets s_1..s_n and [EOS]
            return Example(seq[:-1].copy(), seq[1:].copy(), mask, prompt_len=n + 2, meta=meta)
        inputs = np.array(x_tok, dtype=np.int64)
        if self.format == "acot":
            return Example(inputs, np.array(s_tok, dtype=np.int64), np.ones(n, dtype=bool), meta=meta)
        targets = np.full(n, _PAD_ID, dtype=np.int64)
        targets[-1] = s_tok[-1]
        mask = np.zeros(n, dtype=bool)
        mask[-1] = True
        return Example(inputs, targets, mask, meta=meta)

    def encode_batch(self, problems: Sequence[Hashable]) -> Batch:
        """Vectorised encode + collate (same result as ``collate([encode(p) ...])``)."""
        B = len(problems)
        if B == 0:
            raise SeqgapError(f"{self.name}: cannot encode an empty batch")
        try:  # fast path: all problems have the same length
            x = np.array(problems, dtype=np.int64)  # (B, n)
            if x.ndim != 2:
                raise ValueError
            lens = np.full(B, x.shape[1], dtype=np.int64)
        except ValueError:  # ragged: pad with the identity (0), which leaves states unchanged
            lens = np.fromiter((len(p) for p in problems), dtype=np.int64, count=B)
            x = np.zeros((B, int(lens.max())), dtype=np.int64)
            for b, p in enumerate(problems):
                x[b, : lens[b]] = p
        self._check_symbols(int(x.min()), int(x.max()), int(lens.min()))
        N = x.shape[1]
        s = self.prefix_states(x)  # (B, N)
        rows = np.arange(B)
        pos = np.arange(N)
        valid = pos[None, :] < lens[:, None]  # (B, N)

        if self.format == "cot":
            T = 2 * N + 2
            seq = np.zeros((B, T + 1), dtype=np.int64)  # [BOS] x [SEP] s [EOS], right-padded
            seq[:, 0] = _BOS_ID
            r, c = np.nonzero(valid)
            seq[r, 1 + c] = x[r, c] + _OFF
            seq[rows, lens + 1] = _SEP_ID
            seq[r, lens[r] + 2 + c] = s[r, c] + _OFF
            seq[rows, 2 * lens + 2] = _EOS_ID
            t = np.arange(T)[None, :]
            inputs = seq[:, :-1].copy()
            inputs[t >= (2 * lens + 2)[:, None]] = _PAD_ID  # the [EOS] is never an input
            targets = seq[:, 1:].copy()
            mask = (t >= (lens + 1)[:, None]) & (t <= (2 * lens + 1)[:, None])
        else:
            inputs = np.where(valid, x + _OFF, _PAD_ID)
            if self.format == "acot":
                targets = np.where(valid, s + _OFF, _PAD_ID)
                mask = valid
            else:  # outcome
                targets = np.zeros((B, N), dtype=np.int64)
                mask = np.zeros((B, N), dtype=bool)
                targets[rows, lens - 1] = s[rows, lens - 1] + _OFF
                mask[rows, lens - 1] = True
        mask_t = torch.from_numpy(np.ascontiguousarray(mask))
        return Batch(torch.from_numpy(inputs), torch.from_numpy(targets), mask_t, mask_t.clone(), torch.from_numpy(lens))

    def score_generation(self, example: Example, continuation: Sequence[int]) -> bool:
        """A generated CoT is right when its n-th token is the final state s_n (intermediate
        states are the model's own business at test time, as in E's accuracy)."""
        n = example.meta["length"]
        return len(continuation) >= n and int(continuation[n - 1]) == _OFF + example.meta["state"]

    def generation_metrics(self, example: Example, continuation: Sequence[int]) -> dict[str, float]:
        trace = example.sequence[example.prompt_len:]
        exact = len(continuation) >= len(trace) and all(int(a) == int(b) for a, b in zip(continuation, trace))
        return {"acc": float(self.score_generation(example, continuation)), "trace_acc": float(exact)}

    # ---- descriptions ----------------------------------------------------------
    @property
    def chance_accuracy(self) -> float:
        return 1.0 / self.n_symbols

    def max_tokens(self, length: int) -> int:
        return 2 * int(length) + 2 if self.format == "cot" else int(length)


class ModAdd(StateTrackingTask):
    """Modular addition: s_n = (x_1 + ... + x_n) mod m."""

    name = "modadd"
    help = "modular addition over Z_m (option m >= 2); formats outcome, cot, acot"
    size_param, size_range = "m", (2, None)

    def __init__(self, m: int = 5, format: str = "outcome", min_length: int | None = None):
        self.m = ModAdd.check_size(m)  # ModAdd's option, also when a subclass (parity) fixes it
        super().__init__([str(i) for i in range(self.m)], format, min_length)

    def compose(self, a: int, b: int) -> int:
        return (a + b) % self.m

    def prefix_states(self, x: np.ndarray) -> np.ndarray:
        return np.cumsum(x, axis=1) % self.m

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "m": self.m, "format": self.format}


class Parity(ModAdd):
    """Parity: modular addition with m = 2 fixed (so no size option)."""

    name = "parity"
    help = "parity of a bit string (modadd with m = 2); formats outcome, cot, acot"
    size_param, size_range = None, None

    def __init__(self, format: str = "outcome", min_length: int | None = None):
        super().__init__(m=2, format=format, min_length=min_length)


def _is_even(p: tuple[int, ...]) -> bool:
    inversions = sum(1 for i in range(len(p)) for j in range(i + 1, len(p)) if p[i] > p[j])
    return inversions % 2 == 0


class Permutation(StateTrackingTask):
    """Permutation composition: s_n = x_n o ... o x_1, one token per group element."""

    name = "permutation"
    help = "composition in S_k or A_k (options k in 3..6, group S|A); formats outcome, cot, acot"
    # k <= 6: |S_6| = 720 tokens; S_7 would be 5040 tokens and a 5040 x 5040 table
    size_param, size_range = "k", (3, 6)

    def __init__(self, k: int = 5, group: str = "S", format: str = "outcome", min_length: int | None = None):
        k = self.check_size(k)
        if group not in ("S", "A"):
            raise SeqgapError(f"{self.name}: group must be 'S' (symmetric) or 'A' (alternating), got {group!r}")
        self.k, self.group = k, group
        perms = [p for p in itertools.permutations(range(k)) if group == "S" or _is_even(p)]
        self.elements: list[tuple[int, ...]] = perms  # symbol index -> permutation (images of 0..k-1)
        self.index = {p: i for i, p in enumerate(perms)}
        # Multiplication table mult[a, b] = index of a o b, i.e. j -> P[a][P[b][j]].
        P = np.array(perms, dtype=np.int64)  # (G, k)
        composed = P[:, P]  # (G, G, k): composed[a, b, j] = P[a, P[b, j]]
        code_of = np.full(k**k, -1, dtype=np.int64)  # base-k code of a permutation -> symbol index
        weights = k ** np.arange(k - 1, -1, -1)
        code_of[P @ weights] = np.arange(len(perms))
        self.mult = code_of[composed @ weights]  # (G, G)
        assert (self.mult >= 0).all(), "group not closed under composition"
        super().__init__(["p" + "".join(map(str, p)) for p in perms], format, min_length)

    def compose(self, a: int, b: int) -> int:
        return int(self.mult[a, b])

    def prefix_states(self, x: np.ndarray) -> np.ndarray:
        B, N = x.shape
        out = np.empty((B, N), dtype=np.int64)
        s = np.zeros(B, dtype=np.int64)  # identity
        for i in range(N):  # one table lookup per position, vectorised over the batch
            s = self.mult[x[:, i], s]
            out[:, i] = s
        return out

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "k": self.k, "group": self.group, "format": self.format}
