"""Prometheus metrics of settlepay: every definition lives here, so the dashboard
(deploy/grafana/) and the code name each metric once.

Each process serves them at `/metrics`: the API on its own port (api/telemetry.py), the worker
on `SETTLEPAY_WORKER_METRICS_PORT` (`serve`), the worker adding the Temporal SDK's runtime
metrics (settlepay/temporal.py `metrics_runtime`) and the metrics computed from the database on
each scrape (`DatabaseCollector`: outbox lag, open holds by age).

Labels are bounded sets (an outcome, an operation, a status class, a route template): never a
player, bet, deposit or workflow id.

Several API processes on one port (api/server.py): a scrape reaches one of them, so each
process writes its counters, histograms and gauges to files in a directory private to this run
of the supervisor (prometheus_client's multiprocess mode, `PROMETHEUS_MULTIPROC_DIR`, set by
`multiprocess_directory` before the processes start), and `/metrics` answers their sum
(`exposition`). Each Gauge names its `multiprocess_mode` (a sum of live processes, a max, ...):
the default, one series per pid, is an unbounded label. A value computed at scrape time (the
`DatabaseCollector`'s) is not stored per process: `register_live` it, and the process serving
the scrape computes it once. Per-process collectors (process_*, python_gc_*) are left out of the
sum: they would describe whichever process answered.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time
import urllib.request
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Connection, Engine, event, text

log = logging.getLogger("settlepay.metrics")

PREFIX = "settlepay_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LONG_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 21600, 86400)

# --- HTTP (the API's request middleware) --------------------------------------------------------
HTTP_REQUESTS = Counter(
    "settlepay_http_requests", "HTTP requests answered, by route template and status class",
    ["method", "route", "status"])
HTTP_REQUEST_SECONDS = Histogram(
    "settlepay_http_request_seconds", "Time to answer an HTTP request", ["method", "route"],
    buckets=LATENCY_BUCKETS)
HTTP_REQUESTS_IN_FLIGHT = Gauge(
    "settlepay_http_requests_in_flight", "HTTP requests being answered now",
    multiprocess_mode="livesum")   # over the processes alive; a dead one's are dropped

# --- deposits and withdrawals -------------------------------------------------------------------
DEPOSITS = Counter(
    "settlepay_deposits", "Deposits that reached a final outcome (succeeded, failed, review)",
    ["outcome"])
DEPOSIT_SECONDS = Histogram(
    "settlepay_deposit_seconds", "From a deposit's creation to its final outcome", ["outcome"],
    buckets=LONG_BUCKETS)
WITHDRAWALS = Counter(
    "settlepay_withdrawals", "Withdrawals that reached a final outcome (paid, cancelled, ...)",
    ["outcome"])

# --- ledger ---------------------------------------------------------------------------------------
LEDGER_POSTING_SECONDS = Histogram(
    "settlepay_ledger_posting_seconds",
    "Time of one ledger call (post, post_many, hold, post_hold, void_hold), database included",
    ["operation"], buckets=LATENCY_BUCKETS)

# --- settlement -----------------------------------------------------------------------------------
SETTLEMENT_BETS = Counter(
    "settlepay_settlement_bets", "Bets settled (rate(): bets per second)", ["step"])
SETTLEMENT_PART_SECONDS = Histogram(
    "settlepay_settlement_part_seconds", "Time to settle one part of a settlement batch",
    buckets=LATENCY_BUCKETS)
SETTLEMENT_SECONDS = Histogram(
    "settlepay_settlement_seconds", "From a market's result to its settlement finished",
    buckets=LONG_BUCKETS)

# --- partner webhooks and reconciliation --------------------------------------------------------
WEBHOOK_ATTEMPTS = Counter(
    "settlepay_webhook_attempts", "Partner webhook delivery attempts, by result",
    ["status"])
WEBHOOK_DELIVERY_LAG_SECONDS = Histogram(
    "settlepay_webhook_delivery_lag_seconds",
    "From the event's commit to its successful delivery", buckets=LONG_BUCKETS)
RECONCILIATION_ITEMS = Counter(
    "settlepay_reconciliation_items", "Gateway items reconciled, matched or not", ["result"])
RECONCILIATION_BREAKS = Counter(
    "settlepay_reconciliation_breaks", "Reconciliation breaks found, by class", ["class"])

# --- computed from the database on scrape (DatabaseCollector) ------------------------------------
OUTBOX_LAG = "settlepay_outbox_lag_seconds"
OUTBOX_UNPUBLISHED = "settlepay_outbox_unpublished_events"
OPEN_HOLDS = "settlepay_ledger_open_holds"
HOLD_AGES: tuple[tuple[str, float], ...] = (
    ("lt_10m", 600), ("10m_1h", 3600), ("1h_1d", 86400), ("1d_7d", 604800),
    ("gt_7d", float("inf")))

# Every metric family a process exports, by name (the dashboard test checks against this).
BUSINESS_METRICS = (
    "settlepay_deposits_total", "settlepay_deposit_seconds", "settlepay_withdrawals_total",
    "settlepay_ledger_posting_seconds", "settlepay_settlement_bets_total",
    "settlepay_settlement_part_seconds", "settlepay_settlement_seconds",
    "settlepay_webhook_attempts_total", "settlepay_webhook_delivery_lag_seconds",
    "settlepay_reconciliation_items_total", "settlepay_reconciliation_breaks_total",
    OUTBOX_LAG, OUTBOX_UNPUBLISHED, OPEN_HOLDS,
)

_enabled = True


def set_enabled(enabled: bool) -> None:
    """Telemetry off (`SETTLEPAY_TELEMETRY_ENABLED=false`): business metrics are not recorded."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return _enabled


