"""What observability costs: tracing + metrics on versus off, in one run (issue 12's budget:
at most 5 % slower).

    .venv/bin/python bench/observability.py [--mode paired|interleaved] [--rounds 5]
                                            [--seconds 3] [--clients 16]
                                            [--deposits 48] [--concurrency 24]
                                            [--sample-ratio R] [--exporter otlp|none]
                                            [--skip ledger|deposits]

"On" is the configuration an operator runs in production: `Settings()`'s defaults, i.e.
telemetry on, spans shipped over OTLP, head sampling at SETTLEPAY_TRACES_SAMPLE_RATIO (default
0.01: 1 % of traces recorded, every span of a recorded trace; the others keep their trace ids
for logs and headers and make no SQL spans), business metrics recorded. `--sample-ratio 1`
measures recording every trace (what `make dev` and the tests do). "Off" is
SETTLEPAY_TELEMETRY_ENABLED=false.

(1) Ledger (b) of bench/ledger.py: single transfers touching the house account (post_now, each
    its own database transaction), from `--clients` forked client processes. An "on" client
    sets up tracing as every settlepay process does (tracer provider and sampler, psycopg
    instrumentation, OTLP export) and records the ledger posting histogram; an "off" client
    does neither. What tracing costs the ledger is its statements' instrumentation: a
    statement makes a span only inside a recorded trace (tracing.ChildSpansOnly), and the
    operation's span around a posting is an activity's or a request's, which (2) measures.
(2) Deposits end to end at `--concurrency` (POST /v1/deposits until the workflow's result, as
    bench/deposits.py (1)): two stacks side by side on one Temporal dev server (one namespace
    each) and one database, each with its Stripe sandbox, `settlepay api` and `settlepay
    worker`: one with SETTLEPAY_TELEMETRY_ENABLED=false, one with telemetry as in production
    (FastAPI, Temporal interceptor, psycopg / httpx / requests spans of sampled traces
    exported over OTLP, business metrics, the worker's /metrics and SDK runtime metrics, both
    /metrics scraped once per round).
Spans go to a local OTLP/HTTP sink (a process of its own, standing for the collector: it reads
each request and answers 200), so the exporters serialize and send as in production.

Paired mode (the default). On a shared 2-core machine one side after the other cannot tell 5 %:
per-round ratios spread +-20 %. So both sides are driven AT THE SAME TIME and every round's
figure is a ratio of two figures measured under the same background load:
- ledger: `--clients` / 2 client processes on and as many off, over the same `--seconds`;
  figures: the on group's postings per second over the off group's, and the client processes'
  CPU per posting (time.process_time, i.e. the Python side where telemetry's work is; the
  database server's CPU is shared by both groups). The group forked first alternates.
- deposits: two stacks, x and y (each its namespace, ports, processes), each driven at
  `--concurrency` / 2 with `--deposits` deposits per round. Throughput is counted over the
  window in which both were loaded: each side's completions until the first side finished its
  last deposit (the slower side's tail, run alone, is not counted). CPU per deposit of each
  side (API and worker process trees, psutil, around the round) over all its deposits. The
  stack that is on alternates (x in odd-numbered rounds, y in even), so a systematic
  difference between the stacks (ports, namespace, start order) cancels over an even number
  of rounds (an odd count is flagged in the output); both stacks are restarted and warmed up
  (`--concurrency` deposits each, unmeasured) before every round.
Calibration: for each on/off round an A/A round, the same paired run with both sides off (the
numerator alternating between the two sides, as "on" does). Its figures should be 0: their
spread is the method's own noise floor, printed next to the on/off figure.
Verdict rule, per figure. A round's overhead is 1 - on/off for a rate, on/off - 1 for CPU.
X = the median of the on/off rounds' overheads, [X_lo, X_hi] its 95 % percentile-bootstrap
interval (rounds resampled, fixed seed; with 3 rounds it is their min-max range);
Y = the A/A noise = the largest |end| of the A/A median's interval (the same computation). Then
"overhead X % (A/A noise Y %): " and
- "within budget"      if X_hi <= 5 % and Y <= 5 %  (below the budget with the interval's
                       confidence, and the method does not show budget-sized differences in
                       nothing);
- "not within budget"  if X_lo > 5 % and X_lo > Y   (above the budget and above the noise);
- "undecided"          otherwise, or with fewer than 3 rounds (the reason is printed).
Issue 12's budget is on throughput ("slower"); the CPU lines apply the same rule to CPU per
operation, which moves less with the machine's other load.

Interleaved mode (`--mode interleaved`): on and off run in interleaved rounds (off-on, on-off,
...), so the machine's background load weighs on both alike; each side's figure is the MEDIAN
of its rounds, and the ratio is also given per round pair (median of the pairs). For (2) each
side's CPU per deposit (API supervisor and servers, worker; user + system, psutil, around each
round) is printed too: it moves less with the machine's other load than wall-clock does.
The load average is printed before and after. Runs on temporary databases it drops.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import multiprocessing
import os
import random
import statistics
import subprocess
import sys
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# Run as a script: the repository root goes on sys.path before the project's imports.
sys.path.insert(0, str(ROOT))

BUDGET = 0.05            # at most 5 % slower
PLAYERS = 2_000
SHARDS = 16


def _bench_module(name: str) -> ModuleType:
    """bench/<name>.py under the name bench_<name> (bench/ledger.py would shadow the ledger
    package if bench/ went on sys.path)."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", ROOT / "bench" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    path = list(sys.path)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path      # bench/deposits.py puts bench/ first: take it off again
    return module


