"""The live retrieval tool: right answers against brute force, [FAILED] for junk, never an exception."""
import re

import numpy as np
import pytest
import torch

from seqgap.tasks.istree import (BOS_ID, DASH_ID, EOS_ID, ES_ID, FAILED_ID, NODE0, SS_ID, TILDE_ID, TRUE_ID, IsTree,
                                 istree_vocab)
from seqgap.tasks.retrieval_tool import RetrievalTool

N = 12
VOCAB = istree_vocab(N)
TOOL = RetrievalTool(VOCAB)


def node(v):
    return NODE0 + v


def prompt(edges):
    return [BOS_ID] + [t for u, v in edges for t in (node(u), DASH_ID, node(v))] + [EOS_ID]


def ask(context, *query):
    return TOOL(list(context) + [SS_ID, *query, ES_ID])


def neighbours(edges, v):
    """Brute force: v's neighbours in input order."""
    return [b if a == v else a for a, b in edges if v in (a, b)]


def test_handmade_graph():
    edges = [(3, 1), (0, 1), (2, 0)]
    ctx = prompt(edges) + [node(0), TILDE_ID, node(0)]
    assert ask(ctx, node(1), DASH_ID) == [node(3)]
    assert ask(ctx, node(1), DASH_ID, node(3)) == [node(0)]
    assert ask(ctx, node(1), DASH_ID, node(0)) == [FAILED_ID]
    assert ask(ctx, node(0), DASH_ID) == [node(1)]
    assert ask(ctx, node(0), DASH_ID, node(1)) == [node(2)]
    assert ask(ctx, node(1), DASH_ID, node(2)) == [FAILED_ID]  # no edge 1-2
    assert ask(ctx, node(7), DASH_ID) == [FAILED_ID]  # isolated / absent node
    assert ask(ctx, node(0), TILDE_ID) == [node(0)]
    assert ask(ctx, node(1), TILDE_ID) == [FAILED_ID]  # never recorded
    # a record written by the model is found; the query span itself is not a record
    ctx2 = ctx + [SS_ID, node(1), TILDE_ID, ES_ID, FAILED_ID, node(1), TILDE_ID, node(0)]
    assert ask(ctx2, node(1), TILDE_ID) == [node(0)]
    ctx3 = ctx + [SS_ID, node(2), TILDE_ID, node(5), ES_ID, FAILED_ID]
    assert ask(ctx3, node(2), TILDE_ID) == [FAILED_ID]
    # records in the edge section do not count, edges after the first [EOS] do not count
    assert ask(prompt(edges) + [node(4), DASH_ID, node(5)], node(4), DASH_ID) == [FAILED_ID]


def test_neighbour_queries_against_brute_force():
    rng = np.random.default_rng(0)
    task = IsTree(format="vanilla", distribution="random", max_nodes=N)
    for _ in range(500):
        n = int(rng.integers(4, N + 1))
        edges = list(task.sample_problem(rng, n)[1])
        ctx = prompt(edges)
        for _ in range(5):
            v, u = (int(x) for x in rng.integers(0, n, size=2))
            nb = neighbours(edges, v)
            assert ask(ctx, node(v), DASH_ID) == [node(nb[0]) if nb else FAILED_ID]
            want = node(nb[nb.index(u) + 1]) if u in nb and nb.index(u) + 1 < len(nb) else FAILED_ID
            assert ask(ctx, node(v), DASH_ID, node(u)) == [want]


def test_parent_queries_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(300):
        ctx = prompt([(0, 1), (1, 2)])
        first = {}
        for _ in range(int(rng.integers(0, 15))):  # random records and queries interleaved
            x, p = (int(v) for v in rng.integers(0, N, size=2))
            if rng.random() < 0.5:
                ctx += [node(x), TILDE_ID, node(p)]
                first.setdefault(x, p)
            else:
                ctx += [SS_ID, node(x), TILDE_ID, ES_ID, node(first.get(x, p))]  # a query and a result
        for v in range(N):
            assert ask(ctx, node(v), TILDE_ID) == [node(first[v]) if v in first else FAILED_ID]


def naive_parent(ctx, v):
    """Oracle for "v ~": render the whole trace, spans blanked token by token, and regex it."""
    start = max(k for k in range(len(ctx) - 1) if ctx[k] == SS_ID)
    out, inside = [], False
    for t in ctx[ctx.index(EOS_ID) + 1:start]:
        inside = inside or t == SS_ID
        out.append("|" if inside else VOCAB.sym(t))
        inside = inside and t != ES_ID
    m = re.search(rf"(?<!\S){v} ~ (\d+)(?!\S)", " ".join(out))
    return [NODE0 + int(m.group(1))] if m else [FAILED_ID]


