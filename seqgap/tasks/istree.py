"""IsTree (study W: Wen, Dang, Lyu 2024, "RNNs are not Transformers (Yet)").

Is an n-node graph, given as a list of n-1 edges, a tree?  Three formats:
vanilla (answer at once), cot (DFS Euler tour, then the answer) and rag (DFS
whose stack and visited set live in the context, read back through retrieval
queries answered by :class:`seqgap.tasks.retrieval_tool.RetrievalTool`).

Vocabulary (fixed ids, so module-level helpers work for every ``max_nodes``)::

    0 [PAD]  1 [BOS]  2 [EOS]  3 [TRUE]  4 [FALSE]  5 [STARTSEARCH]  6 [ENDSEARCH]
    7 [FAILED]  8 "-"  9 "~"  then node ids "0".."max_nodes-1" (token id = 10 + v)

Sequence: ``[BOS] edges [EOS] <trace> [EOS] [TRUE|FALSE]``.  Each edge is the
three tokens ``u - v`` with *no separator* between edges: every edge is exactly
three tokens and every "-" of the edge section is flanked by its own edge's
endpoints, so the stream parses (and regex-searches) unambiguously.
Examples, n = 4, edges ``3-1, 0-1, 2-0`` (a tree; ``S``/``E`` = [STARTSEARCH]/
[ENDSEARCH], ``F`` = [FAILED], result tokens written by the tool in ``<>``)::

    vanilla  [BOS] 3 - 1 0 - 1 2 - 0 [EOS] [TRUE]
    cot      [BOS] 3 - 1 0 - 1 2 - 0 [EOS] 0 1 3 1 0 2 0 [EOS] [TRUE]
    rag      [BOS] 3 - 1 0 - 1 2 - 0 [EOS]
             0 ~ 0  S 0 - E <1>                      root record, first neighbour of 0
             S 1 ~ E <F>  1 ~ 0  S 1 - E <3>         1 unvisited: record it, enter it
             S 3 ~ E <F>  3 ~ 1  S 3 - E <1>         enter 3; its first neighbour is 1
             S 1 ~ E <0>  S 3 ~ E <1>  S 3 - 1 E <F> 1 visited and 3's parent: skip; 3 done
             S 3 ~ E <1>  S 1 - 3 E <0>              back to 1 (3's record), next neighbour of 1
             S 0 ~ E <0>  S 1 ~ E <0>  S 1 - 0 E <F> 0 is 1's parent: skip; 1 done
             S 1 ~ E <0>  S 0 - 1 E <2>              back to 0, next neighbour 2
             S 2 ~ E <F>  2 ~ 0  S 2 - E <0>         enter 2
             S 0 ~ E <0>  S 2 ~ E <0>  S 2 - 0 E <F> skip parent; 2 done
             S 2 ~ E <0>  S 0 - 2 E <F>              back to 0; 0 done
             S 0 ~ E <0>                             0's record names itself: DFS over
             S 1 ~ E <0>  S 2 ~ E <0>  S 3 ~ E <1>   every node was reached
             [EOS] [TRUE]

CoT (STUDIES.md; W's generator, ``euler_tour`` in rnn-icrag's ``rnn/data.py``):
DFS from node 0, neighbours in the order their edges appear in the input,
skipping the parent; a vertex is written on entry and again after returning
from each child (<= 2n-1 tokens), and nowhere else.  Meeting an already-visited
vertex that is not the parent is a cycle: the tour stops there, *without*
writing that vertex (answer FALSE).  Otherwise TRUE iff all n nodes were
reached.  Example, n = 4, edges ``0-1, 0-2, 1-2`` (node 3 isolated)::

    cot      [BOS] 0 - 1 0 - 2 1 - 2 [EOS] 0 1 2 [EOS] [FALSE]

(at 2, entered from 1, the first neighbour is 0: visited, not the parent: stop).

RAG: the same DFS, executed through three retrieval queries (results from the
*input order* of the edges, or from the records in the context):

* ``S v ~ E`` -> v's recorded parent, or F if v has no record (never visited);
* ``S v - E`` -> v's first neighbour (F if v has none);
* ``S v - u E`` -> the neighbour of v after u (F if u was the last, or no edge v-u).

Entering x from p writes the record ``x ~ p``; the root's record is ``0 ~ 0``
(a record naming itself marks the root).  The step rules (each model-written
token depends only on the last ~12 tokens, so a constant-size RNN can run it):

* examine neighbour x of v: ``S x ~ E``; F -> write ``x ~ v``, then ``S x - E``
  (enter x).  Visited -> ``S v ~ E`` for v's parent; equal to x -> skip it with
  ``S v - x E``; otherwise a cycle: ``[EOS] [FALSE]`` at once (no record of x,
  nothing more: the CoT tour's stopping point, and W's RAG data, whose last
  query is ``S x ~ E`` on that visited non-parent neighbour, stops there too);
* a neighbour query answered F (v exhausted): ``S v ~ E`` -> p; if p = v (root)
  the DFS is over, else ``S p - v E`` continues p after v;
* after the DFS: ``S u ~ E`` for u = 1..n-1; the first F -> ``[EOS] [FALSE]``;
  all recorded -> ``[EOS] [TRUE]`` (n-1 edges, acyclic and connected).

A tree's RAG trace has exactly 45n - 30 tokens (the example above: 150).

Loss and scoring: the input edges are never scored; every token after the
first [EOS] (trace, final [EOS], answer) is scored, except the tool's result
tokens: they are not model outputs, so they are outside ``mask`` (teacher-forced
trace accuracy = all model-written tokens right) and flagged in ``no_loss``
(never trained on; generation code may use it to find forced positions).
``meta["answer"]`` is the answer token id, ``meta["label"]`` the bool.

Free generation (``RunConfig.gen_eval``): from the prompt (edges + [EOS]) until
[TRUE]/[FALSE]; for RAG with the live :class:`RetrievalTool` (a garbage query
gets [FAILED], it never raises).  ``generation_metrics`` gives ``acc`` (the
answer) and ``trace_acc`` (the whole continuation equals the reference).  Under
teacher forcing a CoT/RAG answer is implied by the given trace, so only these
generated numbers measure the answer.

Graph distributions (``distribution`` option):

* ``binary`` (W's reference): random permutation of the nodes; the first two are
  hubs; every other node attaches to a hub chosen with probability 1/2; one extra
  edge joins two distinct random non-hub nodes.  Tree iff they hang from
  different hubs: P(tree) = 1/2 exactly, always n-1 edges (needs n >= 4).
* ``random``: with probability 1/2 a uniform random labelled tree (random Pruefer
  sequence); otherwise n-1 distinct edges drawn uniformly from all n(n-1)/2
  pairs, redrawn until they contain a cycle (so: uniform over the (n-1)-edge
  graphs that are not trees; connected or not).  n >= 4 (on 3 nodes every
  2-edge graph is a tree).

Both shuffle the edge order and orient each edge ``u - v`` / ``v - u`` with
probability 1/2.  A problem is ``(n, ((u, v), ...))``.
"""
from __future__ import annotations

