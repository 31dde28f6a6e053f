"""Balance rows are updated in place (migration 0028_ledger_balances_fillfactor): new accounts'
balance rows are written into pages with room, so the postings that follow update them as
heap-only tuples (no new primary-key entry), also several times in one transaction; the
migration goes down and up."""

from __future__ import annotations

import psycopg
from sqlalchemy import Engine, text

import ledger
from tests.support.databases import down_then_up, temporary_database
from tests.support.ledger import deposit, new_player, stake

_UPDATES = """SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables
               WHERE relname = 'ledger_balances'"""


def test_postings_update_new_balance_rows_in_place(fresh_engine: Engine) -> None:
    """New players' balance rows (a deposit creates them), then three rounds of stakes, each in
    a transaction of its own as settlement pages and bets are: each round moves both of a
    player's rows (cash, in play) again, and nearly every such update stays in its page (with
    fillfactor 100 the rows' pages were packed full and most updates moved to another page)."""
    players = [new_player() for _ in range(400)]
    with fresh_engine.begin() as conn:
        assert all(r.ok for r in ledger.post_many(conn, [deposit(p, 1_000) for p in players]))
    updates = hot = 0
    for _ in range(3):
        with fresh_engine.begin() as conn:
            assert all(r.ok for r in ledger.post_many(conn, [stake(p, 100) for p in players]))
            round_updates, round_hot = conn.execute(text(_UPDATES)).one()
        updates, hot = updates + round_updates, hot + round_hot
    assert updates >= 3 * 2 * len(players) - len(players)  # the first stake creates in play
    assert hot >= 0.9 * updates, (hot, updates)


def test_migration_0028_downgrades_and_upgrades() -> None:
    before, after = "0027_ledger_post_many_funds", "0028_ledger_balances_fillfactor"
    expected_at = {before: None, after: ["fillfactor=50"]}
    with temporary_database("sp_balances_fillfactor", revision=after) as url:
        for revision in down_then_up(url, before, after):
            with psycopg.connect(url) as conn:
                options = conn.execute("SELECT reloptions FROM pg_class"
                                       " WHERE oid = 'ledger_balances'::regclass").fetchone()[0]
            assert options == expected_at[revision]
