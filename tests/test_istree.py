"""IsTree: labels against networkx, traces against an independent recursive DFS, RAG replay through the tool."""
import importlib.util
import itertools
import math
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from seqgap.errors import SeqgapError
from seqgap.tasks import make_task
from seqgap.tasks.base import collate
from seqgap.tasks.istree import (EOS_ID, ES_ID, FAILED_ID, FALSE_ID, NODE0, SS_ID, TILDE_ID, TRUE_ID, IsTree,
                                 is_valid_euler_tour, parse_answer)
from seqgap.tasks.retrieval_tool import RetrievalTool

DISTS = ("binary", "random")


def graph_of(n, edges):
    G = nx.Graph()
    G.add_nodes_from(range(n))
    G.add_edges_from(edges)
    return G


def recursive_tour(n, edges):
    """The CoT tour, written independently: recursion, neighbours sorted by edge index.  The vertex
    that closes a cycle is not written (W's rule; it used to be)."""
    order = {}
    for k, (u, v) in enumerate(edges):
        order.setdefault(u, []).append((k, v))
        order.setdefault(v, []).append((k, u))
    tour, seen = [0], {0}

    class Cycle(Exception):
        pass

    def visit(v, parent):
        for _, w in sorted(order.get(v, [])):
            if w == parent:
                continue
            if w in seen:  # a cycle: stop, without writing w (W's generator)
                raise Cycle
            tour.append(w)
            seen.add(w)
            visit(w, v)
            tour.append(v)

    try:
        visit(0, None)
    except Cycle:
        return tour, False
    return tour, len(seen) == n


def trace_tokens(ex):
    return ex.sequence[ex.prompt_len:].tolist()


@pytest.mark.parametrize("dist", DISTS)
def test_labels_match_networkx(dist):
    rng = np.random.default_rng(1)
    task = IsTree(format="vanilla", distribution=dist, max_nodes=40)
    for n in (4, 5, 8, 13, 40):
        for _ in range(600):
            n_, edges = task.sample_problem(rng, n)
            ex = task.encode((n_, edges))
            assert n_ == n and len(edges) == n - 1
            assert ex.meta["label"] == nx.is_tree(graph_of(n, edges))
            assert ex.meta["answer"] == (TRUE_ID if ex.meta["label"] else FALSE_ID) == ex.targets[-1]
            assert parse_answer(ex.sequence) == ex.meta["label"]


@pytest.mark.parametrize("dist", DISTS)
@pytest.mark.parametrize("n", [4, 16])
def test_tree_probability_is_half(dist, n):
    rng = np.random.default_rng(2)
    task = IsTree(format="vanilla", distribution=dist)
    N = 4000
    trees = sum(nx.is_tree(graph_of(n, task.sample_problem(rng, n)[1])) for _ in range(N))
    assert abs(trees - N / 2) < 4 * math.sqrt(N / 4)  # 4 binomial standard deviations


def two_stars_plus_one(n, edges):
    """Brute force: are there two non-adjacent hubs touching all edges but one, which joins two non-hubs?"""
    for h1 in range(n):
        for h2 in range(h1 + 1, n):
            off = [e for e in edges if h1 not in e and h2 not in e]
            if len(off) == 1 and {h1, h2} not in [set(e) for e in edges]:
                return True
    return False


def test_binary_graph_structure():
    rng = np.random.default_rng(3)
    task = IsTree(distribution="binary")
    flips = total = 0
    for n in (4, 6, 9):
        for _ in range(400):
            _, edges = task.sample_problem(rng, n)
            assert len(edges) == n - 1 == graph_of(n, edges).number_of_edges()  # simple: no repeated edge
            assert all(u != v and 0 <= u < n and 0 <= v < n for u, v in edges)
            assert two_stars_plus_one(n, edges)
            flips += sum(u > v for u, v in edges)
            total += n - 1
    assert abs(flips - total / 2) < 4 * math.sqrt(total / 4)  # each edge's orientation is random
    first = [task.sample_problem(rng, 6)[1][0] for _ in range(3000)]
    counts = np.bincount(np.ravel(first), minlength=6)
    assert counts.min() > 0.8 * counts.mean()  # nodes are permuted: no id is special


