"""A deliberately straightforward IsTree generator, and its speed against seqgap's.

``reference_dense_sample(rng, n, fmt)`` draws the same "binary" graph as
``IsTree(distribution="binary").sample(rng, n)`` (the same random draws, so the
two produce identical examples), but the way a first version would: one dense
n x n adjacency matrix per graph (entries = 1 + edge index, so neighbours can be
put in input order), neighbours read off matrix rows, the tree label from
boolean reachability by repeated matrix squaring, the retrieval results of the
RAG format looked up in the matrix.  Used only as the reference of issue 5's
data-generation comparison (seqgap's path: edge lists and neighbour lists).

Run: ``.venv/bin/python benchmarks/reference_istree.py [--seconds S]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from seqgap.tasks.base import Example
from seqgap.tasks.istree import (BOS_ID, DASH_ID, EOS_ID, ES_ID, FAILED_ID, FALSE_ID, NODE0, SS_ID, TILDE_ID,
                                 TRUE_ID, IsTree)


def _dense_binary_graph(rng: np.random.Generator, n: int) -> tuple[list[tuple[int, int]], np.ndarray]:
    u = rng.random(4 * n - 2)  # the same uniforms seqgap draws, used the plain way
    perm = np.argsort(u[:n])
    hubs, others = perm[:2], perm[2:]
    drawn = []
    for k, o in enumerate(others):
        drawn.append((int(o), int(hubs[1] if u[n + k] < 0.5 else hubs[0])))
    i = int(u[2 * n - 2] * (n - 2))
    j = int(u[2 * n - 1] * (n - 3))
    if j >= i:
        j += 1
    drawn.append((int(others[i]), int(others[j])))
    order = np.argsort(u[2 * n:3 * n - 1])
    edges = []
    for k, e in enumerate(order):
        a, b = drawn[e]
        edges.append((b, a) if u[3 * n - 1 + k] < 0.5 else (a, b))
    A = np.zeros((n, n), dtype=np.int64)
    for k, (u, v) in enumerate(edges):
        A[u, v] = A[v, u] = k + 1
    return edges, A


def _neighbours(A: np.ndarray, v: int) -> list[int]:
    nz = np.flatnonzero(A[v])
    return nz[np.argsort(A[v, nz])].tolist()


def _is_tree_dense(A: np.ndarray) -> bool:
    n = len(A)
    R = (A > 0) | np.eye(n, dtype=bool)
    for _ in range(int(np.ceil(np.log2(n)))):
        R = (R.astype(np.int64) @ R.astype(np.int64)) > 0
    return bool(R[0].all()) and np.count_nonzero(np.triu(A)) == n - 1


def reference_dense_sample(rng: np.random.Generator, n: int, fmt: str = "cot") -> Example:
    edges, A = _dense_binary_graph(rng, n)
    tree = _is_tree_dense(A)
    parent = np.full(n, -1)
    parent[0] = 0
    tour, trace = [0], [NODE0, TILDE_ID, NODE0]

    def first(v: int) -> int:
        nb = _neighbours(A, v)
        return NODE0 + nb[0] if nb else FAILED_ID

    def after(v: int, u: int) -> int:
        nb = _neighbours(A, v)
        k = nb.index(u)
        return NODE0 + nb[k + 1] if k + 1 < len(nb) else FAILED_ID

    def rec(v: int) -> int | None:  # DFS; returns None, or the vertex closing a cycle
        trace.extend((SS_ID, NODE0 + v, DASH_ID, ES_ID, first(v)))
        for x in _neighbours(A, v):
            if parent[x] < 0:
                trace.extend((SS_ID, NODE0 + x, TILDE_ID, ES_ID, FAILED_ID, NODE0 + x, TILDE_ID, NODE0 + v))
                parent[x] = v
                tour.append(x)
                closing = rec(x)
                if closing is not None:
                    return closing
                tour.append(v)
                trace.extend((SS_ID, NODE0 + x, TILDE_ID, ES_ID, NODE0 + v,
                              SS_ID, NODE0 + v, DASH_ID, NODE0 + x, ES_ID, after(v, x)))
            else:
                trace.extend((SS_ID, NODE0 + x, TILDE_ID, ES_ID, NODE0 + parent[x],
                              SS_ID, NODE0 + v, TILDE_ID, ES_ID, NODE0 + parent[v]))
                if x != parent[v]:
                    return x
                trace.extend((SS_ID, NODE0 + v, DASH_ID, NODE0 + x, ES_ID, after(v, x)))
        return None

    closing = rec(0)
    if closing is None:
        trace.extend((SS_ID, NODE0, TILDE_ID, ES_ID, NODE0))
        for u in range(1, n):
            trace.extend((SS_ID, NODE0 + u, TILDE_ID, ES_ID, NODE0 + parent[u] if parent[u] >= 0 else FAILED_ID))
            if parent[u] < 0:
                break
    answer = TRUE_ID if tree else FALSE_ID
    body = {"vanilla": [], "cot": [NODE0 + v for v in tour] + [EOS_ID], "rag": trace + [EOS_ID]}[fmt]
    prompt = [BOS_ID] + [t for u, v in edges for t in (NODE0 + u, DASH_ID, NODE0 + v)] + [EOS_ID]
    seq = np.array(prompt + body + [answer], dtype=np.int64)
    inputs, targets = seq[:-1], seq[1:]
    mask = np.arange(len(inputs)) >= len(prompt) - 1
    no_loss = None
    if fmt == "rag":
        no_loss = inputs == ES_ID
        mask &= ~no_loss
    return Example(inputs, targets, mask, prompt_len=len(prompt), no_loss=no_loss,
                   meta={"length": n, "label": tree, "answer": answer})


def _rate(fn, seconds: float) -> float:
    count, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(20):
            fn()
        count += 20
    return count / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="timing budget per measurement (default 2)")
    args = ap.parse_args(argv)
    print(f"{'format':7s} {'n':>3s} {'seqgap samples/s':>17s} {'dense ref samples/s':>20s} {'ratio':>6s}")
    for fmt in ("cot", "rag"):
        task = IsTree(format=fmt, distribution="binary", max_nodes=64)
        for n in (16, 32, 64):
            for seed in range(20):  # same draws -> same examples
                a, b = task.sample(np.random.default_rng(seed), n), reference_dense_sample(np.random.default_rng(seed), n, fmt)
                assert np.array_equal(a.sequence, b.sequence) and np.array_equal(a.mask, b.mask)
            rng_fast, rng_ref = np.random.default_rng(0), np.random.default_rng(0)
            fast = _rate(lambda: task.sample(rng_fast, n), args.seconds)
            ref = _rate(lambda: reference_dense_sample(rng_ref, n, fmt), args.seconds)
            print(f"{fmt:7s} {n:3d} {fast:17.0f} {ref:20.0f} {fast / ref:6.1f}x")


if __name__ == "__main__":
    main()