import heapq
import math
from functools import lru_cache
from typing import Any, Hashable, Sequence

import numpy as np

from seqgap.errors import SeqgapError
from seqgap.tasks.base import BOS, EOS, PAD, Example, Task, Vocab, as_int, check_symbols
from seqgap.tasks.retrieval_tool import DASH, ENDSEARCH, FAILED, STARTSEARCH, TILDE, RetrievalTool

TRUE, FALSE = "[TRUE]", "[FALSE]"
SPECIAL_SYMBOLS = (PAD, BOS, EOS, TRUE, FALSE, STARTSEARCH, ENDSEARCH, FAILED, DASH, TILDE)
PAD_ID, BOS_ID, EOS_ID, TRUE_ID, FALSE_ID, SS_ID, ES_ID, FAILED_ID, DASH_ID, TILDE_ID = range(len(SPECIAL_SYMBOLS))
NODE0 = len(SPECIAL_SYMBOLS)  # token id of node v is NODE0 + v

FORMATS = ("vanilla", "cot", "rag")
DISTRIBUTIONS = ("binary", "random")


def istree_vocab(max_nodes: int) -> Vocab:
    return Vocab(list(SPECIAL_SYMBOLS) + [str(v) for v in range(max_nodes)])


# ---- graphs ---------------------------------------------------------------------------
# Graphs are lists of (u, v) edges and neighbour lists; no dense adjacency matrix
# anywhere.  At these sizes (n <= a few hundred) plain Python on one block of
# uniforms beats a chain of small numpy calls several times over.

