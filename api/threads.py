"""Blocking work (a database transaction) of a request on a thread, for the hot routes.

    row = await run_sync(run_in_transaction, engine, work)

What Starlette's `run_in_threadpool` (anyio's `to_thread.run_sync`) does, with ~80 fewer
Python calls per hop on the event loop's thread (anyio looks up its backend, its capacity
limiter and a cancel scope for every call): the function runs on a pool of `MAX_THREADS`
threads (anyio's default limit) in a copy of the caller's context (the request's trace, log
ids and API version), and a caller cancelled while it runs still waits for it to finish (a
transaction is never left running behind a request that has been answered), then is
cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
MAX_THREADS = 40

_EXECUTOR = ThreadPoolExecutor(max_workers=MAX_THREADS, thread_name_prefix="api-work")


async def run_sync(function: Callable[..., T], *args: Any,
                   executor: ThreadPoolExecutor = _EXECUTOR) -> T:
    """`function(*args)` on `executor` (the hot routes' pool unless a caller keeps its own
    bounded one), in a copy of the caller's context; a cancelled caller still waits for it."""
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(
        executor, functools.partial(context.run, function, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise
