"""The Ray engine: jobs as Ray tasks on a cluster (or a local Ray instance), results back to the driver.

``--backend ray --address auto`` joins a running cluster (``ray start --head`` on one machine,
``ray start --address HEAD:6379`` on the others); without an address a local Ray instance is
started for this process.  Each job is one Ray task with the resources of one run
(``--cpus-per-run``, fractional ``--gpus-per-run``: a tiny model uses a sliver of a GPU).  Tasks
return their results; they never open the run store (the driver writes it), so workers need
seqgap importable but no shared file system.  Ray retries a task whose worker node was lost
(``max_retries``), and kills the tasks of a driver that died (Ray's own ownership rule: a
driver's tasks are cancelled when its job ends), so no orphan keeps training.

Ray is an optional extra: ``pip install seqgap[ray]``.
"""
from __future__ import annotations

import os

from seqgap.errors import SeqgapError
from seqgap.sweep.engine import Job, JobOutcome, execute


def _ray():
    try:
        import ray
    except ImportError:
        raise SeqgapError("--backend ray needs Ray: pip install 'seqgap[ray]' (or pip install 'ray[default]')") from None
    return ray


def _execute_in_worker(job: Job, plugins: tuple[str, ...] = ()) -> JobOutcome:
    # set where the worker process starts training, before torch spins threads (see seqgap.cli)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from seqgap.errors import SeqgapError
    from seqgap.models.registry import LOADED_PLUGINS, load_plugin

    try:  # the driver's plugin models and tasks, once per worker process (a Ray worker starts bare);
        # a plugin file must exist at the same path on the worker's machine
        for target in plugins:
            if target not in LOADED_PLUGINS:
                load_plugin(target)
    except SeqgapError as e:
        return JobOutcome(job, error=str(e))
    return execute(job)


class RayEngine:
    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float = 1.0, gpus_per_run: float = 0.0,
                 max_retries: int = 3, num_cpus: int | None = None):
        ray = _ray()
        if not cpus_per_run > 0 or gpus_per_run < 0:
            raise SeqgapError(f"--cpus-per-run must be > 0 and --gpus-per-run >= 0, got {cpus_per_run}, {gpus_per_run}")
        self.ray = ray
        self._own = not ray.is_initialized()
        if self._own:
            kwargs = {"address": address} if address else {"num_cpus": num_cpus or len(os.sched_getaffinity(0))}
            try:
                # the driver's working tree travels to the workers, so a cluster runs this seqgap
                ray.init(ignore_reinit_error=True, log_to_driver=False, include_dashboard=False,
                         runtime_env={"env_vars": {"OMP_WAIT_POLICY": "PASSIVE"}}, **kwargs)
            except Exception as e:  # a bad address, no cluster: one line
                raise SeqgapError(f"--backend ray: cannot start or join Ray at {address or 'local'}: "
                                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
        self._task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=max_retries)(
            _execute_in_worker)
        self._refs: dict = {}

    def submit(self, job: Job) -> None:
        from seqgap.models.registry import LOADED_PLUGINS

        self._refs[self._task.remote(job, tuple(LOADED_PLUGINS))] = job

    @property
    def running(self) -> int:
        return len(self._refs)

    def wait(self, timeout: float | None = None) -> list[JobOutcome]:
        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=timeout or 0.0)
        if not ready and timeout is None:
            ready, _ = self.ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in ready:
            job = self._refs.pop(ref)
            try:
                out.append(self.ray.get(ref))
            except Exception as e:  # the task failed after its retries (node lost, worker killed)
                out.append(JobOutcome(job, error=f"ray task failed: {type(e).__name__}: {str(e).splitlines()[0]}"))
        return out

    def close(self) -> None:
        for ref in self._refs:
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass
        self._refs.clear()
        if self._own and self.ray.is_initialized():
            self.ray.shutdown()
