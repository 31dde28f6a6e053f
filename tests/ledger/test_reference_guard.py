"""A ledger transaction's correction and hold references name transactions that exist
(migration 0026_ledger_reference_guard): the database refuses a reference to no transaction,
as the foreign keys did (SQLSTATE 23503), checking only the rows that set one; a statement may
reference its own rows; `ledger check` reports a bad reference forged past the guard and a
missing guard; the migration goes down to the foreign keys and up again."""

from __future__ import annotations

import uuid

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import IntegrityError

import ledger
from ledger.check import run as check
from tests.support.databases import down_then_up, sqlalchemy_url, temporary_database
from tests.support.ledger import deposit, new_player

MISSING = "every correction and hold reference of a transaction names a transaction that exists"
GUARD = ("a transaction's correction and hold references are guarded by the database: the "
         "foreign keys, or the row trigger that checks the rows that set one (0026)")
_TRANSACTION = """INSERT INTO ledger_transactions (idempotency_key, request_hash, kind, result,
                                                   corrects_id, hold_id) VALUES """


def _row(corrects: int | str | None = None, hold: int | str | None = None) -> str:
    def value(v: int | str | None) -> str:
        return "NULL" if v is None else str(v)
    return (f"('ref-{uuid.uuid4().hex}', '\\x00', 'resettlement', 'ok', {value(corrects)}, "
            f"{value(hold)})")


def _posted(engine: Engine) -> int:
    with engine.begin() as conn:
        return ledger.post(conn, deposit(new_player(), 100)).transaction_id


@pytest.mark.parametrize("column", ["corrects_id", "hold_id"])
def test_a_reference_to_a_transaction_that_does_not_exist_is_refused(
        engine: Engine, column: str) -> None:
    missing = _posted(engine) + 10**9
    row = _row(corrects=missing) if column == "corrects_id" else _row(hold=missing)
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        conn.execute(text(_TRANSACTION + row))
    error = refused.value.orig
    assert isinstance(error, psycopg.errors.ForeignKeyViolation)
    assert error.diag.message_detail == (f'Key ({column})=({missing}) is not present in table '
                                         '"ledger_transactions".')
    assert error.diag.constraint_name == f"ledger_transactions_{column}_fkey"


def test_one_bad_reference_among_many_refuses_the_whole_statement(engine: Engine) -> None:
    tx = _posted(engine)
    rows = [_row(corrects=tx) for _ in range(20)] + [_row(), _row(hold=tx + 10**9)]
    keys = [r.split("'")[1] for r in rows]
    with pytest.raises(IntegrityError, match="not present"), engine.begin() as conn:
        conn.execute(text(_TRANSACTION + ", ".join(rows)))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM ledger_transactions"
                                 " WHERE idempotency_key = ANY(:k)"), {"k": keys}).scalar() == 0


def test_references_to_existing_and_same_statement_transactions_are_accepted(
        engine: Engine) -> None:
    tx = _posted(engine)
    keys = [f"ref-{uuid.uuid4().hex}" for _ in range(3)]
    with engine.begin() as conn:
        own = conn.execute(text("SELECT nextval('ledger_transactions_id_seq')")).scalar_one()
        # a hold, its post naming it in the same statement, a correction of an older one
        conn.execute(text("""
            INSERT INTO ledger_transactions (id, idempotency_key, request_hash, kind, result,
                                             corrects_id, hold_id)
            VALUES (:own, :k0, '\\x00', 'hold', 'ok', NULL, NULL),
                   (DEFAULT, :k1, '\\x00', 'hold_post', 'ok', NULL, :own),
                   (DEFAULT, :k2, '\\x00', 'resettlement', 'ok', :tx, NULL)"""),
                     {"own": own, "tx": tx, "k0": keys[0], "k1": keys[1], "k2": keys[2]})
        assert conn.execute(text("SELECT count(*) FROM ledger_transactions"
                                 " WHERE idempotency_key = ANY(:k)"), {"k": keys}).scalar() == 3
        conn.rollback()


def test_holds_and_corrections_through_the_ledger_still_post(engine: Engine) -> None:
    p, q = new_player(), new_player()
    cash = ledger.AccountRef.player_cash
    with engine.begin() as conn:
        assert ledger.post(conn, deposit(p, 1_000)).ok
        assert ledger.hold(conn, f"hold-{p}", cash(p, "USD"), cash(q, "USD"), 300).ok
        assert ledger.post_hold(conn, f"post-{p}", f"hold-{p}", 200).ok
        original = ledger.post(conn, deposit(q, 50, key=f"pay-{q}"))
        correction = ledger.Transfer(f"pay-{q}:fix", "resettlement", (
            ledger.Leg(ledger.AccountRef.gateway_clearing("stripe", "USD"), -5),
            ledger.Leg(cash(q, "USD"), 5)), corrects=f"pay-{q}")
        assert ledger.post_many(conn, [correction])[0].ok
        ids = conn.execute(text("SELECT corrects_id FROM ledger_transactions"
                                " WHERE idempotency_key = :k"), {"k": f"pay-{q}:fix"}).scalar()
        assert ids == original.transaction_id
        assert conn.execute(text("SELECT hold_id IS NOT NULL FROM ledger_transactions"
                                 " WHERE idempotency_key = :k"), {"k": f"post-{p}"}).scalar()
        assert check(conn) == []


def test_check_reports_a_reference_forged_past_the_guard(fresh_engine: Engine) -> None:
    tx = _posted(fresh_engine)
    with fresh_engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(_TRANSACTION + _row(corrects=tx + 10**9)))
    with fresh_engine.connect() as conn:
        problems = [v for v in check(conn) if v.startswith(f"{MISSING}: ")]
    assert len(problems) == 1
    assert f"names corrects_id {tx + 10**9}, which does not exist" in problems[0]


def test_check_reports_a_missing_guard(fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_transactions"
                          " DISABLE TRIGGER ledger_transactions_reference_exists"))
    with fresh_engine.connect() as conn:
        assert [v for v in check(conn) if v.startswith(f"{GUARD}: ")] != []


def test_migration_0026_downgrades_to_the_foreign_keys_and_back() -> None:
    before, after = "0025_ledger_no_jit", "0026_ledger_reference_guard"
    guards = """
        SELECT (SELECT count(*) FROM pg_constraint
                 WHERE conrelid = 'ledger_transactions'::regclass AND contype = 'f'),
               (SELECT count(*) FROM pg_trigger
                 WHERE tgname = 'ledger_transactions_reference_exists')"""
    with temporary_database("sp_reference_guard", revision=after) as url:
        expected_at = {before: (2, 0), after: (0, 1)}
        for revision in down_then_up(url, before, after):
            with psycopg.connect(url) as conn:
                assert conn.execute(guards).fetchone() == expected_at[revision]
                for column in ("corrects_id", "hold_id"):
                    with pytest.raises(psycopg.errors.ForeignKeyViolation):
                        conn.execute(f"INSERT INTO ledger_transactions (idempotency_key,"
                                     f" request_hash, kind, result, {column})"
                                     f" VALUES ('x-{column}', '\\x00', 'k', 'ok', 424242)")
                    conn.rollback()
                assert check_clean(url)


def check_clean(url: str) -> bool:
    """`ledger check` of the database at `url` finds nothing."""
    engine = create_engine(sqlalchemy_url(url))
    try:
        with engine.connect() as conn:
            return check(conn) == []
    finally:
        engine.dispose()