# --- the OTLP sink (the collector's stand-in) ----------------------------------------------------

def serve_sink(port: int) -> None:
    """Answer every OTLP/HTTP export with 200 after reading it; count requests and bytes."""
    received = {"requests": 0, "bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # the name http.server calls
            size = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(size)
            received["requests"] += 1
            received["bytes"] += size
            self._answer(b"", "application/x-protobuf")

        def do_GET(self) -> None:  # the name http.server calls
            body = f"{received['requests']} {received['bytes']}".encode()
            self._answer(body, "text/plain")

        def _answer(self, body: bytes, content_type: str) -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: Any, client_address: Any) -> None:
            return   # a client process that exits mid-export resets its connection: not news

    server = Server(("127.0.0.1", port), Handler)
    server.serve_forever()


class Sink:
    def __init__(self) -> None:
        from tests.support.net import free_port, wait_http

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, __file__, "--sink", str(self.port)],
                                     cwd=ROOT)
        wait_http(self.url + "/", timeout=30)

    def received(self) -> tuple[int, int]:
        import httpx

        requests, size = httpx.get(self.url + "/", timeout=5).text.split()
        return int(requests), int(size)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# --- helpers -------------------------------------------------------------------------------------

def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f} ({os.cpu_count()} cores)"


def verdict(off: list[float], on: list[float]) -> str:
    """Median rates of both sides, on / off (of the medians and the median of the round
    pairs), and the slowdown against the budget."""
    off_median, on_median = statistics.median(off), statistics.median(on)
    pairs = statistics.median(b / a for a, b in zip(off, on, strict=True))
    slower = 1 - on_median / off_median
    ok = "within" if slower <= BUDGET else "OVER"
    rounds = "  ".join(f"{b / a:.2f}" for a, b in zip(off, on, strict=True))
    return (f"off {off_median:8,.1f}/s   on {on_median:8,.1f}/s   (medians of {len(off)} rounds)"
            f"\n  on/off {on_median / off_median:.3f}   (median of round pairs {pairs:.3f};"
            f" rounds: {rounds})\n  slower {100 * slower:+.1f} % ({ok} the "
            f"{100 * BUDGET:.0f} % budget)")


def cpu_per_deposit(cpu: dict[str, dict[str, list[float]]]) -> str:
    """The processes' CPU per deposit, off and on (medians of the rounds): what the
    machine's other load moves least."""
    parts = []
    for what in ("api", "worker"):
        off, on = (statistics.median(cpu[side][what]) for side in ("off", "on"))
        parts.append(f"{what} off {off:.1f} ms  on {on:.1f} ms  ({100 * (on / off - 1):+.1f} %)")
    return "CPU per deposit (median of rounds): " + ";  ".join(parts)


# --- paired mode: statistics and the verdict --------------------------------------------------

LEVEL = 0.95             # the bootstrap interval's coverage
MIN_ROUNDS = 3           # fewer rounds than this decide nothing


