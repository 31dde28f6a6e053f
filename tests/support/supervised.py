"""The worker processes of an API served by uvicorn's supervisor (SETTLEPAY_API_PROCESSES > 1),
and forcing which one answers: the others are stopped (SIGSTOP), never for long, since the
supervisor replaces a worker that misses its 5 s health check."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from settlepay.config import Settings
from tests.support.net import free_port, wait_http

ROOT = Path(__file__).resolve().parents[2]


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


@contextmanager
def supervised_api(settings: Settings, **environment: str) -> Iterator[tuple[str, subprocess.Popen,
                                                                          list[int]]]:
    """`settlepay api` with 2 processes on a free port against `settings`' database and Temporal,
    `environment` added: (url, supervisor, workers) once each worker answers on its own."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT),
           "SETTLEPAY_DATABASE_URL": settings.database_url,
           "SETTLEPAY_TEMPORAL_ADDRESS": settings.temporal_address,
           "SETTLEPAY_API_PROCESSES": "2", "SETTLEPAY_API_DB_POOL_SIZE": "2",
           "SETTLEPAY_LOG_LEVEL": "WARNING", **environment}
    proc = subprocess.Popen([sys.executable, "-m", "settlepay.cli", "api", "--port", str(port)],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", timeout=60)
        workers = worker_processes(proc.pid)
        wait_each_answering(url, workers)
        yield url, proc, workers
    finally:
        proc.terminate()
        proc.wait(timeout=30)
