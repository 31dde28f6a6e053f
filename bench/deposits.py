"""Deposit throughput end to end, beside a bare workflow, and the retry storm.

    .venv/bin/python bench/deposits.py [--deposits 200] [--concurrency 1,24] [--storm 10000]
    .venv/bin/python bench/deposits.py --api http://127.0.0.1:8000 --temporal 127.0.0.1:7233 \
        --database-url postgresql://... [--sandbox http://127.0.0.1:12111]   # against `make dev`

Local mode starts its own stack as separate processes, like `make dev`: a temporary database,
the Temporal dev server, the Stripe sandbox, `settlepay api` and `settlepay worker`.

(1) Deposits/s: POST /v1/deposits (a new Idempotency-Key each) until the workflow's result,
    at each `--concurrency` level; every deposit must succeed and be credited once.
(2) Beside it, on the same Temporal server in the same run: a bare workflow with the same
    number of activities (3: gate, payment, credit), each a no-op, run by a worker process with
    the same thread pool, in rounds interleaved with (1). Ratio = (1) / (2); target >= 0.8.
    At concurrency 1 the ratio says what the deposit's work adds to each deposit's latency; at
    high concurrency, on a small machine, it says what that work costs in shared CPU.
(3) Retry storm: `--storm` POSTs with ONE Idempotency-Key, `--storm-concurrency` at a time,
    sent by `--storm-clients` load processes (a raw HTTP/1.1 keep-alive client each: one
    Python process cannot make 200 concurrent requests fast enough to measure a server that
    answers in a millisecond); exactly one deposit, one workflow, one PaymentIntent, one
    ledger credit. Prints p50/p99 of the replayed answers (target p99 <= 20 ms), and of replays
    sent one at a time. The API runs `--api-processes` processes (SETTLEPAY_API_PROCESSES).
    The bench's API key has its own rate limit, high enough that the storm measures the replay
    path and not the 429s of the default limit (100 requests/s per key).

Must never: run against a production stack (it creates players and money on the database).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Run as a script: the repository root and bench/ go on sys.path before the imports below.
# bare_workflow is imported by its top-level name, as its worker process imports it.
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from bare_workflow import QUEUE as BARE_QUEUE
from bare_workflow import BareDepositWorkflow

from tests.support.net import free_port, wait_http

WEBHOOK_EVENTS = ("payment_intent.succeeded", "payment_intent.payment_failed",
                  "payment_intent.canceled", "refund.failed", "payout.paid", "payout.failed")


# --- helpers -------------------------------------------------------------------------------

def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far; 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def descendants(pid: int) -> list[int]:
    """`pid` and every process under it (Linux /proc)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


class CpuMeter:
    """Where the CPU goes, per process group of the stack (Linux /proc; local mode only)."""

    def __init__(self, groups: dict[str, list[int]], database_url: str, temporal_port: str,
                 with_children: frozenset[str] = frozenset({"api"})):
        import psycopg
        self.groups, self.temporal_port = groups, temporal_port
        self.with_children = with_children
        self.conn = psycopg.connect(database_url, autocommit=True)

    def _pids(self) -> dict[str, list[int]]:
        # The API's group is its processes and their children (uvicorn's worker processes).
        found = {name: [p for pid in pids for p in (
                    descendants(pid) if name in self.with_children else [pid])]
                 for name, pids in self.groups.items()}
        # The database's backends (the server's own view: process titles may be off).
        found["postgres"] = [pid for (pid,) in self.conn.execute(
            "SELECT pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()")]
        found["temporal"] = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "temporal server start-dev" in cmd and f"--port {self.temporal_port} " in cmd:
                found["temporal"].append(int(entry.name))
        return found

    def snapshot(self) -> dict[str, float]:
        return {name: sum(process_cpu(pid) for pid in pids)
                for name, pids in self._pids().items()}

    @staticmethod
    def per_item(before: dict[str, float], after: dict[str, float], items: int) -> str:
        used = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        parts = [f"{name} {1000 * cpu / items:.1f}"
                 for name, cpu in used.items() if cpu > 0.0005 * items]
        total = sum(after.get(n, 0) - before.get(n, 0) for n in after) * 1000 / items
        return f"{total:.1f} ms CPU each (" + ", ".join(parts) + ")"


