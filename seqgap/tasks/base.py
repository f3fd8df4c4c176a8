"""The task interface every seqgap task implements, plus vocabularies and batches.

Design (after DeepMind's Chomsky-hierarchy benchmark): a task is a small object
that, given a random generator and a length, produces *problems*; a problem is
turned into an :class:`Example` (input tokens, target tokens, loss mask) by the
task's supervision *format*.  Two levels are kept apart on purpose:

* ``sample_problem(rng, length)`` -> a raw, hashable problem (e.g. the tuple of
  input symbols).  Datasets of *unique* samples are built from problems
  (see :mod:`seqgap.tasks.dataset`).
* ``encode(problem)`` -> an :class:`Example` in the task's format.

Problem identity is defined by the task: ``problem_key(problem)`` says when two
problems are the same problem (default: equal problems).  IsTree's key is the
edge set, so a graph written with its edges in another order is not a new
problem; datasets are unique, and validation disjoint from training, under it.

The built-in tasks are listed by name in :mod:`seqgap.tasks.catalog` (with
``make_task``); task files never import the catalog.

Convention for examples: the model reads ``inputs[t]`` and its output at
position ``t`` is scored against ``targets[t]`` wherever ``mask[t]`` is true.
Next-token formats (CoT, vanilla answers, RAG traces) set
``inputs = seq[:-1]``, ``targets = seq[1:]`` and record ``prompt_len``: free
generation starts after ``seq[:prompt_len]``.  Position-aligned formats (ACoT)
have no prompt (``prompt_len = None``) and cannot be generated from.
"""
from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

import numpy as np
import torch

from seqgap.errors import SeqgapError

PAD, BOS, SEP, EOS = "[PAD]", "[BOS]", "[SEP]", "[EOS]"
SPECIALS = (PAD, BOS, SEP, EOS)

FAMILIES = ("state-tracking", "retrieval")  # study E's tasks, study W's tasks

# Options that size a vocabulary (m, alphabet, max_nodes, ...) are bounded: a typo such as
# m=1e11 would otherwise spend minutes building a list of symbols and then exhaust memory.
MAX_SYMBOLS = 1 << 20
# Problem counts whose log2 exceeds this are "astronomically many" without being computed
# (never materialise a huge integer: m**L at L = 1e5 takes minutes to sum over lengths).
COUNT_BITS_LIMIT = 4096


def as_int(name: str, task: str, value: Any) -> int:
    """An integer option (CLI strings such as "5" accepted), else a one-line SeqgapError."""
    if isinstance(value, (bool, float)):  # integers strictly: 1e3 (a float) or True is not a count
        raise SeqgapError(f"{task}: {name} must be an integer, got {value!r}")
    try:
        out = int(value)
    except (TypeError, ValueError, OverflowError):
        raise SeqgapError(f"{task}: {name} must be an integer, got {value!r}") from None
    if out != value and str(out) != str(value).strip():
        raise SeqgapError(f"{task}: {name} must be an integer, got {value!r}")
    return out


def check_symbols(task: str, name: str, value: int) -> int:
    """``value`` of a vocabulary-sizing option, or one line when it exceeds :data:`MAX_SYMBOLS`."""
    if value > MAX_SYMBOLS:
        raise SeqgapError(f"{task}: {name} must be at most {MAX_SYMBOLS:,} (it sizes the vocabulary), got {value:,}")
    return value


class Vocab:
    """Token strings <-> ids.  ``[PAD]`` is always id 0."""

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        if symbols[:1] != [PAD]:
            symbols = [PAD] + [s for s in symbols if s != PAD]
        if len(set(symbols)) != len(symbols):
            raise ValueError("duplicate symbols in vocabulary")
        self.symbols = symbols
        self._ids = {s: i for i, s in enumerate(symbols)}

    def __len__(self) -> int:
        return len(self.symbols)

    def __contains__(self, sym: str) -> bool:
        return sym in self._ids

    def id(self, sym: str) -> int:
        return self._ids[sym]

    def ids(self, syms: Sequence[str]) -> list[int]:
        return [self._ids[s] for s in syms]

    def sym(self, i: int) -> str:
        return self.symbols[int(i)]

    def decode(self, ids: Sequence[int]) -> list[str]:
        return [self.symbols[int(i)] if 0 <= int(i) < len(self.symbols) else f"<{int(i)}?>" for i in ids]

    @property
    def pad_id(self) -> int:
        return 0


