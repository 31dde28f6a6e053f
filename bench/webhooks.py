"""Partner webhooks at load, on this machine (a temporary database, the receiver sandbox and
N dispatchers as real processes, everything on loopback).

    .venv/bin/python bench/webhooks.py [--events 20000] [--rate 100] [--seconds 20]
                                       [--bets 100000] [--dispatchers 1]

1. Throughput: EVENTS committed outbox events for one partner's endpoint, then the
   dispatchers deliver them to the receiver (which verifies every signature). Deliveries per
   second from the first attempt's start to the last one's end. Target >= 500/s on 2 cores.
2. Lag: a producer commits RATE events per second (each its own transaction) for SECONDS;
   commit -> first attempt lag, p50 / p99, from the producer's commit time and the attempt's
   start time. Target p99 < 2 s at 100 events/s.
3. A BETS-bet market settled through the real settlement commands (inline, 2,000 bets per
   batch) with the partner subscribed to per-bet events: the time from the start of settlement
   until the partner has every event (one `bet.settled` per bet and the `market.settled`
   summary). No target is named; the figure is printed.
Prints the figures with their ratio to the targets; drops its database on exit. Not a test.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

# Run as a script: the repository root goes on sys.path before the project's imports.
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx
from sqlalchemy import Engine, text

import outbox
from bench.settlement import seed, selections_v1
from settlepay.config import Settings
from settlepay.db import make_engine
from tests.support.databases import sqlalchemy_url, temporary_database
from tests.support.net import free_port, wait_http
from tests.support.settlement import post_result, run_market
from tests.support.webhooks import make_endpoint

THROUGHPUT_TARGET = 500.0       # deliveries per second
LAG_TARGET = 2.0                # seconds, p99


def met(ok: bool) -> str:
    return "MET" if ok else "MISSED"


@contextmanager
def processes(url: str, dispatchers: int, concurrency: int) -> Iterator[str]:
    """The receiver sandbox and the dispatchers; yields the receiver's base URL."""
    port = free_port()
    env = {**os.environ, "SETTLEPAY_DATABASE_URL": url, "SETTLEPAY_LOG_LEVEL": "WARNING",
           "SETTLEPAY_WEBHOOKS_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
           "SETTLEPAY_WEBHOOKS_DISPATCHER_CONCURRENCY": str(concurrency)}
    children = [subprocess.Popen([sys.executable, "-m", "sandboxes.webhook_receiver",
                                  "--port", str(port)], cwd=ROOT, env=env)]
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/healthz")
        for _ in range(dispatchers):
            children.append(subprocess.Popen(
                [sys.executable, "-m", "settlepay.cli", "webhooks", "dispatch"], cwd=ROOT,
                env=env))
        yield base
    finally:
        for child in children:
            child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(40)
            except subprocess.TimeoutExpired:
                child.kill()


def endpoint(engine: Engine, settings: Settings, receiver: str, partner: str, name: str,
             event_types: list[str]) -> str:
    row, secret = make_endpoint(engine, settings, partner, f"{receiver}/hooks/{name}",
                                event_types=event_types)
    httpx.put(f"{receiver}/_sandbox/endpoints/{name}", json={"secrets": [secret]},
              timeout=10).raise_for_status()
    return row["id"]


def succeeded(engine: Engine, endpoint_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("""SELECT count(*) FROM webhook_messages
                                     WHERE endpoint_id = :e AND status = 'succeeded'"""),
                            {"e": endpoint_id}).scalar_one()


def wait_delivered(engine: Engine, endpoint_id: str, count: int, timeout: float) -> float:
    start = time.monotonic()
    while succeeded(engine, endpoint_id) < count:
        if time.monotonic() - start > timeout:
            raise SystemExit(f"only {succeeded(engine, endpoint_id)} of {count} delivered "
                             f"after {timeout:.0f} s")
        time.sleep(0.2)
    return time.monotonic() - start


