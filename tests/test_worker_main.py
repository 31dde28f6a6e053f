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
from datetime import timedelta

import pytest
from sqlalchemy.engine import make_url

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