# Label children by (metric, label values), bound once: `labels()` takes the metric's lock and
# builds a tuple on every call; a hot path (a ledger posting, a request) asks a dict instead.
# Bounded: every label is a bounded set (see the module's docstring).
_children: dict[tuple[int, tuple[str, ...]], Any] = {}


def child(metric: Any, *labels: str) -> Any:
    """`metric.labels(*labels)`, bound once per label values (the metric itself without)."""
    if not labels:
        return metric
    key = (id(metric), labels)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*labels)
    return found


def count(counter: Counter, label: str, amount: float = 1.0) -> None:
    """Add to a one-label counter (an outcome, a status, a class)."""
    if _enabled:
        child(counter, label).inc(amount)


def observe(histogram: Histogram, seconds: float, *labels: str) -> None:
    """Observe a duration measured elsewhere (e.g. between two database timestamps)."""
    if _enabled:
        latency(histogram, *labels).observe(max(seconds, 0.0))


# Latency series by (metric, label values), made once (bounded as the labels are).
_latencies: dict[tuple[int, tuple[str, ...]], Latency] = {}


def latency(histogram: Histogram, *labels: str) -> Latency:
    """The unbuffered `Latency` of a histogram's series, made once per label values: what a
    per-request or per-operation observation with labels known only at run time goes through
    (the request duration by route, a deposit's time to its outcome)."""
    key = (id(histogram), labels)
    found = _latencies.get(key)
    if found is None:
        found = _latencies[key] = Latency(histogram, *labels)
    return found


def on_commit(conn: Connection, record: Callable[[], None]) -> None:
    """Call `record` when the transaction of `conn` commits, never when it rolls back: a
    state change written by a command is counted once, however often its transaction is
    retried (settlepay.db.run_in_transaction). SQLAlchemy's `commit` event comes as COMMIT is
    sent; the listeners live on this Connection object only."""
    done = False

    def committed(_: Connection) -> None:
        nonlocal done
        if not done:
            done = True
            try:
                record()
            except Exception:   # a metric never stops a commit
                log.exception("metric not recorded")

    def rolled_back(_: Connection) -> None:
        nonlocal done
        done = True

    event.listen(conn, "commit", committed, once=True)
    event.listen(conn, "rollback", rolled_back, once=True)