Edges = list[tuple[int, int]]


def _shuffle_orient(edges: Edges, u: list[float]) -> Edges:
    """Random edge order and orientation from 2m uniforms ``u`` (m = number of edges)."""
    m = len(edges)
    order = sorted(range(m), key=u.__getitem__)  # sorting uniforms = a uniform permutation
    return [(b, a) if u[m + k] < 0.5 else (a, b) for k, (a, b) in enumerate(edges[e] for e in order)]


def binary_graph(rng: np.random.Generator, n: int) -> Edges:
    """W's "binary" distribution: two stars plus one extra edge between non-hubs."""
    u = rng.random(4 * n - 2).tolist()  # one Generator call per graph
    perm = sorted(range(n), key=u.__getitem__)
    hubs, others = perm[:2], perm[2:]
    edges = [(o, hubs[1] if side < 0.5 else hubs[0]) for o, side in zip(others, u[n:2 * n - 2])]
    i = int(u[2 * n - 2] * (n - 2))
    j = int(u[2 * n - 1] * (n - 3))
    j += j >= i  # two distinct non-hubs
    edges.append((others[i], others[j]))
    return _shuffle_orient(edges, u[2 * n:])


@lru_cache(maxsize=None)
def _pairs(n: int) -> np.ndarray:
    return np.stack(np.triu_indices(n, 1), axis=1)  # (n(n-1)/2, 2)


def _has_cycle(n: int, edges: Sequence[Sequence[int]]) -> bool:
    root = list(range(n))  # union-find with path halving

    def find(a: int) -> int:
        while root[a] != a:
            root[a] = root[root[a]]
            a = root[a]
        return a

    for u, v in edges:
        a, b = find(u), find(v)
        if a == b:
            return True
        root[a] = b
    return False


def random_tree(rng: np.random.Generator, n: int) -> Edges:
    """Uniform labelled tree on n nodes, decoded from a random Pruefer sequence."""
    seq = rng.integers(0, n, size=n - 2).tolist()
    degree = [1] * n
    for x in seq:
        degree[x] += 1
    leaves = [v for v in range(n) if degree[v] == 1]
    heapq.heapify(leaves)
    edges = []
    for x in seq:
        edges.append((heapq.heappop(leaves), x))
        degree[x] -= 1
        if degree[x] == 1:
            heapq.heappush(leaves, x)
    edges.append((heapq.heappop(leaves), heapq.heappop(leaves)))
    return edges


def random_graph(rng: np.random.Generator, n: int) -> Edges:
    """W's "random" distribution: a random tree or a random (n-1)-edge graph with a cycle, 50/50."""
    if rng.random() < 0.5:
        edges = random_tree(rng, n)
    else:
        pairs = _pairs(n)
        while True:  # rejection: P(accept) >= 0.2 (n = 4) and -> 1 quickly as n grows
            edges = list(map(tuple, pairs[rng.choice(len(pairs), size=n - 1, replace=False)].tolist()))
            if _has_cycle(n, edges):
                break
    return _shuffle_orient(edges, rng.random(2 * (n - 1)).tolist())


GRAPHS = {"binary": binary_graph, "random": random_graph}


def is_tree(n: int, edges: Sequence[Sequence[int]]) -> bool:
    """Exactly n-1 edges and no cycle (hence connected)."""
    return len(edges) == n - 1 and not _has_cycle(n, edges)


def adjacency(n: int, edges: Sequence[Sequence[int]]) -> list[list[int]]:
    """Neighbour lists, each in the order the edges appear in the input."""
    adj: list[list[int]] = [[] for _ in range(n)]
    for u, v in edges:
        if not (0 <= u < n and 0 <= v < n and u != v):
            raise SeqgapError(f"istree: bad edge {u} - {v} for n = {n} (endpoints in 0..{n - 1}, no self-loops)")
        adj[u].append(v)
        adj[v].append(u)
    return adj


# ---- the DFS shared by the CoT and RAG formats -------------------------------------------

ENTER, SKIP, CYCLE, BACK = range(4)


