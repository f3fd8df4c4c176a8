"""The task interface every seqgap task implements, plus vocabularies and batches.

Design (after DeepMind's Chomsky-hierarchy benchmark): a task is a small object
that, given a random generator and a length, produces *problems*; a problem is
turned into an :class:`Example` (input tokens, target tokens, loss mask) by the
task's supervision *format*.  Two levels are kept apart on purpose:

* ``sample_problem(rng, length)`` -> a raw, hashable problem (e.g. the tuple of
  input symbols).  Datasets of *unique* samples are built from problems
  (see :mod:`seqgap.tasks.dataset`).
* ``encode(problem)`` -> an :class:`Example` in the task's format.

Convention for examples: the model reads ``inputs[t]`` and its output at
position ``t`` is scored against ``targets[t]`` wherever ``mask[t]`` is true.
Next-token formats (CoT, vanilla answers, RAG traces) set
``inputs = seq[:-1]``, ``targets = seq[1:]`` and record ``prompt_len``: free
generation starts after ``seq[:prompt_len]``.  Position-aligned formats (ACoT)
have no prompt (``prompt_len = None``) and cannot be generated from.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Sequence

import numpy as np
import torch

from seqgap.errors import SeqgapError

PAD, BOS, SEP, EOS = "[PAD]", "[BOS]", "[SEP]", "[EOS]"
SPECIALS = (PAD, BOS, SEP, EOS)


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

    Subclasses are parameterised in ``__init__`` (e.g. ``m``, ``format``) and
    must set ``self.vocab``.  ``length`` always means the task's natural size
    parameter: number of input symbols for state tracking, number of key-value
    tokens for retrieval, number of graph nodes for IsTree.
    """

    name: str = "task"
    formats: tuple[str, ...] = ()
    min_length: int = 2
    vocab: Vocab

    # ---- problems -----------------------------------------------------------
    @abstractmethod
    def sample_problem(self, rng: np.random.Generator, length: int) -> Hashable:
        """A random raw problem of the given length (hashable, used for uniqueness)."""

    def num_problems(self, length: int) -> int | None:
        """Number of distinct problems of this length, or None if astronomically many."""
        return None

    def problem_from_index(self, length: int, index: int) -> Hashable:
        """The index-th problem of this length (only for tasks with ``num_problems``)."""
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


# ---- registry -----------------------------------------------------------------

TASKS: dict[str, Callable[..., Task]] = {}
TASK_HELP: dict[str, str] = {}


def register_task(name: str, help: str = ""):
    """Class decorator: make a task constructible by name (``make_task``)."""

    def deco(cls):
        TASKS[name] = cls
        TASK_HELP[name] = help or (cls.__doc__ or "").strip().splitlines()[0]
        cls.name = name
        return cls

    return deco


def make_task(name: str, **params: Any) -> Task:
    """Build a registered task, turning bad parameters into one-line SeqgapErrors."""
    import seqgap.tasks  # noqa: F401  (populates the registry)

    if name not in TASKS:
        raise SeqgapError(f"unknown task {name!r}; known tasks: {', '.join(sorted(TASKS))}")
    params = {k: v for k, v in params.items() if v is not None}
    # `min_length` works for every task: the shortest length a length distribution draws
    # (e.g. the sharing study may start at n = 3 instead of the task's own minimum).
    min_length = params.pop("min_length", None)
    try:
        task = TASKS[name](**params)
    except TypeError as e:
        raise SeqgapError(f"task {name}: {e}") from None
    if min_length is not None:
        if int(min_length) < task.min_length:
            raise SeqgapError(f"task {name}: min_length must be >= {task.min_length}, got {min_length}")
        task.min_length = int(min_length)
    return task