@pytest.mark.parametrize("dist", DISTS)
def test_cot_tour_is_the_dfs_euler_tour(dist):
    rng = np.random.default_rng(4)
    task = IsTree(format="cot", distribution=dist, max_nodes=32)
    for n in (4, 6, 11, 32):
        for _ in range(400):
            ex = task.sample(rng, n)
            edges = ex.meta["edges"]
            seq = trace_tokens(ex)
            assert seq[-2] == EOS_ID and seq[-1] == ex.meta["answer"]
            tour = [t - NODE0 for t in seq[:-2]]
            expected, tree = recursive_tour(n, edges)
            assert tour == expected and tree == ex.meta["label"]
            G = graph_of(n, edges)
            assert len(tour) <= 2 * n - 1
            assert all(G.has_edge(a, b) for a, b in zip(tour, tour[1:]))
            if tree:
                assert set(tour) == set(range(n)) and tour[-1] == 0
            assert is_valid_euler_tour(edges, tour, n) and is_valid_euler_tour(edges, tour, n, ordered=False)


def test_is_valid_euler_tour_rejects_wrong_tours():
    rng = np.random.default_rng(5)
    task = IsTree(format="cot")
    for _ in range(300):
        ex = task.sample(rng, 8)
        edges, tour = ex.meta["edges"], [t - NODE0 for t in trace_tokens(ex)[:-2]]
        assert not is_valid_euler_tour(edges, tour[:-1], 8, ordered=False)  # truncated
        assert not is_valid_euler_tour(edges, [1] + tour[1:], 8, ordered=False)  # wrong start
        assert not is_valid_euler_tour(edges, tour + [tour[-2]], 8, ordered=False)  # walks on
        if len(tour) > 3:
            assert not is_valid_euler_tour(edges, tour[:1] + [tour[2], tour[1]] + tour[3:], 8)
    # a DFS in another neighbour order is valid only without ordered
    edges = [(0, 1), (0, 2), (2, 3)]
    assert is_valid_euler_tour(edges, [0, 2, 3, 2, 0, 1, 0], 4, ordered=False)
    assert not is_valid_euler_tour(edges, [0, 2, 3, 2, 0, 1, 0], 4)
    assert is_valid_euler_tour(edges, [0, 1, 0, 2, 3, 2, 0], 4)


def test_masks_and_lengths():
    rng = np.random.default_rng(6)
    for fmt in ("vanilla", "cot", "rag"):
        task = IsTree(format=fmt, distribution="random", max_nodes=16)
        for n in (4, 7, 16):
            exs = [task.sample(rng, n) for _ in range(100)]
            for ex in exs:
                P = ex.prompt_len
                assert ex.sequence[P - 1] == EOS_ID and EOS_ID not in ex.sequence[:P - 1].tolist()
                assert len(ex) <= task.max_tokens(n)
                assert not ex.mask[:P - 1].any()  # the input edges are never scored
                assert ex.mask[-1] and ex.targets[-1] == ex.meta["answer"]
                if fmt == "rag":
                    results = ex.inputs == ES_ID
                    assert np.array_equal(ex.no_loss, results)
                    assert np.array_equal(ex.mask, (np.arange(len(ex)) >= P - 1) & ~results)
                    if ex.meta["label"]:
                        assert len(ex.sequence) - P == 45 * n - 30
                else:
                    assert ex.no_loss is None and ex.mask[P - 1:].all()
            batch = collate(exs)
            if fmt == "rag":  # result tokens never in the loss
                assert not (batch.loss_mask & (batch.inputs == ES_ID)).any()