class LocalStack:
    """Temporary database, Temporal dev server, sandbox, API and worker processes."""

    def __init__(self, threads: int, api_processes: int):
        self.threads, self.api_processes = threads, api_processes
        self.procs: list[subprocess.Popen] = []
        import tempfile
        self.logs = Path(tempfile.mkdtemp(prefix="settlepay-bench-"))

    async def __aenter__(self) -> LocalStack:
        from temporalio.contrib.pydantic import pydantic_data_converter
        from temporalio.testing import WorkflowEnvironment

        from settlepay import binaries, search_attributes
        from tests.support.databases import temporary_database

        self._db = temporary_database("sp_bench")
        self.database_url = self._db.__enter__()
        self.env = await WorkflowEnvironment.start_local(
            dev_server_existing_path=binaries.temporal_cli(),
            data_converter=pydantic_data_converter,
            search_attributes=search_attributes.ALL, dev_server_log_level="error")
        self.temporal = self.env.client.service_client.config.target_host
        sandbox_port, api_port = free_port(), free_port()
        self.sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "SETTLEPAY_DATABASE_URL": self.database_url,
               "SETTLEPAY_TEMPORAL_ADDRESS": self.temporal,
               "SETTLEPAY_STRIPE_API_BASE": self.sandbox_url,
               "SETTLEPAY_SANDBOX_STRIPE_WEBHOOK_URL": f"{self.api_url}/v1/webhooks/stripe",
               "SETTLEPAY_API_PORT": str(api_port), "SETTLEPAY_LOG_LEVEL": "WARNING",
               "SETTLEPAY_API_DB_POOL_SIZE": "4", "SETTLEPAY_WORKER_DB_POOL_SIZE": "4",
               "SETTLEPAY_WORKER_ACTIVITY_THREADS": str(self.threads),
               "SETTLEPAY_API_PROCESSES": str(self.api_processes)}
        self.env_vars = env
        py = sys.executable
        # The endpoint subscribes to the events settlepay acts on, as a production Stripe
        # endpoint would (enabled_events), not to every event type.
        self.spawn([py, "-m", "sandboxes.stripe", "--port", str(sandbox_port),
                    "--enabled-events", ",".join(WEBHOOK_EVENTS)], env)
        self.spawn([py, "-m", "settlepay.cli", "api", "--port", str(api_port)], env)
        self.spawn([py, "-m", "settlepay.cli", "worker"], env)
        wait_http(f"{self.sandbox_url}/_sandbox/stats", timeout=60)
        wait_http(f"{self.api_url}/healthz", timeout=60)
        time.sleep(1.0)
        self.check_alive()
        return self

    def spawn(self, argv: list[str], env: dict[str, str]) -> None:
        # Each process logs to a file of its own: when something dies, its file says why.
        # The child keeps its own copy of the file descriptor; ours closes once it is spawned.
        with open(self.logs / f"{len(self.procs)}-{Path(argv[2]).name}.log", "wb") as log:
            self.procs.append(subprocess.Popen(argv, env=env, cwd=ROOT, stdout=log,
                                               stderr=subprocess.STDOUT))

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(proc.args)} exited ({proc.returncode}); "
                                 f"logs in {self.logs}")

    async def __aexit__(self, *exc) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        await self.env.shutdown()
        self._db.__exit__(None, None, None)


