"""api/threads.py run_sync: a request's blocking work on a thread, in the request's context."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from api.threads import run_sync

_SEEN: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="none")


async def test_the_function_runs_on_another_thread_in_the_callers_context():
    _SEEN.set("request-1")
    caller = threading.get_ident()

    def work(a: int, b: int) -> tuple[str, bool, int]:
        _SEEN.set("changed in the thread")   # a copy: the caller's value stays
        return "request-1", threading.get_ident() != caller, a + b

    seen_before = await run_sync(lambda: _SEEN.get())
    assert seen_before == "request-1"
    assert await run_sync(work, 2, 3) == ("request-1", True, 5)
    assert _SEEN.get() == "request-1"


async def test_an_exception_reaches_the_caller():
    def fails() -> None:
        raise LookupError("no such row")

    with pytest.raises(LookupError, match="no such row"):
        await run_sync(fails)


async def test_a_cancelled_caller_waits_for_the_function_to_finish():
    started, release = threading.Event(), threading.Event()
    finished: list[str] = []

    def transaction() -> None:
        started.set()
        release.wait(5)
        finished.append("committed")

    task = asyncio.create_task(run_sync(transaction))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    task.cancel()
    await asyncio.sleep(0.05)
    assert not task.done()   # still waiting for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert finished == ["committed"]
