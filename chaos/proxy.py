"""A small TCP fault proxy of the project's own (toxiproxy and tc netem are not available here).

One `FaultProxy` listens on a loopback port and forwards every connection to its upstream (a
TCP address or a Unix socket). The chaos run puts one between the processes and each of
PostgreSQL, Temporal and the Stripe sandbox, and turns faults on and off on its schedule:

  latency   each forwarded chunk waits a random 0..`latency_ms` ms (the proxy's seeded RNG);
  reset     every open connection is reset (RST, not FIN) and, while the fault lasts, new
            connections are reset as soon as they are accepted;
  stall     bytes stop flowing both ways (connections stay open) until the fault ends.

The proxy runs its own asyncio loop in a daemon thread, so the synchronous orchestrator can
drive it. It must never change a byte it forwards: it only delays, stops or cuts.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import threading
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass, field

CHUNK_BYTES = 65536


@dataclass
class Faults:
    latency_ms: int = 0
    reset: bool = False
    stall: bool = False


@dataclass
class Upstream:
    host: str = "127.0.0.1"
    port: int = 0
    unix_path: str | None = None

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.unix_path is not None:
            return await asyncio.open_unix_connection(self.unix_path)
        return await asyncio.open_connection(self.host, self.port)


@dataclass(eq=False)
class _Link:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with SO_LINGER 0: the peer sees ECONNRESET, as after a network failure."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
    writer.transport.abort()


class FaultProxy:
    def __init__(self, name: str, upstream: Upstream, *, seed: int = 0,
                 listen_port: int = 0) -> None:
        self.name = name
        self.upstream = upstream
        self.listen_port = listen_port
        self.faults = Faults()
        self.counts: Counter[str] = Counter()
        self._rng = random.Random(seed)
        self._links: set[_Link] = set()
        self._flowing: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # --- the synchronous face ------------------------------------------------------------
    def start(self) -> int:
        """Start listening; returns the port."""
        ready: Future[int] = Future()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=f"proxy-{self.name}")
        self._thread.start()
        self.listen_port = ready.result(timeout=10)
        return self.listen_port

    def stop(self) -> None:
        if self._loop is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._loop = None

    def set_faults(self, *, latency_ms: int = 0, reset: bool = False,
                   stall: bool = False) -> None:
        """Replace the current faults (all off = pass-through)."""
        assert self._loop is not None, "proxy not started"
        self._call(self._apply, Faults(latency_ms, reset, stall))

    def clear(self) -> None:
        self.set_faults()

    @property
    def open_connections(self) -> int:
        return len(self._links)

    # --- the loop --------------------------------------------------------------------------
    def _call(self, fn: object, *args: object) -> None:
        assert self._loop is not None

        async def run() -> None:
            fn(*args)  # type: ignore[operator]

        asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=10)

    def _run(self, ready: Future[int]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._flowing = asyncio.Event()
            self._flowing.set()
            self._server = loop.run_until_complete(asyncio.start_server(
                self._accept, "127.0.0.1", self.listen_port))
            ready.set_result(self._server.sockets[0].getsockname()[1])
        except BaseException as error:  # the port is taken: tell the caller
            ready.set_exception(error)
            return
        loop.run_forever()
        loop.close()

    def _apply(self, faults: Faults) -> None:
        assert self._flowing is not None
        self.faults = faults
        if faults.latency_ms:
            self.counts["latency_windows"] += 1
        if faults.stall:
            self.counts["stalls"] += 1
            self._flowing.clear()
        else:
            self._flowing.set()
        if faults.reset:
            self.counts["reset_windows"] += 1
            for link in list(self._links):
                self._cut(link)

    def _cut(self, link: _Link) -> None:
        self.counts["connections_reset"] += 1
        _reset(link.client)
        if link.server is not None:
            _reset(link.server)
        for task in link.tasks:
            task.cancel()
        self._links.discard(link)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            self._cut(link)

    async def _accept(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        link = _Link(client=writer)
        if self.faults.reset:
            self._cut(link)
            return
        try:
            up_reader, up_writer = await self.upstream.connect()
        except OSError:
            self.counts["upstream_refused"] += 1
            _reset(writer)
            return
        link.server = up_writer
        self._links.add(link)
        link.tasks = [asyncio.create_task(self._pipe(reader, up_writer, link)),
                      asyncio.create_task(self._pipe(up_reader, writer, link))]
        await asyncio.gather(*link.tasks, return_exceptions=True)
        if link in self._links:
            self._links.discard(link)
            for w in (writer, up_writer):
                w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    link: _Link) -> None:
        assert self._flowing is not None
        try:
            while True:
                data = await reader.read(CHUNK_BYTES)
                if not data:
                    break
                if self.faults.latency_ms:
                    await asyncio.sleep(self._rng.uniform(0, self.faults.latency_ms) / 1000)
                    self.counts["chunks_delayed"] += 1
                if not self._flowing.is_set():
                    self.counts["chunks_stalled"] += 1
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (OSError, asyncio.IncompleteReadError):
            if link in self._links:  # one side broke: the other side sees it broken too
                self._links.discard(link)
                _reset(link.client)
                if link.server is not None:
                    _reset(link.server)