def test_rag_trace_replays_through_the_live_tool():
    """Feed every trace token by token: the tool must answer exactly where, and what, the data says."""
    rng = np.random.default_rng(7)
    checked = 0
    for dist in DISTS:
        task = IsTree(format="rag", distribution=dist, max_nodes=12)
        tool = RetrievalTool(task.vocab)
        for n in (4, 5, 8, 12):
            for _ in range(300 if n < 12 else 100):
                ex = task.sample(rng, n)
                seq = ex.sequence.tolist()
                results = set((np.flatnonzero(ex.no_loss) + 1).tolist())
                context = seq[:ex.prompt_len]
                assert tool(context) is None
                for k in range(ex.prompt_len, len(seq)):
                    context.append(seq[k])
                    got = tool(context)
                    if k + 1 in results:
                        assert got == [seq[k + 1]], (dist, n, k)
                        checked += 1
                    else:
                        assert got is None
                assert parse_answer(seq) == ex.meta["label"]
    assert checked > 50_000


def test_rag_records_follow_the_dfs():
    """The model-written records x ~ p list the tree edges of the recursive DFS, in entry order."""
    rng = np.random.default_rng(8)
    task = IsTree(format="rag", distribution="random")
    for _ in range(300):
        ex = task.sample(rng, 9)
        tokens = trace_tokens(ex)
        records, inside = [], False
        for k, t in enumerate(tokens):
            inside = (inside or t == SS_ID) and t != ES_ID
            if t == TILDE_ID and not inside and tokens[k - 1] != ES_ID:
                records.append((tokens[k - 1] - NODE0, tokens[k + 1] - NODE0))
        tour, _ = recursive_tour(9, ex.meta["edges"])
        entered, seen = [], {0}
        for a, b in zip(tour, tour[1:]):
            if b not in seen:  # returns revisit a vertex; entries are new
                entered.append((b, a))
                seen.add(b)
        assert records == [(0, 0)] + entered
        assert tokens[-1] == ex.meta["answer"] and tokens[-2] == EOS_ID


def test_reference_dense_implementation_agrees():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "reference_istree.py"
    spec = importlib.util.spec_from_file_location("reference_istree", path)
    ref = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ref)
    for fmt in ("vanilla", "cot", "rag"):
        task = IsTree(format=fmt, distribution="binary")
        for seed in range(60):
            n = 4 + seed % 13
            a = task.sample(np.random.default_rng(seed), n)
            b = ref.reference_dense_sample(np.random.default_rng(seed), n, fmt)
            assert np.array_equal(a.sequence, b.sequence)
            assert np.array_equal(a.mask, b.mask) and a.prompt_len == b.prompt_len
            assert a.meta["label"] == b.meta["label"]


def test_score_generation_and_parse_answer():
    task = IsTree(format="cot")
    ex = task.encode((4, ((3, 1), (0, 1), (2, 0))))
    cont = ex.sequence[ex.prompt_len:].tolist()
    assert task.score_generation(ex, cont)
    assert not task.score_generation(ex, cont[:-1] + [FALSE_ID])
    assert not task.score_generation(ex, cont[:-1])
    assert parse_answer([1, 12, EOS_ID, 10, FALSE_ID, TRUE_ID]) is False
    assert parse_answer([TRUE_ID, 12]) is None


def test_validation_errors():
    with pytest.raises(SeqgapError):
        IsTree(format="nope")
    with pytest.raises(SeqgapError):
        IsTree(distribution="nope")
    with pytest.raises(SeqgapError):
        IsTree(max_nodes=8, n_max=16)
    task = make_task("istree", format="rag", max_nodes=8)
    assert len(task.vocab) == 10 + 8 and task.describe()["max_nodes"] == 8
    rng = np.random.default_rng(0)
    for n in (3, 9):
        with pytest.raises(SeqgapError):
            task.sample_problem(rng, n)
    with pytest.raises(SeqgapError):
        task.encode((4, ((0, 1), (1, 5), (2, 3))))
    with pytest.raises(SeqgapError):
        task.encode((4, ((0, 0), (1, 2), (2, 3))))


# ---- W's published generator (rnn-icrag, rnn/data.py): the tour and the RAG stopping point ------


