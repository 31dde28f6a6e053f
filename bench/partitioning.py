"""The partner webhook dispatcher on the partitioned tables (migration 0018) against the same
code on the plain tables (revision 0017, the baseline), interleaved rounds on one machine.

    .venv/bin/python bench/partitioning.py [--events 3000] [--rounds 2]

Each round: a fresh database at each revision, the receiver sandbox and one dispatcher process
(bench/webhooks.py's), EVENTS outbox events committed at once, then deliveries per second from
the first attempt's start to the last one's end (the dispatcher claims from outbox_events,
marks them published and writes webhook_attempts: the partitioned tables' hot paths). Prints
each round with the load average, the medians and their ratio (partitioned / plain). Not a
test; drops its databases.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import text

from bench.webhooks import endpoint, processes, wait_delivered
from settlepay.config import Settings
from settlepay.db import make_engine
from tests.support.databases import sqlalchemy_url, temporary_database

PLAIN, PARTITIONED = "0017_second_factor_lockout", "0018_table_growth"


def load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def deliveries_per_second(revision: str, events: int) -> float:
    with temporary_database("sp_bench_parts", revision=revision) as url:
        settings = Settings(database_url=url, webhooks_allowed_networks=["127.0.0.1/32"])
        engine = make_engine(sqlalchemy_url(url), pool_size=4, settings=settings)
        try:
            with processes(url, 1, 64) as receiver:
                ep = endpoint(engine, settings, receiver, "bench-parts", "parts", ["*"])
                with engine.begin() as conn:
                    conn.execute(text("""
                        INSERT INTO outbox_events (event_type, aggregate_type, aggregate_id,
                                                   partner_id, payload)
                        SELECT 'deposit.succeeded', 'deposit', 'dep_' || g, 'bench-parts',
                               jsonb_build_object('deposit', 'dep_' || g, 'amount', 1000 + g)
                          FROM generate_series(1, :n) AS g"""), {"n": events})
                wait_delivered(engine, ep, events, timeout=events / 10 + 120)
                with engine.connect() as conn:
                    first, last = conn.execute(text(
                        "SELECT min(started_at), max(created_at) FROM webhook_attempts"
                        " WHERE endpoint_id = :e"), {"e": ep}).one()
            return events / (last - first).total_seconds()
        finally:
            engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=3_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {PLAIN: [], PARTITIONED: []}
    for n in range(args.rounds):
        for revision in (PLAIN, PARTITIONED):
            before = load()
            rate = deliveries_per_second(revision, args.events)
            rates[revision].append(rate)
            print(f"round {n + 1} {revision}: {rate:,.0f} deliveries/s "
                  f"(load {before} -> {load()})", flush=True)
    plain, partitioned = statistics.median(rates[PLAIN]), statistics.median(rates[PARTITIONED])
    print(f"median: plain tables (baseline) {plain:,.0f}/s, partitioned {partitioned:,.0f}/s:"
          f" ratio {partitioned / plain:.2f}")


if __name__ == "__main__":
    main()
