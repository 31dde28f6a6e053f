"""Free loopback ports for processes this project starts itself (tests, `make chaos`, benches).

A port taken by binding port 0 comes from the kernel's ephemeral range (32768-60999 on Linux),
the same range the kernel hands out to every outgoing connection's local end and to every other
program that binds port 0 — the Temporal dev server picks its own internal ports that way. Such
a port is free when it is chosen and may be someone else's a moment later, before the child
process that was meant to listen on it has started: a flaky "address already in use". So ports
are chosen below the ephemeral range, where the kernel never assigns one on its own, checked by
binding, and never handed out twice by one process.
"""

from __future__ import annotations

import random
import socket
import threading

LOW, HIGH = 20_000, 32_767      # below Linux's default ephemeral range (ip_local_port_range)

_given: set[int] = set()
_lock = threading.Lock()
_random = random.SystemRandom()


def free_port() -> int:
    """A loopback port nobody listens on now, outside the kernel's ephemeral range."""
    with _lock:
        for _ in range(1_000):
            port = _random.randint(LOW, HIGH)
            if port in _given:
                continue
            with socket.socket() as probe:
                try:
                    probe.bind(("127.0.0.1", port))
                except OSError:
                    continue
            _given.add(port)
            return port
    raise RuntimeError(f"no free loopback port between {LOW} and {HIGH}")
