"""The worker processes of an API served by uvicorn's supervisor (SETTLEPAY_API_PROCESSES > 1),
and forcing which one answers: the others are stopped (SIGSTOP), never for long, since the
supervisor replaces a worker that misses its 5 s health check."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx


def worker_processes(supervisor: int) -> list[int]:
    """The worker processes `supervisor` spawned (multiprocessing's spawn_main)."""
    found = []
    for task in Path(f"/proc/{supervisor}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:   # gone meanwhile
                continue
            if b"spawn_main" in cmdline:
                found.append(int(child))
    return found


@contextmanager
def stopped(*pids: int) -> Iterator[None]:
    """These processes stopped while the block runs, resumed after (one the supervisor replaced
    meanwhile has nothing to resume)."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass


def wait_each_answering(url: str, workers: list[int], timeout: float = 120.0) -> None:
    """Wait until each of `workers` answers `url/healthz` on its own, the others stopped one
    short probe at a time."""
    for pid in workers:
        others = [other for other in workers if other != pid]
        deadline = time.monotonic() + timeout
        while True:
            with stopped(*others):
                try:
                    if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"process {pid} never answered {url} on its own")
            time.sleep(0.3)
