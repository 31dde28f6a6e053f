"""A Redis server for the tests: their own, or a running one under a private key prefix.

    with redis_for_tests() as redis:      # redis.url, redis.key_prefix, redis.shared
        buckets = RedisBuckets(redis.url, key_prefix=redis.key_prefix)
    with redis_server() as url:           # the URL only (bench/rate_limit.py)

Redis is optional for settlepay (the rate limiter's `redis` backend; PostgreSQL is the
default). Where the tests find one, in this order:
1. `SETTLEPAY_TEST_REDIS_URL`: a running server named by the machine (it must answer);
2. `redis-server` on PATH: a server of the test's own on a free port, nothing saved, stopped
   after;
3. a running server at 127.0.0.1:6379 (the machine's own, e.g. a CI service).
On a running server (1 and 3) every key the tests write starts with a prefix of their own
(`settlepay-test:<random>:`) and is deleted when the block ends, so the tests neither see nor
leave anything of another user. With none of the three, RuntimeError says what to install or
set: a test that needs Redis fails, it is never skipped.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlparse

from tests.support.net import free_port

ENV = "SETTLEPAY_TEST_REDIS_URL"
MACHINE_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class RedisForTests:
    url: str
    key_prefix: str       # every key of the tests starts with it
    shared: bool          # a running server (keys deleted after), not the test's own


class Connection:
    """Just enough RESP over a blocking socket to ping, scan and delete (no client library)."""

    def __init__(self, url: str, timeout: float = 1.0) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            raise RuntimeError(f"{url!r} is not a redis:// URL")
        self.socket = socket.create_connection((parsed.hostname or "127.0.0.1",
                                                parsed.port or 6379), timeout=timeout)
        self.reader = self.socket.makefile("rb")
        if parsed.password:
            self.call("AUTH", unquote(parsed.password))
        if parsed.path.strip("/"):
            self.call("SELECT", parsed.path.strip("/"))

    def call(self, *parts: str) -> Any:
        out = [f"*{len(parts)}\r\n".encode()]
        for part in parts:
            data = part.encode()
            out.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.socket.sendall(b"".join(out))
        return self._reply()

    def _reply(self) -> Any:
        line = self.reader.readline()
        if not line.endswith(b"\r\n"):
            raise OSError("connection closed")
        kind, rest = line[:1], line[1:-2]
        if kind == b"-":
            raise OSError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.reader.read(size + 2)[:-2].decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._reply() for _ in range(size)]
        return rest.decode()

    def close(self) -> None:
        self.reader.close()
        self.socket.close()


def answers(url: str) -> bool:
    """Whether a Redis server at `url` answers PING (with its password and database)."""
    try:
        connection = Connection(url, timeout=0.5)
    except OSError:
        return False
    try:
        return connection.call("PING") == "PONG"
    except OSError:
        return False
    finally:
        connection.close()


def delete_prefixed(url: str, key_prefix: str) -> int:
    """Delete every key starting with `key_prefix`; how many there were."""
    connection = Connection(url)
    deleted, cursor = 0, "0"
    try:
        while True:
            cursor, found = connection.call("SCAN", cursor, "MATCH", f"{key_prefix}*",
                                            "COUNT", "1000")
            if found:
                deleted += connection.call("DEL", *found)
            if cursor == "0":
                return deleted
    finally:
        connection.close()


@contextmanager
def _own_server(binary: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on port {port}")
            time.sleep(0.02)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def _shared(url: str) -> Iterator[RedisForTests]:
    redis = RedisForTests(url, f"settlepay-test:{uuid.uuid4().hex[:12]}:", shared=True)
    try:
        yield redis
    finally:
        delete_prefixed(url, redis.key_prefix)


@contextmanager
def redis_for_tests() -> Iterator[RedisForTests]:
    given = os.environ.get(ENV)
    if given:
        if not answers(given):
            raise RuntimeError(f"{ENV}={given!r} names no Redis server that answers PING")
        with _shared(given) as redis:
            yield redis
        return
    binary = shutil.which("redis-server")
    if binary is not None:
        with _own_server(binary) as url:
            yield RedisForTests(url, f"settlepay-test:{uuid.uuid4().hex[:12]}:", shared=False)
        return
    if answers(MACHINE_URL):
        with _shared(MACHINE_URL) as redis:
            yield redis
        return
    raise RuntimeError("the Redis tests need a Redis server: install redis-server (on PATH), "
                       f"run one at 127.0.0.1:6379, or set {ENV}=redis://host:port/db")


@contextmanager
def redis_server() -> Iterator[str]:
    """The URL of a Redis server found as `redis_for_tests` does (keys under the caller's own
    unique names on a shared one: bench/rate_limit.py's bucket is a fresh uuid that expires)."""
    with redis_for_tests() as redis:
        yield redis.url
