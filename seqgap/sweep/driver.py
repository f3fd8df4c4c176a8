"""The sweep driver: study logic on the driver, training on an engine, the store as its single writer.

A study is a set of *programs*: plain functions ``program(driver) -> value`` (an N* search of
one cell, the grid of a length-generalisation cell, ...) that call ``driver.train(configs)``
whenever they need runs, and react to the results.  Each program runs in a thread of the
driver process and blocks in ``train``; the driver's main loop

1. answers every request it can from the run store (a finished run is never trained again),
2. claims the rest in the store (a second process on the same store waits for them or takes
   other work instead of training them twice; claims carry a heartbeat and expire),
3. submits them to the engine as one job (a run, or the runs of one grid point as an ensemble),
4. writes each result to the store as it arrives, in one transaction, and wakes the program.

Workers never open the store, so the same study runs on this machine's cores or on a Ray
cluster with the same store, the same report and the same resumability: kill the driver at
any moment, rerun the command, and only the runs in flight are trained again.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from seqgap.config import RunConfig
from seqgap.errors import SeqgapError
from seqgap.sweep.engine import Engine, Job, JobOutcome
from seqgap.training.trainer import RunResult, drop_checkpoint

Program = Callable[["Driver"], Any]


def log_line(s: str) -> None:
    """One progress line on stderr in a single write: programs log from several threads, and print()'s
    separate write of the newline let two lines run together."""
    sys.stderr.write(s + "\n")
    sys.stderr.flush()


@dataclass
class _Request:
    configs: list[RunConfig]
    stop_on_success: bool
    future: Future
    ids: list[str]
    stored: dict[str, RunResult]
    todo: list[RunConfig]
    retry_at: float = 0.0


@dataclass
class _StoreCall:
    fn: Callable[[Any], Any]
    future: Future


@dataclass
class ProgramOutcome:
    value: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class Driver:
    """Runs programs against a store and an engine (see the module docstring)."""

    def __init__(self, store, engine: Engine, progress: bool = True, claim_ttl_s: float = 120.0,
                 log: Callable[[str], None] | None = None, checkpoint_dir: str | None = None):
        """``checkpoint_dir``: where long runs checkpoint (default: next to the store, for engines whose
        workers see this file system; on a cluster without a shared one pass a shared path or "")."""
        from pathlib import Path

        from seqgap.store import new_owner

        self.store, self.engine = store, engine
        self.checkpoint_dir = (str(Path(store.path).with_suffix(".checkpoints")) if checkpoint_dir is None
                               else checkpoint_dir)
        self.owner = new_owner()
        self.claim_ttl_s = claim_ttl_s
        self.log = log or log_line
        self._requests: queue.Queue[_Request | _StoreCall] = queue.Queue()
        self._pending: dict[int, _Request] = {}
        self._waiting: list[_Request] = []  # held by another process's claim
        self._claimed: set[str] = set()
        self._next_key = 0
        self.counts = {"requested": 0, "from_store": 0, "trained": 0, "abandoned": 0, "failed": 0}
        self._bar = _Progress(enabled=progress)

    # ---- called from program threads -------------------------------------------------------

    def train(self, configs: Sequence[RunConfig], stop_on_success: bool = False) -> list[RunResult | None]:
        """The results of ``configs`` (stored, or trained together as one job); blocks until they are in.
        With ``stop_on_success`` the job is the N* short circuit: members cut short come back None."""
        configs = list(configs)
        if not configs:
            return []
        fut: Future = Future()
        self._requests.put(_Request(configs, stop_on_success, fut, [c.hash() for c in configs], {}, []))
        return fut.result()

    def with_store(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(store)`` run by the driver's own thread (the store's single connection and writer),
        e.g. a study reading or recording a finished cell; blocks until done."""
        fut: Future = Future()
        self._requests.put(_StoreCall(fn, fut))
        return fut.result()

    def train_each(self, configs: Sequence[RunConfig]) -> list[RunResult]:
        """Every config as its own job, all at once (they spread over the engine's workers)."""
        futs = []
        for c in configs:
            fut: Future = Future()
            self._requests.put(_Request([c], False, fut, [c.hash()], {}, []))
            futs.append(fut)
        return [f.result()[0] for f in futs]

    # ---- the main loop ---------------------------------------------------------------------

    def run(self, programs: Sequence[Program]) -> list[ProgramOutcome]:
        """Run every program to its end; a program that raises is recorded, the others go on."""
        outcomes = [ProgramOutcome() for _ in programs]
        threads = []

        def target(i: int, program: Program) -> None:
            try:
                outcomes[i].value = program(self)
            except SeqgapError as e:
                outcomes[i].error = str(e)
            except Exception as e:  # recorded, never lost
                import traceback

                outcomes[i].error = f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}"

        for i, p in enumerate(programs):
            t = threading.Thread(target=target, args=(i, p), name=f"seqgap-program-{i}", daemon=True)
            t.start()
            threads.append(t)
        last_beat = time.monotonic()
        try:
            while any(t.is_alive() for t in threads) or self._pending or self._waiting:
                self._take_requests(block=not self._pending and not self.engine.running)
                self._retry_waiting()
                for outcome in self.engine.wait(timeout=0.1):
                    self._finish(outcome)
                if time.monotonic() - last_beat > self.claim_ttl_s / 3:
                    for rid in list(self._claimed):
                        self.store.heartbeat(rid, self.owner)
                    last_beat = time.monotonic()
                self._bar.show(self)
        except BaseException:
            self.engine.close()
            self._release(list(self._claimed))
            raise
        finally:
            self._bar.close()
        for t in threads:
            t.join()
        return outcomes

    def _take_requests(self, block: bool) -> None:
        try:
            req = self._requests.get(timeout=0.05 if block else 0)
        except queue.Empty:
            return
        while True:
            self._start(req)
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                return

    def _start(self, req: _Request | _StoreCall) -> None:
        if isinstance(req, _StoreCall):
            try:
                req.future.set_result(req.fn(self.store))
            except BaseException as e:  # the program sees it
                req.future.set_exception(e)
            return
        self.counts["requested"] += len(req.ids)
        for rid in dict.fromkeys(req.ids):
            row = self.store.get(rid)
            if row is not None:
                req.stored[rid] = RunResult(rid, row["config"], row["summary"], row["history"], cached=True)
        self.counts["from_store"] += sum(1 for rid in req.ids if rid in req.stored)
        if req.stop_on_success and any(r.success for r in req.stored.values()):
            return self._resolve(req, {})
        seen: set[str] = set()
        for c, rid in zip(req.configs, req.ids):
            if rid not in req.stored and rid not in seen:
                seen.add(rid)
                req.todo.append(c)
        if not req.todo:
            return self._resolve(req, {})
        self._dispatch(req)

    def _dispatch(self, req: _Request) -> None:
        todo_ids = [c.hash() for c in req.todo]
        taken = []
        for rid in todo_ids:
            if self.store.claim(rid, self.owner, self.claim_ttl_s):
                taken.append(rid)
            else:  # another process is training it: wait for its result (or for its claim to expire)
                self._release(taken)
                req.retry_at = time.monotonic() + 2.0
                self._waiting.append(req)
                return
        self._claimed.update(taken)
        if self.checkpoint_dir:  # long runs checkpoint (placement only: the run ids stay the same)
            req.todo = [c if c.train.checkpoint_dir else c.replace(checkpoint_dir=self.checkpoint_dir)
                        for c in req.todo]
        key = self._next_key
        self._next_key += 1
        self._pending[key] = req
        self.engine.submit(Job(key, list(req.todo), req.stop_on_success))

    def _retry_waiting(self) -> None:
        now = time.monotonic()
        due = [r for r in self._waiting if r.retry_at <= now]
        for req in due:
            self._waiting.remove(req)
            for c in list(req.todo):  # finished meanwhile by the other process
                row = self.store.get(c.hash())
                if row is not None:
                    req.stored[c.hash()] = RunResult(c.hash(), row["config"], row["summary"], row["history"],
                                                     cached=True)
                    req.todo.remove(c)
                    self.counts["from_store"] += 1
            if (req.stop_on_success and any(r.success for r in req.stored.values())) or not req.todo:
                self._resolve(req, {})
            else:
                self._dispatch(req)

    def _finish(self, outcome: JobOutcome) -> None:
        req = self._pending.pop(outcome.job.key)
        todo_ids = [c.hash() for c in req.todo]
        if not outcome.ok:
            self.counts["failed"] += len(todo_ids)
            self._release(todo_ids)
            req.future.set_exception(SeqgapError(outcome.error or "job failed"))
            return
        new: dict[str, RunResult] = {}
        for cfg, rid, payload in zip(req.todo, todo_ids, outcome.results or []):
            if payload is None:  # cut short by the N* short circuit: nothing to resume either
                self.counts["abandoned"] += 1
                drop_checkpoint(cfg)
                continue
            # the single writer: one transaction per run, as each job's results arrive
            self.store.put(payload.id, payload.config, payload.summary, payload.history)
            drop_checkpoint(cfg)
            new[rid] = payload
            self.counts["trained"] += 1
        self._release(todo_ids)
        self._resolve(req, new)

    def _resolve(self, req: _Request, new: dict[str, RunResult]) -> None:
        got = {**req.stored, **new}
        req.future.set_result([got.get(rid) for rid in req.ids])

    def _release(self, ids: Sequence[str]) -> None:
        for rid in ids:
            self.store.release(rid, self.owner)
            self._claimed.discard(rid)

    @property
    def running_runs(self) -> int:
        return sum(len(r.todo) for r in self._pending.values())

    @property
    def queued_runs(self) -> int:
        return sum(len(r.todo) for r in self._waiting)


