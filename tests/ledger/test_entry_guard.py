"""A ledger entry's transaction exists (migration 0024_settlement_posting): the database
refuses an entry that names no transaction, as the foreign key did, checked once per statement;
transactions cannot be truncated from under their entries; `ledger check` reports an orphan
entry forged past the guards; the migration goes down to the foreign key (and the
ledger_entries_account index it drops) and up again."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

import ledger
from ledger.check import run as check
from tests.support.databases import down_then_up, temporary_database
from tests.support.ledger import deposit, new_player, stake

ORPHAN = "every entry belongs to a transaction that exists"
GUARD = ("every entry's transaction is guarded by the database: the foreign key, or the "
         "statement trigger that checks it with transactions that cannot be truncated (0024)")
_ENTRY = """INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount,
                                        balance_after) VALUES """


def _posted(engine: Engine) -> tuple[int, int]:
    """A posted transaction's id and one of its entries' account."""
    p = new_player()
    with engine.begin() as conn:
        tx = ledger.post(conn, deposit(p, 100)).transaction_id
        account = conn.execute(text("SELECT account_id FROM ledger_entries"
                                    " WHERE transaction_id = :t LIMIT 1"), {"t": tx}).scalar_one()
    return tx, account


def test_an_entry_of_a_transaction_that_does_not_exist_is_refused(engine: Engine) -> None:
    tx, account = _posted(engine)
    missing = tx + 10**9
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        conn.execute(text(_ENTRY + "(:t, :a, 0, 'USD', 5, 5)"), {"t": missing, "a": account})
    assert isinstance(refused.value.orig, psycopg.errors.ForeignKeyViolation)
    assert f"({missing})" in str(refused.value.orig.diag.message_detail)


def test_one_orphan_among_many_entries_refuses_the_whole_statement(engine: Engine) -> None:
    tx, account = _posted(engine)
    rows = ", ".join(f"({tx}, {account}, 0, 'USD', 1, 1)" for _ in range(50))
    with pytest.raises(IntegrityError, match="does not exist|not present"), \
            engine.begin() as conn:
        conn.execute(text(_ENTRY + rows + f", ({tx + 10**9}, {account}, 0, 'USD', 1, 1)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger_entries WHERE transaction_id = :t"),
                            {"t": tx}).scalar_one() == 2


def test_entries_of_transactions_of_the_same_statement_and_batches_are_accepted(
        engine: Engine) -> None:
    players = [new_player() for _ in range(3)]
    with engine.begin() as conn:
        results = ledger.post_many(conn, [deposit(p, 500) for p in players]
                                   + [stake(p, 200) for p in players])
        assert all(r.ok for r in results)
        assert ledger.post(conn, stake(players[0], 100)).ok
        assert check(conn) == []


def test_transactions_cannot_be_truncated(engine: Engine) -> None:
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("TRUNCATE ledger_transactions CASCADE"))


def test_check_reports_an_orphan_entry_forged_past_the_guard(fresh_engine: Engine) -> None:
    tx, account = _posted(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(_ENTRY + "(:t, :a, 0, 'USD', 5, 5), (:t, :a, 0, 'USD', -5, 0)"),
                     {"t": tx + 10**9, "a": account})
    with fresh_engine.connect() as conn:
        problems = [v for v in check(conn) if v.startswith(f"{ORPHAN}: ")]
    assert len(problems) == 2
    assert all(f"names transaction {tx + 10**9}, which does not exist" in p for p in problems)


def test_check_reports_a_missing_guard(fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_entries"
                          " DISABLE TRIGGER ledger_entries_transaction_exists"))
    with fresh_engine.connect() as conn:
        assert [v for v in check(conn) if v.startswith(f"{GUARD}: ")] != []


def test_migration_0024_downgrades_to_the_foreign_key_and_back() -> None:
    before, after = "0023_settlement_writes", "0024_settlement_posting"
    guards = """
        SELECT (SELECT count(*) FROM pg_constraint
                 WHERE conrelid = 'ledger_entries'::regclass AND contype = 'f'),
               (SELECT count(*) FROM pg_trigger WHERE tgname IN
                  ('ledger_entries_transaction_exists', 'ledger_transactions_no_truncate')),
               (SELECT count(*) FROM pg_index
                 WHERE indexrelid::regclass::text = 'ledger_entries_account' AND indisvalid)"""
    with temporary_database("sp_entry_guard", revision=after) as url:
        expected_at = {before: (1, 0, 1), after: (0, 2, 0)}
        for revision in down_then_up(url, before, after):
            expected = expected_at[revision]
            with psycopg.connect(url) as conn:
                assert conn.execute(guards).fetchone() == expected
                with pytest.raises(psycopg.errors.ForeignKeyViolation):
                    conn.execute(_ENTRY + "(424242, 1, 0, 'USD', 5, 5)")