def dfs_events(adj: list[list[int]]) -> tuple[list[tuple[int, int, int, int]], list[int], bool]:
    """Run the format's DFS from node 0.

    Returns ``(events, parent, is_tree)``; events are ``(kind, v, x, i)``:
    ENTER (v enters its i-th neighbour x), SKIP (v's i-th neighbour x is its
    parent), CYCLE (v's i-th neighbour x was visited and is not its parent: the
    last event), BACK (v is exhausted and returns to x = its parent, where v is
    x's i-th neighbour).  ``parent[0] = 0`` (the root record), -1 = unvisited.
    """
    n = len(adj)
    parent = [-1] * n
    parent[0] = 0
    slot = [0] * n  # slot[x] = index of x in adj[parent[x]]
    events = []
    v = i = 0
    while True:
        nb = adj[v]
        if i < len(nb):
            x = nb[i]
            if parent[x] < 0:
                parent[x], slot[x] = v, i
                events.append((ENTER, v, x, i))
                v, i = x, 0
            elif x == parent[v]:
                events.append((SKIP, v, x, i))
                i += 1
            else:
                events.append((CYCLE, v, x, i))
                return events, parent, False
        elif v:
            p = parent[v]
            events.append((BACK, v, p, slot[v]))
            v, i = p, slot[v] + 1
        else:
            return events, parent, -1 not in parent


def euler_tour(events: list[tuple[int, int, int, int]]) -> list[int]:
    """The CoT tour (W's): 0, then each entered vertex and each returned-to parent.  A cycle
    ends the events; its closing vertex is not written (W's generator stops before it)."""
    return [0] + [x for kind, _, x, _ in events if kind in (ENTER, BACK)]


def rag_trace(adj: list[list[int]], events: list, parent: list[int], tree: bool) -> list[int]:
    """Token ids of the RAG trace (after the first [EOS], through the answer)."""
    N = NODE0

    def after(v: int, i: int) -> int:  # result of "v - u" where u is v's i-th neighbour
        return N + adj[v][i + 1] if i + 1 < len(adj[v]) else FAILED_ID

    out = [N, TILDE_ID, N, SS_ID, N, DASH_ID, ES_ID, N + adj[0][0] if adj[0] else FAILED_ID]
    for kind, v, x, i in events:
        if kind == ENTER:
            out += (SS_ID, N + x, TILDE_ID, ES_ID, FAILED_ID,
                    N + x, TILDE_ID, N + v,
                    SS_ID, N + x, DASH_ID, ES_ID, N + adj[x][0])
        elif kind == BACK:
            out += (SS_ID, N + v, TILDE_ID, ES_ID, N + x,
                    SS_ID, N + x, DASH_ID, N + v, ES_ID, after(x, i))
        else:  # x visited: is it v's parent?
            out += (SS_ID, N + x, TILDE_ID, ES_ID, N + parent[x],
                    SS_ID, N + v, TILDE_ID, ES_ID, N + parent[v])
            if kind == CYCLE:
                return out + [EOS_ID, FALSE_ID]
            out += (SS_ID, N + v, DASH_ID, N + x, ES_ID, after(v, i))
    out += (SS_ID, N, TILDE_ID, ES_ID, N)  # the root's record: the DFS is over
    for u in range(1, len(adj)):
        p = parent[u]
        out += (SS_ID, N + u, TILDE_ID, ES_ID, N + p if p >= 0 else FAILED_ID)
        if p < 0:
            return out + [EOS_ID, FALSE_ID]
    assert tree
    return out + [EOS_ID, TRUE_ID]


# ---- helpers for evaluators --------------------------------------------------------------

def parse_answer(tokens: Sequence[int]) -> bool | None:
    """The first [TRUE]/[FALSE] after the first [EOS] of a full sequence (prompt + generation)."""
    toks = [int(t) for t in np.asarray(tokens).reshape(-1)]
    if EOS_ID not in toks:
        return None
    for t in toks[toks.index(EOS_ID) + 1:]:
        if t == TRUE_ID:
            return True
        if t == FALSE_ID:
            return False
    return None


