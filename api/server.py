"""Serving the API with uvicorn (`python -m api`; `settlepay api` does the same).

`Settings.api_processes` (SETTLEPAY_API_PROCESSES) processes serve one listening socket: one
process runs the app in itself; more are uvicorn's supervisor and its worker processes, each
with its own app, database pool and Temporal client. They share everything that matters through
PostgreSQL (Idempotency-Key records, rate-limit buckets), so any process answers any request.
A worker process reads its settings from the environment (it is a fresh interpreter).
Their metrics are summed: the supervisor gives this run a fresh metrics directory
(PROMETHEUS_MULTIPROC_DIR, removed at the end) and marks dead processes in it, so `/metrics`,
whichever process answers it, counts the requests of all (settlepay/observability/metrics.py).
"""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from api.app import create_app
from settlepay.config import Settings, get_settings
from settlepay.observability import metrics, setup

SERVICE = "settlepay-api"


def app_from_environment() -> FastAPI:
    """The app of one worker process of several (uvicorn's factory): settings from the
    environment, this process's logs, tracing and metrics set up first."""
    settings = get_settings()
    setup(settings, SERVICE)
    return create_app(settings)


def serve(settings: Settings | None = None, *, host: str | None = None,
          port: int | None = None, processes: int | None = None) -> None:
    settings = settings or get_settings()
    processes = processes or settings.api_processes
    if processes < 1:
        raise ValueError(f"SETTLEPAY_API_PROCESSES must be at least 1, not {processes}")
    setup(settings, SERVICE)   # JSON logs, tracing, instrumentation (before the app)
    # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes requests, runs the lifespan
    # (with several processes the supervisor passes the signal on to each and waits for them).
    # Its loggers go to the JSON handler (log_config=None); the request line with its trace id
    # is api/telemetry.py's, so uvicorn's access log is off.
    options = {"host": host or settings.api_host, "port": port or settings.api_port,
               "log_level": settings.log_level.lower(), "log_config": None, "access_log": False}
    if processes == 1:
        uvicorn.run(create_app(settings), **options)
    else:   # the processes' metrics summed through a directory of this run (/metrics)
        with metrics.multiprocess_directory():
            uvicorn.run("api.server:app_from_environment", factory=True, workers=processes,
                        **options)
