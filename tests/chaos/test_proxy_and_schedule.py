"""The chaos run's own parts, fast: the fault proxy forwards, delays, stalls and resets real
TCP connections, and the seeded schedule is replayable and holds every fault of the issue."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from chaos import schedule
from chaos.proxy import FaultProxy, Upstream


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(1024):
            writer.write(data)
            await writer.drain()
    except ConnectionResetError:  # the proxy's reset reached the server side too
        pass
    writer.close()


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    """An echo server on a loopback port behind a fault proxy."""
    upstream = FaultProxy("echo-host", Upstream(port=1))   # only for its loop thread
    upstream.start()
    assert upstream._loop is not None
    server = asyncio.run_coroutine_threadsafe(
        asyncio.start_server(_echo, "127.0.0.1", 0), upstream._loop).result(5)
    port = server.sockets[0].getsockname()[1]
    proxy = FaultProxy("echo", Upstream(port=port), seed=7)
    proxy.start()
    yield proxy
    proxy.stop()
    upstream._loop.call_soon_threadsafe(server.close)
    upstream.stop()


def _connect(proxy: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", proxy.listen_port), timeout=5)
    return sock


def _roundtrip(sock: socket.socket, payload: bytes = b"ping") -> bytes:
    sock.sendall(payload)
    received = b""
    while len(received) < len(payload):
        chunk = sock.recv(1024)
        if not chunk:
            break
        received += chunk
    return received


def test_the_proxy_forwards_bytes_unchanged(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _roundtrip(sock, b"x" * 5000) == b"x" * 5000
    assert proxy.counts["connections"] == 1


def test_latency_delays_but_never_changes_the_bytes(proxy: FaultProxy) -> None:
    proxy.set_faults(latency_ms=100)
    with _connect(proxy) as sock:
        assert _roundtrip(sock) == b"ping"
    assert proxy.counts["chunks_delayed"] >= 2


def test_a_stall_holds_the_bytes_until_it_ends(proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _roundtrip(sock) == b"ping"
        proxy.set_faults(stall=True)
        sock.sendall(b"held")
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(16)
        proxy.clear()
        sock.settimeout(5)
        assert sock.recv(16) == b"held"


def test_a_reset_cuts_open_connections_and_refuses_new_ones_while_it_lasts(
        proxy: FaultProxy) -> None:
    with _connect(proxy) as sock:
        assert _roundtrip(sock) == b"ping"
        proxy.set_faults(reset=True)
        with pytest.raises((ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
            sock.sendall(b"after")   # may already meet the RST; else the read waits for it
            if sock.recv(16) == b"":
                raise ConnectionResetError("closed")
    # A new connection is reset at once: during the connect itself, the send or the read.
    with pytest.raises((ConnectionResetError, BrokenPipeError)), _connect(proxy) as sock:
        sock.sendall(b"new")
        if sock.recv(16) == b"":
            raise ConnectionResetError("closed")
    proxy.clear()
    with _connect(proxy) as sock:
        assert _roundtrip(sock) == b"ping"
    assert proxy.counts["connections_reset"] >= 2


def test_the_same_seed_gives_the_same_schedule_and_another_seed_another() -> None:
    assert schedule.build(42, 300) == schedule.build(42, 300)
    assert schedule.build(42, 300) != schedule.build(43, 300)


@pytest.mark.parametrize("seconds", [60.0, 300.0])
def test_every_fault_of_the_issue_happens_inside_the_fault_window(seconds: float) -> None:
    faults = schedule.build(1, seconds)
    assert set(schedule.fault_names()) <= {fault.name for fault in faults}
    assert [f.at_seconds for f in faults] == sorted(f.at_seconds for f in faults)
    assert all(0 < f.at_seconds < seconds * schedule.FAULT_FRACTION for f in faults)
    latencies = [f.params["latency_ms"] for f in faults
                 if f.kind == "proxy" and f.mode == "latency"]
    assert latencies and all(0 <= ms <= 500 for ms in latencies)