class Latency:
    """One histogram series (a metric and its label values), observed on a hot path: a ledger
    posting, an HTTP request. Bound at its first observation (not at import: a series appears
    once something is observed), then each observation is the library's own values updated
    directly: the bucket found by bisection of the upper bounds (the first bound >= the
    amount, which is what `Histogram.observe` scans for) and the sum, each one increment of a
    prometheus_client value (its lock, or its file in multiprocess mode). The library's
    `observe` checks observability, scans every bound and looks up attributes per call:
    ~9,400 instructions (callgrind); this ~7,900. If a prometheus_client version stops keeping
    those attributes, the series' own `observe` is used.

    `buffered=True` (the ledger's postings, run per transfer on a database round trip): an
    observation is appended to a queue (~1,500 instructions with the call) and the queue is
    folded into the series, one increment per bucket touched, when it holds `DRAIN_AT`
    observations, before every exposition of this process (`exposition`), every `DRAIN_EVERY`
    seconds (a daemon thread, started by the first buffered observation of a process) and at
    exit. So a scrape served by this process is exact, and one of another process's files (the
    API's multiprocess mode) lags at most DRAIN_EVERY seconds. A forked child drops its
    parent's queued observations (the parent records them). tests/settlepay/observability/
    test_latency.py compares both modes with the library's `observe`.

        POSTED = Latency(LEDGER_POSTING_SECONDS, "post")     # module level
        started = time.perf_counter(); ...; POSTED.since(started)
    """

    __slots__ = ("_metric", "_labels", "_observe", "_observe_many", "_lock", "_pending")

    def __init__(self, metric: Histogram, *labels: str, buffered: bool = False) -> None:
        self._metric, self._labels = metric, labels
        self._observe: Callable[[float], None] | None = None
        self._observe_many: Callable[[list[float]], None] | None = None
        self._lock = threading.Lock()
        self._pending: deque[float] | None = deque() if buffered else None
        if buffered:
            with _drainer_lock:
                _BUFFERED.append(self)

    def _bind(self) -> Callable[[float], None]:
        with self._lock:
            if self._observe is None:
                series = child(self._metric, *self._labels)
                self._observe_many = _direct_observe_many(series)
                self._observe = _direct_observe(series)
            return self._observe

    def observe(self, seconds: float) -> None:
        """Record `seconds` (telemetry on)."""
        if _enabled:
            pending = self._pending
            if pending is None:
                (self._observe or self._bind())(seconds)
                return
            pending.append(seconds)
            if len(pending) >= DRAIN_AT or not _drainer:
                self._overflow()

    def since(self, started: float) -> None:
        """Record the time since `started` (a `time.perf_counter()` reading)."""
        if _enabled:
            pending = self._pending
            if pending is None:
                (self._observe or self._bind())(time.perf_counter() - started)
                return
            pending.append(time.perf_counter() - started)
            if len(pending) >= DRAIN_AT or not _drainer:
                self._overflow()

    def _overflow(self) -> None:
        _start_drainer()
        if self._pending is not None and len(self._pending) >= DRAIN_AT:
            self.drain()

    def drain(self) -> None:
        """Fold the queued observations into the series (a buffered Latency; else nothing)."""
        pending = self._pending
        if not pending:
            return
        self._observe or self._bind()
        with self._lock:
            taken: list[float] = []
            try:
                while True:
                    taken.append(pending.popleft())
            except IndexError:
                pass
            if taken and self._observe_many is not None:
                self._observe_many(taken)

    def forget(self) -> None:
        """Drop the queued observations (a forked child's copy of its parent's queue)."""
        if self._pending is not None:
            self._pending.clear()


# Buffered Latency series: drained at DRAIN_AT queued, before an exposition, every
# DRAIN_EVERY seconds and at exit.
DRAIN_AT = 256
DRAIN_EVERY = 1.0
_BUFFERED: list[Latency] = []   # module-level series, made once each
_drainer = False          # the draining thread runs in this process
_drainer_lock = threading.Lock()


def drain_all() -> None:
    """Fold every buffered series' queue into its series (before a scrape, at exit)."""
    with _drainer_lock:
        buffered = list(_BUFFERED)
    for latency in buffered:
        try:
            latency.drain()
        except Exception:   # a metric never stops the process
            log.exception("latency observations not recorded")


def _drain_every() -> None:
    while True:
        time.sleep(DRAIN_EVERY)
        drain_all()


def _start_drainer() -> None:
    global _drainer
    with _drainer_lock:
        if _drainer:
            return
        threading.Thread(target=_drain_every, name="settlepay-metrics-drain",
                         daemon=True).start()
        _drainer = True


def _after_fork_in_child() -> None:
    global _drainer, _drainer_lock
    _drainer, _drainer_lock = False, threading.Lock()   # the thread stayed in the parent
    for latency in list(_BUFFERED):
        latency.forget()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(drain_all)


