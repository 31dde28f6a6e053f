"""A Redis server of the test's own: `redis-server` from PATH on a free port, nothing saved.

    with redis_server() as url:      # redis://127.0.0.1:<port>/0
        ...

Redis is optional for settlepay (the rate limiter's `redis` backend; PostgreSQL is the
default), so the tests that need it start their own instead of sharing a machine's server.
`SETTLEPAY_TEST_REDIS_URL` points them at a running one instead (a server without
`redis-server` on PATH).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tests.support.net import free_port


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"*1\r\n$4\r\nPING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@contextmanager
def redis_server() -> Iterator[str]:
    given = os.environ.get("SETTLEPAY_TEST_REDIS_URL")
    if given:
        yield given
        return
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("the Redis rate-limit tests need `redis-server` on PATH "
                           "(or SETTLEPAY_TEST_REDIS_URL)")
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not _answers(port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
