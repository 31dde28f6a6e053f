"""The worker process (`settlepay worker`): runs every registered workflow and activity.

One Temporal `Worker` per task queue in `settlepay.task_queues.ALL` that has something
registered (workers/wiring.py); activities are sync functions (SQLAlchemy), run in a thread
pool per queue. SIGINT/SIGTERM stop polling, give running activities
`worker_graceful_shutdown_seconds` to finish, then exit 0: Temporal re-delivers whatever did not
finish to the next worker, and every activity is idempotent, so a restart never doubles an effect.

This module wires processes together; it must hold no business logic.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import py_compile
import signal
import socket
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import Engine
from temporalio.client import Client
from temporalio.converter import (
    ActivitySerializationContext,
    SerializationContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.runtime import Runtime
from temporalio.worker import Worker, WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from reconciliation.schedule import ensure_schedule  # the daily run (issue 11)
from settlepay import task_queues, temporal
from settlepay.config import Settings, get_settings
from settlepay.db import make_engine
from settlepay.observability import metrics, setup
from workers import wiring
from workers.providers import Providers

log = logging.getLogger("settlepay.worker")

# Logged once the workers poll; `settlepay dev` waits for this line before starting the API.
READY_MESSAGE = "worker ready"


def build_engine(settings: Settings) -> Engine:
    return make_engine(settings.sqlalchemy_url, pool_size=settings.worker_db_pool_size,
                       settings=settings)


def build_workers(client: Client, engine: Engine, settings: Settings, providers: Providers,
                  queues: Sequence[str] | None = None,
                  ) -> tuple[list[Worker], list[ThreadPoolExecutor]]:
    """One Worker per task queue with registrations; queues with nothing registered are skipped.
    `queues` (`settlepay worker --task-queue`) polls only those: N processes per queue scale
    each queue on its own (docker-compose.yml); None polls every queue."""
    workers: list[Worker] = []
    executors: list[ThreadPoolExecutor] = []
    threads = settings.worker_activity_threads
    for queue in task_queues.ALL:
        if queues is not None and queue not in queues:
            continue
        workflows, activities = wiring.for_queue(queue, engine, settings, providers)
        if not workflows and not activities:
            log.info("task queue %s: nothing registered, not polled", queue)
            continue
        compile_workflow_modules(workflows)
        executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix=f"act-{queue}")
        executors.append(executor)
        workers.append(Worker(
            client,
            task_queue=queue,
            workflows=workflows,
            activities=activities,
            activity_executor=executor,
            workflow_runner=workflow_runner(),
            # No more activities in flight than threads: an accepted task waiting for a thread
            # would burn its start-to-close timeout doing nothing.
            max_concurrent_activities=threads,
            graceful_shutdown_timeout=timedelta(seconds=settings.worker_graceful_shutdown_seconds),
        ))
        log.info("task queue %s: %d workflows, %d activities",
                 queue, len(workflows), len(activities))
    return workers, executors


def workflow_runner() -> SandboxedWorkflowRunner:
    """The workflow sandbox every settlepay worker runs (and the tests, replays and bench
    yardstick with them): Temporal's default restrictions -- a workflow that reads the clock,
    draws a random number or does I/O through the standard library still fails its task -- with
    every module passed through instead of imported afresh for each run.

    Re-importing exists so that module state cannot leak from one run into the next. Ours has
    none to leak, and that is checked rather than assumed: workflows import only definitions
    (import-linter's "workflows import only their contracts ..." contract), and
    tests/test_worker_main.py holds every workflow module and class, and every module they
    import, to no mutable state. Re-importing workflows/deposit.py and its definitions cost
    ~3.9 ms of CPU per deposit run (19.2 -> 15.4 ms per replay, bench note in the README).

    Its runs answer the worker's serialization-context questions outside the sandbox
    (`ContextFreeSandboxedRunner`)."""
    return ContextFreeSandboxedRunner(
        restrictions=SandboxRestrictions.default.with_passthrough_all_modules())


def converters_take_context(det: WorkflowInstanceDetails) -> bool:
    """Whether the payload or failure converter of a workflow run would change with a
    serialization context (Temporal hands converters the workflow's, an activity's, a child's
    ... context: `temporalio.converter.WithSerializationContext`)."""
    probe = ActivitySerializationContext(
        namespace=det.info.namespace, workflow_id=det.info.workflow_id,
        workflow_type=det.info.workflow_type, activity_type="probe", activity_id="probe",
        activity_task_queue=det.info.task_queue, is_local=False)
    for converter in (det.payload_converter_factory(), det.failure_converter_class()):
        if (isinstance(converter, WithSerializationContext)
                and converter.with_context(probe) is not converter):
            return True
    return False


@dataclass(frozen=True)
class ContextFreeSandboxedRunner(SandboxedWorkflowRunner):
    """The sandboxed runner, whose runs answer the worker's serialization-context questions
    without entering the sandbox, when the converters take no context.

    For every batch of payloads of an activation and of its completion the worker asks the run
    which serialization context applies (`WorkflowInstance.get_serialization_context`, and
    `get_external_store_context`), and a sandboxed run answers by compiling and executing code
    inside the sandbox (`exec` of a string under the sandbox's importer): about 2 ms of the
    worker's CPU per deposit. The context only matters to a converter, codec or external store
    that takes one; settlepay's take none (settlepay/codec.py: pydantic, AES-GCM with one key
    for all, failures encoded; no external storage; tests/test_worker_main.py holds it so), and
    then the worker converts every payload the same whatever the context. Its runs then answer
    the workflow's own contexts, without entering the sandbox; a run whose payload or failure
    converter does take a context is left as the SDK made it (checked per converter factory).
    The workflow code itself still runs inside the sandbox, with its restrictions."""

    # converter factory, failure converter class -> whether they take a context
    _takes_context: dict[tuple[Any, type], bool] = field(
        default_factory=dict, init=False, repr=False, compare=False)

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        instance = super().create_instance(det)
        key = (det.payload_converter_factory, det.failure_converter_class)
        try:
            takes = self._takes_context.get(key)
        except TypeError:   # an unhashable factory: asked each time
            key, takes = None, None
        if takes is None:
            takes = converters_take_context(det)
            if key is not None:
                self._takes_context[key] = takes
        return instance if takes else _ContextFreeInstance(instance, det)


class _ContextFreeInstance(WorkflowInstance):
    """A sandboxed run (`ContextFreeSandboxedRunner`) that answers the workflow's own contexts
    (Temporal's answer for a payload of no command) without entering the sandbox; everything
    else goes to the sandboxed run."""

    def __init__(self, sandboxed: WorkflowInstance, det: WorkflowInstanceDetails) -> None:
        info = det.info
        self._sandboxed = sandboxed
        self._context = WorkflowSerializationContext(namespace=info.namespace,
                                                     workflow_id=info.workflow_id)
        self._store_context = StorageDriverStoreContext(target=StorageDriverWorkflowInfo(
            id=info.workflow_id, run_id=info.run_id, type=info.workflow_type,
            namespace=info.namespace))

    def activate(self, act: Any) -> Any:
        return self._sandboxed.activate(act)

    def get_info(self) -> Any:
        return self._sandboxed.get_info()

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        return self._context

    def get_external_store_context(self, command_info: Any) -> StorageDriverStoreContext:
        return self._store_context

    def __getattr__(self, name: str) -> Any:
        # The rest of the sandboxed run's interface (get_thread_id for deadlock reports, ...).
        return getattr(self._sandboxed, name)


def compile_workflow_modules(workflows: Iterable[type]) -> list[str]:
    """Write the bytecode of the workflows' modules (and their packages) where it is missing or
    older than the source; the paths written.

    Temporal's workflow sandbox imports a workflow's module afresh for every run it starts (so
    that no module state leaks from one run into the next). Under PYTHONDONTWRITEBYTECODE (set
    in this project's image and on its development machines) a module without a .pyc beside it
    is compiled from source each time: ~4 ms of CPU per deposit, more than the module's
    execution. The image compiles at build time; this covers a worker run from a source tree.
    A directory the worker may not write (an installed package) is left as it is."""
    names = {".".join(parts[:i]) for parts in (cls.__module__.split(".") for cls in workflows)
             for i in range(1, len(parts) + 1)}
    written = []
    for name in sorted(names):
        spec = getattr(sys.modules.get(name), "__spec__", None)
        source = getattr(spec, "origin", None)
        if not source or not source.endswith(".py"):
            continue
        cached = importlib.util.cache_from_source(source)
        try:
            if os.stat(cached).st_mtime >= os.stat(source).st_mtime:
                continue
        except OSError:
            pass   # no bytecode yet
        try:
            py_compile.compile(source, cfile=cached, doraise=True)
        except (OSError, py_compile.PyCompileError) as error:
            log.info("bytecode of %s not written: %s", name, error)
            continue
        written.append(cached)
    return written


async def _connect(settings: Settings, runtime: Runtime | None = None,
                   timeout: float = 60.0) -> Client:
    # In docker-compose the worker may start while the Temporal frontend is still warming up.
    # The client's TracingInterceptor (settlepay/temporal.py) is inherited by every Worker.
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await temporal.connect(settings, runtime=runtime)
        except RuntimeError as error:  # the SDK's "connection refused" / "not ready"
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"Temporal at {settings.temporal_address} did not answer "
                                   f"within {timeout:.0f} s: {error}") from error
            log.info("waiting for Temporal at %s", settings.temporal_address)
            await asyncio.sleep(1.0)


async def run(settings: Settings, stop: asyncio.Event,
              queues: Sequence[str] | None = None) -> None:
    """Run the workers (of `queues`, or of every queue) until `stop` is set, then shut them
    down gracefully."""
    engine = build_engine(settings)
    executors: list[ThreadPoolExecutor] = []
    runtime, metrics_server, collector = None, None, None
    if settings.worker_metrics_port and settings.telemetry_enabled:
        # /metrics: the process's metrics, the database-derived ones, and the Temporal SDK's
        # (served by the runtime on a loopback port of its own, appended to each scrape).
        sdk_address = f"127.0.0.1:{_free_port()}"
        runtime = temporal.metrics_runtime(sdk_address)
        collector = metrics.DatabaseCollector(engine)
        REGISTRY.register(collector)
        try:
            metrics_server = metrics.MetricsServer(
                settings.api_host, settings.worker_metrics_port,
                extra=metrics.fetch_text(f"http://{sdk_address}/metrics")).start()
            log.info("metrics on http://%s:%d/metrics", settings.api_host, metrics_server.port)
        except OSError as error:  # the port is taken: the worker still does its work
            log.error("metrics not served on port %d: %s", settings.worker_metrics_port, error)
    try:
        client = await _connect(settings, runtime)
        added = await temporal.register_search_attributes(client)
        if added:
            log.info("registered search attributes: %s", ", ".join(added))
        log.info("reconciliation schedule: %s", await ensure_schedule(client, settings))
        workers, executors = build_workers(client, engine, settings,
                                           Providers.from_settings(settings), queues)
        if not workers:
            log.warning("nothing registered in workers/wiring.py: idle until stopped")
        runs = [asyncio.create_task(worker.run(), name=f"worker-{worker.task_queue}")
                for worker in workers]
        log.info("%s (namespace %s at %s)", READY_MESSAGE, settings.temporal_namespace,
                 settings.temporal_address)
        stopping = asyncio.create_task(stop.wait())
        # A worker that dies on its own (fatal error) stops the process too, so a supervisor
        # sees it.
        await asyncio.wait([stopping, *runs], return_when=asyncio.FIRST_COMPLETED)
        await asyncio.gather(*(worker.shutdown() for worker in workers), return_exceptions=True)
        results = await asyncio.gather(*runs, return_exceptions=True)
        stopping.cancel()
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                raise result
    finally:
        for executor in executors:
            executor.shutdown(wait=True, cancel_futures=True)
        if metrics_server is not None:
            metrics_server.stop()
        if collector is not None:
            REGISTRY.unregister(collector)
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main(settings: Settings | None = None, queues: Sequence[str] | None = None) -> int:
    settings = settings or get_settings()
    setup(settings, "settlepay-worker")  # JSON logs, tracing, instrumentation

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(settings, stop, queues)

    asyncio.run(_main())
    log.info("worker stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