def throughput(engine: Engine, settings: Settings, receiver: str, events: int) -> None:
    ep = endpoint(engine, settings, receiver, "bench-throughput", "throughput", ["*"])
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO outbox_events (event_type, aggregate_type, aggregate_id, partner_id,
                                       payload)
            SELECT 'deposit.succeeded', 'deposit', 'dep_' || g, 'bench-throughput',
                   jsonb_build_object('deposit', 'dep_' || g, 'amount', 1000 + g,
                                      'currency', 'USD')
              FROM generate_series(1, :n) AS g"""), {"n": events})
    wait_delivered(engine, ep, events, timeout=events / 20 + 120)
    with engine.connect() as conn:
        first, last, attempts = conn.execute(text("""
            SELECT min(started_at), max(created_at), count(*) FROM webhook_attempts
             WHERE endpoint_id = :e"""), {"e": ep}).one()
    seconds = (last - first).total_seconds()
    rate = events / seconds
    stats = httpx.get(f"{receiver}/_sandbox/stats", params={"name": "throughput"}).json()
    print(f"1. throughput: {events:,} deliveries in {seconds:.1f} s = {rate:,.0f}/s "
          f"(attempts {attempts:,}; receiver: {stats['received']:,} received, "
          f"{stats['verified']:,} verified) — target >= {THROUGHPUT_TARGET:.0f}/s: "
          f"ratio {rate / THROUGHPUT_TARGET:.2f}, {met(rate >= THROUGHPUT_TARGET)}")


def lag(engine: Engine, settings: Settings, receiver: str, rate: float, seconds: float) -> None:
    ep = endpoint(engine, settings, receiver, "bench-lag", "lag", ["*"])
    committed: dict[int, datetime] = {}
    interval, start = 1.0 / rate, time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        due = start + n * interval
        if time.monotonic() < due:
            time.sleep(due - time.monotonic())
        with engine.begin() as conn:
            outbox_id = outbox.emit(conn, event_type="deposit.succeeded",
                                    aggregate_type="deposit", aggregate_id=f"dep_lag_{n}",
                                    payload={"n": n}, partner_id="bench-lag")
        committed[outbox_id] = datetime.now(UTC)
        n += 1
    wait_delivered(engine, ep, n, timeout=120)
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT e.outbox_id, a.started_at FROM webhook_attempts a
              JOIN webhook_events e ON e.id = a.event_id
             WHERE a.endpoint_id = :e AND a.attempt_number = 1 AND a.trigger = 'scheduled'"""),
                            {"e": ep}).all()
    lags = sorted((started - committed[outbox_id]).total_seconds() for outbox_id, started in rows)
    p50, p99 = statistics.median(lags), lags[int(len(lags) * 0.99) - 1]
    achieved = n / (time.monotonic() - start)
    print(f"2. lag at {rate:.0f} events/s for {seconds:.0f} s ({n:,} events, producer "
          f"{achieved:.0f}/s): commit -> first attempt p50 {p50 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {lags[-1] * 1000:.0f} ms — target p99 < "
          f"{LAG_TARGET:.0f} s: ratio {p99 / LAG_TARGET:.2f} of the target, "
          f"{met(p99 < LAG_TARGET)}")


def market(url: str, engine: Engine, settings: Settings, receiver: str, bets: int) -> None:
    market_id = "bench-webhooks-market"
    players = max(1, bets // 10)
    seed(url, engine, market_id, bets, players, "wh")   # partner "bench"
    ep = endpoint(engine, settings, receiver, "bench", "market",
                  ["bet.settled", "market.*"])
    post_result(engine, settings, market_id, 1, selections_v1())
    start = time.monotonic()
    run_market(engine, settings, market_id, 1, batch_size=2000, parts=1)
    settled = time.monotonic() - start
    wait_delivered(engine, ep, bets + 1, timeout=bets / 20 + 300)
    total = time.monotonic() - start
    print(f"3. market of {bets:,} bets, partner subscribed to per-bet events: settled in "
          f"{settled:.1f} s; the partner had all {bets + 1:,} events ({bets:,} bet.settled + "
          f"market.settled) {total:.1f} s after settlement began "
          f"({(bets + 1) / total:,.0f} deliveries/s overall)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--bets", type=int, default=100_000, help="0 skips part 3")
    parser.add_argument("--dispatchers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args()
    with temporary_database("sp_bench_webhooks") as url:
        settings = Settings(database_url=url, webhooks_allowed_networks=["127.0.0.1/32"],
                            settlement_batch_size=2000)
        engine = make_engine(sqlalchemy_url(url), pool_size=4, settings=settings)
        try:
            with processes(url, args.dispatchers, args.concurrency) as receiver:
                print(f"bench/webhooks.py: {args.dispatchers} dispatcher process(es), "
                      f"{args.concurrency} deliveries in flight per lane, receiver on loopback "
                      f"verifying every signature; {os.cpu_count()} cores")
                throughput(engine, settings, receiver, args.events)
                lag(engine, settings, receiver, args.rate, args.seconds)
                if args.bets:
                    market(url, engine, settings, receiver, args.bets)
        finally:
            engine.dispose()


if __name__ == "__main__":
    main()