@dataclass
class Example:
    """One training/evaluation example (see the module docstring for the convention)."""

    inputs: np.ndarray  # (T,) int64
    targets: np.ndarray  # (T,) int64
    mask: np.ndarray  # (T,) bool -- positions that count in loss and accuracy
    prompt_len: int | None = None  # generative formats: generation starts after seq[:prompt_len]
    no_loss: np.ndarray | None = None  # (T,) bool, optional: positions scored but never trained on
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def sequence(self) -> np.ndarray:
        """The full token sequence of a next-token example (``inputs[0]`` + ``targets``)."""
        return np.concatenate([self.inputs[:1], self.targets])

    def __len__(self) -> int:
        return len(self.inputs)


@dataclass
class Batch:
    inputs: torch.Tensor  # (B, T) long
    targets: torch.Tensor  # (B, T) long
    mask: torch.Tensor  # (B, T) bool: scored positions
    loss_mask: torch.Tensor  # (B, T) bool: trained positions (mask minus no_loss)
    lengths: torch.Tensor  # (B,) long: problem length n of each example
    examples: list[Example] | None = None

    def to(self, device: str | torch.device) -> "Batch":
        return dataclasses.replace(
            self,
            inputs=self.inputs.to(device),
            targets=self.targets.to(device),
            mask=self.mask.to(device),
            loss_mask=self.loss_mask.to(device),
            lengths=self.lengths.to(device),
        )

    def __len__(self) -> int:
        return self.inputs.shape[0]


def collate(examples: Sequence[Example], pad_id: int = 0, keep_examples: bool = False) -> Batch:
    """Right-pad examples into a :class:`Batch` (padding is never scored)."""
    B = len(examples)
    T = max(len(e) for e in examples)
    inputs = np.full((B, T), pad_id, dtype=np.int64)
    targets = np.full((B, T), pad_id, dtype=np.int64)
    mask = np.zeros((B, T), dtype=bool)
    loss_mask = np.zeros((B, T), dtype=bool)
    lengths = np.zeros(B, dtype=np.int64)
    for b, e in enumerate(examples):
        t = len(e)
        inputs[b, :t] = e.inputs
        targets[b, :t] = e.targets
        mask[b, :t] = e.mask
        loss_mask[b, :t] = e.mask if e.no_loss is None else (e.mask & ~e.no_loss)
        lengths[b] = e.meta.get("length", t)
    return Batch(
        torch.from_numpy(inputs),
        torch.from_numpy(targets),
        torch.from_numpy(mask),
        torch.from_numpy(loss_mask),
        torch.from_numpy(lengths),
        list(examples) if keep_examples else None,
    )


