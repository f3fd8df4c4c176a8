"""The local engine: jobs on this machine's cores, one process and one torch thread per worker.

On a small CPU several single-threaded trainings beat one multi-threaded one, and one
thread per run keeps its numbers independent of the schedule (see ``trainer.torch_threads``).
With one worker, jobs run in the driver's own process.  A worker exits with its driver
(:func:`exit_with_parent`), so a killed sweep leaves no orphan behind.
"""
from __future__ import annotations

import os
from collections import deque
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from multiprocessing import get_context

from seqgap.sweep.engine import Job, JobOutcome, execute


def default_workers() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores)


def _init_worker(threads: int, parent: int, plugins: tuple[str, ...] = ()) -> None:
    import signal

    # set where the process starts, before torch loads (see seqgap.cli)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # Ctrl-C reaches the whole process group: the driver handles it and stops the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    exit_with_parent(parent)
    import torch

    torch.set_num_threads(threads)
    from seqgap.models.registry import load_plugin

    for target in plugins:  # the driver's plugin models and tasks (a spawned worker starts bare)
        load_plugin(target)


def _plugins() -> tuple[str, ...]:
    from seqgap.models.registry import LOADED_PLUGINS

    return tuple(LOADED_PLUGINS)


def exit_with_parent(parent: int) -> None:
    """A worker must not outlive its sweep: a killed driver (kill -9 included) takes its workers
    with it, so no orphan keeps training behind a rerun's back.  Linux delivers SIGKILL at the
    parent's death (prctl PR_SET_PDEATHSIG); a watchdog thread polling the parent pid covers other
    systems and the race where the parent died before prctl ran."""
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


class LocalEngine:
    """Jobs in a process pool on this machine (or in this process with one worker)."""

    name = "local"

    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()
        self._pool: ProcessPoolExecutor | None = None
        self._futures: dict[Future, Job] = {}
        self._inline: deque[Job] = deque()

    def submit(self, job: Job) -> None:
        if self.workers <= 1:
            self._inline.append(job)
            return
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=get_context("spawn"),
                                             initializer=_init_worker, initargs=(1, os.getpid(), _plugins()))
        self._futures[self._pool.submit(execute, job)] = job

    @property
    def running(self) -> int:
        return len(self._futures) + len(self._inline)

    def wait(self, timeout: float | None = None) -> list[JobOutcome]:
        if self._inline:
            return [execute(self._inline.popleft())]
        if not self._futures:
            return []
        done, _ = wait(list(self._futures), timeout=timeout, return_when=FIRST_COMPLETED)
        out = []
        for fut in done:
            job = self._futures.pop(fut)
            try:
                out.append(fut.result())
            except Exception as e:  # the worker died (killed, out of memory): recorded, the sweep goes on
                out.append(JobOutcome(job, error=f"worker failed: {type(e).__name__}: {e}"))
        return out

    def close(self) -> None:
        """Stop at once: queued jobs are cancelled, running ones killed (their runs were not stored;
        a rerun trains them again, from their checkpoints when they have one)."""
        if self._pool is not None:
            for fut in self._futures:
                fut.cancel()
            workers = list(getattr(self._pool, "_processes", {}).values())  # no public handle on them
            for proc in workers:
                proc.terminate()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._futures.clear()
        self._inline.clear()