def w_rule_tour(n, edges):
    """W's tour, transcribed from the rule (not from seqgap's code): DFS from 0, neighbours in the
    order their edges appear in the input, the parent skipped; a vertex is written on entry and
    after returning from a child; the DFS stops when it meets an already-visited vertex, which is
    not written.  An explicit stack of (vertex, parent, next position in its neighbour list).
    Returns (tour, stop) with stop = (v, x): v met visited x; None when no cycle was met."""
    nbrs = [[] for _ in range(n)]
    for u, v in edges:
        nbrs[u].append(v)
        nbrs[v].append(u)
    visited = [False] * n
    visited[0] = True
    tour = [0]
    stack = [[0, -1, 0]]
    while stack:
        top = stack[-1]
        v, parent, pos = top
        if pos == len(nbrs[v]):  # v is done: back to its parent, which is written again
            stack.pop()
            if stack:
                tour.append(stack[-1][0])
            continue
        top[2] += 1
        x = nbrs[v][pos]
        if x == parent:
            continue
        if visited[x]:
            return tour, (v, x)
        visited[x] = True
        tour.append(x)
        stack.append([x, v, 0])
    return tour, None


def test_w_tour_handmade():
    edges = ((0, 1), (0, 2), (1, 2))
    assert w_rule_tour(4, edges) == ([0, 1, 2], (2, 0))
    ex = IsTree(format="cot").encode((4, edges))
    assert [t - NODE0 for t in trace_tokens(ex)[:-2]] == [0, 1, 2]  # seqgap wrote 0 1 2 0 before
    assert trace_tokens(ex)[-2:] == [EOS_ID, FALSE_ID]
    assert is_valid_euler_tour(edges, [0, 1, 2], 4) and is_valid_euler_tour(edges, [0, 1, 2], 4, ordered=False)
    assert not is_valid_euler_tour(edges, [0, 1, 2, 0], 4, ordered=False)  # the closing vertex is not written
    assert not is_valid_euler_tour(edges, [0, 1], 4, ordered=False)  # 1 still has its unvisited neighbour 2


@pytest.mark.parametrize("dist", DISTS)
def test_cot_tour_matches_w_generator(dist):
    """Thousands of random graphs at n = 4, 8, 16: seqgap's CoT tour is W's, labels are networkx's."""
    rng = np.random.default_rng(11)
    task = IsTree(format="cot", distribution=dist, max_nodes=16)
    stopped = 0
    for n in (4, 8, 16):
        for _ in range(1500):
            n_, edges = task.sample_problem(rng, n)
            ex = task.encode((n_, edges))
            tour, stop = w_rule_tour(n, edges)
            assert [t - NODE0 for t in trace_tokens(ex)[:-2]] == tour
            label = nx.is_tree(graph_of(n, edges))
            assert ex.meta["label"] == label
            assert trace_tokens(ex)[-1] == (TRUE_ID if label else FALSE_ID)
            # W's label: no cycle met and every node reached (with n-1 edges: a tree)
            assert label == (stop is None and len(set(tour)) == n)
            stopped += stop is not None
    assert stopped > 1000  # the cycle case is common: the rule is exercised


def rag_queries(tokens):
    """(query tokens, result token) for every search in a RAG trace, in order."""
    out, k = [], 0
    while k < len(tokens):
        if tokens[k] == SS_ID:
            end = tokens.index(ES_ID, k)
            out.append((tokens[k + 1:end], tokens[end + 1]))
            k = end + 2
        else:
            k += 1
    return out


