"""Serving the API with uvicorn (`python -m api`; `settlepay api` does the same)."""

from __future__ import annotations

import uvicorn

from api.app import create_app
from settlepay.config import Settings, get_settings
from settlepay.observability import setup


def serve(settings: Settings | None = None, *, host: str | None = None,
          port: int | None = None) -> None:
    settings = settings or get_settings()
    setup(settings, "settlepay-api")   # JSON logs, tracing, instrumentation (before the app)
    # uvicorn handles SIGINT/SIGTERM: it stops accepting, finishes requests, runs the lifespan.
    # Its loggers go to the JSON handler (log_config=None); the request line with its trace id
    # is api/telemetry.py's, so uvicorn's access log is off.
    uvicorn.run(create_app(settings), host=host or settings.api_host,
                port=port or settings.api_port, log_level=settings.log_level.lower(),
                log_config=None, access_log=False)