def is_valid_euler_tour(edges: Sequence[Sequence[int]], tour: Sequence[int], n: int | None = None,
                        ordered: bool = True) -> bool:
    """Is ``tour`` (node ids) a complete DFS Euler tour of the graph from node 0, in the CoT format?

    ``ordered=True``: exactly the format's tour (neighbours in input order).
    ``ordered=False``: a DFS tour for *some* neighbour order: each step enters an
    unvisited neighbour, or returns to the parent once every other neighbour of the
    vertex is a finished child.  It ends back at the root with nothing left to
    explore, or stops at a vertex that still has a visited non-parent neighbour to
    examine (a cycle: the DFS stops before writing it).
    """
    tour = [int(t) for t in tour]
    n = n if n is not None else 1 + max([max(e) for e in edges] + tour + [0])
    if not tour or tour[0] != 0 or min(tour) < 0 or max(tour) >= n:
        return False
    adj = adjacency(n, edges)
    if ordered:
        return tour == euler_tour(dfs_events(adj)[0])
    nbrs = [set(a) for a in adj]
    children: list[set[int]] = [set() for _ in range(n)]
    stack, visited = [0], {0}
    for t in tour[1:]:
        v = stack[-1]
        p = stack[-2] if len(stack) > 1 else None
        if t not in nbrs[v] or t in children[v]:
            return False
        if t not in visited:  # enter a new child
            visited.add(t)
            children[v].add(t)
            stack.append(t)
        elif t == p:  # return: every other neighbour of v must be a finished child
            if nbrs[v] - {p} != children[v]:
                return False
            stack.pop()
        else:  # a visited non-parent neighbour is never written: the tour stops before it
            return False
    v = stack[-1]
    left = nbrs[v] - children[v] - {stack[-2] if len(stack) > 1 else None}
    if not left:  # nothing left here: only the root may end the tour
        return stack == [0]
    return bool(left & visited)  # stopped: examining a visited neighbour next (in some order) is a cycle


# ---- distinct graphs and shortcuts ---------------------------------------------------------
# A problem's identity is its labelled edge set (``IsTree.problem_key``): the order and the
# orientation of the edges are presentation, so the counts below are of edge sets.

_COUNT_LIMIT = 2**62  # more distinct graphs than this: "astronomically many" (None)


def binary_graph_count(n: int) -> int:
    """Distinct edge sets in the support of the "binary" distribution on n >= 4 nodes.

    A draw is (hubs {h1, h2}, each other node's hub, the extra edge between two
    non-hubs).  Trees (extra edge across the stars) come from C(n,2) (n-2)(n-3)
    2^(n-4) draws, one per tree except at n = 5, where every tree is the path
    v1-v2-v3-v4-v5, drawn with hubs {v1, v4} and with hubs {v2, v5}.  A cycle
    needs the extra edge inside one star, say hub x with k >= 2 leaves; a draw is
    then unique except that a triangle with nothing else attached (k = 2) is
    drawn with any of its 3 vertices as hub, and a one-leaf star (the other hub
    with n-2-k = 1 leaf) with either end as hub.  (The tests check this against
    brute-force enumeration for n = 4..9.)
    """
    trees = math.comb(n, 2) * (n - 2) * (n - 3) * 2 ** (n - 4) // (2 if n == 5 else 1)
    cycles = 0
    for k in range(2, n - 1):
        draws = n * (n - 1) * math.comb(n - 2, k) * math.comb(k, 2)  # (cycle hub, other hub) ordered
        cycles += draws // ((3 if k == 2 else 1) * (2 if n - 2 - k == 1 else 1))
    return trees + cycles


def random_graph_count(n: int) -> int:
    """Distinct edge sets in the support of "random": every (n-1)-edge graph (trees and not)."""
    return math.comb(math.comb(n, 2), n - 1)


def binary_degree_accuracy(n: int) -> float:
    """Best accuracy on "binary" graphs from node degrees alone (exact).

    Degrees give a, the leaves of one hub (a ~ Binomial(n-2, 1/2)), and the two
    endpoints of the extra edge (degree 2) but not their hubs; they hang on
    different hubs (a tree) with P = 2a(n-2-a) / ((n-2)(n-3)): answer the likelier.
    """
    total = 0.0
    for a in range(n - 1):
        p = 2 * a * (n - 2 - a) / ((n - 2) * (n - 3))
        total += math.comb(n - 2, a) * max(p, 1 - p)
    return total / 2 ** (n - 2)


