"""Group commit: many threads post single transfers; one database transaction carries a group.

Why: on a hot account every posting pays for a round trip, a PL/pgSQL call and a WAL flush.
When many threads of one process post at once (API request handlers, activity threads), the
GroupPoster gathers what arrives within `max_wait` (up to `max_batch` transfers) and posts it
with `ledger.post_many` in one transaction: one round trip and one flush for the group.

What it must never do: change a transfer's outcome. Each transfer keeps its own key, hash and
result; a rejection (insufficient funds) is the transfer's own, decided in item order. When the
group's transaction fails as a whole (a key reused with a different request, a malformed
transfer, a lost connection), every transfer of the group is posted again on its own, so the
error reaches only the caller that caused it. Results arrive only after the commit.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass

from sqlalchemy import Engine

from ledger.postings import post_many, post_now, validate
from ledger.types import PostResult, Transfer
from settlepay.db import run_in_transaction


@dataclass
class _Pending:
    transfer: Transfer
    future: Future[PostResult]


class GroupPoster:
    def __init__(self, engine: Engine, *, max_batch: int = 256, max_wait: float = 0.002,
                 flushers: int = 2) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: queue.Queue[_Pending | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._run, name=f"ledger-group-{n}", daemon=True)
                         for n in range(flushers)]
        for thread in self._threads:
            thread.start()

    def post(self, transfer: Transfer, timeout: float | None = 30.0) -> PostResult:
        """Post one transfer as part of the next group; returns after its group committed."""
        validate(transfer)  # a malformed transfer fails here, in its caller, not in a group
        pending = _Pending(transfer, Future())
        self._queue.put(pending)
        return pending.future.result(timeout)

    def close(self) -> None:
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join()

    def _collect(self, first: _Pending) -> tuple[list[_Pending], bool]:
        group, stop = [first], False
        try:
            while len(group) < self._max_batch:
                if len(group) == 1:
                    item = self._queue.get(timeout=self._max_wait)
                else:
                    item = self._queue.get_nowait()
                if item is None:
                    stop = True
                    break
                group.append(item)
        except queue.Empty:
            pass
        return group, stop

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group, stop = self._collect(first)
            self._post_group(group)
            if stop:
                return

    def _post_group(self, group: list[_Pending]) -> None:
        try:
            transfers = [p.transfer for p in group]
            results = run_in_transaction(self._engine, lambda conn: post_many(conn, transfers))
        except Exception:  # isolate the failure: each transfer on its own
            for pending in group:
                try:
                    pending.future.set_result(post_now(self._engine, pending.transfer))
                except Exception as error:  # delivered to its caller
                    pending.future.set_exception(error)
            return
        for pending, result in zip(group, results, strict=True):
            pending.future.set_result(result)
