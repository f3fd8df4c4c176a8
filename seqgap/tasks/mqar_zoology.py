"""Multi-query associative recall exactly as zoology generates it (``mqar-zoology``).

Zoology (Arora, Eyuboglu et al. 2023, "Zoology: Measuring and improving recall in efficient
language models"; HazyResearch/zoology, ``zoology/data/multiquery_ar.py``) defines MQAR on a
vocabulary of ``V`` ids.  This module is written from that file's documented behaviour (its
docstring and the rule it implements), not copied from it.  The rule, for n key-value pairs
and a sequence of ``T`` tokens (zoology's ``input_seq_len``, even, ``4 n <= T``):

* id 0 is a blank; keys come from ids ``1 .. V/2 - 1``, values from ``V/2 .. V - 1``
  (disjoint halves); the n keys are drawn without replacement, and so are the n values;
* the context is ``k_1 v_1 k_2 v_2 .. k_n v_n`` (2n tokens);
* the query region that follows has ``space = (T - 2n) / 2`` slots (even offsets); the
  n gaps ``g_1 .. g_n`` are drawn from ``0 .. space - 1`` without replacement, with
  probability proportional to ``(g + 1) ** (power_a - 1)`` (a power law: with zoology's
  ``power_a = 0.01`` most queries sit close to the context), successively (pair j gets the
  j-th draw, each from the slots left, renormalised -- what numpy's weighted choice without
  replacement does);
* key ``k_j`` is written at position ``2n + 2 g_j``; every other position of the query region
  is the blank, or with ``noise`` (zoology's ``random_non_queries``, default on) a token drawn
  uniformly from all ``V`` ids (keys and values included);
* the only labels are at the query positions: at ``2n + 2 g_j`` the model must output
  ``v_j``.  The next input token is not the answer (a blank or noise), so an answer is never
  shown in the input, and there is no "elimination" shortcut (compare seqgap's ``mqar``,
  whose teacher forcing shows every earlier answer).

In seqgap's vocabulary zoology's id ``z`` is token ``4 + z`` (after ``[PAD] [BOS] [SEP]
[EOS]``, which never occur in the inputs): ``_`` (the blank), ``k1 .. k{V/2-1}``,
``v{V/2} .. v{V-1}`` named by their zoology ids.  There is no [BOS].  The format is
position-aligned (a label at the query position, not a next token), so examples have no
prompt and are not generated from (``prompt_len = None``), like ACoT.

Sequence length: ``seq_len`` fixes ``T`` for every n (zoology's segments have one
``input_seq_len`` each); without it ``T = tokens_per_pair * n`` (default 16: zoology's training
mixture uses 64 / 128 / 256 tokens for 4 / 8 / 16 pairs).  ``length`` = n, the number of
pairs; training may mix pair counts (``length_dist="uniform"``), which is zoology's recipe
(its training set mixes 4..64 pairs).

Not reproduced: zoology's ``num_passes`` (JRT repetition of the context, default 1) and its
assertion ``V > T`` (a property of its configs, not of the data).
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Hashable, Sequence

import numpy as np

from seqgap.errors import SeqgapError
from seqgap.tasks.base import SPECIALS, Example, Task, Vocab, as_int, check_symbols

_OFFSET = len(SPECIALS)  # zoology id z is seqgap token _OFFSET + z
_COUNT_LIMIT = 2**62


def gap_probabilities(space: int, power_a: float) -> np.ndarray:
    """zoology's power law over the ``space`` query slots: p(g) ~ (g + 1) ** (power_a - 1)."""
    p = power_a * np.arange(1, space + 1, dtype=np.float64) ** (power_a - 1)
    return p / p.sum()


