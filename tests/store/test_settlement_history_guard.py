"""A settlement history row's bet exists (migration 0024_settlement_posting): the database
refuses history of a bet that does not exist, as the foreign key did, checked once per
statement and with the same FOR KEY SHARE lock on the bet; a bet with history cannot be
deleted, renamed or truncated away; a bet without history still can (as the foreign key let
it); the migration goes down to the foreign key and up again."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from settlepay.config import Settings
from tests.support.databases import down_then_up, temporary_database
from tests.support.settlement import funded_player, place, post_result, settle_inline, uid

_HISTORY = """INSERT INTO bet_settlements (bet_id, kind, version, market_id, payout, delta,
                                           applied, outcome, results)
              VALUES (:bet, 'settlement', 7, 'm', 0, 0, true, 'lost', '{}')"""


def _settled_and_open(engine: Engine, settings: Settings) -> tuple[str, str]:
    """A bet settled (it has history) and an open one on another market (none)."""
    player = funded_player(engine, 10_000)
    market, other = uid("mkt"), uid("mkt")
    settled = place(engine, settings, player, 100, [(market, "home", "2.0")])
    open_ = place(engine, settings, player, 100, [(other, "home", "2.0")])
    post_result(engine, settings, market, 1, {"home": {"result": "won"}})
    settle_inline(engine, settings, market, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bet_settlements WHERE bet_id = :b"),
                            {"b": settled}).scalar_one() == 1
    return settled, open_


def _without_legs(conn: Connection, bet_id: str) -> None:
    # bet_legs' own foreign key would refuse first: take the legs away to reach the guard
    conn.execute(text("DELETE FROM bet_legs WHERE bet_id = :b"), {"b": bet_id})


def test_history_of_a_bet_that_does_not_exist_is_refused(engine: Engine) -> None:
    missing = uid("nobet")
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        conn.execute(text(_HISTORY), {"bet": missing})
    assert isinstance(refused.value.orig, psycopg.errors.ForeignKeyViolation)
    assert f"({missing})" in str(refused.value.orig.diag.message_detail)


def test_a_bet_with_history_cannot_be_deleted_or_renamed(engine: Engine,
                                                         settings: Settings) -> None:
    settled, open_ = _settled_and_open(engine, settings)
    for statement in ("DELETE FROM bets WHERE id = :b",
                      "UPDATE bets SET id = id || '_x' WHERE id = :b"):
        with pytest.raises(IntegrityError, match="settlement history") as refused, \
                engine.begin() as conn:
            _without_legs(conn, settled)
            conn.execute(text(statement), {"b": settled})
        assert isinstance(refused.value.orig, psycopg.errors.ForeignKeyViolation)
    with engine.begin() as conn:      # a bet without history: as the foreign key allowed
        _without_legs(conn, open_)
        conn.execute(text("UPDATE bets SET id = id || '_x' WHERE id = :b"), {"b": open_})
        assert conn.execute(text("DELETE FROM bets WHERE id = :b"),
                            {"b": open_ + "_x"}).rowcount == 1
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bets WHERE id = :b"),
                            {"b": settled}).scalar_one() == 1


def test_bets_with_history_cannot_be_truncated(fresh_engine: Engine, settings: Settings) -> None:
    _settled_and_open(fresh_engine, settings)
    with pytest.raises(DBAPIError, match="settlement history"), fresh_engine.begin() as conn:
        conn.execute(text("TRUNCATE bets CASCADE"))
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bets")).scalar_one() == 2


def test_writing_history_holds_the_bet_like_the_foreign_key(engine: Engine,
                                                            settings: Settings) -> None:
    # The history row's transaction holds a key-share lock on its bet: a delete waits for it.
    _, open_ = _settled_and_open(engine, settings)
    with engine.connect() as writer, engine.connect() as deleter:
        writer.begin()
        writer.execute(text(_HISTORY), {"bet": open_})
        deleter.begin()
        deleter.execute(text("SET LOCAL lock_timeout = '300ms'"))
        _without_legs(deleter, open_)
        with pytest.raises(DBAPIError) as waited:
            deleter.execute(text("DELETE FROM bets WHERE id = :b"), {"b": open_})
        assert isinstance(waited.value.orig, psycopg.errors.LockNotAvailable)
        deleter.rollback()
        writer.rollback()


def test_history_of_a_bet_deleted_meanwhile_is_refused(engine: Engine,
                                                      settings: Settings) -> None:
    # The delete commits while the history's check waits for the bet: the check then finds
    # no bet (the foreign key's outcome too).
    _, open_ = _settled_and_open(engine, settings)
    outcome: list[BaseException | None] = []
    with engine.connect() as deleter:
        deleter.begin()
        _without_legs(deleter, open_)
        deleter.execute(text("DELETE FROM bets WHERE id = :b"), {"b": open_})

        def write() -> None:
            try:
                with engine.begin() as writer:
                    writer.execute(text(_HISTORY), {"bet": open_})
                outcome.append(None)
            except DBAPIError as error:
                outcome.append(error)

        thread = threading.Thread(target=write)
        thread.start()
        time.sleep(0.5)
        assert thread.is_alive()          # waiting for the deleter's lock on the bet
        deleter.commit()
        thread.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], IntegrityError)
    assert isinstance(outcome[0].orig, psycopg.errors.ForeignKeyViolation)


def test_bets_are_deleted_under_read_committed_only(engine: Engine,
                                                    settings: Settings) -> None:
    _, open_ = _settled_and_open(engine, settings)
    with pytest.raises(DBAPIError, match="outside READ COMMITTED"), engine.begin() as conn:
        conn.execute(text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        _without_legs(conn, open_)
        conn.execute(text("DELETE FROM bets WHERE id = :b"), {"b": open_})


def test_migration_0024_downgrades_to_the_history_foreign_key_and_back() -> None:
    before, after = "0023_settlement_writes", "0024_settlement_posting"
    guards = """
        SELECT (SELECT count(*) FROM pg_constraint
                 WHERE conrelid = 'bet_settlements'::regclass AND contype = 'f'),
               (SELECT count(*) FROM pg_trigger WHERE tgname IN
                  ('bet_settlements_bet_exists', 'bets_keep_history', 'bets_keep_history_ids',
                   'bets_no_truncate_with_history'))"""
    history = ("INSERT INTO bet_settlements (bet_id, kind, version, market_id, payout, delta,"
               " applied, outcome, results) VALUES ('nobet', 'settlement', 1, 'm', 0, 0, true,"
               " 'lost', '{}')")
    with temporary_database("sp_history_guard", revision=after) as url:
        expected_at = {before: (1, 0), after: (0, 4)}
        for revision in down_then_up(url, before, after):
            expected = expected_at[revision]
            with psycopg.connect(url) as conn:
                assert conn.execute(guards).fetchone() == expected
                with pytest.raises(psycopg.errors.ForeignKeyViolation):
                    conn.execute(history)
