"""Settling bets rewrites their rows in place (migration 0023_settlement_writes): no index of
bets names a column that settlement writes, and bets keep room in their heap pages, so a part
of a round settled in one transaction adds no index entry (HOT updates). The migration
downgrades (the status index back, valid; the table's fillfactor reset) and upgrades again."""

from __future__ import annotations

import re
import uuid

import psycopg
from alembic import command
from sqlalchemy import Connection, Engine, event, text

from domain.settlement.plan import BetStatus, BetUpdate
from settlepay import migrate
from store import bets as bet_store
from store import settlements as store
from tests.support.databases import sqlalchemy_url, temporary_database

BETS = 200          # enough for several heap pages
PART = 4            # a round's part updates every 4th bet (parts split a round by player)


def _player(conn: Connection, partner_id: str) -> str:
    player_id = f"pw-{uuid.uuid4().hex[:12]}"
    conn.execute(text("""INSERT INTO players (id, partner_id, external_ref, first_name,
                                              last_name, jurisdiction)
                         VALUES (:id, :partner, :id, 'Ada', 'Lovelace', 'US-NJ')"""),
                 {"id": player_id, "partner": partner_id})
    return player_id


def _bets(conn: Connection, n: int) -> list[str]:
    """n open single bets of one new player, in id order."""
    partner_id = f"pw{uuid.uuid4().hex[:8]}"
    player_id = _player(conn, partner_id)
    ids = []
    for i in range(n):
        external_id = f"b{i:05d}"
        bet_id = f"{partner_id}/{external_id}"
        bet_store.insert(conn, bet_id=bet_id, partner_id=partner_id, external_id=external_id,
                         player_id=player_id, currency="USD", stake=1_000, bet_type="single",
                         place_fraction=None, place_count=None, status="open",
                         reject_code=None, reject_reason=None, request_hash=b"\x00" * 32,
                         legs=[bet_store.LegRow("m-writes", "s1", "2.50", "decimal", 5, 2)])
        ids.append(bet_id)
    return ids


def _settled(bet_id: str) -> BetUpdate:
    return BetUpdate(bet_id=bet_id, status=BetStatus.SETTLED, paid=2_500, payout=2_500,
                     version=1, settlement_key=f"bet:{bet_id}:v1")


def _written_columns(engine: Engine, bet_id: str) -> set[str]:
    """The columns of bets that store.update_bets sets, read from the statement it sends."""
    sent: list[str] = []

    def keep(conn, cursor, statement, *args) -> None:  # noqa: ANN001
        sent.append(statement)

    with engine.connect() as conn:
        event.listen(conn, "before_cursor_execute", keep)
        store.update_bets(conn, [_settled(bet_id)])
        conn.rollback()
    assignments = re.search(r"\bSET\b(.*?)\bFROM\b", sent[-1], re.S | re.I)
    assert assignments is not None, sent
    return set(re.findall(r"(\w+)\s*=\s*(?!=)", assignments.group(1))) - {"u", "b"}


def test_no_index_of_bets_names_a_column_that_settlement_writes(fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        bet_id = _bets(conn, 1)[0]
    written = _written_columns(fresh_engine, bet_id) | {"bonus_wagered"}  # + mark_wagered
    assert {"status", "paid", "payout", "version", "settlement_key", "settled_at"} <= written
    with fresh_engine.connect() as conn:
        indexes = dict(conn.execute(text(
            "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index"
            " WHERE indrelid = 'bets'::regclass")).all())
    assert "bets_list_status" not in indexes
    assert {"bets_pkey", "bets_list", "bets_list_player", "bets_list_all"} <= set(indexes)
    for name, definition in indexes.items():
        named = {column for column in written if re.search(rf"\b{column}\b", definition)}
        assert not named, f"{name} names {named}: settling a bet could not be a HOT update"


def test_a_part_of_a_round_settled_in_one_transaction_adds_no_index_entry(
        fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        ids = _bets(conn, BETS)
    part = ids[::PART]
    with fresh_engine.begin() as conn:
        pages = conn.execute(text("SELECT count(DISTINCT (ctid::text::point)[0]) FROM bets"
                                  " WHERE id = ANY(:ids)"), {"ids": ids}).scalar_one()
        assert pages > 1, "the bets fill several heap pages"
        store.update_bets(conn, [_settled(bet_id) for bet_id in part])
        updated, hot = conn.execute(text(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables"
            " WHERE relname = 'bets'")).one()
        assert (updated, hot) == (len(part), len(part))
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM bets WHERE id = ANY(:ids)"
                                 " AND status = 'settled' AND version = 1"),
                            {"ids": ids}).scalar_one() == len(part)


def test_migration_0023_downgrades_to_the_status_index_and_back() -> None:
    before, after = "0022_deposit_path", "0023_settlement_writes"
    indexes = ("SELECT indexrelid::regclass::text, indisvalid FROM pg_index"
               " WHERE indrelid = 'bets'::regclass AND indexrelid::regclass::text"
               " = 'bets_list_status'")
    options = "SELECT coalesce(reloptions, '{}') FROM pg_class WHERE oid = 'bets'::regclass"
    with temporary_database("sp_settlement_writes", revision=before) as url:
        with psycopg.connect(url) as conn:
            assert conn.execute(indexes).fetchall() == [("bets_list_status", True)]
            assert conn.execute(options).fetchone()[0] == []
        migrate.upgrade(sqlalchemy_url(url), after)
        with psycopg.connect(url) as conn:
            assert conn.execute(indexes).fetchall() == []
            assert conn.execute(options).fetchone()[0] == ["fillfactor=50"]
        command.downgrade(migrate.alembic_config(sqlalchemy_url(url)), before)
        with psycopg.connect(url) as conn:
            assert conn.execute(indexes).fetchall() == [("bets_list_status", True)]
            assert conn.execute(options).fetchone()[0] == []
        migrate.upgrade(sqlalchemy_url(url), after)        # and up again
        with psycopg.connect(url) as conn:
            assert conn.execute(indexes).fetchall() == []
