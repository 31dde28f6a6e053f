"""One HTTP attempt: POST the signed body to the address the SSRF guard checked.

    sender = Sender(guard, timeout_seconds=15.0, clients=128)
    answer = await sender.send(url, headers, body)   # Answer(status_code, body, error, ...)

Never raises for what the receiver does: a refused address, a connection error or a timeout
is an `Answer` with no status code and an `error`. Redirects are answers too (3xx, never
followed). Only the first 20 kB of a response body is read. The client ignores proxy
variables of the environment (`trust_env=False`): a proxy would connect to the name itself and
undo the guard's pinning.
Must never: follow a redirect, or connect anywhere but `Target.pinned_url`.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
import time
from dataclasses import dataclass

import httpx

# httpcore asks `import sniffio` on every request; where sniffio is not installed that is a
# failed import, a walk of sys.path each time (~1 ms of CPU per delivery, measured). Recording
# the absence once makes the same ImportError immediate; nothing else changes.
if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
    sys.modules["sniffio"] = None  # type: ignore[assignment]

from webhooks.ssrf import Guard, Refused

BODY_READ_MAX = 20 * 1024
KEEP_ALIVE_PER_CLIENT = 4


@dataclass(frozen=True)
class Answer:
    status_code: int | None         # None: no HTTP answer
    body: str                       # the first 20 kB, decoded
    error: str | None               # why it is not a success, in words (None: 2xx)
    retry_after: str | None         # the Retry-After header as sent
    duration_ms: int


class Sender:
    """`clients` small httpx clients, each sending one request at a time: httpx's connection
    pool scans all its connections for every request, so one big shared pool costs more CPU
    per delivery as concurrency grows (measured 4-5x slower at 64 in flight, bench/webhooks.py).
    Each client keeps a few keep-alive connections of its own."""

    def __init__(self, guard: Guard, *, timeout_seconds: float, clients: int = 64) -> None:
        self.guard = guard
        self.timeout_seconds = timeout_seconds
        tls = httpx.create_ssl_context(trust_env=False)   # one for all: ~20 ms each to make
        self._all = [httpx.AsyncClient(
            follow_redirects=False, trust_env=False, timeout=timeout_seconds, verify=tls,
            limits=httpx.Limits(max_connections=KEEP_ALIVE_PER_CLIENT,
                                max_keepalive_connections=KEEP_ALIVE_PER_CLIENT))
            for _ in range(max(1, clients))]
        self._free: asyncio.Queue[httpx.AsyncClient] = asyncio.Queue()
        for client in self._all:
            self._free.put_nowait(client)

    async def aclose(self) -> None:
        for client in self._all:
            await client.aclose()

    async def send(self, url: str, headers: dict[str, str], body: bytes) -> Answer:
        client = await self._free.get()
        try:
            return await self._send(client, url, headers, body)
        finally:
            self._free.put_nowait(client)

    async def _send(self, client: httpx.AsyncClient, url: str, headers: dict[str, str],
                    body: bytes) -> Answer:
        started = time.monotonic()

        def elapsed() -> int:
            return int((time.monotonic() - started) * 1000)

        try:
            async with asyncio.timeout(self.timeout_seconds):
                target = await self.guard.target(url)
                extensions = {"sni_hostname": target.host} if target.scheme == "https" else None
                async with client.stream(
                        "POST", target.pinned_url, content=body,
                        headers={**headers, "host": target.host_header},
                        extensions=extensions) as response:
                    text = await _read_some(response)
                    return Answer(response.status_code, text, _error_of(response),
                                  response.headers.get("retry-after"), elapsed())
        except Refused as refused:
            return Answer(None, "", f"address refused: {refused.reason}", None, elapsed())
        except TimeoutError:
            return Answer(None, "", f"timed out after {self.timeout_seconds:g} s", None,
                          elapsed())
        except httpx.HTTPError as error:
            return Answer(None, "", f"{type(error).__name__}: {error}"[:500], None, elapsed())


async def _read_some(response: httpx.Response) -> str:
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= BODY_READ_MAX:
            break
    return b"".join(chunks)[:BODY_READ_MAX].decode("utf-8", errors="replace")


def _error_of(response: httpx.Response) -> str | None:
    status = response.status_code
    if 200 <= status < 300:
        return None
    if 300 <= status < 400:
        location = response.headers.get("location", "")
        return f"HTTP {status}: redirect not followed" + (f" (to {location})"[:300]
                                                           if location else "")
    return f"HTTP {status}"