def make_players(database_url: str, count: int, partner_id: str) -> tuple[str, list[str]]:
    """A partner key and `count` active players located in New Jersey (direct SQL setup)."""
    from datetime import UTC, datetime

    from commands.api_keys import create_api_key
    from settlepay.db import make_engine
    from store import geolocation, players

    engine = make_engine(database_url, pool_size=1)
    now = datetime.now(UTC)
    ids = [f"ply_bench_{uuid.uuid4().hex[:12]}" for _ in range(count)]
    with engine.begin() as conn:
        # Its own rate limit: the storm measures the replay path, not the default limit's 429s.
        _, key = create_api_key(conn, "partner", partner_id, None, "bench", rate_limits={
            "*": {"requests": 1_000_000, "window_seconds": 1}})
        for pid in ids:
            players.insert(conn, player_id=pid, partner_id=partner_id, external_ref=None,
                           first_name="Bench", last_name="Player", email=None,
                           date_of_birth=None, jurisdiction="US-NJ")
            geolocation.insert(conn, geolocation.GeolocationCheck(
                id=geolocation.new_id(), player_id=pid, checked_at=now, latitude=40.22,
                longitude=-74.76, ip_address="203.0.113.9", provider="bench",
                jurisdiction="US-NJ", distance_to_border_miles=20.0, ip_country="US",
                ip_subdivision="NJ", anonymous_flags=(), allowed=True, code="allowed",
                reason="bench", valid_until=now + timedelta(hours=2)))
    engine.dispose()
    return key, ids


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 answer with a Content-Length off a kept connection: status, header fields
    (names in lower case) and body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = {k.strip().lower(): v.strip()
              for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(fields.get("content-length", "0")))
    return int(lines[0].split(" ", 2)[1]), fields, body


# --- the measurements ------------------------------------------------------------------------

async def post_retrying(http, headers: dict[str, str], body: dict, attempts: int = 3):
    """POST /v1/deposits, sent again (same Idempotency-Key: same deposit) when the connection
    broke, e.g. a keep-alive connection the server closed as the request went out."""
    import httpx
    for attempt in range(attempts):
        try:
            return await http.post("/v1/deposits", headers=headers, json=body)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


class RawAnswer:
    """What the deposit loop reads of an answer (httpx.Response's names)."""

    def __init__(self, status_code: int, content: bytes):
        self.status_code, self.content = status_code, content

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self):
        import json
        return json.loads(self.content)


class RawHttp:
    """POSTs over raw HTTP/1.1 keep-alive connections kept in a pool, for the deposit loop.

    The bench's own process shares the machine with the stack it measures: httpx's client
    cost it ~4 ms of CPU per deposit against ~1.6 ms per bare workflow (bench client, CPU per
    item), CPU the stack then lacked at high concurrency, on the deposit side only. This client
    writes the request and reads the status line, the headers and a Content-Length body, no
    more (the API answers so). A connection idle for `keepalive_seconds` (below uvicorn's 5 s)
    is closed rather than reused; a request whose connection breaks is sent again on a new one
    (same Idempotency-Key: the same deposit), as `post_retrying` does."""

    def __init__(self, base_url: str, keepalive_seconds: float = 2.0):
        from urllib.parse import urlsplit
        where = urlsplit(base_url)
        self.host, self.port, self.netloc = where.hostname, where.port, where.netloc
        self.keepalive_seconds = keepalive_seconds
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self.idle:
            reader, writer, since = self.idle.pop()
            if time.monotonic() - since < self.keepalive_seconds:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    async def post(self, path: str, *, headers: dict[str, str], json: dict,
                   attempts: int = 3) -> RawAnswer:
        import json as json_module
        body = json_module.dumps(json).encode()
        request = (f"POST {path} HTTP/1.1\r\nHost: {self.netloc}\r\n"
                   + "".join(f"{name}: {value}\r\n" for name, value in headers.items())
                   + f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                   ).encode() + body
        for attempt in range(attempts):
            reader, writer = await self._connection()
            try:
                writer.write(request)
                status, fields, content = await read_response(reader)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                writer.close()
                if attempt == attempts - 1:
                    raise
                continue
            if fields.get("connection", "").lower() == "close":
                writer.close()
            else:
                self.idle.append((reader, writer, time.monotonic()))
            return RawAnswer(status, content)
        raise AssertionError("unreachable")

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def deposits_per_second(http, client, key: str, players: list[str], n: int,
                              concurrency: int, amount: int = 1_000,
                              ) -> tuple[float, list[float], list[str]]:
    from workflows.contracts.deposit import DepositResult

    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    ids: list[str] = []
    failures: list[str] = []

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
            body = {"player_id": players[i % len(players)], "amount": amount, "currency": "USD",
                    "payment_method": "pm_card_visa"}
            answer = await post_retrying(http, headers, body)
            if answer.status_code != 202:
                failures.append(f"POST {answer.status_code}: {answer.text[:200]}")
                return
            deposit_id = answer.json()["id"]
            result = await asyncio.wait_for(client.get_workflow_handle(
                f"deposit-{deposit_id}", result_type=DepositResult).result(), 120)
            if result.status != "succeeded":
                failures.append(f"{deposit_id}: {result.status} {result.failure_code}")
            latencies.append(time.perf_counter() - started)
            ids.append(deposit_id)

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    elapsed = time.perf_counter() - started
    if failures:
        raise SystemExit(f"{len(failures)} deposits failed, e.g. {failures[:3]}")
    return n / elapsed, latencies, ids


