"""The worker entrypoint (workers/main.py) against the real Temporal dev server.

A probe capability (tests/support/probe_capability.py) is registered on a task queue of this
test's own: the worker must run its workflow and its sync activity in the thread pool with the
database engine it built, show up as a poller (what `python -m workers.health` checks), skip
queues with nothing registered, and stop gracefully when told to.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url
from temporalio.activity import defn as activity_defn

from settlepay import task_queues
from tests.support import probe_capability
from tests.support.probe_capability import ProbeWorkflow
from workers import health, wiring
from workers import main as worker_main
from workers.providers import Providers


@pytest.fixture
def worker_settings(settings, temporal_env, monkeypatch):
    queue = f"probe-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(task_queues, "ALL", (queue, f"{queue}-empty"))
    def for_queue(name: str, engine, settings, providers):  # the probe on the test's queue only
        if name != queue:
            return [], []
        return [ProbeWorkflow], probe_capability.activities(engine)

    monkeypatch.setattr(wiring, "for_queue", for_queue)
    address = temporal_env.client.service_client.config.target_host
    return settings.model_copy(update={"temporal_address": address, "worker_db_pool_size": 2,
                                       "worker_activity_threads": 4}), queue


async def test_worker_runs_registered_capabilities_and_stops_gracefully(worker_settings,
                                                                         temporal_env,
                                                                         database_url):
    settings, queue = worker_settings
    stop = asyncio.Event()
    running = asyncio.create_task(worker_main.run(settings, stop))
    try:
        result = await temporal_env.client.execute_workflow(
            ProbeWorkflow.run, "settlepay", id=f"probe-{uuid.uuid4().hex}", task_queue=queue,
            execution_timeout=timedelta(seconds=30))
        assert result["hello"] == "settlepay"
        assert result["database"] == make_url(database_url).database
        assert result["thread"].startswith(f"act-{queue}")  # the sync activity ran in the pool

        identities = await health.pollers(settings, queue)
        assert any(identity.endswith("@" + socket.gethostname()) for identity in identities)
        # Nothing registered on it: not polled.
        assert await health.pollers(settings, f"{queue}-empty") == []
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=30)
    assert running.exception() is None


async def test_worker_reports_an_unreachable_temporal_clearly(settings):
    from tests.support.net import free_port

    nowhere = settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    with pytest.raises(RuntimeError, match="did not answer within 1 s"):
        await worker_main._connect(nowhere, timeout=1.0)


def test_providers_are_built_from_settings_with_the_configured_adapters(settings):
    built = Providers.from_settings(settings)
    assert type(built.gateway).__name__ == "StripeGateway"
    assert type(built.kyc).__name__ == "HttpKycProvider"
    assert type(built.notifier).__name__ == "HttpNotifier"



@pytest.mark.parametrize("polled", [(0,), (1,), None])
async def test_a_worker_given_task_queues_polls_only_those(settings, temporal_env, monkeypatch,
                                                           polled) -> None:
    """`settlepay worker --task-queue Q`: docker-compose runs N workers per queue this way."""
    from settlepay.db import make_engine

    queues = (f"probe-{uuid.uuid4().hex[:8]}", f"probe-{uuid.uuid4().hex[:8]}")
    monkeypatch.setattr(task_queues, "ALL", queues)
    monkeypatch.setattr(wiring, "for_queue", lambda name, engine, settings, providers: (
        [ProbeWorkflow], probe_capability.activities(engine)))
    engine = make_engine(settings.sqlalchemy_url, pool_size=1, settings=settings)
    try:
        asked = None if polled is None else [queues[n] for n in polled]
        workers, executors = worker_main.build_workers(
            temporal_env.client, engine, settings, Providers.from_settings(settings), asked)
        for executor in executors:
            executor.shutdown()
        assert [worker.task_queue for worker in workers] == list(asked or queues)
    finally:
        engine.dispose()


def test_workflow_modules_get_bytecode_the_sandbox_loads_instead_of_compiling(tmp_path,
                                                                               monkeypatch):
    """The sandbox imports a workflow's module afresh for every run: under
    PYTHONDONTWRITEBYTECODE it would compile the source each time unless a .pyc is there."""
    import importlib
    import importlib.util
    import os
    import sys

    package = tmp_path / "wfpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    source = package / "flow.py"
    source.write_text("class Flow:\n    VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    flow = importlib.import_module("wfpkg.flow")
    cached = importlib.util.cache_from_source(str(source))
    assert not os.path.exists(cached)   # the import wrote none

    written = worker_main.compile_workflow_modules([flow.Flow])
    assert sorted(written) == sorted([cached, importlib.util.cache_from_source(
        str(package / "__init__.py"))])
    # A fresh import (as the sandbox's) loads the bytecode: compiling the source would fail.
    def no_compiling(*args, **kwargs):
        raise AssertionError("the source was compiled again")

    sys.modules.pop("wfpkg.flow")
    with monkeypatch.context() as patched:
        patched.setattr(importlib.machinery.SourceFileLoader, "source_to_code", no_compiling)
        assert importlib.import_module("wfpkg.flow").Flow.VALUE == 1
    assert worker_main.compile_workflow_modules([flow.Flow]) == []   # fresh: nothing to do

    source.write_text("class Flow:\n    VALUE = 2\n")   # changed: written again
    os.utime(source, (os.stat(cached).st_mtime + 5,) * 2)
    assert worker_main.compile_workflow_modules([flow.Flow]) == [cached]
    sys.modules.pop("wfpkg.flow"), sys.modules.pop("wfpkg")


# --- the workflow sandbox (workers.main.workflow_runner) -------------------------------------

WORKFLOW_MODULES = ("workflows.deposit", "workflows.kyc", "workflows.settlement",
                    "workflows.withdrawal", "workflows.reconciliation")
FIRST_PARTY = ("activities", "adapters", "api", "audit", "checks", "commands", "compliance",
               "domain", "ledger", "outbox", "reconciliation", "sandboxes", "settlepay", "store",
               "webhooks", "workers", "workflows")
MUTABLE = (list, dict, set, bytearray)


def _imported_by_workflows() -> list[str]:
    """The first-party modules importing the workflow modules loads (a fresh interpreter)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    script = (f"import json, sys\nimport {', '.join(WORKFLOW_MODULES)}\n"
              f"print(json.dumps(sorted(m for m in sys.modules "
              f"if m.split('.')[0] in {FIRST_PARTY!r})))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1], check=True)
    return json.loads(done.stdout)


def test_every_module_the_workflows_share_across_runs_holds_no_mutable_state():
    """workflow_runner passes every module through the sandbox: a workflow module, and what it
    imports, is loaded once per worker, not once per run. So none may hold state a run could
    leave for the next: no mutable container at module or class level (enum and pydantic
    internals, named with a leading underscore or model_config, are the frameworks')."""
    import importlib
    import inspect

    modules = _imported_by_workflows()
    assert set(WORKFLOW_MODULES) <= set(modules)
    # Definitions only (import-linter holds the workflows to this too).
    assert {m for m in modules if not m.startswith("workflows")} <= {
        "settlepay", "settlepay.search_attributes", "settlepay.task_queues"}, modules
    found = []
    for name in modules:
        module = importlib.import_module(name)
        for key, value in vars(module).items():
            if key.startswith("_"):
                continue
            if isinstance(value, MUTABLE):
                found.append(f"{name}.{key}")
            if inspect.isclass(value) and value.__module__ == name:
                found += [f"{name}.{key}.{attribute}" for attribute, held in vars(value).items()
                          if not attribute.startswith("_") and attribute != "model_config"
                          and isinstance(held, MUTABLE)]
    assert found == [], "mutable state shared by every run of a workflow"


async def test_the_workers_sandbox_still_refuses_what_would_break_determinism(temporal_env):
    """Passing modules through leaves Temporal's call restrictions in force: a workflow that
    reads the wall clock fails (here: its task error is made the workflow's failure)."""
    from temporalio.client import WorkflowFailureError
    from temporalio.worker import Worker
    from temporalio.worker.workflow_sandbox import RestrictedWorkflowAccessError

    from tests.support.probe_capability import ClockReadingWorkflow

    queue = f"sandbox-{uuid.uuid4().hex[:8]}"
    async with Worker(temporal_env.client, task_queue=queue, workflows=[ClockReadingWorkflow],
                      workflow_runner=worker_main.workflow_runner(),
                      workflow_failure_exception_types=[RestrictedWorkflowAccessError]):
        with pytest.raises(WorkflowFailureError) as failed:
            await temporal_env.client.execute_workflow(
                ClockReadingWorkflow.run, id=f"clock-{uuid.uuid4().hex}", task_queue=queue,
                execution_timeout=timedelta(seconds=30))
    assert "datetime.datetime.now" in str(failed.value.cause)


def test_settlepays_converter_takes_no_serialization_context(settings):
    """workflow_runner's runs answer the worker's serialization-context questions without
    entering the sandbox (ContextFreeSandboxedRunner), which is right only while the data
    converter converts every payload alike whatever the context: a codec, converter or
    external store that takes a context must come with the SDK's answers back."""
    from temporalio.converter import ActivitySerializationContext, WorkflowSerializationContext

    from settlepay import codec

    converter = codec.data_converter(settings)
    contexts = [WorkflowSerializationContext(namespace="default", workflow_id="deposit-dep_1")] + [
        ActivitySerializationContext(
            namespace="default", workflow_id="deposit-dep_1", workflow_type="Deposit",
            activity_type="deposit.check_gates", activity_id="1", activity_task_queue="q",
            is_local=is_local) for is_local in (True, False)]
    for context in contexts:
        assert converter.with_context(context) is converter
    assert converter.external_storage is None


async def test_the_workers_runs_answer_contexts_outside_the_sandbox_only_when_none_is_taken(
        temporal_env):
    """With settlepay's converter a run is the context-free one (and runs its workflow and
    activity as before); with a payload converter that takes a context, the SDK's sandboxed
    run is kept, so that converter gets each command's context."""
    from temporalio.client import Client
    from temporalio.converter import (
        ActivitySerializationContext,
        DataConverter,
        DefaultPayloadConverter,
    )
    from temporalio.worker import Worker

    seen: list[object] = []

    class ContextTakingConverter(DefaultPayloadConverter):
        def with_context(self, context):
            seen.append(context)
            return ContextTakingConverter()

    made: list[object] = []

    class Recording(worker_main.ContextFreeSandboxedRunner):
        def create_instance(self, det):
            instance = super().create_instance(det)
            if det.info.workflow_id.startswith("probe-"):   # not the worker's validation at start
                made.append(instance)
            return instance

    @activity_defn(name="probe")
    def probe(name: str) -> dict[str, str]:
        return {"hello": name}

    other = Client(temporal_env.client.service_client, namespace=temporal_env.client.namespace,
                   data_converter=DataConverter(payload_converter_class=ContextTakingConverter))
    for client, context_free in ((temporal_env.client, True), (other, False)):
        queue = f"contexts-{uuid.uuid4().hex[:8]}"
        made.clear()
        runner = Recording(restrictions=worker_main.workflow_runner().restrictions)
        async with Worker(client, task_queue=queue, workflows=[ProbeWorkflow],
                          activities=[probe], workflow_runner=runner,
                          activity_executor=ThreadPoolExecutor(2)):
            result = await client.execute_workflow(
                ProbeWorkflow.run, "settlepay", id=f"probe-{uuid.uuid4().hex}",
                task_queue=queue, execution_timeout=timedelta(seconds=30))
        assert result == {"hello": "settlepay"}
        assert len(made) == 1
        assert isinstance(made[0], worker_main._ContextFreeInstance) == context_free
    assert any(isinstance(c, ActivitySerializationContext) for c in seen)