class _Progress:
    """One bar over the whole sweep, the same for every engine: runs done / running / queued, ETA."""

    def __init__(self, enabled: bool):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=0, desc="sweep", unit="run", file=sys.stderr, leave=False, dynamic_ncols=True)

    def show(self, d: Driver) -> None:
        if self.bar is None:
            return
        c = d.counts
        done = c["from_store"] + c["trained"] + c["abandoned"] + c["failed"]
        total = done + d.running_runs + d.queued_runs
        if total != self.bar.total:
            self.bar.total = total
        self.bar.n = done
        self.bar.set_postfix(trained=c["trained"], stored=c["from_store"], running=d.running_runs,
                             queued=d.queued_runs, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def make_engine(backend: str = "local", workers: int | None = None, address: str | None = None,
                cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> Engine:
    """The engine for ``--backend``: ``local`` (process pool on this machine) or ``ray``."""
    from seqgap.errors import SeqgapError

    if backend == "local":
        from seqgap.sweep.local import LocalEngine

        return LocalEngine(workers)
    if backend == "ray":
        from seqgap.sweep.ray_engine import RayEngine

        return RayEngine(address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    raise SeqgapError(f"unknown backend {backend!r}; use local or ray")


def run_programs(programs: Sequence[Program], store_path: str | None = None, backend: str = "local",
                 workers: int | None = None, address: str | None = None, progress: bool = False,
                 cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> list[ProgramOutcome]:
    """Open the store and an engine, run the programs, close both (the usual entry point of a study)."""
    from seqgap.store import RunStore

    store = RunStore(store_path, readonly=False)
    engine = make_engine(backend, workers=workers, address=address, cpus_per_run=cpus_per_run,
                         gpus_per_run=gpus_per_run)
    try:
        return Driver(store, engine, progress=progress).run(programs)
    finally:
        engine.close()
        store.close()


def run_each(items: Sequence[Any], work: Callable[[Any, Driver], Any], store_path: str | None,
             label: Callable[[Any], str], describe: Callable[[Any, Any], str], log: Callable[[str], None] = print,
             workers: int | None = None, **engine: Any) -> list[Any]:
    """One program per item, ``work(item, driver) -> value``, all on one driver: logs
    ``[done/total elapsed] label(item): describe(item, value)`` as each finishes and a FAILED line for each
    failure.  Returns the values in item order, None for a failed item."""
    import time

    t0, done = time.perf_counter(), [0]

    def program(item: Any) -> Program:
        def run(driver: Driver) -> Any:
            value = work(item, driver)
            done[0] += 1
            log(f"[{done[0]}/{len(items)} {time.perf_counter() - t0:6.0f}s] {label(item)}: {describe(item, value)}")
            return value

        return run

    outcomes = run_programs([program(i) for i in items], store_path, workers=workers, **engine)
    for item, o in zip(items, outcomes):
        if not o.ok:
            log(f"{label(item)}: FAILED: {o.error.splitlines()[0]}")
    return [o.value if o.ok else None for o in outcomes]