class Task(ABC):
    """Base class of every task.

    Subclasses are parameterised in ``__init__`` (e.g. ``m``, ``format``), must
    set ``self.vocab`` and call ``Task.__init__`` (directly or through a family
    base class) with the ``min_length`` option.  ``length`` always means the
    task's natural size parameter: number of input symbols for state tracking,
    number of key-value tokens for retrieval, number of graph nodes for IsTree.

    Class-level description (read by studies and reports without building a task):

    * ``name``, ``help``: the catalog name and its one-line description;
    * ``family``: ``"state-tracking"`` (study E) or ``"retrieval"`` (study W);
    * ``size_param``: the option that sets the state-space size (modadd ``"m"``,
      permutation ``"k"``), None when the task has none; ``size_range`` its
      allowed values ``(low, high)``, inclusive, ``high = None`` for unbounded;
    * ``min_length``: the family's shortest length.  An instance may raise it
      (the ``min_length`` option: the shortest length a length distribution draws).
    """

    name: str = "task"
    help: str = ""
    family: str | None = None
    formats: tuple[str, ...] = ()
    size_param: str | None = None
    size_range: tuple[int, int | None] | None = None
    min_length: int = 2
    vocab: Vocab

    def __init__(self, min_length: int | None = None, *, floor: int | None = None):
        """``min_length``: the shortest length drawn (default ``floor``); ``floor``: the
        shortest length the task supports (default: the class's ``min_length``)."""
        floor = type(self).min_length if floor is None else int(floor)
        if min_length is None:
            self.min_length = floor
            return
        value = as_int("min_length", self.name, min_length)
        if value < floor:
            raise SeqgapError(f"{self.name}: min_length must be >= {floor}, got {value}")
        self.min_length = value

    # ---- class-level description --------------------------------------------
    @classmethod
    def check_size(cls, value: Any) -> int:
        """``value`` of ``size_param`` as an int, or a one-line SeqgapError outside ``size_range``."""
        if cls.size_param is None or cls.size_range is None:
            raise SeqgapError(f"{cls.name}: has no state-space size option")
        v = as_int(cls.size_param, cls.name, value)
        low, high = cls.size_range
        if v < low or (high is not None and v > high):
            allowed = f">= {low}" if high is None else f"in {low}..{high}"
            raise SeqgapError(f"{cls.name}: {cls.size_param} must be {allowed}, got {v}")
        return check_symbols(cls.name, cls.size_param, v)

    @classmethod
    def size_of(cls, params: Mapping[str, Any]) -> int | None:
        """The state-space size a task built from ``params`` has (the constructor's default when
        ``params`` does not set it); None for tasks without ``size_param``."""
        if cls.size_param is None:
            return None
        value = params.get(cls.size_param)
        if value is None:
            value = inspect.signature(cls.__init__).parameters[cls.size_param].default
        return cls.check_size(value)

    # ---- problems -----------------------------------------------------------
    @abstractmethod
    def sample_problem(self, rng: np.random.Generator, length: int) -> Hashable:
        """A random raw problem of the given length (hashable)."""

    def problem_key(self, problem: Hashable) -> Hashable:
        """The problem's identity: two problems with equal keys are the same problem (datasets
        are unique, and validation disjoint from training, under it).  Default: the problem."""
        return problem

    def num_problems(self, length: int) -> int | None:
        """Number of distinct problems (distinct ``problem_key``) of this length, or None if
        astronomically many or unknown.  Sizes validation (E: at most 20% of them)."""
        return None

    @property
    def enumerable(self) -> bool:
        """Whether ``problem_from_index`` enumerates the problems.  Only for tasks whose sampler
        is uniform over ``num_problems`` distinct keys: datasets then draw exact without-replacement
        orders of the indices instead of rejection-sampling ``sample_problem``."""
        return type(self).problem_from_index is not Task.problem_from_index

    def problem_from_index(self, length: int, index: int) -> Hashable:
        """The index-th problem of this length (a bijection onto the keys; see ``enumerable``)."""
        raise NotImplementedError

    # ---- examples -----------------------------------------------------------
    @abstractmethod
    def encode(self, problem: Hashable) -> Example:
        """Turn a problem into an example in this task's format."""

    def encode_batch(self, problems: Sequence[Hashable]) -> Batch:
        """Encode and collate; tasks may override with a vectorised path."""
        return collate([self.encode(p) for p in problems], self.vocab.pad_id)

    def sample(self, rng: np.random.Generator, length: int) -> Example:
        return self.encode(self.sample_problem(rng, length))

    def sample_batch(self, rng: np.random.Generator, batch_size: int, length: int) -> Batch:
        return self.encode_batch([self.sample_problem(rng, length) for _ in range(batch_size)])

    def score_generation(self, example: Example, continuation: Sequence[int]) -> bool:
        """Is a freely generated continuation (tokens after ``seq[:prompt_len]``) right?

        Default: it reproduces the expected continuation up to its end.  Tasks
        override this to score only the answer (e.g. the final state of a CoT).
        """
        expected = example.sequence[example.prompt_len:]
        cont = list(continuation)[: len(expected)]
        return len(cont) == len(expected) and all(int(a) == int(b) for a, b in zip(cont, expected))

    def generation_metrics(self, example: Example, continuation: Sequence[int]) -> dict[str, float]:
        """Per-example metrics of free generation (averaged by the trainer as ``gen_<name>``)."""
        return {"acc": float(self.score_generation(example, continuation))}

    def generation_tool(self):
        """A tool called during generation (see ``training/generate.py``), or None."""
        return None

    def generation_stop_ids(self) -> set[int]:
        """Generation of an example ends when one of these tokens is generated."""
        return {self.vocab.id(EOS)} if EOS in self.vocab else set()

    def max_new_tokens(self, example: Example) -> int:
        """Generation budget for one example: its expected continuation plus slack."""
        return 2 * (len(example.inputs) + 1 - (example.prompt_len or 0)) + 8

    # ---- descriptions -------------------------------------------------------
    @property
    @abstractmethod
    def chance_accuracy(self) -> float:
        """Accuracy of guessing uniformly on a scored *answer* (for normalising)."""

    @abstractmethod
    def max_tokens(self, length: int) -> int:
        """Upper bound on ``len(example.inputs)`` for problems of this length."""

    def describe(self) -> dict[str, Any]:
        """JSON-able parameters identifying the task (part of a run's config hash)."""
        return {"name": self.name}

    def check_length(self, length: int) -> None:
        if int(length) < self.min_length:
            raise SeqgapError(f"{self.name}: length must be >= {self.min_length}, got {length}")

    def shortcut_baseline(self, val_problems: Sequence[Hashable],
                          train_problems: Sequence[Hashable] = ()) -> dict[str, Any] | None:
        """The strongest known shortcut on the scored answer, next to ``chance_accuracy``:
        ``{"name": what it reads, "accuracy": its expected accuracy on problems like
        ``val_problems``, "exact": True if computed from the distribution, False if fitted on
        ``train_problems`` / counted on ``val_problems``}``; None when none beats chance."""
        return None
