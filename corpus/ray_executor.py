"""The pipeline on a Ray cluster: the local executor's phases (corpus/executor.py), each unit of work a Ray
task with declared CPUs and memory.

Reading (one task per input file or byte range), every shard through each run of per-shard stages, and
every step of a whole-corpus fit or sink (dedup partitions, connected components, profile parts,
token pieces: whatever it hands to ``StageContext.pool_map``) run as Ray tasks calling the same plain
functions of frozen jobs as the process pool does (corpus/work.py and the stages' jobs). The driver keeps
what it keeps locally: the lock, the catalog, the markers' order, progress, publishing and the balance.

Every worker must see the output folder and the inputs at the same paths as the driver (one machine, or
a shared file system), and the same corpusforge (installed on every node). A worker that dies mid-task
(killed, out of memory, its node lost) is retried by Ray up to ``max_retries`` times: units are
idempotent (each rewrites its own files atomically and writes its marker last), so a retry ends with
the same bytes. See docs/ray.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from corpus.errors import WorkerDiedError, note_worker, worker_death
from corpus.executor import Executor, Runner
from corpus.work import worker_env

# How much a task may hold, beyond its shard: a shard as a frame, its copy on the way out, and buffers.
_MEMORY_SHARDS = 4
_MEMORY_BASE = 256 << 20


def _call(fn: Callable[[Any], Any], job: Any) -> Any:
    return fn(job)


def connect(address: str | None, workers: int, threads: int) -> bool:
    """Join the Ray cluster at ``address`` ('auto', 'host:port', 'ray://host:port'), or start a local one
    of ``workers`` CPUs (0: every core) when there is none; True when it was started here (and is shut
    down at the end). A driver already connected (``ray.init`` called before) keeps its connection."""
    import ray

    if ray.is_initialized():
        return False
    # polars and OpenBLAS in each task use the CPUs the task declared, not every core of the node.
    env = {"env_vars": worker_env(threads)}
    if address is None and not os.environ.get("RAY_ADDRESS"):
        ray.init(num_cpus=workers or None, include_dashboard=False, runtime_env=env)
    else:
        reachable(address or os.environ["RAY_ADDRESS"])
        ray.init(address=address, runtime_env=env)
    return True


def reachable(address: str) -> None:
    """Raise ConnectionError when nothing answers at a 'host:port' or 'ray://host:port' address: ray.init
    would retry for minutes, printing its C++ client's warnings. ('auto' is Ray's to resolve: it fails fast.)"""
    import socket

    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not port.isdigit() or not host:
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise ConnectionError(f"no Ray cluster answers at {address} ({why}): start one there (`ray start --head`), "
                              "or leave ray.address and RAY_ADDRESS unset for a local cluster of -w CPUs") from None


def fits(cpus: float, memory: int, nodes: list[dict]) -> None:
    """Raise ValueError when no node of the cluster has the CPUs and memory one task declares: Ray would
    wait for such a node for ever (an autoscaling cluster that adds bigger nodes: lower the ask)."""
    if any(n.get("CPU", 0) >= cpus and n.get("memory", 0) >= memory for n in nodes):
        return
    best = max(nodes, key=lambda n: (n.get("memory", 0), n.get("CPU", 0)), default={})
    raise ValueError(f"no node of the Ray cluster can run a task of {cpus:g} CPUs and {memory / 2**30:.2f} GiB "
                     f"(the largest has {best.get('CPU', 0):g} CPUs and {best.get('memory', 0) / 2**30:.2f} GiB for "
                     "tasks): lower ray.memory_per_task or shard_max_bytes, or ray.cpus_per_task")


class RayPool:
    """The ``Runner`` of corpus/executor.py over Ray tasks: ``fn(job)`` per job, each a task of
    ``cpus`` CPUs and ``memory`` bytes (Ray's scheduling resources), retried when its worker dies."""

    def __init__(self, cpus: float, memory: int, max_retries: int, started: bool):
        import ray

        self._ray = ray
        self._started = started
        self._left: list[Any] = []  # refs cancelled unfinished when a wait stopped early (close(stop=True) kills them)
        fits(cpus, memory, [n["Resources"] for n in ray.nodes() if n.get("Alive")])
        self.workers = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus))
        self.max_retries = max_retries
        self._task = ray.remote(_call).options(num_cpus=cpus, memory=memory, max_retries=max_retries)

    def _get(self, ref: Any, label: str) -> Any:
        exc_types = self._ray.exceptions
        try:
            return self._ray.get(ref)
        except exc_types.RayTaskError as exc:
            # The unit's own exception (InputError, OperatorError, StopRun...), not Ray's wrapping of it,
            # so callers and the CLI treat it as they do under the process pool.
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException) and not isinstance(cause, exc_types.RayError):
                note_worker(cause, label)  # which unit, as the process pool's job_in_worker says it
                raise cause from None
            raise
        except (exc_types.WorkerCrashedError, exc_types.OutOfMemoryError, exc_types.NodeDiedError,
                exc_types.ObjectLostError, exc_types.LocalRayletDiedError) as exc:
            why = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            tries = "once" if not self.max_retries else f"{self.max_retries + 1} times"
            unit = f"{label} (tried {tries}; Ray: {why})"
            raise WorkerDiedError(worker_death(None, None, unit)) from None

    def _wait(self, refs: list[Any]) -> Iterator[Any]:
        """The refs as they finish; the ones not reached are cancelled when the caller stops early."""
        pending = list(refs)
        try:
            while pending:
                done, pending = self._ray.wait(pending, num_returns=1)
                if pending:  # and whatever else has finished meanwhile: one scan of the list per batch
                    more, pending = self._ray.wait(pending, num_returns=len(pending), timeout=0)
                    done += more
                yield from done
        finally:
            for ref in pending:
                self._ray.cancel(ref)  # queued ones; a running one ends its unit (unless close(stop=True))
            self._left = pending

    def unordered(self, fn: Callable[[Any], Any], jobs: Sequence[Any], labels: Sequence[str] | None = None
                  ) -> Iterator[Any]:
        labels = labels or [f"{fn.__name__} {job!r:.80}" for job in jobs]
        refs = [self._task.remote(fn, job) for job in jobs]
        label_of = dict(zip(refs, labels, strict=True))
        for ref in self._wait(refs):
            yield self._get(ref, label_of[ref])

    def ordered(self, fn: Callable[[Any], Any], items: Sequence[Any], label: str = "",
                each: Callable[[Any], None] | None = None) -> list[Any]:
        what = label or fn.__name__
        refs = [self._task.remote(fn, x) for x in items]
        position = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(refs)
        for ref in self._wait(refs):
            i = position[ref]
            results[i] = self._get(ref, f"{what} (part {i + 1} of {len(refs)})")
            if each is not None:
                each(results[i])
        return results

    def close(self, stop: bool = False) -> None:
        """stop (an interrupted run): the tasks still running are killed, on a cluster the driver joined too."""
        if stop:
            for ref in self._left:
                with contextlib.suppress(Exception):  # finished meanwhile, or its worker already gone
                    self._ray.cancel(ref, force=True)
            self._left = []
        if self._started:  # a local cluster started for the run: its tasks end with it
            self._ray.shutdown()
            self._started = False