def test_parent_queries_on_junk_match_a_full_render():
    rng = np.random.default_rng(9)
    alphabet = [SS_ID, ES_ID, TILDE_ID, TILDE_ID, DASH_ID, FAILED_ID] + [node(i) for i in range(4)]
    for _ in range(3000):
        junk = rng.choice(alphabet, size=int(rng.integers(0, 40))).tolist()
        v = int(rng.integers(0, 4))
        ctx = prompt([(0, 1)]) + junk + [SS_ID, node(v), TILDE_ID, ES_ID]
        assert TOOL(ctx) == naive_parent(ctx, v), ctx


def test_malformed_queries_fail():
    ctx = prompt([(0, 1), (1, 2), (2, 3)]) + [node(0), TILDE_ID, node(0)]
    bad = [
        [],
        [node(1)],
        [DASH_ID],
        [TILDE_ID, node(1)],
        [DASH_ID, node(1)],
        [node(1), node(2)],
        [node(1), TILDE_ID, node(2)],
        [node(1), DASH_ID, DASH_ID],
        [node(1), DASH_ID, node(2), node(3)],
        [node(1), DASH_ID, TRUE_ID],
        [BOS_ID, node(1), DASH_ID],
        [node(1), EOS_ID, DASH_ID],
        [node(1), DASH_ID, FAILED_ID],
        [node(1), DASH_ID, 10_000],
        [-3, DASH_ID],
    ]
    for q in bad:
        assert ask(ctx, *q) == [FAILED_ID], q
    assert TOOL([ES_ID]) == [FAILED_ID]  # no [STARTSEARCH]
    assert TOOL(ctx + [node(1), DASH_ID, ES_ID]) == [FAILED_ID]
    assert TOOL([SS_ID, node(1), DASH_ID, ES_ID]) == [FAILED_ID]  # no [EOS]: no edge section
    assert ask(ctx, node(1), DASH_ID) == [node(0)]  # the same context answers a good query


def test_none_unless_last_token_is_endsearch():
    ctx = prompt([(0, 1), (1, 2), (2, 3)]) + [SS_ID, node(1), DASH_ID]
    assert TOOL(ctx) is None
    assert TOOL([]) is None
    assert TOOL(ctx + [ES_ID, node(0)]) is None


def test_random_token_strings_never_raise():
    rng = np.random.default_rng(2)
    V = len(VOCAB)
    specials = [SS_ID, ES_ID, EOS_ID, BOS_ID, DASH_ID, TILDE_ID]
    for trial in range(4000):
        T = int(rng.integers(1, 60))
        if trial % 2:
            ctx = rng.integers(0, V, size=T).tolist()  # uniform junk
        else:  # junk rich in the structural tokens, with a query of random junk at the end
            ctx = rng.choice(specials + [node(i) for i in range(N)], size=T).tolist()
            ctx += [SS_ID] + rng.integers(-2, V + 3, size=int(rng.integers(0, 5))).tolist()
        ctx.append(ES_ID)
        got = TOOL(ctx)
        assert isinstance(got, list) and len(got) == 1
        assert got[0] == FAILED_ID or NODE0 <= got[0] < NODE0 + N
        assert TOOL(ctx[:-1]) is None or ctx[-2] == ES_ID


def test_array_and_tensor_contexts():
    ctx = prompt([(2, 0), (0, 3)]) + [node(0), TILDE_ID, node(0), SS_ID, node(0), DASH_ID, node(2), ES_ID]
    want = [node(3)]
    assert TOOL(ctx) == want
    assert TOOL(np.array(ctx)) == want
    assert TOOL(np.array(ctx, dtype=np.int32)) == want
    assert TOOL(torch.tensor(ctx)) == want
    assert TOOL(torch.tensor(ctx[:-1])) is None


def test_accepts_the_task():
    task = IsTree(format="rag", max_nodes=N)
    tool = RetrievalTool(task)
    ex = task.sample(np.random.default_rng(3), 6)
    seq = ex.sequence.tolist()
    k = int(np.flatnonzero(ex.no_loss)[0]) + 1  # first result position
    assert tool(seq[:k]) == [seq[k]]
