"""Tests a task author can call: :func:`check_task` runs a task through the contract seqgap relies on.

    from seqgap.tasks.testing import check_task

    def test_my_task():
        check_task(MyTask(format="cot"), oracle=my_solver)   # raises AssertionError naming each failure

Checks, each one :class:`TaskCheck` line (``check_task(..., raise_on_failure=False)`` returns them):

* ``sample``    -- ``sample_problem(rng, n)`` returns hashable problems with hashable ``problem_key``s,
  and the same seed gives the same problems (datasets are reproducible from ``data_seed``);
* ``encode``    -- ``encode(p)`` is deterministic and consistent: ``inputs``/``targets``/``mask``
  (and ``no_loss``) are 1-D of one length, integer token ids inside the vocabulary, at least one
  scored position, no ``[PAD]`` target scored, at most ``max_tokens(n)`` tokens; next-token
  formats (``prompt_len`` set) have ``targets == inputs`` shifted by one and score nothing inside
  the prompt (before position ``prompt_len - 1``);
* ``batch``     -- ``encode_batch`` equals the padded ``encode`` of each problem;
* ``unique``    -- a training set and a validation set built as the trainer builds them
  (``tasks.dataset.build_splits``) hold unique problems under ``problem_key``, with 0 overlap;
* ``count``     -- where ``num_problems(n)`` is known and small, sampling never finds more distinct keys,
  and an enumerable task's ``problem_from_index`` gives that many distinct keys;
* ``chance``    -- ``chance_accuracy`` is in [0, 1];
* ``oracle``    -- with ``oracle(problem) -> list of target symbols``: on random problems, the symbols
  the example scores (``vocab.decode(targets[mask])``) are exactly the oracle's (an independent
  solver written by the task's author catches a wrong label).

Only the task is needed: nothing trains.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

import numpy as np

from seqgap.tasks.base import PAD, Task


@dataclass
class TaskCheck:
    name: str
    ok: bool
    message: str

    def line(self) -> str:
        return f"{'PASS' if self.ok else 'FAIL'}  {self.name:8s}  {self.message}"


def _lengths(task: Task, lengths: Sequence[int] | None) -> list[int]:
    if lengths:
        return [int(n) for n in lengths]
    lo = int(task.min_length)
    return [lo, lo + 1, lo + 3]


def _example_problem(task: Task, p: Hashable, n: int) -> str | None:
    """What is wrong with ``encode(p)`` (None: nothing)."""
    e = task.encode(p)
    arrays = {"inputs": e.inputs, "targets": e.targets, "mask": e.mask}
    if e.no_loss is not None:
        arrays["no_loss"] = e.no_loss
    for k, a in arrays.items():
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            return f"{k} must be a 1-D numpy array, got {type(a).__name__} {getattr(a, 'shape', '')}"
    T = len(e.inputs)
    if any(len(a) != T for a in arrays.values()):
        return "inputs, targets, mask" + (", no_loss" if e.no_loss is not None else "") + \
            f" differ in length: {', '.join(str(len(a)) for a in arrays.values())}"
    for k in ("inputs", "targets"):
        if not np.issubdtype(arrays[k].dtype, np.integer):
            return f"{k} must hold integer token ids, got dtype {arrays[k].dtype}"
        if T and (arrays[k].min() < 0 or arrays[k].max() >= len(task.vocab)):
            return f"{k} holds ids outside the vocabulary (0..{len(task.vocab) - 1}): {arrays[k].min()}..{arrays[k].max()}"
    if e.mask.dtype != bool:
        return f"mask must be bool, got dtype {e.mask.dtype}"
    if not e.mask.any():
        return "no scored position (mask is all False)"
    if (e.targets[e.mask] == task.vocab.pad_id).any():
        return f"a scored target is {PAD}"
    if T > task.max_tokens(n):
        return f"{T} tokens at length {n}, more than max_tokens({n}) = {task.max_tokens(n)}"
    if e.prompt_len is not None:
        if not 0 < e.prompt_len <= T:
            return f"prompt_len {e.prompt_len} outside 1..{T}"
        if not np.array_equal(e.inputs[1:], e.targets[:-1]):
            return "next-token format (prompt_len set) but targets are not inputs shifted by one"
        if e.mask[: e.prompt_len - 1].any():
            return f"positions inside the prompt (before {e.prompt_len - 1}) are scored"
    again = task.encode(p)
    if not (np.array_equal(again.inputs, e.inputs) and np.array_equal(again.targets, e.targets)
            and np.array_equal(again.mask, e.mask) and again.prompt_len == e.prompt_len):
        return "encode is not deterministic (two encodings of one problem differ)"
    return None


def check_task(task: Task, oracle: Callable[[Hashable], Sequence[str]] | None = None, *,
               lengths: Sequence[int] | None = None, n: int = 64, n_train: int = 200, n_val: int = 50,
               seed: int = 0, raise_on_failure: bool = True) -> list[TaskCheck]:
    """Run ``task`` through the task contract (see the module docstring); ``lengths``: the
    lengths to test (default: three from ``min_length``), ``n`` problems at each.  Raises one
    AssertionError naming every failed check unless ``raise_on_failure=False``."""
    results: list[TaskCheck] = []

    def add(name: str, problem: str | None, ok_message: str) -> None:
        results.append(TaskCheck(name, problem is None, problem or ok_message))

    Ls = _lengths(task, lengths)
    problems: dict[int, list] = {}
    # sample
    why = None
    try:
        for L in Ls:
            rng1, rng2 = np.random.default_rng([seed, L]), np.random.default_rng([seed, L])
            a = [task.sample_problem(rng1, L) for _ in range(n)]
            b = [task.sample_problem(rng2, L) for _ in range(n)]
            if [task.problem_key(x) for x in a] != [task.problem_key(x) for x in b]:
                why = f"length {L}: the same rng seed gave different problems"
                break
            for p in a:
                hash(p)
                hash(task.problem_key(p))
            problems[L] = a
    except TypeError as e:
        why = f"problems and their problem_key must be hashable: {e}"
    except Exception as e:
        why = f"sample_problem raised {type(e).__name__}: {e}"
    add("sample", why, f"{n} problems at each length {Ls}, reproducible from the seed")
    if why is not None:
        return _finish(task, results, raise_on_failure)

    # encode
    why = None
    try:
        for L, ps in problems.items():
            for p in ps:
                bad = _example_problem(task, p, L)
                if bad:
                    why = f"length {L}, problem {p!r:.80}: {bad}"
                    break
            if why:
                break
    except Exception as e:
        why = f"encode raised {type(e).__name__}: {e}"
    add("encode", why, "examples consistent (shapes, ids in the vocabulary, masks, prompt)")

    # batch
    why = None
    try:
        from seqgap.tasks.base import collate

        for L, ps in problems.items():
            got, want = task.encode_batch(ps[:16]), collate([task.encode(p) for p in ps[:16]], task.vocab.pad_id)
            for k in ("inputs", "targets", "mask", "loss_mask"):
                if not bool((getattr(got, k) == getattr(want, k)).all()) or getattr(got, k).shape != getattr(want, k).shape:
                    why = f"length {L}: encode_batch's {k} differs from collating encode"
                    break
            if why:
                break
    except Exception as e:
        why = f"encode_batch raised {type(e).__name__}: {e}"
    add("batch", why, "encode_batch == collate(encode)")

    # unique / disjoint splits, as the trainer builds them
    why = None
    try:
        from seqgap.tasks.dataset import build_splits, count_problems, measure_overlap

        L = Ls[-1]
        total = count_problems(task, L, "fixed")
        nv = n_val if total is None else max(1, min(n_val, total // 5))
        nt = n_train if total is None else max(0, min(n_train, total - nv))
        splits = build_splits(task, L, "fixed", nt, nv, seed=seed)
        keys_t = [task.problem_key(p) for p in splits.train]
        keys_v = [task.problem_key(p) for p in splits.val]
        if len(set(keys_t)) != len(keys_t):
            why = f"training set holds {len(keys_t) - len(set(keys_t))} duplicate problems under problem_key"
        elif len(set(keys_v)) != len(keys_v):
            why = f"validation set holds {len(keys_v) - len(set(keys_v))} duplicate problems under problem_key"
        else:
            overlap = measure_overlap(task, splits.train, splits.val)
            if overlap:
                why = f"{overlap} validation problems also in the training set"
    except Exception as e:
        why = f"building splits raised {type(e).__name__}: {e}"
    if why is None:
        add("unique", None, f"length {L}: {len(splits.train)} train + {len(splits.val)} val problems, unique, 0 overlap")
    else:
        add("unique", why, "")

    # counts
    why, note = None, "num_problems unknown: not checked"
    try:
        for L in Ls:
            count = task.num_problems(L)
            if count is None:
                continue
            seen = {task.problem_key(p) for p in problems[L]}
            if len(seen) > count:
                why = f"length {L}: sampled {len(seen)} distinct problems, num_problems says {count}"
                break
            note = "sampling stays within num_problems"
            if task.enumerable and count <= 5000:
                keys = {task.problem_key(task.problem_from_index(L, i)) for i in range(count)}
                if len(keys) != count:
                    why = f"length {L}: problem_from_index gives {len(keys)} distinct problems of {count}"
                    break
                if not seen <= keys:
                    why = f"length {L}: sampled problems that problem_from_index never gives"
                    break
                note = "num_problems and problem_from_index agree"
    except Exception as e:
        why = f"num_problems/problem_from_index raised {type(e).__name__}: {e}"
    add("count", why, note)

    try:
        c = float(task.chance_accuracy)
        add("chance", None if 0.0 <= c <= 1.0 else f"chance_accuracy {c} outside [0, 1]", f"chance accuracy {c:.3g}")
    except Exception as e:
        add("chance", f"chance_accuracy raised {type(e).__name__}: {e}", "")

    if oracle is not None:
        why, checked = None, 0
        try:
            for L, ps in problems.items():
                for p in ps:
                    e = task.encode(p)
                    got = task.vocab.decode(e.targets[e.mask])
                    want = [str(s) for s in oracle(p)]
                    checked += 1
                    if got != want:
                        why = f"length {L}, problem {p!r:.80}: the example scores {got}, the oracle says {want}"
                        break
                if why:
                    break
        except Exception as e:
            why = f"oracle comparison raised {type(e).__name__}: {e}"
        add("oracle", why, f"{checked} random problems match the oracle")
    return _finish(task, results, raise_on_failure)


def _finish(task: Task, results: list[TaskCheck], raise_on_failure: bool) -> list[TaskCheck]:
    bad = [r for r in results if not r.ok]
    if bad and raise_on_failure:
        raise AssertionError(f"task {task.name} fails check_task: " + "; ".join(f"{r.name}: {r.message}" for r in bad))
    return results


__all__ = ["TaskCheck", "check_task"]