async def bare_per_second(client, n: int, concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with gate:
            result = await asyncio.wait_for(client.execute_workflow(
                BareDepositWorkflow.run, i, id=f"bare-{uuid.uuid4().hex}", task_queue=BARE_QUEUE),
                120)
            assert result == i + 3

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    return n / (time.perf_counter() - started)


Row = tuple[int, bool, float, str | None]   # status, replayed, seconds, deposit id (202)


async def _storm_connection(host: str, port: int, request: bytes, count: int,
                            rows: list[Row]) -> None:
    """`count` requests one after the other on one keep-alive connection (raw HTTP/1.1: the
    client's own CPU stays far below the server's)."""
    import json
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(request)
            status, fields, body = await read_response(reader)
            took = time.perf_counter() - started
            deposit = json.loads(body)["id"] if status == 202 else None
            rows.append((status, fields.get("idempotent-replayed") == "true", took, deposit))
    finally:
        writer.close()


def storm_client(url: str, key: str, idem: str, body: bytes, n: int, concurrency: int,
                 start_at: float) -> list[Row]:
    """One load process: `n` POSTs over `concurrency` connections, from `start_at` (wall
    clock, so that every load process starts together)."""
    from urllib.parse import urlsplit
    where = urlsplit(url)
    request = (f"POST /v1/deposits HTTP/1.1\r\nHost: {where.netloc}\r\n"
               f"Authorization: Bearer {key}\r\nIdempotency-Key: {idem}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
    rows: list[Row] = []
    per = [n // concurrency + (1 if i < n % concurrency else 0) for i in range(concurrency)]

    async def run() -> None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        await asyncio.gather(*(_storm_connection(where.hostname, where.port, request, c, rows)
                               for c in per if c))

    asyncio.run(run())
    return rows


async def retry_storm(http, api_url: str, key: str, player: str, n: int, concurrency: int,
                      clients: int) -> dict:
    import json
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    idem = f"storm-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
    body = {"player_id": player, "amount": 2_345, "currency": "USD",
            "payment_method": "pm_card_visa"}
    raw = json.dumps(body).encode()
    clients = max(1, min(clients, concurrency))
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(clients, mp_context=get_context("spawn")) as pool:
        # The processes start (imports) first; the storm begins for all at one moment.
        await asyncio.gather(*(loop.run_in_executor(pool, time.sleep, 0.1)
                               for _ in range(clients)))
        start_at = time.time() + 1.0
        share = [(n // clients + (1 if i < n % clients else 0),
                  concurrency // clients + (1 if i < concurrency % clients else 0))
                 for i in range(clients)]
        parts = await asyncio.gather(*(
            loop.run_in_executor(pool, storm_client, api_url, key, idem, raw, count, conc,
                                 start_at) for count, conc in share))
    rows: list[Row] = [row for part in parts for row in part]
    elapsed = time.time() - start_at
    # Clients retry their 409s; after the first answer is stored they all get it back.
    final = await http.post("/v1/deposits", headers=headers, json=body)
    quiet: list[float] = []
    for _ in range(500):
        t = time.perf_counter()
        again = await http.post("/v1/deposits", headers=headers, json=body)
        quiet.append(time.perf_counter() - t)
        assert again.headers.get("idempotent-replayed") == "true"
    return {"idem": idem, "rows": rows, "elapsed": elapsed, "final": final, "quiet": quiet}


async def verify_one_effect(database_url: str, sandbox_url: str | None, client, player: str,
                            deposit_id: str) -> list[str]:
    import httpx
    from sqlalchemy import text

    from settlepay.db import make_engine
    from workflows.contracts.deposit import DepositResult
    await client.get_workflow_handle(f"deposit-{deposit_id}", result_type=DepositResult).result()
    engine = make_engine(database_url, pool_size=1)
    with engine.connect() as conn:
        deposits = conn.execute(
            text("SELECT count(*) FROM deposits WHERE player_id = :p AND amount = 2345"),
            {"p": player}).scalar()
        credits = conn.execute(
            text("SELECT count(*) FROM ledger_transactions WHERE reference = :d AND result = 'ok'"),
            {"d": deposit_id}).scalar()
    engine.dispose()
    workflows = (await client.count_workflows(f"WorkflowId = 'deposit-{deposit_id}'")).count
    lines = [f"deposits rows {deposits}, workflows {workflows}, ledger credits {credits}"]
    if sandbox_url:
        intents = httpx.get(f"{sandbox_url}/_sandbox/payment_intents",
                            params={"key": "settlepay_deposit_id", "value": deposit_id},
                            ).json()["data"]
        lines[0] += f", PaymentIntents {len(intents)}"
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--deposits", type=int, default=200, help="per concurrency level")
    parser.add_argument("--concurrency", type=lambda v: [int(x) for x in v.split(",")],
                        default=[1, 24],
                        help="comma-separated levels, each measured on its own (default 1,24)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="deposit and bare batches, interleaved")
    parser.add_argument("--storm", type=int, default=10_000)
    parser.add_argument("--storm-concurrency", type=int, default=200)
    parser.add_argument("--storm-clients", type=int, default=4,
                        help="load processes sending the storm (default 4)")
    parser.add_argument("--api-processes", type=int, default=2,
                        help="API processes of the local stack (SETTLEPAY_API_PROCESSES)")
    parser.add_argument("--threads", type=int, default=16, help="activity threads per worker")
    parser.add_argument("--api"), parser.add_argument("--temporal")
    parser.add_argument("--database-url"), parser.add_argument("--sandbox")
    args = parser.parse_args()

    import httpx

    from settlepay.config import Settings
    from settlepay.temporal import connect

    stack = None
    if args.api:
        api_url, temporal = args.api, args.temporal
        database_url, sandbox_url = args.database_url, args.sandbox
        if not (temporal and database_url):
            raise SystemExit(
                "--api needs --temporal and --database-url (players are set up in SQL)")
    else:
        stack = await LocalStack(args.threads, args.api_processes).__aenter__()
        api_url, temporal = stack.api_url, stack.temporal
        database_url, sandbox_url = stack.database_url, stack.sandbox_url
    import tempfile
    bare_log = tempfile.NamedTemporaryFile(prefix="settlepay-bench-bare-", suffix=".log",
                                           delete=False)
    # Imported by name (not run as __main__) so that the workflow sandbox can re-import it.
    # bench/ goes LAST on the path: its modules (bench/reconciliation.py, ...) must not shadow
    # the packages of the same name that bare_workflow's imports (workers.main) need.
    serve_bare = (f"import sys, asyncio; sys.path.append({str(ROOT / 'bench')!r}); "
                  f"import bare_workflow; "
                  f"asyncio.run(bare_workflow.serve({temporal!r}, {args.threads}))")
    bare = subprocess.Popen([sys.executable, "-c", serve_bare],
                            cwd=ROOT, stdout=bare_log, stderr=subprocess.STDOUT)
    try:
        from tests.support.databases import sqlalchemy_url
        db = sqlalchemy_url(database_url) if "+psycopg" not in database_url else database_url
        key, players = make_players(db, 64, f"bench-{uuid.uuid4().hex[:8]}")
        client = await connect(Settings(temporal_address=temporal))
        # Idle connections are dropped before uvicorn's keep-alive timeout (5 s) closes them.
        limits = httpx.Limits(max_connections=args.storm_concurrency + 10,
                              max_keepalive_connections=args.storm_concurrency + 10,
                              keepalive_expiry=2.0)
        async with httpx.AsyncClient(base_url=api_url, timeout=60.0, limits=limits) as http:
            print(f"stack: API {api_url}"
                  f"{f' ({args.api_processes} processes)' if stack else ''}, "
                  f"Temporal {temporal}, {args.threads} activity threads per worker; "
                  f"load average {Path('/proc/loadavg').read_text().split(' ', 3)[:3]}")
            raw = RawHttp(api_url)   # the deposit loop's client (httpx for the rest)
            await deposits_per_second(raw, client, key, players, 30, 10)   # warm up
            await bare_per_second(client, 30, 10)
            meter = None
            if stack is not None:
                meter = CpuMeter({"api": [stack.procs[1].pid], "worker": [stack.procs[2].pid],
                                  "sandbox": [stack.procs[0].pid], "bare worker": [bare.pid],
                                  "bench client": [os.getpid()]},
                                 database_url, temporal.rsplit(":", 1)[1])
            for concurrency in args.concurrency:
                # Interleaved rounds: the machine's background load (shared cores) then weighs
                # on both sides of the ratio alike.
                dep_time = bare_time = 0.0
                dep_cpu: dict[str, float] = {}
                bare_cpu: dict[str, float] = {}
                latencies: list[float] = []
                per_round = max(1, args.deposits // args.rounds)
                for _ in range(args.rounds):
                    before = meter.snapshot() if meter else {}
                    rate, lat, _ = await deposits_per_second(raw, client, key, players,
                                                             per_round, concurrency)
                    middle = meter.snapshot() if meter else {}
                    dep_time += per_round / rate
                    latencies += lat
                    bare_time += per_round / await bare_per_second(client, per_round, concurrency)
                    after = meter.snapshot() if meter else {}
                    for name in middle:
                        dep_cpu[name] = dep_cpu.get(name, 0) + middle[name] - before.get(name, 0)
                        bare_cpu[name] = bare_cpu.get(name, 0) + after[name] - middle.get(name, 0)
                total = per_round * args.rounds
                rate, bare_rate = total / dep_time, total / bare_time
                print(f"concurrency {concurrency}: deposits end to end {rate:7.1f} /s "
                      f"({total} deposits; "
                      f"latency p50 {ms(pct(latencies, 50))}, p99 {ms(pct(latencies, 99))}); "
                      f"bare workflow, 3 no-op activities {bare_rate:7.1f} /s; "
                      f"ratio {rate / bare_rate:.2f} (target >= 0.8)")
                if meter:
                    zero = {name: 0.0 for name in dep_cpu}
                    print(f"  deposit: {CpuMeter.per_item(zero, dep_cpu, total)}")
                    print(f"  bare:    {CpuMeter.per_item(zero, bare_cpu, total)}")

            raw.close()
            storm = await retry_storm(http, api_url, key, players[0], args.storm,
                                      args.storm_concurrency, args.storm_clients)
            rows = storm["rows"]
            replayed = [t for code, rep, t, _ in rows if rep]
            codes: dict[int, int] = {}
            for code, *_ in rows:
                codes[code] = codes.get(code, 0) + 1
            ids = {d for *_, d in rows if d} | {storm["final"].json()["id"]}
            print(f"retry storm: {args.storm} POSTs, one Idempotency-Key, "
                  f"concurrency {args.storm_concurrency} from {args.storm_clients} "
                  f"load processes: "
                  f"{args.storm / storm['elapsed']:.0f} req/s; "
                  f"answers {dict(sorted(codes.items()))}; "
                  f"deposit ids {len(ids)}")
            print(f"  replayed answers ({len(replayed)}): p50 {ms(pct(replayed, 50))}, "
                  f"p99 {ms(pct(replayed, 99))}  (target p99 <= 20 ms)")
            print(f"  replays one at a time (500): p50 {ms(pct(storm['quiet'], 50))}, "
                  f"p99 {ms(pct(storm['quiet'], 99))}")
            for line in await verify_one_effect(db, sandbox_url, client, players[0], ids.pop()):
                print(f"  one effect: {line}")
    finally:
        bare.terminate()
        bare.wait(timeout=10)
        if stack is not None:
            await stack.__aexit__()


if __name__ == "__main__":
    asyncio.run(main())
