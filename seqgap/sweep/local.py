"""Run independent jobs (study cells) in parallel on the local cores.

Each worker process gets one torch thread (``threads_per_worker``), since on a
small CPU several single-threaded trainings beat one two-threaded one.  Jobs
talk to the run store themselves, so a killed sweep loses at most the runs in
flight, and rerunning it resumes from the store.

A job that raises is reported as a failure (``JobOutcome.error``) and the
sweep goes on; it never takes the other jobs down.
"""
from __future__ import annotations

import os
import traceback
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any, Callable, Iterator, Sequence


@dataclass
class JobOutcome:
    index: int
    item: Any
    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, int(os.environ.get("SEQGAP_WORKERS", os.cpu_count() or 1))))


def _init_worker(threads: int, parent: int) -> None:
    # set where the process starts, before torch loads (see seqgap.cli)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    exit_with_parent(parent)
    import torch

    torch.set_num_threads(threads)


def exit_with_parent(parent: int) -> None:
    """A worker must not outlive its sweep: a killed driver (kill -9 included) takes its workers
    with it, so no orphan keeps training and storing runs behind a rerun's back.  Linux delivers
    SIGKILL at the parent's death (prctl PR_SET_PDEATHSIG); a watchdog thread polling the parent
    pid covers other systems and the race where the parent died before prctl ran."""
    import signal
    import sys
    import threading
    import time

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, int(signal.SIGKILL))  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(1)
            time.sleep(0.5)

    if os.getppid() != parent:
        os._exit(1)
    threading.Thread(target=watch, name="seqgap-parent-watchdog", daemon=True).start()


def _call(fn: Callable, item: Any) -> tuple[Any, str | None]:
    from seqgap.errors import SeqgapError

    try:
        return fn(item), None
    except SeqgapError as e:
        return None, str(e)
    except Exception as e:  # recorded, never lost
        return None, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"


def run_jobs(fn: Callable[[Any], Any], items: Sequence[Any], workers: int | None = None,
             threads_per_worker: int = 1) -> Iterator[JobOutcome]:
    """Yield a JobOutcome per item as jobs finish (``fn`` must be a picklable top-level function)."""
    workers = workers or default_workers()
    if workers <= 1 or len(items) <= 1:
        import torch

        prev = torch.get_num_threads()
        if workers <= 1 and threads_per_worker:
            torch.set_num_threads(max(threads_per_worker, 1))
        try:
            for i, item in enumerate(items):
                res, err = _call(fn, item)
                yield JobOutcome(i, item, res, err)
        finally:
            torch.set_num_threads(prev)
        return
    with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=get_context("spawn"),
                             initializer=_init_worker, initargs=(threads_per_worker, os.getpid())) as pool:
        pending: dict[Future, int] = {pool.submit(_call, fn, item): i for i, item in enumerate(items)}
        while pending:
            done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
            for fut in done:
                i = pending.pop(fut)
                try:
                    res, err = fut.result()
                except Exception as e:  # worker died (e.g. killed, out of memory)
                    res, err = None, f"worker failed: {type(e).__name__}: {e}"
                yield JobOutcome(i, items[i], res, err)
