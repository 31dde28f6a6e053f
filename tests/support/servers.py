"""Running an ASGI app (the API, a provider sandbox) on a real port in a background thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from tests.support.net import free_port


@contextmanager
def serve_asgi(app, port: int | None = None) -> Iterator[str]:
    """Serve `app` over real HTTP on 127.0.0.1; yields its base URL, stops it on exit."""
    port = port or free_port()
    # Keep-alive well above any pause a loaded 2-core machine makes between two requests of one
    # client: with uvicorn's 5 s default, a server closing an idle connection just as the client
    # reuses it shows up as a ReadError that has nothing to do with the code under test.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                            timeout_keep_alive=120)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