class RayExecutor(Executor):
    """Runs a pipeline on Ray: ``RayExecutor(address="auto").run(ops, inputs, out)``.

    address: the cluster to join (None: ``RAY_ADDRESS`` if set, else a local cluster of ``workers`` CPUs
    started for the run); cpus_per_task and memory_per_task: what each task declares (memory default:
    four shards' worth plus 256 MiB); max_retries: how often a task whose worker died is run again."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int = 0, cpus_per_task: float = 1.0,
                 memory_per_task: int | None = None, max_retries: int = 3, **kwargs: Any):
        super().__init__(workers=workers, **kwargs)
        if cpus_per_task <= 0:
            raise ValueError(f"cpus_per_task must be positive, got {cpus_per_task}")
        if memory_per_task is not None and memory_per_task <= 0:
            raise ValueError(f"memory_per_task must be positive, got {memory_per_task}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, got {max_retries}")
        self.address = address
        self.cluster_cpus = workers  # a local cluster's size; 0: every core (a joined cluster has its own)
        self.cpus_per_task = cpus_per_task
        self.memory_per_task = memory_per_task
        self.max_retries = max_retries

    def _runner(self, shard_max_bytes: int) -> Runner:
        started = connect(self.address, self.cluster_cpus, max(1, int(self.cpus_per_task)))
        memory = self.memory_per_task or _MEMORY_SHARDS * shard_max_bytes + _MEMORY_BASE
        try:
            return RayPool(self.cpus_per_task, memory, self.max_retries, started)
        except BaseException:
            if started:
                import ray

                ray.shutdown()
            raise