def _layout(series: Any) -> tuple[list[float], list[Any], Any] | None:
    """The series' upper bounds, bucket values and sum value, when it keeps them as this
    module expects (sorted bounds ending with +Inf, one value per bound), else None."""
    bounds = getattr(series, "_upper_bounds", None)
    buckets = getattr(series, "_buckets", None)
    total = getattr(series, "_sum", None)
    if (not isinstance(bounds, list) or not isinstance(buckets, list) or total is None
            or len(bounds) != len(buckets) or not bounds or bounds[-1] != float("inf")
            or bounds != sorted(bounds)):
        return None
    return bounds, buckets, total


def _direct_observe(series: Any) -> Callable[[float], None]:
    """`series.observe` as direct value updates (see `Latency`), or the method itself when the
    series does not keep its bounds, buckets and sum as this module expects."""
    layout = _layout(series)
    if layout is None:
        return series.observe   # type: ignore[no-any-return]
    bounds, buckets, total = layout
    bucket_incs = [bucket.inc for bucket in buckets]
    add_to_sum = total.inc

    def observe(amount: float) -> None:
        add_to_sum(amount)
        if amount == amount:   # not NaN: a NaN falls in no bucket, as with the library
            bucket_incs[bisect_left(bounds, amount)](1)

    return observe


def _direct_observe_many(series: Any) -> Callable[[list[float]], None]:
    """Observe a batch: one increment of the sum and one of each bucket touched."""
    layout = _layout(series)
    if layout is None:
        def one_by_one(amounts: list[float]) -> None:
            for amount in amounts:
                series.observe(amount)
        return one_by_one
    bounds, buckets, total = layout

    def observe_many(amounts: list[float]) -> None:
        counts = [0] * len(bounds)
        for amount in amounts:
            if amount == amount:
                counts[bisect_left(bounds, amount)] += 1
        total.inc(sum(amounts))
        for index, found in enumerate(counts):
            if found:
                buckets[index].inc(found)

    return observe_many


class _Timer:
    __slots__ = ("_target", "_start")

    def __init__(self, target: Any) -> None:
        self._target = target
        self._start = 0.0

    def __enter__(self) -> None:
        if self._target is not None:
            self._start = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        if self._target is not None:
            self._target.observe(time.perf_counter() - self._start)


def timed(histogram: Histogram, *labels: str) -> _Timer:
    """Observe the time the block takes (also when it raises):

        with timed(SETTLEMENT_PART_SECONDS): ...

    A plain object, not a generator. On a path run per posting or request, a module-level
    `Latency` and `since` cost less (no object per call)."""
    return _Timer(child(histogram, *labels) if _enabled else None)


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class DatabaseCollector(Collector):
    """Outbox lag and open holds by age, read from the database at each scrape (one short
    read-only query each, bounded by a statement timeout)."""

    def __init__(self, engine: Engine, timeout_ms: int = 2000) -> None:
        self._engine = engine
        self._timeout_ms = timeout_ms

    def describe(self) -> list[Any]:
        return []  # no query at registration

    def collect(self) -> Iterator[Any]:
        lag = GaugeMetricFamily(OUTBOX_LAG, "Age of the oldest outbox event not yet published")
        unpublished = GaugeMetricFamily(OUTBOX_UNPUBLISHED, "Outbox events not yet published")
        holds = GaugeMetricFamily(OPEN_HOLDS, "Pending ledger holds, by age", labels=["age"])
        try:
            with self._engine.connect() as conn, conn.begin():
                conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(self._timeout_ms)}")
                outbox = conn.execute(text(
                    "SELECT count(*) AS n, extract(epoch FROM now() - min(created_at)) AS age"
                    "  FROM outbox_events WHERE published_at IS NULL")).one()
                ages = conn.execute(text(
                    "SELECT extract(epoch FROM now() - t.created_at) AS age"
                    "  FROM ledger_holds h JOIN ledger_transactions t ON t.id = h.transaction_id"
                    " WHERE h.state = 'pending'")).scalars().all()
        except Exception:  # a scrape must answer even while the database does not
            return
        unpublished.add_metric([], float(outbox.n))
        lag.add_metric([], float(outbox.age or 0.0))
        by_age = dict.fromkeys((name for name, _ in HOLD_AGES), 0)
        for age in ages:
            by_age[next(name for name, limit in HOLD_AGES if float(age) < limit)] += 1
        for name, _ in HOLD_AGES:
            holds.add_metric([name], float(by_age[name]))
        yield from (lag, unpublished, holds)


