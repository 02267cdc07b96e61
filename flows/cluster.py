"""Validation on a Dask cluster, without Prefect on the workers.

The flow's task runs stay in the flow's process (threads: they only wait); each ships its
partition's validation to a Dask worker as a plain function call (``pipeline.validate_*``,
a ``Partition`` and paths in, a ``Validated`` out). A worker therefore never needs Prefect's
API: it starts no ephemeral server, leaves none behind when it dies, and sends no events. The
task runs, their names, retries and states are the flow process's, as with local threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prefect.context import FlowRunContext
from prefect.task_runners import ThreadPoolTaskRunner

R = TypeVar("R")

# A temporary cluster on this machine: one single-threaded worker process per core, no
# dashboard (it would listen on every interface).
LOCAL_CLUSTER: dict[str, Any] = {
    "processes": True,
    "threads_per_worker": 1,
    "dashboard_address": None,
    "host": "127.0.0.1",
}
# Task runs waiting on the cluster at once: threads that only wait, so more than the cores.
WAITING_THREADS = 16


class DaskValidation(ThreadPoolTaskRunner):
    """Task runs in threads here; validation work on the Dask cluster at ``address`` (else a
    temporary local cluster)."""

    def __init__(
        self,
        address: str | None = None,
        cluster_kwargs: dict[str, Any] | None = None,
        max_workers: int = WAITING_THREADS,
    ) -> None:
        super().__init__(max_workers=max_workers)
        self.address = address
        self.cluster_kwargs = dict(LOCAL_CLUSTER if cluster_kwargs is None else cluster_kwargs)
        self._client: Any = None
        self._cluster: Any = None

    def duplicate(self) -> DaskValidation:
        return type(self)(self.address, self.cluster_kwargs, self._max_workers)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DaskValidation)
            and (self.address, self.cluster_kwargs) == (other.address, other.cluster_kwargs)
            and super().__eq__(other)
        )

    def __hash__(self) -> int:
        return hash((type(self), self.address))

    def __enter__(self) -> DaskValidation:
        from distributed import Client, LocalCluster

        super().__enter__()
        if self.address:
            self._client = Client(self.address, set_as_default=False)
        else:
            self._cluster = LocalCluster(**self.cluster_kwargs)
            self._client = Client(self._cluster, set_as_default=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self._client is not None:
                self._client.close()
            if self._cluster is not None:
                self._cluster.close()
        finally:
            self._client = self._cluster = None
            super().__exit__(*exc)

    def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """``fn(*args, **kwargs)`` on a worker; its exception (an OSError, say) is raised here,
        so that the task run's retries apply. A worker that dies mid-call: Dask runs it again
        on another."""
        assert self._client is not None, "the task runner is not started"
        future = self._client.submit(fn, *args, pure=False, **kwargs)
        return future.result()


def validates_here() -> bool:
    """Whether ``on_workers`` runs its function in this process (no Dask workers)."""
    context = FlowRunContext.get()
    return not isinstance(context.task_runner if context is not None else None, DaskValidation)


def on_workers(fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
    """Run ``fn`` where the flow's task runner puts validation: a Dask worker, or here."""
    context = FlowRunContext.get()
    runner = context.task_runner if context is not None else None
    if isinstance(runner, DaskValidation):
        return runner.call(fn, *args, **kwargs)
    return fn(*args, **kwargs)
