"""The stack of a chaos run: `settlepay dev`'s recipe on free loopback ports, with fault proxies
between the processes and PostgreSQL, Temporal and the Stripe sandbox, and a PostgreSQL
server of the run's own (pgserver's binaries, initdb in a temporary folder), so that it can be
SIGKILLed. It must never kill or write to a server the run did not start: the machine's shared
PostgreSQL is not touched at all.

Reuses settlepay.devstack.DevStack (Temporal, sandboxes, worker, webhook dispatcher, API, the
development key) and settlepay.processes.Supervisor (process groups, logs, kill/stop).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
import psycopg
from temporalio.client import Client

from chaos.proxy import FaultProxy, Upstream
from settlepay import migrate
from settlepay.config import ENV_PREFIX, Settings
from settlepay.devstack import ROOT, SANDBOXES, TIMEOUTS, DevStack, _http_ok
from settlepay.ports import free_port
from settlepay.processes import Child

DATABASE = "settlepay"
# A real KYC provider retries a verdict webhook for hours; the sandbox, by default, 5 times in
# about 6 s, shorter than the API's SIGKILL + restart in a run (~10 s): a verdict sent then was
# lost and its case waited in `documents` until the 24 h document timeout (seed 1, 3 players).
KYC_WEBHOOK_RETRY_SECONDS = 600.0
PORT_FIELDS = ["temporal_ui_port", "api_port", "codec_server_port", "worker_metrics_port",
               *[field for _, field in SANDBOXES]]


def chaos_settings(data_dir: Path) -> Settings:
    """Settings of the run: every port free and loopback, everything under `data_dir`."""
    ports = {name: free_port() for name in PORT_FIELDS}
    return Settings(data_dir=data_dir, temporal_address=f"127.0.0.1:{free_port()}",
                    database_url="", **ports)


@dataclass
class Recipe:
    """How to (re)start one child: its argv, env and how to know it is ready."""
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[Child], bool]
    timeout: float


class ChaosStack(DevStack):
    def __init__(self, data_dir: Path, seed: int, out: IO[str] | None = None) -> None:
        super().__init__(chaos_settings(data_dir), out=out)
        self.seed = seed
        self.postgres_port = free_port()
        self.proxies: dict[str, FaultProxy] = {}
        self.recipes: dict[str, Recipe] = {}
        self.current: dict[str, Child] = {}
        self.restarts: dict[str, list[float]] = {}   # name -> seconds each restart took
        # Children are forked from this one thread, alive for the whole run: the kernel sends
        # a child its parent-death signal (settlepay.processes) when the THREAD that forked it
        # ends, so a restart forked from the fault thread would be SIGTERMed when it finishes.
        self.forker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chaos-fork")

    # --- proxies ---------------------------------------------------------------------------
    def start_proxies(self) -> None:
        host, port = self.settings.temporal_address.rsplit(":", 1)
        upstreams = {"postgres": Upstream(port=self.postgres_port),
                     "temporal": Upstream(host=host, port=int(port)),
                     "stripe": Upstream(port=self.settings.sandbox_stripe_port)}
        for offset, (name, upstream) in enumerate(upstreams.items()):
            proxy = FaultProxy(name, upstream, seed=self.seed * 10 + offset)
            proxy.start()
            self.started.callback(proxy.stop)
            self.proxies[name] = proxy
            self.say(f"fault proxy {name}: 127.0.0.1:{proxy.listen_port} -> {upstream}")

    @property
    def proxied_database_url(self) -> str:
        return (f"postgresql://postgres@127.0.0.1:{self.proxies['postgres'].listen_port}"
                f"/{DATABASE}")

    def child_env(self) -> dict[str, str]:
        """The processes reach PostgreSQL, Temporal and the gateway through the proxies."""
        env = super().child_env()
        # The KYC sandbox addresses its verdicts to api_host:api_port (no URL setting to move).
        env[f"{ENV_PREFIX}API_HOST"] = self.settings.api_host
        env[f"{ENV_PREFIX}API_PORT"] = str(self.settings.api_port)
        if self.proxies:
            env[f"{ENV_PREFIX}DATABASE_URL"] = self.proxied_database_url
            env[f"{ENV_PREFIX}TEMPORAL_ADDRESS"] = (
                f"127.0.0.1:{self.proxies['temporal'].listen_port}")
            env[f"{ENV_PREFIX}STRIPE_API_BASE"] = (
                f"http://127.0.0.1:{self.proxies['stripe'].listen_port}")
        return env

    # --- children that can be killed and started again ---------------------------------------
    def launch(self, name: str, recipe: Recipe) -> Child:
        self.recipes[name] = recipe
        child = self.forker.submit(self.spawn, name, recipe.argv, recipe.env,
                                   ready_marker=self._marker(name), cwd=ROOT).result()
        self.current[name] = child
        self.wait(f"{name} to be ready", lambda: recipe.ready(child), recipe.timeout)
        return child

    def _marker(self, name: str) -> str | None:
        from webhooks.dispatcher import READY_MESSAGE as WEBHOOKS_READY
        from workers.main import READY_MESSAGE

        return {"worker": READY_MESSAGE, "webhooks": WEBHOOKS_READY}.get(name)

    def kill(self, name: str) -> None:
        """SIGKILL of the child's whole process group (PostgreSQL's backends go too)."""
        self.supervisor.kill(self.current[name])

    def stop(self, name: str) -> None:
        self.supervisor.stop(self.current[name], 20.0)

    def restart(self, name: str) -> float:
        """Start the child again from its recipe; returns how long until it was ready."""
        began = time.monotonic()
        self.current[name].expected_exit = True   # a child that died by itself is replaced
        self.launch(name, self.recipes[name])
        took = time.monotonic() - began
        self.restarts.setdefault(name, []).append(took)
        return took

    # --- the recipe, overridden where the run differs from `settlepay dev` -----------------
    def start_postgres(self) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        pgdata = self.data_dir / "postgres"
        if not (pgdata / "PG_VERSION").exists():
            _initdb(pgdata)
        argv = _as_owner(pgdata, [
            str(POSTGRES_BIN_PATH / "postgres"), "-D", str(pgdata), "-h", "127.0.0.1",
            "-p", str(self.postgres_port), "-k", str(pgdata), "-c", "fsync=off",
            "-c", "max_connections=200"])
        admin = f"postgresql://postgres@127.0.0.1:{self.postgres_port}/postgres"

        def answers(_: Child) -> bool:
            with psycopg.connect(admin, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        self.launch("postgres", Recipe(argv, dict(os.environ), answers, 60.0))
        with psycopg.connect(admin, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                (DATABASE,)).fetchone():
                conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self.database_url = f"postgresql://postgres@127.0.0.1:{self.postgres_port}/{DATABASE}"
        self.say("applying migrations")
        migrate.upgrade(Settings(database_url=self.database_url).sqlalchemy_url)

    def start_temporal(self) -> None:
        super().start_temporal()
        child = next(c for c in reversed(self.supervisor.children) if c.name == "temporal")
        self.current["temporal"] = child
        self.recipes["temporal"] = Recipe(
            list(child.process.args), dict(os.environ),  # type: ignore[arg-type]
            lambda _: self.temporal_answers(), TIMEOUTS["temporal"])

    def start_sandboxes(self) -> None:
        """As `settlepay dev`; then the KYC sandbox retries verdicts like a real provider."""
        super().start_sandboxes()
        if self.sandbox_present("kyc"):
            configure_kyc_sandbox(f"http://127.0.0.1:{self.settings.sandbox_kyc_port}")

    def start_worker(self) -> None:
        self.launch("worker", Recipe(
            [sys.executable, "-m", "settlepay.cli", "worker"], self.child_env(),
            lambda child: child.ready.is_set(), TIMEOUTS["worker"]))

    def start_webhooks(self) -> None:
        from webhooks.dev import ensure_dev_endpoint

        if self.sandbox_present("webhook_receiver"):
            receiver = f"http://127.0.0.1:{self.settings.sandbox_webhook_receiver_port}"
            ensure_dev_endpoint(self.database_url, self.settings, receiver)
        self.launch("webhooks", Recipe(
            [sys.executable, "-m", "settlepay.cli", "webhooks", "dispatch"], self.child_env(),
            lambda child: child.ready.is_set(), TIMEOUTS["worker"]))

    def start_api(self) -> None:
        s = self.settings
        self.launch("api", Recipe(
            [sys.executable, "-m", "settlepay.cli", "api", "--host", s.api_host,
             "--port", str(s.api_port)], self.child_env(),
            lambda _: _http_ok(f"{self.api_url}/healthz"), TIMEOUTS["api"]))

    def up(self) -> None:
        """Everything, in `settlepay dev`'s order, the proxies first."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.check_ports_free()
        self.start_proxies()
        self.start_temporal()
        self.start_postgres()
        self.ensure_dev_api_key()
        self.start_sandboxes()
        self.start_worker()
        self.start_webhooks()
        self.start_api()

    def down(self) -> None:
        """The clients of PostgreSQL first (its shutdown waits for them), then the rest."""
        for name in ("api", "webhooks", "worker"):
            if name in self.current:
                self.stop(name)
        self.started.close()
        self.forker.shutdown(wait=False)

    # --- for the workload and the checks ---------------------------------------------------
    @property
    def stripe_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.sandbox_stripe_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.sandbox_webhook_receiver_port}"

    def cli(self, *args: str) -> tuple[int, str]:
        """A `settlepay` command against the run's database, directly (not through a proxy)."""
        env = dict(os.environ)
        env[f"{ENV_PREFIX}DATABASE_URL"] = self.database_url
        env[f"{ENV_PREFIX}TEMPORAL_ADDRESS"] = self.settings.temporal_address
        done = subprocess.run([sys.executable, "-m", "settlepay.cli", *args], env=env,
                              cwd=ROOT, capture_output=True, text=True, timeout=300)
        return done.returncode, (done.stdout + done.stderr).strip()

    async def temporal_client(self) -> Client:
        from settlepay.temporal import connect

        return await connect(self.settings)


def configure_kyc_sandbox(url: str) -> None:
    """Retry a verdict webhook for KYC_WEBHOOK_RETRY_SECONDS, as a real provider does."""
    httpx.post(f"{url}/_sandbox/config", json={
        "webhook_retry_seconds": KYC_WEBHOOK_RETRY_SECONDS}, timeout=10).raise_for_status()


def _initdb(pgdata: Path) -> None:
    """pgserver's initdb (as its own system user when we are root, as PostgreSQL requires),
    then its server stopped: the run starts `postgres` itself, as a child it can SIGKILL."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    pgserver.get_server(pgdata, cleanup_mode="stop").cleanup()


SWITCH_USER = ("import os, sys; os.setgroups([]); os.setgid(int(sys.argv[1])); "
               "os.setuid(int(sys.argv[2])); os.execv(sys.argv[3], sys.argv[3:])")


def _as_owner(pgdata: Path, argv: list[str]) -> list[str]:
    """`argv` run as the owner of `pgdata` (exec in place: same pid, same process group)."""
    if os.geteuid() != 0:
        return argv
    owner = pgdata.stat()
    return [sys.executable, "-c", SWITCH_USER, str(owner.st_gid), str(owner.st_uid), *argv]
