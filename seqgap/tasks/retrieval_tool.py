"""The live in-context retrieval tool of IsTree's RAG format (study W, "In-context RAG").

W's claim 3: an RNN that may run a regular-expression search over its own
context, with the result appended to the context, can solve every
polynomial-time problem with CoT.  In the published code the search results are
pre-computed in the data; here the search really runs, over the live context
(the input edges plus everything generated so far), during generation.

It lives with the tasks because it is IsTree's task knowledge (the meaning of
its queries); generation code only receives it from ``task.generation_tool()``.

Protocol (see :mod:`seqgap.tasks.istree` for the queries and the trace)::

    tool = RetrievalTool(task.vocab)        # or RetrievalTool(task)
    after each token appended to a sequence's context:
        forced = tool(context)              # None, or [result token id]
        if forced: append them to the context as forced (not generated) tokens

``tool(context)`` returns None unless the last token is [ENDSEARCH].  Then the
query is the tokens between the last [STARTSEARCH] and that [ENDSEARCH]; the
context is rendered as a string of space-separated token symbols and searched
with a regex built from the query:

* ``v -`` / ``v - u``: the *edge section* (between the first [BOS] and the
  first [EOS]) for the first edge containing v, or the first one after the edge
  {v, u}; the result is that edge's other endpoint;
* ``v ~``: the model-written records ``x ~ p`` after the first [EOS], with every
  ``[STARTSEARCH] ... [ENDSEARCH]`` span blanked out (queries are not records;
  an unclosed span runs to the query); the first record of v gives p.  Only
  the windows around the "~" tokens are rendered (same matches, less text).

Anything else (empty or wrong-arity query, a special token or an unknown id
inside it, no [STARTSEARCH], no [EOS] before the query, nothing found) returns
``[FAILED]``; the tool never raises on a well-typed context.
"""
from __future__ import annotations

import re
from typing import Any, Sequence

import numpy as np

from seqgap.tasks.base import BOS, EOS, Vocab

# The query language: the tool's own tokens (IsTree's vocabulary includes them).  They are
# defined here, not in istree.py, so the task imports the tool and never the other way round.
STARTSEARCH, ENDSEARCH, FAILED = "[STARTSEARCH]", "[ENDSEARCH]", "[FAILED]"
DASH, TILDE = "-", "~"

_BLANK = "|"  # what a search span renders as in the records text