class ZoologyMQAR(Task):
    """MQAR in zoology's form: answers are labels at the query positions, never shown in the input."""

    name = "mqar-zoology"
    help = ("multi-query AR exactly as zoology generates it: keys/values from disjoint vocabulary halves, "
            "drawn without replacement, queries at power-law gaps, answers only as labels; options "
            "vocab_size, seq_len, tokens_per_pair, power_a, noise")
    family = "retrieval"
    formats = ("vanilla",)
    min_length = 1

    def __init__(self, vocab_size: int = 8192, seq_len: int | None = None, tokens_per_pair: int = 16,
                 power_a: float = 0.01, noise: bool = True, format: str = "vanilla",
                 min_length: int | None = None):
        super().__init__(min_length)
        if format not in self.formats:
            raise SeqgapError(f"{self.name}: unknown format {format!r}; choose from {', '.join(self.formats)}")
        self.format = format
        V = check_symbols(self.name, "vocab_size", as_int("vocab_size", self.name, vocab_size))
        if V < 4 or V % 2:
            raise SeqgapError(f"{self.name}: vocab_size must be even and >= 4, got {V}")
        self.vocab_size = V
        self.seq_len = None if seq_len is None else as_int("seq_len", self.name, seq_len)
        if self.seq_len is not None and (self.seq_len < 4 or self.seq_len % 2):
            raise SeqgapError(f"{self.name}: seq_len must be even and >= 4, got {self.seq_len}")
        self.tokens_per_pair = as_int("tokens_per_pair", self.name, tokens_per_pair)
        if self.tokens_per_pair < 4 or self.tokens_per_pair % 2:
            raise SeqgapError(f"{self.name}: tokens_per_pair must be even and >= 4, got {self.tokens_per_pair}")
        try:
            self.power_a = float(power_a)
        except (TypeError, ValueError):
            raise SeqgapError(f"{self.name}: power_a must be a number, got {power_a!r}") from None
        if not self.power_a > 0 or not math.isfinite(self.power_a):
            raise SeqgapError(f"{self.name}: power_a must be > 0, got {power_a!r}")
        if isinstance(noise, str):
            if noise.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise SeqgapError(f"{self.name}: noise must be true or false, got {noise!r}")
            noise = noise.strip().lower() in ("true", "1", "yes")
        self.noise = bool(noise)
        half = V // 2
        symbols = (list(SPECIALS) + ["_"] + [f"k{z}" for z in range(1, half)]
                   + [f"v{z}" for z in range(half, V)])
        self.vocab = Vocab(symbols)

    # ---- sizes ------------------------------------------------------------------------------
    @property
    def num_keys(self) -> int:
        return self.vocab_size // 2 - 1

    def tokens(self, n: int) -> int:
        """T, the sequence length at n pairs."""
        return self.seq_len if self.seq_len is not None else self.tokens_per_pair * int(n)

    def check_length(self, length: int) -> None:
        super().check_length(length)
        n = int(length)
        if n > self.num_keys:
            raise SeqgapError(f"{self.name}: {n} pairs need {n} distinct keys but vocab_size = {self.vocab_size} "
                              f"has {self.num_keys} (raise vocab_size)")
        if 4 * n > self.tokens(n):
            raise SeqgapError(f"{self.name}: {n} pairs need seq_len >= {4 * n} (2n context + n query slots of "
                              f"2 tokens), got {self.tokens(n)}")

    # ---- problems ---------------------------------------------------------------------------
    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple:
        """(keys, values, gaps, fill): zoology ids of the n keys and values (pair order), the n gaps
        (pair j's query slot), and the T - 3n tokens of the query region's other positions in
        order (blanks, or noise)."""
        n = int(length)
        self.check_length(n)
        V, half, T = self.vocab_size, self.vocab_size // 2, self.tokens(n)
        keys = 1 + rng.choice(half - 1, size=n, replace=False)
        values = half + rng.choice(half, size=n, replace=False)
        space = (T - 2 * n) // 2
        gaps = rng.choice(space, size=n, replace=False, p=gap_probabilities(space, self.power_a))
        fill_len = T - 3 * n
        fill = rng.integers(0, V, size=fill_len) if self.noise else np.zeros(fill_len, dtype=np.int64)
        return (tuple(keys.tolist()), tuple(values.tolist()), tuple(gaps.tolist()), tuple(fill.tolist()))

    def num_problems(self, length: int) -> int | None:
        """Distinct (keys, values, gaps, fill): ordered key and value selections, ordered gap
        selections, and the fill (V ** (T - 3n) with noise, 1 without); None when astronomically many."""
        n = int(length)
        half, T = self.vocab_size // 2, self.tokens(n)
        space = (T - 2 * n) // 2
        if n > half - 1 or n > space:
            return 0
        lg = lambda a, k: (math.lgamma(a + 1) - math.lgamma(a - k + 1)) / math.log(2)  # noqa: E731
        log2 = lg(half - 1, n) + lg(half, n) + lg(space, n) + (T - 3 * n) * math.log2(self.vocab_size) * self.noise
        if log2 > 63:
            return None
        count = math.perm(half - 1, n) * math.perm(half, n) * math.perm(space, n)
        if self.noise:
            count *= self.vocab_size ** (T - 3 * n)
        return count if count < _COUNT_LIMIT else None

    # ---- examples ---------------------------------------------------------------------------
    def zoology_ids(self, problem: Hashable) -> tuple[np.ndarray, np.ndarray]:
        """(inputs, labels) in zoology's ids, labels -100 where ignored (as zoology returns them)."""
        keys, values, gaps, fill = problem
        n = len(keys)
        T = self.tokens(n)
        inputs = np.empty(T, dtype=np.int64)
        labels = np.full(T, -100, dtype=np.int64)
        inputs[0:2 * n:2], inputs[1:2 * n:2] = keys, values
        qpos = 2 * n + 2 * np.asarray(gaps, dtype=np.int64)
        region = np.ones(T, dtype=bool)
        region[:2 * n] = False
        region[qpos] = False
        inputs[region] = fill
        inputs[qpos] = keys
        labels[qpos] = values
        return inputs, labels

    def encode(self, problem: Hashable) -> Example:
        keys = problem[0]
        n = len(keys)
        self.check_length(n)
        z_in, z_lab = self.zoology_ids(problem)
        mask = z_lab >= 0
        targets = np.where(mask, z_lab + _OFFSET, 0)
        qpos = np.flatnonzero(mask)
        answers = [int(t) for t in targets[qpos]]
        meta = {"length": n, "answer": answers[int(np.argmin(qpos))] if answers else None,
                "answers": answers, "answer_positions": qpos.tolist()}
        return Example(z_in + _OFFSET, targets, mask, prompt_len=None, meta=meta)

    # ---- descriptions -----------------------------------------------------------------------
    @property
    def chance_accuracy(self) -> float:
        return 1.0 / (self.vocab_size // 2)

    def max_tokens(self, length: int) -> int:
        return self.tokens(length)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, "vocab_size": self.vocab_size, "seq_len": self.seq_len,
                "tokens_per_pair": self.tokens_per_pair, "power_a": self.power_a, "noise": self.noise}

    def shortcut_baseline(self, val_problems: Sequence[Hashable],
                          train_problems: Sequence[Hashable] = ()) -> dict[str, Any] | None:
        """The stronger of two shortcuts that need no key-value binding:

        * the context guess: answer a value of the context at random, 1/n per query (values are
          distinct and no answer is ever shown);
        * the query-order guess: pair j's gap is the j-th successive power-law draw, so earlier
          pairs tend to be queried earlier; answer the query of rank r (in sequence order) with the
          value of the pair most often queried at rank r (that table is estimated from 4,000
          problems drawn from the task with a fixed seed, then scored on ``val_problems``).
          Measured at T = 64: 0.54 / 0.29 / 0.17 / 0.12 at n = 2 / 4 / 8 / 16 (1/n: 0.50 / 0.25 /
          0.125 / 0.0625).

        Averaged over the queries of ``val_problems``."""
        if not val_problems:
            return None
        right = total = 0.0
        ctx = 0.0
        for keys, values, gaps, _ in val_problems:
            n = len(keys)
            guess = _order_guess(n, self.tokens(n), self.power_a)
            ranks = np.argsort(np.asarray(gaps), kind="stable")  # ranks[r] = the pair queried r-th
            right += float(np.sum(guess == ranks))
            ctx += 1.0  # n queries at 1/n each
            total += n
        order, context = right / total, ctx / total
        if order > context:
            return {"name": "query-order guess (r-th query -> the pair most often queried r-th)",
                    "accuracy": order, "exact": False}
        return {"name": "context guess (a context value at random, 1/n)", "accuracy": context, "exact": True}


@lru_cache(maxsize=256)
def _order_guess(n: int, T: int, power_a: float, samples: int = 4000) -> np.ndarray:
    """For each query rank r, the pair index most often queried r-th (a fixed-seed estimate)."""
    space = (T - 2 * n) // 2
    p = gap_probabilities(space, power_a)
    rng = np.random.default_rng([4242, n, T])
    counts = np.zeros((n, n), dtype=np.int64)
    for _ in range(samples):
        gaps = rng.choice(space, size=n, replace=False, p=p)
        counts[np.arange(n), np.argsort(gaps, kind="stable")] += 1
    return counts.argmax(1)
