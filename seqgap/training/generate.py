"""Batched greedy generation for every model, with an optional tool (live retrieval).

    results = greedy_generate(model, prompts, max_new_tokens=64, stop_ids={eos}, tool=tool)
    results[i].context      # prompt + generated + tool-inserted tokens, in order
    results[i].generated    # per position: True where the model chose the token
    results[i].stop_reason  # "stop" | "max_new_tokens" | "max_len" | "tool_error"

How a batch advances.  Every sequence owns a context; the first ``prompt_len``
tokens are *forced*, and so are the tokens a tool inserts.  All sequences
advance in lockstep, one position per step: at step ``pos`` every sequence is
fed ``context[pos]``; if its context already holds a token at ``pos + 1`` (a
forced one) the model's prediction is ignored, otherwise the argmax becomes
the next token (generated).  Prompts of different lengths therefore share one
batch and one position counter, which is what attention's KV cache needs.

Two paths, which must produce the same tokens (tested for every model):

* cached (``use_cache=True``): ``model.init_state`` + one ``model.step`` per
  position, O(1) work per token for RNNs (recurrent state) and O(context) for
  attention (KV cache).  Models with a ``prefill(tokens) -> (logits, state)``
  method (Mamba, Hybrid) consume the common prompt prefix in one call.
* uncached (``use_cache=False``): ``model(context)`` over the whole prefix at
  every position (the reference; quadratic).

Tool protocol.  After each *generated* token (not after forced ones, so a tool
never reacts to its own output), ``tool(context)`` is called with the
sequence's context so far (a list of ints) and returns None or a list of
tokens, appended as forced tokens.  Forced tokens do not count against
``max_new_tokens``.  A tool that raises ends that sequence only
(``stop_reason="tool_error"``, ``failed=True``, the message in ``error``).

A sequence ends when it generates a token in ``stop_ids`` (the stop token is
kept), after ``max_new_tokens`` generated tokens (a tool may still append its
answer to the last one), or when the model's positions run out: the model is
fed at most ``model.max_len`` tokens, so a context can reach ``max_len + 1``
tokens (the last one predicted, never fed), like a training sequence whose
inputs are ``seq[:-1]``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from seqgap.errors import SeqgapError

Tool = Callable[[list], "Sequence[int] | None"]

STOP, LIMIT, MAX_LEN, TOOL_ERROR = "stop", "max_new_tokens", "max_len", "tool_error"


@dataclass
class GenerationResult:
    context: list[int]  # prompt + generated + tool-inserted tokens
    prompt_len: int
    generated: list[bool]  # per position of `context`: chosen by the model (True) or forced (False)
    stop_reason: str  # "stop" | "max_new_tokens" | "max_len" | "tool_error"
    error: str | None = None  # the tool's exception, when stop_reason == "tool_error"

    @property
    def failed(self) -> bool:
        return self.stop_reason == TOOL_ERROR

    @property
    def hit_stop(self) -> bool:
        return self.stop_reason == STOP

    @property
    def continuation(self) -> list[int]:
        """Everything after the prompt (generated and tool-inserted tokens)."""
        return self.context[self.prompt_len:]

    @property
    def num_generated(self) -> int:
        return sum(self.generated)

    @property
    def forced_positions(self) -> list[int]:
        """Positions after the prompt that a tool inserted."""
        return [i for i in range(self.prompt_len, len(self.context)) if not self.generated[i]]


class _Batch:
    """The bookkeeping of one generation batch (model-independent)."""

    def __init__(self, prompts, max_new_tokens: int, stop_ids, tool: Tool | None):
        self.ctx = [[int(t) for t in np.asarray(p).reshape(-1)] for p in prompts]
        if any(len(c) == 0 for c in self.ctx):
            raise SeqgapError("greedy_generate: every prompt needs at least one token")
        self.prompt_len = [len(c) for c in self.ctx]
        self.gen = [[False] * len(c) for c in self.ctx]
        self.n_gen = [0] * len(self.ctx)
        self.reason: list[str | None] = [None] * len(self.ctx)
        self.error: list[str | None] = [None] * len(self.ctx)
        self.max_new, self.stop_ids, self.tool = max_new_tokens, {int(s) for s in stop_ids}, tool
        if max_new_tokens <= 0:
            self.reason = [LIMIT] * len(self.ctx)

    def active(self) -> list[int]:
        return [i for i, r in enumerate(self.reason) if r is None]

    def finish_all(self, reason: str) -> None:
        for i in self.active():
            self.reason[i] = reason

    def advance(self, rows: list[int], next_ids: list[int], pos: int) -> None:
        """The model has read position ``pos`` of sequences ``rows``; ``next_ids`` are its argmaxes."""
        for i, tok in zip(rows, next_ids):
            if self.reason[i] is not None or len(self.ctx[i]) > pos + 1:
                continue  # finished, or the next token is forced
            self.ctx[i].append(int(tok))
            self.gen[i].append(True)
            self.n_gen[i] += 1
            if tok in self.stop_ids:
                self.reason[i] = STOP
                continue
            if self.tool is not None:
                try:
                    extra = self.tool(list(self.ctx[i]))
                except Exception as e:  # a broken tool ends this sequence, not the batch
                    self.reason[i], self.error[i] = TOOL_ERROR, f"{type(e).__name__}: {e}"
                    continue
                if extra is not None and len(extra):
                    self.ctx[i].extend(int(t) for t in extra)
                    self.gen[i].extend([False] * len(extra))
            if self.n_gen[i] >= self.max_new:
                self.reason[i] = LIMIT

    def results(self) -> list[GenerationResult]:
        return [GenerationResult(c, p, g, r or MAX_LEN, e)
                for c, p, g, r, e in zip(self.ctx, self.prompt_len, self.gen, self.reason, self.error)]


def greedy_generate(model, prompts: Sequence[Sequence[int] | np.ndarray], max_new_tokens: int,
                    stop_ids=frozenset(), tool: Tool | None = None, use_cache: bool = True,
                    prefill: bool = True) -> list[GenerationResult]:
    """Greedy decoding of a batch of prompts (see the module docstring)."""
    batch = _Batch(prompts, max_new_tokens, stop_ids, tool)
    n = len(batch.ctx)
    if n == 0:
        return []
    max_len = getattr(model, "max_len", None) or float("inf")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            pos = 0  # every sequence has been fed context[:pos]
            if use_cache:
                state = None
                m = int(min(min(batch.prompt_len), max_len))
                if prefill and m > 1 and hasattr(model, "prefill"):  # the common prompt prefix in one call
                    x = torch.tensor([c[:m] for c in batch.ctx], device=device)
                    logits, state = model.prefill(x)  # (n, m, V)
                    pos = m - 1
                    batch.advance(list(range(n)), logits[:, -1].argmax(-1).tolist(), pos)
                    pos = m
                if state is None:
                    state = model.init_state(n, device)
            while batch.active():
                if pos >= max_len:
                    batch.finish_all(MAX_LEN)
                    break
                if use_cache:
                    rows = list(range(n))  # finished sequences ride along on a dummy token
                    x = torch.tensor([c[pos] if len(c) > pos else 0 for c in batch.ctx], device=device)
                    logits, state = model.step(x, state)  # (n, V)
                else:
                    rows = batch.active()
                    x = torch.tensor([batch.ctx[i][: pos + 1] for i in rows], device=device)
                    logits = model(x)[:, -1]  # (len(rows), V)
                batch.advance(rows, logits.argmax(-1).tolist(), pos)
                pos += 1
    finally:
        model.train(was_training)
    return batch.results()
