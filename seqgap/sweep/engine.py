"""The sweep engine interface: the study decides *what* to train, an engine decides *where*.

A unit of work is a :class:`Job`: one run, or the runs of one grid point trained as an
ensemble.  An engine executes jobs somewhere (this machine's cores, a Ray cluster) and
hands back :class:`JobOutcome` s as they finish.  Workers never open the run store: they
return results, and the driver (``sweep/driver.py``) writes them, so the store has one
writer wherever the runs execute.

Engines implement ``submit(job)``, ``wait(timeout) -> list[JobOutcome]``, ``running`` and ``close()``;
``sweep.driver.make_engine`` builds one by name.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Protocol, Sequence

from seqgap.config import RunConfig
from seqgap.training.trainer import RunResult


@dataclass
class Job:
    """Runs to train in one worker: one config, or several that differ only in lr / seed (an ensemble)."""

    key: int
    configs: Sequence[RunConfig]
    stop_on_success: bool = False  # the N* short circuit (see training.ensemble.train_ensemble)


@dataclass
class JobOutcome:
    job: Job
    results: list[RunResult | None] | None = None  # per config (no model); None: cut short by the N* short circuit
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(job: Job) -> JobOutcome:
    """Train a job's runs (in whatever process the engine chose).  A failure is recorded, never raised."""
    from seqgap.errors import SeqgapError
    from seqgap.training import trainer
    from seqgap.training.ensemble import train_ensemble

    try:
        if len(job.configs) == 1 and not job.stop_on_success:  # one run: the single run itself
            results = [trainer.train(job.configs[0], keep_model=False)]
        else:
            results = train_ensemble(list(job.configs), keep_model=False, stop_on_success=job.stop_on_success)
    except SeqgapError as e:
        return JobOutcome(job, error=str(e))
    except Exception as e:  # recorded, never lost
        return JobOutcome(job, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")
    return JobOutcome(job, results)


class Engine(Protocol):
    name: str

    def submit(self, job: Job) -> None: ...

    def wait(self, timeout: float | None = None) -> list[JobOutcome]:
        """Outcomes of jobs finished since the last call (blocks up to ``timeout`` for the first)."""
        ...

    @property
    def running(self) -> int: ...

    def close(self) -> None: ...