class RetrievalTool:
    """Regex retrieval over a live IsTree context: ``tool(context) -> [token] | None``."""

    def __init__(self, vocab: Vocab | Any):
        vocab = getattr(vocab, "vocab", vocab)  # accept the task itself
        self.vocab = vocab
        self.ss, self.es, self.failed = vocab.id(STARTSEARCH), vocab.id(ENDSEARCH), vocab.id(FAILED)
        self.bos, self.eos = vocab.id(BOS), vocab.id(EOS)
        self.dash, self.tilde = vocab.id(DASH), vocab.id(TILDE)
        # Symbols to render; ids outside the vocabulary render as "?" (never matched).
        self._sym = np.array(list(vocab.symbols) + ["?"], dtype=object)
        self._unknown = len(vocab.symbols)
        self.is_node = np.array([s.isdigit() for s in vocab.symbols] + [False])
        self._edge_cache: dict[bytes, str] = {}
        self._patterns: dict[tuple[str, str], re.Pattern] = {}

    # ---- public -------------------------------------------------------------------------
    def __call__(self, context: Sequence[int] | np.ndarray | Any) -> list[int] | None:
        if len(context) == 0 or int(context[-1]) != self.es:
            return None
        try:
            if hasattr(context, "detach"):  # a torch tensor: zero-copy view of CPU memory
                context = context.detach().cpu().numpy()
            arr = np.asarray(context).reshape(-1).astype(np.int64, copy=False)
        except (TypeError, ValueError, OverflowError):
            return [self.failed]
        result = self.search(arr)
        return [self.failed if result is None else result]

    def search(self, ctx: np.ndarray) -> int | None:
        """Result token id for the query that ends ``ctx`` (its last token is [ENDSEARCH]), or None."""
        end = len(ctx) - 1
        # The last [STARTSEARCH]; a query has at most 3 tokens, so looking 4 back decides it.
        starts = np.flatnonzero(ctx[max(end - 4, 0):end] == self.ss)
        if len(starts) == 0:
            return None
        start = max(end - 4, 0) + int(starts[-1])
        query = ctx[start + 1:end]
        head = ctx[:start] == self.eos
        if not head.any() or not 2 <= len(query) <= 3:
            return None
        first_eos = int(head.argmax())
        query = np.where((query >= 0) & (query < self._unknown), query, self._unknown)
        if not self.is_node[query[0]]:
            return None
        v = self._sym[query[0]]
        if len(query) == 2 and query[1] == self.tilde:
            found = self._pattern("~", v).search(self._records_text(ctx[first_eos + 1:start]))
            return None if found is None else self._node(found)
        if query[1] != self.dash or (len(query) == 3 and not self.is_node[query[2]]):
            return None
        # v's edges in input order: every match of "v - x" or "x - v" in the edge section
        found = self._pattern("-", v).finditer(self._edges_text(ctx[:first_eos]))
        if len(query) == 2:
            first = next(found, None)
            return None if first is None else self._node(first)
        u = self._sym[query[2]]
        for m in found:
            if m.group(1) == u or m.group(2) == u:
                after = next(found, None)
                return None if after is None else self._node(after)
        return None

    def _pattern(self, kind: str, v: str) -> re.Pattern:
        """The compiled regex for "v ~" (a record of v) or "v -" (an edge of v); cached per node."""
        key = (kind, v)
        pat = self._patterns.get(key)
        if pat is None:
            v = re.escape(v)
            pat = self._patterns[key] = re.compile(
                rf"(?<!\S){v} ~ (\d+)(?!\S)" if kind == "~" else rf"(?<!\S)(?:{v} - (\d+)|(\d+) - {v})(?!\S)")
        return pat

    def _node(self, m: re.Match) -> int | None:
        name = next(g for g in m.groups() if g is not None)
        return self.vocab.id(name) if name in self.vocab else None

    # ---- rendering ----------------------------------------------------------------------
    def _render(self, ids: np.ndarray) -> np.ndarray:
        return self._sym[np.where((ids >= 0) & (ids < self._unknown), ids, self._unknown)]

    def _edges_text(self, prefix: np.ndarray) -> str:
        """The edge section: after the first [BOS] (if any) of the tokens before the first [EOS]."""
        bos = np.flatnonzero(prefix == self.bos)
        section = prefix[int(bos[0]) + 1:] if len(bos) else prefix
        key = section.tobytes()
        text = self._edge_cache.get(key)
        if text is None:  # one sequence asks hundreds of queries on the same edges
            if len(self._edge_cache) >= 4096:
                self._edge_cache.clear()
            text = self._edge_cache[key] = " ".join(self._render(section).tolist())
        return text

    def _records_text(self, trace: np.ndarray) -> str:
        """The records of the trace: every "~" outside the search spans with its two neighbours, in order.

        Rendering the whole trace with each ``[STARTSEARCH] ... [ENDSEARCH]`` span
        (inclusive) blanked gives the same regex matches, since a record match
        is a "~" and the tokens on either side; rendering only those windows
        keeps a query O(records) after the vectorised scan, not O(context).
        """
        idx = np.arange(len(trace))
        last_ss = np.maximum.accumulate(np.where(trace == self.ss, idx, -1))
        last_es = np.maximum.accumulate(np.where(trace == self.es, idx, -1))
        inside = (last_ss > last_es) | (trace == self.es)
        tildes = np.flatnonzero((trace == self.tilde) & ~inside)
        tildes = tildes[(tildes > 0) & (tildes < len(trace) - 1)]
        window = tildes[:, None] + np.arange(-1, 2)  # (records, 3)
        sym = self._render(trace[window])
        sym[inside[window]] = _BLANK
        return " | ".join(" ".join(w) for w in sym.tolist())