def random_cover_accuracy(n: int) -> float:
    """Accuracy on "random" graphs of "a tree iff every node appears in the edge list" (exact).

    Trees always cover every node; a non-tree (uniform over the (n-1)-edge graphs
    with a cycle) covers them all with probability q, counted by inclusion-exclusion
    over the nodes left out; accuracy = 1/2 + (1 - q) / 2.
    """
    trees = n ** (n - 2)
    covering = sum((-1) ** j * math.comb(n, j) * math.comb(math.comb(n - j, 2), n - 1) for j in range(n + 1))
    q = (covering - trees) / (random_graph_count(n) - trees)
    return 0.5 + 0.5 * (1 - q)


# ---- the task ------------------------------------------------------------------------------

class IsTree(Task):
    """IsTree: is the graph given by n-1 edges a tree?  length = number of nodes n (>= 4).

    ``max_nodes`` (alias ``n_max``; default 64) sizes the node-id vocabulary, so
    one vocabulary (and one model) serves every n <= max_nodes.
    """

    name = "istree"
    help = ("IsTree (W): is an edge-list graph a tree? formats vanilla, cot, rag; "
            "options distribution=binary|random, max_nodes")
    family = "retrieval"  # study W: CoT and RAG turn it into retrieval from the context
    formats = FORMATS
    min_length = 4

    def __init__(self, format: str = "cot", distribution: str = "binary", max_nodes: int | None = None,
                 n_max: int | None = None, min_length: int | None = None):
        super().__init__(min_length)
        if format not in FORMATS:
            raise SeqgapError(f"istree: unknown format {format!r}; choose from {', '.join(FORMATS)}")
        if distribution not in DISTRIBUTIONS:
            raise SeqgapError(f"istree: unknown distribution {distribution!r}; choose from {', '.join(DISTRIBUTIONS)}")
        if max_nodes is not None and n_max is not None and max_nodes != n_max:
            raise SeqgapError(f"istree: max_nodes={max_nodes} and its alias n_max={n_max} disagree")
        size = as_int("max_nodes", "istree", max_nodes if max_nodes is not None else n_max if n_max is not None else 64)
        if size < IsTree.min_length:
            raise SeqgapError(f"istree: max_nodes must be >= {IsTree.min_length}, got {size}")
        check_symbols("istree", "max_nodes", size)
        self.format, self.distribution, self.max_nodes = format, distribution, int(size)
        self.vocab = istree_vocab(self.max_nodes)
        self._graph = GRAPHS[distribution]

    def check_length(self, length: int) -> None:
        super().check_length(length)
        if int(length) > self.max_nodes:
            raise SeqgapError(f"istree: n = {length} exceeds max_nodes = {self.max_nodes} (set max_nodes)")

    def sample_problem(self, rng: np.random.Generator, length: int) -> tuple[int, tuple[tuple[int, int], ...]]:
        n = int(length)
        self.check_length(n)
        return n, tuple(self._graph(rng, n))

    def problem_key(self, problem: Hashable) -> Hashable:
        """(n, the edge set): edge order and orientation are presentation, not a new graph."""
        n, edges = problem
        return n, frozenset((u, v) if u < v else (v, u) for u, v in edges)

    def num_problems(self, length: int) -> int | None:
        """Distinct edge sets the distribution draws (exact; None above 2**62).  Drawn by
        rejection, never enumerated: neither distribution is uniform over its edge sets."""
        n = int(length)
        self.check_length(n)
        # a lower bound on log2 of the count first, so no huge integer is materialised
        if self.distribution == "binary":
            low = n - 4 + math.log2(max(n - 3, 1)) if n >= 6 else 0.0  # trees alone: C(n,2)(n-2)(n-3)2^(n-4)
        else:
            pairs = n * (n - 1) // 2
            low = (math.lgamma(pairs + 1) - math.lgamma(n) - math.lgamma(pairs - n + 2)) / math.log(2) - 1
        if low > math.log2(_COUNT_LIMIT) + 1:
            return None
        count = (binary_graph_count if self.distribution == "binary" else random_graph_count)(n)
        return count if count < _COUNT_LIMIT else None

    def shortcut_baseline(self, val_problems: Sequence[Hashable],
                          train_problems: Sequence[Hashable] = ()) -> dict[str, Any] | None:
        """The answer from a statistic that is no DFS, exact for the lengths of ``val_problems``:
        "binary": node degrees (0.594 / 0.536 / 0.517 at n = 8 / 16 / 32); "random": "a tree iff
        every node appears in the edge list" (0.91 / 0.97 / 0.997).  Every format: a CoT/RAG
        model may answer without its trace."""
        if not val_problems:
            return None
        rule, name = ((binary_degree_accuracy, "node degrees") if self.distribution == "binary"
                      else (random_cover_accuracy, "every node appears in the edge list"))
        lengths = [int(p[0]) for p in val_problems]
        acc = {n: rule(n) for n in set(lengths)}
        return {"name": name, "accuracy": sum(acc[n] for n in lengths) / len(lengths), "exact": True}

    def encode(self, problem: Hashable) -> Example:
        n, edges = problem
        self.check_length(n)
        adj = adjacency(n, edges)
        events, parent, tree = dfs_events(adj)
        answer = TRUE_ID if tree else FALSE_ID
        if self.format == "vanilla":
            trace = [answer]
        elif self.format == "cot":
            trace = [NODE0 + v for v in euler_tour(events)] + [EOS_ID, answer]
        else:
            trace = rag_trace(adj, events, parent, tree)
        prompt = [BOS_ID, *(t for u, v in edges for t in (NODE0 + u, DASH_ID, NODE0 + v)), EOS_ID]
        P = len(prompt)
        seq = np.array(prompt + trace, dtype=np.int64)
        inputs, targets = seq[:-1], seq[1:]
        mask = np.zeros(len(inputs), dtype=bool)
        mask[P - 1:] = True  # everything after the first [EOS]: the edges are never scored
        no_loss = None
        if self.format == "rag":
            no_loss = inputs == ES_ID  # the token after [ENDSEARCH] is the tool's result
            mask[no_loss] = False
        meta = {"length": n, "label": tree, "answer": answer, "answer_position": len(inputs) - 1, "edges": edges}
        return Example(inputs, targets, mask, prompt_len=P, no_loss=no_loss, meta=meta)

    def score_generation(self, example: Example, continuation: Sequence[int]) -> bool:
        """vanilla / cot: the first [TRUE]/[FALSE] generated; rag: the whole trace (W's criterion)."""
        if self.format == "rag":
            return super().score_generation(example, continuation)
        got = parse_answer([EOS_ID, *[int(t) for t in continuation]])
        return got is not None and got == example.meta["label"]

    # ---- free generation (the trainer's ``gen_eval``) ------------------------------------
    def generation_stop_ids(self) -> set[int]:
        """The answer ends a generation ([EOS] does not: in CoT/RAG it only closes the trace)."""
        return {TRUE_ID, FALSE_ID}

    def generation_tool(self):
        """RAG: the *live* regex retriever (results computed from the generated context, never
        read from the data); other formats generate without a tool."""
        if self.format != "rag":
            return None
        return RetrievalTool(self.vocab)

    def max_new_tokens(self, example: Example) -> int:
        """vanilla: the answer token only (W scores the token right after the edges).
        cot: the longest tour (2n - 1) + [EOS] + answer, plus n tokens of slack.
        rag: the longest trace (a tree's, 45n - 30 tokens, tool results included) plus 5n + 10 of
        slack, so a model that takes a detour and recovers is not cut off."""
        n = int(example.meta["length"])
        return {"vanilla": 1, "cot": 3 * n + 1, "rag": 50 * n - 20}[self.format]

    def generation_metrics(self, example: Example, continuation: Sequence[int]) -> dict[str, float]:
        """``acc``: the first [TRUE]/[FALSE] after the first [EOS] of the whole sequence (prompt +
        generation) is the right answer -- W's answer criterion, for every format;
        ``trace_acc``: the whole generated continuation (trace, [EOS], answer; for RAG including the
        live tool's results) equals the reference -- W's RAG criterion."""
        cont = [int(t) for t in continuation]
        got = parse_answer([*example.sequence[: example.prompt_len].tolist(), *cont])
        expected = example.sequence[example.prompt_len:].tolist()
        return {"acc": float(got is not None and got == example.meta["label"]),
                "trace_acc": float(cont == expected)}

    @property
    def chance_accuracy(self) -> float:
        return 0.5

    def max_tokens(self, length: int) -> int:
        n = int(length)
        prompt = 3 * (n - 1) + 2
        trace = {"vanilla": 1, "cot": 2 * n - 1 + 2, "rag": 45 * n - 30}[self.format]
        return prompt + trace - 1

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "format": self.format, "distribution": self.distribution,
                "max_nodes": self.max_nodes}