MULTIPROC_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Collectors computed at scrape time (not stored per process): see `register_live`.
_live: list[Collector] = []


def register_live(collector: Collector) -> None:
    """Register a collector whose values are computed at scrape time (e.g. from the database):
    in the process's registry, and, in multiprocess mode, once in each summed scrape."""
    REGISTRY.register(collector)
    _live.append(collector)


def unregister_live(collector: Collector) -> None:
    REGISTRY.unregister(collector)
    _live.remove(collector)


def multiprocess_dir() -> str | None:
    """The directory the processes of this run write their metrics to, None for one process.
    prometheus_client reads the variable when it is imported: set before a process starts."""
    return os.environ.get(MULTIPROC_DIR_ENV) or None


def summed_registry(path: str) -> CollectorRegistry:
    """The metrics of every process that wrote to `path`, summed, and the live collectors."""
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=path)
    for collector in _live:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry | None = None,
               extra: Callable[[], bytes] | None = None) -> bytes:
    """The Prometheus text of `registry`, followed by `extra()` (another endpoint's text).
    Without a registry: the process's, or in multiprocess mode the sum over the processes."""
    drain_all()   # this process's buffered observations are in what it serves
    if registry is None:
        path = multiprocess_dir()
        registry = summed_registry(path) if path else REGISTRY
    body = generate_latest(registry)
    if extra is not None:
        body += extra()
    return body


def _live_gauge_pids(path: Path) -> set[int]:
    pids = set()
    for file in path.glob("gauge_live*_*.db"):
        pid = file.stem.rsplit("_", 1)[-1]
        if pid.isdigit():
            pids.add(int(pid))
    return pids


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:   # a zombie (exited, not yet joined by its parent) is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def reap_dead_processes(path: str) -> list[int]:
    """`mark_process_dead` for every process that wrote a live gauge to `path` and is gone
    (died and restarted, or stopped): its in-flight requests are no longer summed."""
    dead = sorted(pid for pid in _live_gauge_pids(Path(path)) if not _alive(pid))
    for pid in dead:
        multiprocess.mark_process_dead(pid, path)
    return dead


@contextmanager
def multiprocess_directory(interval: float = 1.0) -> Iterator[str]:
    """The supervisor of several processes, around their whole life: a fresh private
    directory for their metrics (never a previous run's files: a stale count would be summed),
    in `PROMETHEUS_MULTIPROC_DIR` for the processes it starts; dead processes marked every
    `interval` seconds; the directory removed at the end."""
    path = tempfile.mkdtemp(prefix="settlepay-metrics-")   # mode 0700: this user's only
    previous = os.environ.get(MULTIPROC_DIR_ENV)
    os.environ[MULTIPROC_DIR_ENV] = path
    stop = threading.Event()

    def reap() -> None:
        while not stop.wait(interval):
            try:
                reap_dead_processes(path)
            except Exception:   # never stops the supervisor
                log.exception("dead processes' metrics not marked")

    reaper = threading.Thread(target=reap, daemon=True, name="metrics-reaper")
    reaper.start()
    try:
        yield path
    finally:
        stop.set()
        reaper.join(timeout=5)
        if previous is None:
            os.environ.pop(MULTIPROC_DIR_ENV, None)
        else:
            os.environ[MULTIPROC_DIR_ENV] = previous
        shutil.rmtree(path, ignore_errors=True)


def fetch_text(url: str, timeout: float = 2.0) -> Callable[[], bytes]:
    """`extra` for `exposition`: the text another local endpoint serves (b"" if it is down)."""
    def read() -> bytes:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as answer:
                return answer.read()
        except OSError:
            return b""
    return read


class MetricsServer:
    """`/metrics` over HTTP in a background thread (the worker's endpoint)."""

    def __init__(self, host: str, port: int, extra: Callable[[], bytes] | None = None,
                 registry: CollectorRegistry = REGISTRY) -> None:
        def render() -> bytes:
            return exposition(registry, extra)

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404)
                    return
                body = render()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE_LATEST)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
                return

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="metrics-http")

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