@pytest.mark.parametrize("dist", DISTS)
def test_rag_stops_where_w_stops(dist):
    """The RAG trace runs the same DFS as W's tour: its records are the tour's entries, and when W's
    DFS meets a visited vertex x from v, the trace's last queries are ``x ~`` (answered with x's
    parent, not F: visited) and ``v ~`` (v's parent, not x), then [EOS] [FALSE] -- x gets no record."""
    rng = np.random.default_rng(12)
    task = IsTree(format="rag", distribution=dist, max_nodes=16)
    cycles = 0
    for n in (4, 8, 16):
        for _ in range(300):
            ex = task.sample(rng, n)
            tokens = trace_tokens(ex)
            tour, stop = w_rule_tour(n, ex.meta["edges"])
            records, inside = [], False
            for k, t in enumerate(tokens):
                inside = (inside or t == SS_ID) and t != ES_ID
                if t == TILDE_ID and not inside and tokens[k - 1] != ES_ID:
                    records.append(tokens[k - 1] - NODE0)
            seen, entries = set(), []
            for v in tour:
                if v not in seen:
                    entries.append(v)
                    seen.add(v)
            assert records == entries
            if stop is None:
                continue
            cycles += 1
            v, x = stop
            (q1, r1), (q2, r2) = rag_queries(tokens)[-2:]
            assert q1 == [NODE0 + x, TILDE_ID] and r1 != FAILED_ID
            assert q2 == [NODE0 + v, TILDE_ID] and r2 != NODE0 + x
            assert tokens[-2:] == [EOS_ID, FALSE_ID]
    assert cycles > 200


# ---- problem identity: the edge set ---------------------------------------------------------------


def test_problem_key_ignores_edge_order_and_orientation():
    rng = np.random.default_rng(13)
    task = IsTree(format="cot")
    for _ in range(200):
        n, edges = task.sample_problem(rng, 8)
        perm = rng.permutation(len(edges))
        shuffled = tuple((v, u) if rng.random() < 0.5 else (u, v) for u, v in (edges[i] for i in perm))
        assert task.problem_key((n, shuffled)) == task.problem_key((n, edges))
        other = (n, edges[:-1] + ((edges[-1][0], next(w for w in range(n) if w not in edges[-1])),))
        if {frozenset(e) for e in other[1]} != {frozenset(e) for e in edges}:
            assert task.problem_key(other) != task.problem_key((n, edges))


def brute_force_binary_graphs(n):
    """Every edge set the "binary" distribution can draw: hubs, each other node's hub, the extra edge."""
    out = set()
    for h1, h2 in itertools.combinations(range(n), 2):
        others = [v for v in range(n) if v not in (h1, h2)]
        for sides in itertools.product((h1, h2), repeat=n - 2):
            star = [tuple(sorted((o, h))) for o, h in zip(others, sides)]
            for a, b in itertools.combinations(others, 2):
                out.add(frozenset(star + [(a, b)]))
    return out


@pytest.mark.parametrize("n", [4, 5, 6, 7, 8, 9])
def test_binary_graph_count_against_brute_force(n):
    graphs = brute_force_binary_graphs(n)
    task = IsTree(distribution="binary")
    assert task.num_problems(n) == len(graphs)
    assert all(len(g) == n - 1 for g in graphs)
    rng = np.random.default_rng(n)
    drawn = {task.problem_key(task.sample_problem(rng, n)) for _ in range(3000)}
    assert {g for _, g in drawn} <= graphs
    if n <= 5:  # the sampler reaches the whole support
        assert len(drawn) == len(graphs)


def test_binary_graph_count_n8_is_24640():
    assert IsTree(distribution="binary").num_problems(8) == 24_640


@pytest.mark.parametrize("n", [4, 5, 6])
def test_random_graph_count_against_brute_force(n):
    """Support of "random": every (n-1)-edge graph (the tree branch gives the trees, the other the rest)."""
    pairs = list(itertools.combinations(range(n), 2))
    graphs = {frozenset(c) for c in itertools.combinations(pairs, n - 1)}
    task = IsTree(distribution="random")
    assert task.num_problems(n) == len(graphs) == math.comb(len(pairs), n - 1)
    rng = np.random.default_rng(n)
    drawn = {task.problem_key(task.sample_problem(rng, n))[1] for _ in range(6000 if n < 6 else 3000)}
    assert drawn <= graphs
    if n == 4:
        assert drawn == graphs
    assert IsTree(distribution="random").num_problems(16) is None  # C(120, 15) > 2**62: astronomically many
    assert not task.enumerable  # drawn by rejection: neither distribution is uniform over edge sets
