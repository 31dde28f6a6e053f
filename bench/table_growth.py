"""How the append-only tables grow, measured on a bench database (README "Scale-out and
capacity", table growth).

    .venv/bin/python bench/table_growth.py [--bets 20000] [--deposits 5000]

On a temporary database at the head migration (audit_log, outbox_events and webhook_attempts
partitioned, migration 0018):
1. a market of BETS single bets seeded as bench/settlement.py does (players by COPY, a deposit
   per player and a stake per bet through `ledger.post_many`), its result posted and the market
   settled through the real settlement commands (tests/support/settlement.run_market);
2. DEPOSITS card deposits through the real commands (commands/deposits.py create + credit:
   the deposit row, its ledger transaction, audit records and outbox events);
3. PLACED bets through the real bet command (commands/bets.py place: the bet, its stake
   posting, an audit record and an outbox event each) by funded players;
4. one webhook attempt per outbox event, as the dispatcher writes them (store/webhooks.py
   insert_attempts, a 200 with a short body).
For each step and table: rows added and bytes added per row; at the end, for each table: bytes
per row = the table's whole size (heap, TOAST
and every index, summed over its partitions: pg_total_relation_size) / its rows, beside the
heap tuple alone (avg pg_column_size). The baseline named for the ratio is the heap tuple: the
ratio says what indexes and page overhead add. Drops its database on exit.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import Engine, text

from bench.settlement import post_result, seed, selections_v1
from commands import deposits
from settlepay.config import Settings
from settlepay.db import make_engine
from store import webhooks as webhook_store
from tests.support.databases import sqlalchemy_url, temporary_database
from tests.support.settlement import funded_player, place, run_market
from workflows.contracts.deposit import Credit

TABLES = ("ledger_transactions", "ledger_entries", "audit_log", "outbox_events",
          "webhook_attempts", "bets", "deposits")


def sizes(engine: Engine) -> dict[str, tuple[int, int, float]]:
    """table -> (rows, total bytes over its partitions incl. indexes and TOAST, avg heap tuple)."""
    out = {}
    with engine.connect() as conn:
        conn.execute(text("ANALYZE"))
        for table in TABLES:
            rows, heap = conn.execute(text(
                f"SELECT count(*), coalesce(avg(pg_column_size(t.*)), 0) FROM {table} t")).one()
            total = conn.execute(text(  # a plain table is its own (only) leaf
                "SELECT coalesce(sum(pg_total_relation_size(relid)),"
                "                pg_total_relation_size(CAST(:t AS regclass)))"
                "  FROM pg_partition_tree(CAST(:t AS regclass)) WHERE isleaf"),
                {"t": table}).scalar_one()
            out[table] = (rows, int(total), float(heap))
    return out


def deposit_many(engine: Engine, count: int) -> None:
    with engine.connect() as conn:
        players = list(conn.execute(text("SELECT * FROM players ORDER BY id LIMIT :n"),
                                    {"n": count}).mappings())
    for n in range(count):
        player = players[n % len(players)]
        deposit_id = f"dep_growth_{n:07d}"
        with engine.begin() as conn:
            deposits.create(conn, deposit_id=deposit_id, player=player, amount=2_500,
                            currency="USD", payment_method="pm_card_visa",
                            actor="api_key:bench")
            deposits.credit(conn, Credit(deposit_id=deposit_id, player_id=player["id"],
                                         amount=2_500, currency="USD",
                                         payment_intent=f"pi_growth_{n:07d}",
                                         charge=f"ch_growth_{n:07d}"))


def attempt_every_event(engine: Engine) -> None:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO webhook_endpoints (id, partner_id, url, event_types, secret_sealed)
            VALUES ('we_growth', 'partner-growth', 'https://partner.example/hooks',
                    ARRAY['*'], 'sealed')"""))
        conn.execute(text("""
            INSERT INTO webhook_events (id, partner_id, event_type, payload, occurred_at,
                                        outbox_id)
            SELECT 'evt_' || id, coalesce(partner_id, 'partner-growth'), event_type, payload,
                   created_at, id FROM outbox_events"""))
        conn.execute(text("""
            INSERT INTO webhook_messages (event_id, endpoint_id, partner_id, trigger, status,
                                          attempts, created_at, updated_at)
            SELECT id, 'we_growth', partner_id, 'scheduled', 'succeeded', 1, :now, :now
              FROM webhook_events"""), {"now": now})
        messages = conn.execute(text(
            "SELECT id, event_id, partner_id FROM webhook_messages ORDER BY id")).all()
        for start in range(0, len(messages), 5_000):
            webhook_store.insert_attempts(conn, [
                {"message_id": m.id, "event_id": m.event_id, "endpoint_id": "we_growth",
                 "partner_id": m.partner_id, "trigger": "scheduled", "attempt_number": 1,
                 "status": "succeeded", "response_status_code": 200,
                 "response_body": '{"received":true}', "error": None, "duration_ms": 42,
                 "started_at": now, "next_attempt_at": None, "created_at": now}
                for m in messages[start:start + 5_000]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bets", type=int, default=20_000)
    parser.add_argument("--deposits", type=int, default=5_000)
    parser.add_argument("--placed", type=int, default=2_000)
    args = parser.parse_args()
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[:3]}")
    with temporary_database("sp_bench_growth") as url:
        settings = Settings(database_url=url)
        engine = make_engine(sqlalchemy_url(url), pool_size=4, settings=settings)
        steps = [("start", sizes(engine))]
        started = time.perf_counter()
        seed(url, engine, "mkt_growth", args.bets, max(1, args.bets // 10), "g")
        steps.append((f"seed: {args.bets} bets (a deposit per player, a stake per bet)",
                      sizes(engine)))
        post_result(engine, settings, "mkt_growth", 1, selections_v1())
        run_market(engine, settings, "mkt_growth", 1, batch_size=2_000)
        steps.append((f"settle: {args.bets} bets", sizes(engine)))
        deposit_many(engine, args.deposits)
        steps.append((f"deposits: {args.deposits} through commands/deposits.py", sizes(engine)))
        bettors = [funded_player(engine, 10_000_000) for _ in range(20)]
        for n in range(args.placed):
            place(engine, settings, bettors[n % len(bettors)], 500,
                  [("mkt_growth_placed", f"s{n % 3}", "2.50")])
        steps.append((f"bets placed: {args.placed} through commands/bets.py", sizes(engine)))
        attempt_every_event(engine)
        steps.append(("webhook attempts: one per outbox event", sizes(engine)))
        engine.dispose()
        print(f"({time.perf_counter() - started:.1f} s)")
    for (_, before), (name, after) in zip(steps, steps[1:], strict=False):
        print(f"{name}: rows added (bytes added per row)")
        for t in TABLES:
            rows = after[t][0] - before[t][0]
            if rows:
                print(f"    {t:<20} {rows:>8,}   ({(after[t][1] - before[t][1]) / rows:.0f})")
    final = steps[-1][1]
    print("\ntable                 rows   bytes/row (all, incl. indexes)   heap tuple   ratio")
    for table in TABLES:
        rows, total, heap = final[table]
        if rows:
            print(f"{table:<20} {rows:>8,}   {total / rows:>10.0f}"
                  f"                     {heap:>6.0f}     {total / rows / heap:.2f}")
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