def median_interval(values: list[float], level: float = LEVEL, resamples: int = 4_000,
                    seed: int = 12) -> tuple[float, float, float]:
    """The median of `values` and a percentile bootstrap interval of it (resampling the
    rounds; a fixed seed, so a run's printout is reproducible from its rounds). With few
    rounds the interval is about their min-max range: more rounds narrow it."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(resamples))
    lo = medians[int((1 - level) / 2 * resamples)]
    hi = medians[min(resamples - 1, int((1 + level) / 2 * resamples))]
    return statistics.median(values), lo, hi


def common_window_rates(a: list[float], b: list[float]) -> tuple[float, float]:
    """Two sides' completion times (seconds since both started): each side's completions per
    second up to the moment the first side finished its last one, i.e. over the window in
    which both were loaded (the slower side's tail, run alone, is not counted)."""
    window = min(max(a), max(b))
    return (sum(t <= window for t in a) / window, sum(t <= window for t in b) / window)


def decide(overheads: list[float], a_a: list[float],
           budget: float = BUDGET) -> tuple[str, float, float]:
    """The verdict on per-round overheads (on against off; > 0 costs) next to the A/A
    rounds' (both off; ideally 0). Returns (verdict, X, Y): see the module's docstring."""
    x, x_lo, x_hi = median_interval(overheads)
    _, a_lo, a_hi = median_interval(a_a)
    y = max(abs(a_lo), abs(a_hi))
    if min(len(overheads), len(a_a)) < MIN_ROUNDS:
        return f"undecided (fewer than {MIN_ROUNDS} rounds)", x, y
    if x_hi <= budget and y <= budget:
        return "within budget", x, y
    if x_lo > budget and x_lo > y:
        return "not within budget", x, y
    # Here X_hi > budget or Y > budget, and X_lo <= max(budget, Y).
    why = (f"A/A noise above the {100 * budget:g} % budget" if y > budget else
           f"the overhead's interval [{100 * x_lo:+.1f}, {100 * x_hi:+.1f}] % holds the budget")
    return f"undecided ({why}: more rounds or a quieter machine)", x, y


def paired_report(what: str, overheads: list[float], a_a: list[float]) -> str:
    """Two lines: the on/off and A/A medians with their intervals and ranges, then the
    verdict."""
    def figures(values: list[float]) -> str:
        median, lo, hi = median_interval(values)
        return (f"{100 * median:+.1f} % [{100 * lo:+.1f}, {100 * hi:+.1f}]"
                f" (rounds {100 * min(values):+.1f} .. {100 * max(values):+.1f})")

    verdict_text, x, y = decide(overheads, a_a)
    return (f"{what}: on vs off {figures(overheads)};  A/A {figures(a_a)}\n"
            f"    {what}: overhead {100 * x:.1f} % (A/A noise {100 * y:.1f} %): {verdict_text}")


def production(args: argparse.Namespace, on: bool, sink: Sink) -> Any:
    """The settings of a measured process: production's defaults (sampling included) with
    spans shipped to the sink, or telemetry off."""
    from settlepay.config import Settings

    extra = {} if args.sample_ratio is None else {"traces_sample_ratio": args.sample_ratio}
    return Settings(telemetry_enabled=on, traces_exporter=args.exporter, otlp_endpoint=sink.url,
                    **extra)


# --- (1) ledger (b) ------------------------------------------------------------------------------

def ledger_overhead(args: argparse.Namespace, sink: Sink,
                    paired: Paired | None = None) -> tuple[list[float], list[float]]:
    """Interleaved rounds (the rates off and on), or, given `paired`, paired rounds added
    to it."""
    import ledger
    from ledger import AccountRef, Leg, Transfer
    from ledger.check import run as check
    from settlepay.db import make_engine
    from settlepay.observability import metrics, tracing
    from tests.support.databases import sqlalchemy_url, temporary_database

    bench_ledger = _bench_module("ledger")
    # Imported before the forks (the clients' set-up is shorter; the clocks wait for it anyway).
    for module in ("opentelemetry.instrumentation.psycopg", "opentelemetry.instrumentation.httpx",
                   "opentelemetry.instrumentation.requests",
                   "opentelemetry.exporter.otlp.proto.http.trace_exporter"):
        importlib.import_module(module)
    players = [f"b{i}" for i in range(PLAYERS)]
    run = uuid.uuid4().hex[:6]
    with temporary_database("sp_bench_obs_ledger") as url:
        seed = make_engine(sqlalchemy_url(url), pool_size=1)
        with seed.begin() as conn:
            bench_ledger.seed(conn, players)
        seed.dispose()

        state: dict[str, Any] = {}

        def set_up(on: bool) -> None:
            """In each forked client process, before its clock starts: telemetry as
            `settlepay` sets it up (tracer provider, psycopg instrumentation, OTLP export,
            metrics recorded), or off; then its own connection pool."""
            metrics.set_enabled(on)
            # A client lives seconds, not hours: export every 0.5 s (instead of every 5 s) so
            # its spans are shipped while it is measured, as a long-lived process's are.
            os.environ["OTEL_BSP_SCHEDULE_DELAY"] = "500"
            tracing.configure(production(args, on, sink), "settlepay-bench-ledger")
            state["engine"] = make_engine(sqlalchemy_url(url), pool_size=4)

        def with_house(n: int, rng: Any) -> int:     # bench/ledger.py's (b)
            transfer = Transfer(
                f"b-{run}-{os.getpid()}-{n}-{rng.getrandbits(48)}", "settlement", (
                    Leg(AccountRef.house_revenue("USD"), -1),
                    Leg(AccountRef.player_cash(rng.choice(players), "USD"), 1)))
            ledger.post_now(state["engine"], transfer)
            return 1

        def forked(jobs: list[tuple[bool, Any]]) -> list[Any]:
            """One forked client process per (on, work): each sets up as `on`, then all
            clocks start together (the instrumentations' start-up is a process's, once, so
            the rounds measure the steady state); the answers of `work()`, in any order."""
            ctx = multiprocessing.get_context("fork")
            results, ready, go = ctx.Queue(), ctx.Queue(), ctx.Event()

            def child(on: bool, work: Any) -> None:
                set_up(on)
                ready.put(os.getpid())
                go.wait()
                results.put(work())

            procs = [ctx.Process(target=child, args=job) for job in jobs]
            for proc in procs:
                proc.start()
            for _ in procs:
                ready.get()
            go.set()
            answers = [results.get() for _ in procs]
            for proc in procs:
                proc.join()
            return answers

        def measure(on: bool, seconds: float) -> float:
            def work() -> tuple[float, list[Any]]:
                done = bench_ledger.run_clients(1, seconds, with_house)
                return done if isinstance(done, tuple) else (done, [])

            answers = forked([(on, work)] * args.clients)
            errors = [error for _, found in answers for error in found]
            if errors:
                raise SystemExit(f"ledger clients failed: {errors[:3]}")
            return sum(rate for rate, _ in answers)

        def measure_paired(top: bool, bottom: bool, seconds: float) -> tuple[float, float]:
            """`--clients` / 2 client processes set up as `top` and as many as `bottom`, all
            measured over the same seconds (top's processes forked first): top's rate over
            bottom's, and top's client CPU per posting over bottom's."""
            def work(group: int) -> Any:
                cpu, started = time.process_time(), time.monotonic()
                rate, errors = bench_ledger.run_clients(1, seconds, with_house)
                postings = rate * (time.monotonic() - started)
                return group, rate, time.process_time() - cpu, postings, errors

            half = max(1, args.clients // 2)
            answers = forked([(on, functools.partial(work, group))
                              for group, on in ((0, top), (1, bottom)) for _ in range(half)])
            errors = [error for *_, found in answers for error in found]
            if errors:
                raise SystemExit(f"ledger clients failed: {errors[:3]}")
            rate = [sum(a[1] for a in answers if a[0] == g) for g in (0, 1)]
            cpu = [sum(a[2] for a in answers if a[0] == g)
                   / max(1.0, sum(a[3] for a in answers if a[0] == g)) for g in (0, 1)]
            return rate[0] / rate[1], cpu[0] / cpu[1]

        rates: dict[bool, list[float]] = {True: [], False: []}
        if paired is not None:
            measure_paired(True, False, 1.0)     # warm up
            for r in range(args.rounds):
                # A/A: both off; the top group (forked first) alternates with the on/off
                # rounds' order, so the fork order's own effect shows in A/A and cancels.
                for kind, top, bottom in (("A/A", False, False),
                                          ("on/off", True, False) if r % 2 == 0
                                          else ("on/off", False, True)):
                    rate, cpu = measure_paired(top, bottom, args.seconds)
                    if kind == "on/off" and not top:      # on forked second: invert
                        rate, cpu = 1 / rate, 1 / cpu
                    elif kind == "A/A" and r % 2 == 1:
                        rate, cpu = 1 / rate, 1 / cpu
                    paired.add(kind, "rate", rate)
                    paired.add(kind, "client CPU", cpu)
                    print(f"    round {r + 1} {kind:6}: rate {rate:.3f}  client CPU per "
                          f"posting {cpu:.3f}", flush=True)
        else:
            measure(True, 1.0)     # warm up
            measure(False, 1.0)
            for r in range(args.rounds):
                for on in ((False, True) if r % 2 == 0 else (True, False)):
                    rates[on].append(measure(on, args.seconds))
        check_engine = make_engine(sqlalchemy_url(url), pool_size=1)
        with check_engine.begin() as conn:
            violations = check(conn)
        check_engine.dispose()
    if violations:
        raise SystemExit(f"ledger check failed: {violations[:3]}")
    return rates[False], rates[True]


# --- (2) deposits ------------------------------------------------------------------------------

class Side:
    """One stack's processes (Stripe sandbox, API, worker) in its own Temporal namespace."""

    def __init__(self, name: str, on: bool, base_env: dict[str, str], sink: Sink,
                 logs: Path, exporter: str, sample_ratio: float | None) -> None:
        self.name, self.logs = name, logs
        self.namespace = f"bench-{name}"
        self.base_env, self.sink = base_env, sink
        self.exporter, self.sample_ratio = exporter, sample_ratio
        self.procs: list[subprocess.Popen[bytes]] = []
        self.configure(on)

    def configure(self, on: bool) -> None:
        """Telemetry on or off for the next start(), on fresh ports (a stopped stack's ports
        may linger); the namespace stays the stack's own."""
        from tests.support.net import free_port

        self.on = on
        sandbox_port, api_port = free_port(), free_port()
        self.metrics_port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{sandbox_port}"
        self.api_url = f"http://127.0.0.1:{api_port}"
        self.env = {**self.base_env, "SETTLEPAY_TEMPORAL_NAMESPACE": self.namespace,
                    "SETTLEPAY_STRIPE_API_BASE": self.sandbox_url,
                    "SETTLEPAY_SANDBOX_STRIPE_WEBHOOK_URL": f"{self.api_url}/v1/webhooks/stripe",
                    "SETTLEPAY_API_PORT": str(api_port),
                    "SETTLEPAY_WORKER_METRICS_PORT": str(self.metrics_port),
                    "SETTLEPAY_TELEMETRY_ENABLED": "true" if on else "false",
                    "SETTLEPAY_TRACES_EXPORTER": self.exporter if on else "none",
                    "SETTLEPAY_OTLP_ENDPOINT": self.sink.url}
        self.env.pop("SETTLEPAY_TRACES_SAMPLE_RATIO", None)   # production's default...
        if self.sample_ratio is not None:                       # ...unless asked otherwise
            self.env["SETTLEPAY_TRACES_SAMPLE_RATIO"] = str(self.sample_ratio)
        self.sandbox_port, self.api_port = sandbox_port, api_port

    def start(self, events: str) -> None:
        py = sys.executable
        self._spawn("sandbox", [py, "-m", "sandboxes.stripe", "--port", str(self.sandbox_port),
                                "--enabled-events", events])
        self._spawn("api", [py, "-m", "settlepay.cli", "api", "--port", str(self.api_port)])
        self._spawn("worker", [py, "-m", "settlepay.cli", "worker"])

    def _spawn(self, what: str, argv: list[str]) -> None:
        with open(self.logs / f"{self.name}-{what}.log", "ab") as log:
            self.procs.append(subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=log,
                                               stderr=subprocess.STDOUT))

    def wait_ready(self) -> None:
        from tests.support.net import wait_http

        # Minutes, not seconds: on a loaded machine four processes start at once.
        wait_http(f"{self.sandbox_url}/_sandbox/stats", timeout=240)
        wait_http(f"{self.api_url}/healthz", timeout=240)
        self.check_alive()

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise SystemExit(f"{' '.join(map(str, proc.args))} exited ({proc.returncode});"
                                 f" logs in {self.logs}")

    def cpu(self) -> dict[str, float]:
        """CPU seconds (user + system) used so far by the API's and the worker's processes,
        each with its children (the API's supervisor and its server processes)."""
        import psutil

        used = {}
        for what, proc in zip(("sandbox", "api", "worker"), self.procs, strict=True):
            total = 0.0
            try:
                tree = psutil.Process(proc.pid)
                for one in (tree, *tree.children(recursive=True)):
                    times = one.cpu_times()
                    total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
            used[what] = total
        return used

    def scrape(self) -> str:
        """Both /metrics, as Prometheus would; the API's text."""
        import httpx

        if not self.on:
            return ""
        api = httpx.get(f"{self.api_url}/metrics", timeout=10).text
        httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
        return api

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.procs = []


async def _two_namespaces(args: argparse.Namespace, database_url: str,
                          namespaces: tuple[str, str]) -> tuple[Any, dict[str, str]]:
    """A Temporal dev server with the two sides' namespaces, and the environment both sides'
    processes start from."""
    from temporalio.contrib.pydantic import pydantic_data_converter
    from temporalio.testing import WorkflowEnvironment

    from settlepay import binaries, search_attributes

    env = await WorkflowEnvironment.start_local(
        namespace=namespaces[0], dev_server_existing_path=binaries.temporal_cli(),
        data_converter=pydantic_data_converter, search_attributes=search_attributes.ALL,
        dev_server_log_level="error", dev_server_extra_args=["--namespace", namespaces[1]])
    base = {**os.environ, "PYTHONPATH": str(ROOT), "SETTLEPAY_DATABASE_URL": database_url,
            "SETTLEPAY_TEMPORAL_ADDRESS": env.client.service_client.config.target_host,
            "SETTLEPAY_LOG_LEVEL": "WARNING", "SETTLEPAY_API_DB_POOL_SIZE": "4",
            "SETTLEPAY_WORKER_DB_POOL_SIZE": "4",
            "SETTLEPAY_WORKER_ACTIVITY_THREADS": str(args.threads)}
    return env, base


async def deposits_overhead(args: argparse.Namespace,
                            sink: Sink) -> tuple[list[float], list[float], str,
                                                 dict[str, dict[str, list[float]]]]:
    import tempfile

    import httpx

    from settlepay.config import Settings
    from settlepay.temporal import connect, register_search_attributes
    from tests.support.databases import sqlalchemy_url, temporary_database

    deposits = _bench_module("deposits")
    logs = Path(tempfile.mkdtemp(prefix="settlepay-bench-obs-"))
    with temporary_database("sp_bench_obs") as database_url:
        env, base = await _two_namespaces(args, database_url, ("bench-off", "bench-on"))
        temporal = env.client.service_client.config.target_host
        sides = [Side(name, on, base, sink, logs, args.exporter, args.sample_ratio)
                 for name, on in (("off", False), ("on", True))]
        try:
            clients = {}
            for side in sides:   # the bench's own client is not measured: no tracing in it
                clients[side.name] = await connect(Settings(
                    temporal_address=temporal, telemetry_enabled=False),
                    namespace=side.namespace)
                await register_search_attributes(clients[side.name])
            for side in sides:
                side.start(",".join(deposits.WEBHOOK_EVENTS))
            for side in sides:
                side.wait_ready()
            key, players = deposits.make_players(sqlalchemy_url(database_url), 64,
                                                 f"bench-{uuid.uuid4().hex[:8]}")
            rates: dict[str, list[float]] = {"off": [], "on": []}
            cpu: dict[str, dict[str, list[float]]] = {
                name: {"api": [], "worker": []} for name in ("off", "on")}
            async with httpx.AsyncClient(timeout=60.0) as http:
                for side in sides:    # warm up
                    http.base_url = httpx.URL(side.api_url)
                    await deposits.deposits_per_second(http, clients[side.name], key, players,
                                                       args.concurrency, args.concurrency)
                api_text = ""
                for r in range(args.rounds):
                    for side in (sides if r % 2 == 0 else sides[::-1]):
                        http.base_url = httpx.URL(side.api_url)
                        before = side.cpu()
                        rate, _, _ = await deposits.deposits_per_second(
                            http, clients[side.name], key, players, args.deposits,
                            args.concurrency)
                        after = side.cpu()
                        rates[side.name].append(rate)
                        for what in ("api", "worker"):
                            cpu[side.name][what].append(
                                1000 * (after[what] - before[what]) / args.deposits)
                        api_text = side.scrape() or api_text
                        side.check_alive()
            exported = [name for name in ("settlepay_deposits_total",
                                          "settlepay_ledger_posting_seconds",
                                          "settlepay_http_requests_total")
                        if name in api_text or name.removesuffix("_total") in api_text]
        finally:
            for side in sides:
                side.stop()
            await env.shutdown()
    return rates["off"], rates["on"], ", ".join(exported) or "none", cpu


# --- paired mode: both sides at the same time --------------------------------------------------

class Paired:
    """One paired mode's rounds: per round, the numerator side's figure over the
    denominator's (on / off in the measured rounds, one off stack over the other in A/A)."""

    def __init__(self) -> None:
        self.rounds: dict[str, dict[str, list[float]]] = {"on/off": {}, "A/A": {}}

    def add(self, kind: str, figure: str, ratio: float) -> None:
        self.rounds[kind].setdefault(figure, []).append(ratio)

    def ratios(self, kind: str, figure: str) -> list[float]:
        return self.rounds[kind].get(figure, [])

    def overheads(self, kind: str, figure: str, rate: bool) -> list[float]:
        """Per round, what the numerator costs: a rate's shortfall (1 - ratio) or a CPU
        figure's excess (ratio - 1)."""
        return [1 - r if rate else r - 1 for r in self.ratios(kind, figure)]

    def report(self, what: str, figure: str, rate: bool) -> str:
        return paired_report(what, self.overheads("on/off", figure, rate),
                             self.overheads("A/A", figure, rate))


async def _drive(post: Any, http: Any, client: Any, key: str, players: list[str], n: int,
                 concurrency: int, t0: float, offset: int) -> list[float]:
    """`n` deposits (POST /v1/deposits with bench/deposits.py's `post_retrying`, then the
    workflow's result) at `concurrency`; each one's completion time in seconds since t0. Any
    failure voids the round."""
    from workflows.contracts.deposit import DepositResult

    gate = asyncio.Semaphore(concurrency)
    done: list[float] = []
    failures: list[str] = []

    async def one(i: int) -> None:
        async with gate:
            headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
            body = {"player_id": players[(offset + i) % len(players)], "amount": 1_000,
                    "currency": "USD", "payment_method": "pm_card_visa"}
            answer = await post(http, headers, body)
            if answer.status_code != 202:
                failures.append(f"POST {answer.status_code}: {answer.text[:200]}")
                return
            deposit_id = answer.json()["id"]
            result = await asyncio.wait_for(client.get_workflow_handle(
                f"deposit-{deposit_id}", result_type=DepositResult).result(), 120)
            if result.status != "succeeded":
                failures.append(f"{deposit_id}: {result.status} {result.failure_code}")
            done.append(time.perf_counter() - t0)

    await asyncio.gather(*(one(i) for i in range(n)))
    if failures:
        raise SystemExit(f"{len(failures)} deposits failed, e.g. {failures[:3]}")
    return done


async def deposits_paired(args: argparse.Namespace, sink: Sink) -> tuple[Paired, str]:
    """Two stacks, x and y, driven at the same time at half the concurrency each, the same
    number of deposits each. Per round index r: an A/A round (both off; x over y when r is
    even, y over x when odd) and an on/off round (x on when r is even, y when odd). Both
    stacks are restarted before every round, so every round has the same history."""
    import tempfile

    import httpx

    from settlepay.config import Settings
    from settlepay.temporal import connect, register_search_attributes
    from tests.support.databases import sqlalchemy_url, temporary_database

    deposits = _bench_module("deposits")
    post = deposits.post_retrying
    half = max(1, args.concurrency // 2)
    logs = Path(tempfile.mkdtemp(prefix="settlepay-bench-obs-"))
    paired = Paired()
    api_text = ""
    with temporary_database("sp_bench_obs") as database_url:
        env, base = await _two_namespaces(args, database_url, ("bench-x", "bench-y"))
        temporal = env.client.service_client.config.target_host
        x, y = (Side(name, False, base, sink, logs, args.exporter, args.sample_ratio)
                for name in ("x", "y"))
        try:
            clients = {}
            for side in (x, y):   # the bench's own client is not measured: no tracing in it
                clients[side.name] = await connect(Settings(
                    temporal_address=temporal, telemetry_enabled=False),
                    namespace=side.namespace)
                await register_search_attributes(clients[side.name])
            key, players = deposits.make_players(sqlalchemy_url(database_url), 64,
                                                 f"bench-{uuid.uuid4().hex[:8]}")
            events = ",".join(deposits.WEBHOOK_EVENTS)

            async def one_round(top: Side, bottom: Side, n: int) -> dict[str, Any]:
                """Both stacks at once; top's figures over bottom's."""
                async with httpx.AsyncClient(timeout=60.0, base_url=top.api_url) as h_top, \
                        httpx.AsyncClient(timeout=60.0, base_url=bottom.api_url) as h_bottom:
                    before = {side.name: side.cpu() for side in (top, bottom)}
                    t0 = time.perf_counter()
                    t_top, t_bottom = await asyncio.gather(
                        _drive(post, h_top, clients[top.name], key, players, n, half, t0, 0),
                        _drive(post, h_bottom, clients[bottom.name], key, players, n, half,
                               t0, len(players) // 2))
                    after = {side.name: side.cpu() for side in (top, bottom)}
                rate_top, rate_bottom = common_window_rates(t_top, t_bottom)
                cpu = {side.name: {what: 1000 * (after[side.name][what]
                                                 - before[side.name][what]) / n
                                   for what in ("api", "worker")} for side in (top, bottom)}
                for side in (top, bottom):
                    cpu[side.name]["api + worker"] = (cpu[side.name]["api"]
                                                      + cpu[side.name]["worker"])
                    side.check_alive()
                return {"rate": rate_top / rate_bottom, "rates": (rate_top, rate_bottom),
                        **{what: cpu[top.name][what] / cpu[bottom.name][what]
                           for what in ("api", "worker", "api + worker")},
                        "cpu": (cpu[top.name], cpu[bottom.name])}

            for r in range(args.rounds):
                for kind in ("A/A", "on/off"):
                    first = x if r % 2 == 0 else y
                    second = y if first is x else x
                    for side in (x, y):
                        side.stop()
                        side.configure(kind == "on/off" and side is first)
                    for side in (first, second):
                        side.start(events)
                    for side in (first, second):
                        side.wait_ready()
                    await one_round(first, second, args.concurrency)     # warm up
                    got = await one_round(first, second, args.deposits)
                    for figure in ("rate", "api", "worker", "api + worker"):
                        paired.add(kind, figure, got[figure])
                    if kind == "on/off":
                        api_text = first.scrape() or api_text
                    top_cpu, bottom_cpu = got["cpu"]
                    label = (f"{first.name} on / {second.name} off" if kind == "on/off"
                             else f"{first.name} off / {second.name} off")
                    print(f"    round {r + 1} {kind:6} ({label}): {got['rates'][0]:.1f}/s vs "
                          f"{got['rates'][1]:.1f}/s = {got['rate']:.3f};  CPU per deposit "
                          f"api + worker {top_cpu['api + worker']:.1f} vs "
                          f"{bottom_cpu['api + worker']:.1f} ms = {got['api + worker']:.3f}",
                          flush=True)
            exported = [name for name in ("settlepay_deposits_total",
                                          "settlepay_ledger_posting_seconds",
                                          "settlepay_http_requests_total")
                        if name in api_text or name.removesuffix("_total") in api_text]
        finally:
            for side in (x, y):
                side.stop()
            await env.shutdown()
    return paired, ", ".join(exported) or "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="ledger: per round and side")
    parser.add_argument("--mode", choices=("paired", "interleaved"), default="paired",
                        help="paired (default): on and off driven at the same time, with an "
                             "A/A calibration; interleaved: one side after the other")
    parser.add_argument("--rounds", type=int, default=5,
                        help="on/off rounds (paired: and as many A/A rounds)")
    parser.add_argument("--clients", type=int, default=16, help="ledger client processes")
    parser.add_argument("--deposits", type=int, default=48, help="per round and side")
    parser.add_argument("--concurrency", type=int, default=24)
    parser.add_argument("--threads", type=int, default=16, help="activity threads per worker")
    parser.add_argument("--skip", choices=("ledger", "deposits"), default=None)
    parser.add_argument("--exporter", choices=("otlp", "none"), default="otlp",
                        help="on side: ship spans over OTLP (default) or make them only")
    parser.add_argument("--sample-ratio", type=float, default=None,
                        help="on side: share of traces recorded (default: production's, "
                             "Settings().traces_sample_ratio)")
    parser.add_argument("--sink", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        serve_sink(args.sink)
        return

    started = time.monotonic()
    from settlepay.config import Settings

    ratio = Settings().traces_sample_ratio if args.sample_ratio is None else args.sample_ratio
    which = "production's default" if args.sample_ratio is None else "asked"
    print(f"observability overhead: tracing + metrics on vs off; on = traces sampled at "
          f"{100 * ratio:g} % ({which}), exporter {args.exporter}; {args.rounds} {args.mode} "
          f"rounds; {load()}", flush=True)
    sink = Sink()
    try:
        if args.mode == "paired":
            run_paired(args, sink)
        else:
            run_interleaved(args, sink)
        requests, size = sink.received()
        print(f"spans exported over OTLP: {requests} requests, {size / 1e6:.1f} MB; "
              f"{load()}; {time.monotonic() - started:.0f} s in all")
    finally:
        sink.stop()


def run_interleaved(args: argparse.Namespace, sink: Sink) -> None:
    if args.skip != "ledger":
        off, on = ledger_overhead(args, sink)
        print(f"ledger (b) single transfers touching the house, {args.clients} client "
              f"processes, {args.rounds} x {args.seconds:g} s each side:", flush=True)
        print(f"  {verdict(off, on)}", flush=True)
    if args.skip != "deposits":
        off, on, exported, cpu = asyncio.run(deposits_overhead(args, sink))
        print(f"deposits end to end, concurrency {args.concurrency}, "
              f"{args.rounds} x {args.deposits} each side:", flush=True)
        print(f"  {verdict(off, on)}", flush=True)
        print(f"  {cpu_per_deposit(cpu)}", flush=True)
        print(f"  the on stack's API /metrics had: {exported}")


def run_paired(args: argparse.Namespace, sink: Sink) -> None:
    print(f"  figures: median over rounds of the per-round overhead, [{100 * LEVEL:g} % "
          f"bootstrap interval of the median], (min .. max of the rounds); A/A = both sides "
          f"off, the method's own noise", flush=True)
    if args.rounds % 2:
        print(f"  note: {args.rounds} rounds is odd, so stack x is on once more than y and "
              f"a difference between the stacks does not fully cancel: prefer an even count",
              flush=True)
    if args.skip != "ledger":
        print(f"ledger (b) single transfers touching the house, paired: {args.clients // 2} "
              f"client processes on + {args.clients // 2} off at the same time, "
              f"{args.rounds} x {args.seconds:g} s (and as many A/A rounds):", flush=True)
        paired = Paired()
        ledger_overhead(args, sink, paired)
        print(f"  {paired.report('throughput', 'rate', True)}")
        print(f"  {paired.report('client CPU per posting', 'client CPU', False)}", flush=True)
    if args.skip != "deposits":
        print(f"deposits end to end, paired: two stacks at concurrency {args.concurrency // 2}"
              f" each at the same time, {args.deposits} deposits each per round, "
              f"{args.rounds} on/off rounds (the on stack alternating) and {args.rounds} A/A "
              f"rounds:", flush=True)
        paired, exported = asyncio.run(deposits_paired(args, sink))
        print(f"  {paired.report('throughput', 'rate', True)}")
        for what in ("api + worker", "api", "worker"):
            print(f"  {paired.report(f'CPU per deposit ({what})', what, False)}")
        print(f"  the on stack's API /metrics had: {exported}", flush=True)


if __name__ == "__main__":
    main()
