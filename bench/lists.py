"""A page of a list over 1,000,000 rows: target < 50 ms.

    .venv/bin/python bench/lists.py [--rows 1000000] [--requests 40]

Seeds a temporary database (migrated as production is, so the lists' real indexes are there)
with `--rows` players, deposits, withdrawals, bets (one leg each) and markets, by
INSERT ... SELECT FROM generate_series, over 10 partners; then times GET requests through the
whole API in process (ASGI: authentication, rate limiting, the page and the resources built
for it, JSON) at random depths of each list (`starting_after` a random row of the scope),
with and without filters, for a partner key and an operator key. Each line prints the median,
p95 and worst of `--requests` requests and the median's ratio to the 50 ms target; the page's
SQL alone (store/pagination.py) is timed beside the players and deposits lists. The
database is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx
import psycopg

from api.app import create_app
from commands.api_keys import create_api_key
from settlepay.config import Settings
from settlepay.db import make_engine
from store import pagination
from store import players as player_store
from store.pagination import Listing, PageQuery
from tests.support.databases import sqlalchemy_url, temporary_database
from tests.support.net import free_port

TARGET_MS = 50.0
PARTNERS = 10
UNLIMITED = {"*": {"requests": 1_000_000, "window_seconds": 1}}

# %(rows)s = rows. Players ply_<n> belong to partner bench-<n % 10>; every other table's row n
# belongs to player n % (rows / 100) (100 rows per player), so to partner bench-<n % 10> too.
SEED = [
    ("players", """
        INSERT INTO players (id, partner_id, status, first_name, last_name, jurisdiction,
                             created_at)
        SELECT 'ply_' || g, 'bench-' || (g %% 10),
               CASE WHEN g %% 50 = 3 THEN 'suspended' ELSE 'active' END, 'Bench', 'Player',
               'US-NJ', timestamptz '2026-01-01' + g * interval '1 second'
          FROM generate_series(1, %(rows)s) g"""),
    ("deposits", """
        INSERT INTO deposits (id, workflow_id, player_id, partner_id, amount, currency,
                              payment_method, created_by, status, failed_at, failure_code,
                              created_at)
        SELECT 'dep_' || g, 'deposit-dep_' || g, 'ply_' || (g %% (%(rows)s / 100) + 1),
               'bench-' || ((g %% (%(rows)s / 100) + 1) %% 10), 1000 + g %% 1000, 'USD',
               'pm_card_visa', 'bench',
               CASE WHEN (g / 10) %% 20 = 0 THEN 'failed' ELSE 'pending' END,
               CASE WHEN (g / 10) %% 20 = 0 THEN now() END,
               CASE WHEN (g / 10) %% 20 = 0 THEN 'card_declined' END,
               timestamptz '2026-01-01' + g * interval '1 second'
          FROM generate_series(1, %(rows)s) g"""),
    ("withdrawals", """
        INSERT INTO withdrawals (id, workflow_id, player_id, partner_id, amount, currency, state,
                                 created_at)
        SELECT 'wd_' || g, 'withdrawal-wd_' || g, 'ply_' || (g %% (%(rows)s / 100) + 1),
               'bench-' || ((g %% (%(rows)s / 100) + 1) %% 10), 500, 'USD',
               CASE WHEN (g / 10) %% 20 = 0 THEN 'awaiting_approval' ELSE 'paid' END,
               timestamptz '2026-01-01' + g * interval '1 second'
          FROM generate_series(1, %(rows)s) g"""),
    ("bets", """
        INSERT INTO bets (id, partner_id, external_id, player_id, currency, stake, bet_type,
                          status, request_hash, placed_at)
        SELECT 'bench-' || ((g %% (%(rows)s / 100) + 1) %% 10) || '/bet_' || g,
               'bench-' || ((g %% (%(rows)s / 100) + 1) %% 10), 'bet_' || g,
               'ply_' || (g %% (%(rows)s / 100) + 1), 'USD', 100, 'single',
               CASE WHEN (g / 10) %% 20 = 0 THEN 'open' ELSE 'settled' END, '\\x00',
               timestamptz '2026-01-01' + g * interval '1 second'
          FROM generate_series(1, %(rows)s) g"""),
    ("bet_legs", """
        INSERT INTO bet_legs (bet_id, leg_no, market_id, selection_id, odds, odds_format,
                              price_num, price_den)
        SELECT 'bench-' || ((g %% (%(rows)s / 100) + 1) %% 10) || '/bet_' || g, 1, 'mkt_' || g,
               'home', '2.0', 'decimal', 2, 1
          FROM generate_series(1, %(rows)s) g"""),
    ("markets", """
        INSERT INTO markets (market_id, betting, closed_at, created_at)
        SELECT 'mkt_' || g, CASE WHEN (g / 10) %% 20 = 0 THEN 'open' ELSE 'closed' END,
               timestamptz '2026-01-01' + g * interval '1 second',
               timestamptz '2026-01-01' + g * interval '1 second'
          FROM generate_series(1, %(rows)s) g"""),
]


def seed(url: str, rows: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for table, sql in SEED:
            start = time.perf_counter()
            conn.execute(sql, {"rows": rows})
            conn.execute(f"ANALYZE {table}")
            print(f"  seeded {rows:,} {table} in {time.perf_counter() - start:.1f} s")


def figures(took: list[float]) -> str:
    took = sorted(took)
    median = statistics.median(took)
    p95 = took[max(0, int(len(took) * 0.95) - 1)]
    verdict = "met" if median < TARGET_MS else "NOT met"
    return (f"median {median:6.1f} ms, p95 {p95:6.1f} ms, worst {took[-1]:6.1f} ms; "
            f"median / target {median / TARGET_MS:.2f} ({verdict})")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40)
    args = parser.parse_args()
    rows, n = args.rows, args.requests
    rng = random.Random(14)

    with temporary_database("sp_bench_lists") as url:
        print(f"seeding {rows:,} rows per table over {PARTNERS} partners")
        seed(url, rows)
        settings = Settings(database_url=url, temporal_address=f"127.0.0.1:{free_port()}")
        engine = make_engine(sqlalchemy_url(url), pool_size=4, settings=settings)
        with engine.begin() as conn:
            _, partner = create_api_key(conn, "partner", "bench-3", None, "bench",
                                        rate_limits=UNLIMITED)
            _, operator = create_api_key(conn, "operator", None, None, "bench",
                                         rate_limits=UNLIMITED)
        app = create_app(settings, engine=engine)
        transport = httpx.ASGITransport(app=app)

        def of_partner(prefix: str) -> str:
            """A random row id of partner bench-3 (row n is player n % (rows/100) + 1's)."""
            while True:
                g = rng.randrange(1, rows)
                if (g % (rows // 100) + 1) % PARTNERS == 3:
                    return f"{prefix}{g}"

        def any_row(prefix: str) -> str:
            return f"{prefix}{rng.randrange(1, rows)}"

        def player_deep() -> str:
            """A random player of partner bench-3 (player n belongs to bench-<n % 10>)."""
            return f"ply_{rng.randrange(1, rows // 10) * 10 + 3}"

        def player_of_partner() -> str:
            return f"ply_{rng.randrange(0, rows // 100 // PARTNERS) * PARTNERS + 3}"

        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            async def timed(path: str, key: str, params) -> list[float]:
                took = []
                for _ in range(n + 3):
                    chosen = params() if callable(params) else params
                    start = time.perf_counter()
                    answer = await client.get(path, params=chosen,
                                              headers={"Authorization": f"Bearer {key}"})
                    took.append((time.perf_counter() - start) * 1000)
                    assert answer.status_code == 200, (path, chosen, answer.text[:300])
                    assert answer.json()["data"] or "player" in chosen, (path, chosen)
                return took[3:]   # warm-up

            scenarios = [
                ("GET /v1/players, partner, limit 100, deep", "/v1/players", partner,
                 lambda: {"limit": 100, "starting_after": player_deep()}),
                ("GET /v1/players, partner, status=suspended", "/v1/players", partner,
                 lambda: {"limit": 100, "status": "suspended",
                          "starting_after": player_deep()}),
                ("GET /v1/players, operator, all partners", "/v1/players", operator,
                 lambda: {"limit": 100, "starting_after": any_row("ply_")}),
                ("GET /v1/withdrawals, partner, limit 100", "/v1/withdrawals", partner,
                 lambda: {"limit": 100, "starting_after": of_partner("wd_")}),
                ("GET /v1/withdrawals, partner, state filter", "/v1/withdrawals", partner,
                 lambda: {"limit": 100, "state": "awaiting_approval",
                          "starting_after": of_partner("wd_")}),
                ("GET /v1/withdrawals, one player's", "/v1/withdrawals", partner,
                 lambda: {"limit": 100, "player": player_of_partner()}),
                ("GET /v1/bets, partner, limit 10", "/v1/bets", partner,
                 lambda: {"limit": 10, "starting_after": of_partner("bet_")}),
                ("GET /v1/bets, partner, limit 100", "/v1/bets", partner,
                 lambda: {"limit": 100, "starting_after": of_partner("bet_")}),
                ("GET /v1/bets, one player's, status=open", "/v1/bets", partner,
                 lambda: {"limit": 100, "status": "open", "player": player_of_partner()}),
                ("GET /v1/markets, operator, limit 100", "/v1/markets", operator,
                 lambda: {"limit": 100, "starting_after": any_row("mkt_")}),
                ("GET /v1/markets, partner (has bets on)", "/v1/markets", partner,
                 lambda: {"limit": 100}),
                ("GET /v1/deposits, partner, limit 100", "/v1/deposits", partner,
                 lambda: {"limit": 100, "starting_after": of_partner("dep_")}),
                ("GET /v1/deposits, partner, status=failed", "/v1/deposits", partner,
                 lambda: {"limit": 100, "status": "failed",
                          "starting_after": of_partner("dep_")}),
                ("GET /v1/deposits, one player's", "/v1/deposits", partner,
                 lambda: {"limit": 100, "player": player_of_partner()}),
            ]
            print(f"\n{n} requests each, through the app (ASGI in process):")
            for title, path, key, params in scenarios:
                print(f"  {title:<46} {figures(await timed(path, key, params))}")

        print("\nthe page's SQL alone (store/pagination.py), limit 100:")
        deposits = Listing("deposits", "id, player_id, partner_id, amount, status, created_at")
        for title, listing, scope, filters, prefix in (
                ("players of a partner", player_store.LISTING, {"partner_id": "bench-3"}, {},
                 "ply_"),
                ("deposits of a partner", deposits, {"partner_id": "bench-3"}, {}, "dep_"),
                ("deposits of a partner, status=failed", deposits, {"partner_id": "bench-3"},
                 {"status": "failed"}, "dep_")):
            took = []
            with engine.connect() as conn:
                for _ in range(n):
                    cursor = player_deep() if prefix == "ply_" else of_partner(prefix)
                    start = time.perf_counter()
                    page = pagination.page(conn, listing, PageQuery(100, starting_after=cursor),
                                           scope=scope, filters=filters)
                    took.append((time.perf_counter() - start) * 1000)
                    assert page.rows
            print(f"  {title:<46} {figures(took)}")
        await app.state.rate_limits.close()
        engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
