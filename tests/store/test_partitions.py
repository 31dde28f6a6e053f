"""Partition maintenance of outbox_events and webhook_attempts (store/partitions.py): months
made ahead, idempotently; a row stranded in the DEFAULT partition moves into its month; old
months are detached for archive, except an outbox month with an event still to publish; the
migration keeps every row both ways. The audit chain's partitions are
tests/audit/test_verify_partitions.py's."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest
from alembic import command
from sqlalchemy import Engine, text

from settlepay import cli, migrate
from settlepay.config import get_settings
from store import partitions
from tests.support.databases import sqlalchemy_url, temporary_database

MAY_2030 = datetime(2030, 5, 15, 12, 0, tzinfo=UTC)


def emit(engine: Engine, created_at: datetime, *, published: bool) -> int:
    with engine.begin() as conn:
        return conn.execute(text("""
            INSERT INTO outbox_events (event_type, aggregate_type, aggregate_id, payload,
                                       created_at, published_at)
            VALUES ('player.updated', 'player', 'p1', '{}', :at, :published) RETURNING id"""),
            {"at": created_at, "published": created_at if published else None}).scalar_one()


def partition_of(engine: Engine, outbox_id: int) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT tableoid::regclass::text FROM outbox_events"
                                 " WHERE id = :id"), {"id": outbox_id}).scalar_one()


def test_ensure_makes_the_months_ahead_once(fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        made = partitions.ensure(conn, MAY_2030, months_ahead=2)
    assert made == [f"{table}_2030{month:02d}" for table in partitions.MONTHLY
                    for month in (5, 6, 7)]
    with fresh_engine.begin() as conn:
        assert partitions.ensure(conn, MAY_2030, months_ahead=2) == []
        bounds = partitions.partitions(conn, "webhook_attempts")[-1]
    assert (bounds.lower, bounds.upper) == (datetime(2030, 7, 1, tzinfo=UTC),
                                            datetime(2030, 8, 1, tzinfo=UTC))


def test_an_event_stranded_in_the_default_partition_moves_into_its_month(
        fresh_engine: Engine) -> None:
    stranded = emit(fresh_engine, MAY_2030, published=False)
    assert partition_of(fresh_engine, stranded) == "outbox_events_default"
    with fresh_engine.begin() as conn:
        made = partitions.ensure(conn, MAY_2030, months_ahead=0)
    assert made[0] == "outbox_events_203005 (1 rows moved from outbox_events_default)"
    assert partition_of(fresh_engine, stranded) == "outbox_events_203005"
    with fresh_engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM outbox_events")).scalar_one() == 1


def test_old_months_are_detached_but_not_one_with_an_event_to_publish(
        fresh_engine: Engine) -> None:
    with fresh_engine.begin() as conn:
        partitions.ensure(conn, datetime(2030, 1, 1, tzinfo=UTC), months_ahead=3)
    emit(fresh_engine, datetime(2030, 1, 20, tzinfo=UTC), published=True)
    waiting = emit(fresh_engine, datetime(2030, 2, 20, tzinfo=UTC), published=False)
    emit(fresh_engine, datetime(2030, 3, 20, tzinfo=UTC), published=True)
    cutoff = datetime(2030, 3, 1, tzinfo=UTC)
    with fresh_engine.begin() as conn:
        detached = partitions.archive(conn, {"outbox_events": cutoff,
                                             "webhook_attempts": cutoff})
    # (with this month's and those the migration made: all before the cut-off)
    assert [name for name in detached if "2030" in name] == [
        "outbox_events_203001", "webhook_attempts_203001", "webhook_attempts_203002"]
    with fresh_engine.connect() as conn:
        left = conn.execute(text("SELECT id FROM outbox_events ORDER BY id")).scalars().all()
        assert conn.execute(text("SELECT count(*) FROM outbox_events_203001")).scalar() == 1
    assert len(left) == 2 and waiting in left


def test_settlepay_partitions_ensure_and_archive_run_against_the_database(
        fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SETTLEPAY_DATABASE_URL",
                       fresh_engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        assert cli.main(["partitions", "ensure", "--months-ahead", "4"]) == 0
        this_month = datetime.now(UTC)
        last = partitions.month_start(this_month, 4)
        assert f"outbox_events_{last:%Y%m}" in capsys.readouterr().out.split()
        assert cli.main(["partitions", "ensure", "--months-ahead", "4"]) == 0
        assert capsys.readouterr().out == ""
        assert cli.main(["partitions", "archive", "--outbox-keep-days", "0"]) == 0
    finally:
        get_settings.cache_clear()


def test_migration_0018_keeps_every_row_partitions_and_downgrades() -> None:
    before, after = "0017_second_factor_lockout", "0018_table_growth"
    relkinds = ("SELECT relname, relkind FROM pg_class WHERE relname IN"
                " ('audit_log', 'outbox_events', 'webhook_attempts') ORDER BY relname")
    with temporary_database("sp_growth_migration", revision=before) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("SELECT audit_append('{\"n\":1}')")
            old = conn.execute("""
                INSERT INTO outbox_events (event_type, aggregate_type, aggregate_id, payload,
                                           created_at)
                VALUES ('player.updated', 'player', 'p1', '{}', now() - interval '200 days')
                RETURNING id""").fetchone()[0]
        migrate.upgrade(sqlalchemy_url(url), after)
        with psycopg.connect(url, autocommit=True) as conn:
            assert [kind for _, kind in conn.execute(relkinds)] == ["p", "p", "p"]
            # The old event is in a month of its own, and ids go on from the same sequence.
            assert conn.execute("SELECT tableoid::regclass::text FROM outbox_events"
                                " WHERE id = %s", (old,)).fetchone()[0] != "outbox_events_default"
            new = conn.execute("""
                INSERT INTO outbox_events (event_type, aggregate_type, aggregate_id, payload)
                VALUES ('player.updated', 'player', 'p1', '{}') RETURNING id""").fetchone()[0]
            assert new > old
            conn.execute("SELECT audit_append('{\"n\":2}')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("TRUNCATE audit_log_s000000000001")
        command.downgrade(migrate.alembic_config(sqlalchemy_url(url)), before)
        with psycopg.connect(url, autocommit=True) as conn:
            assert [kind for _, kind in conn.execute(relkinds)] == ["r", "r", "r"]
            assert conn.execute("SELECT count(*) FROM outbox_events").fetchone()[0] == 2
            assert conn.execute("SELECT array_agg(seq ORDER BY seq) FROM audit_log"
                                ).fetchone()[0] == [1, 2]
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("DELETE FROM audit_log")
        migrate.upgrade(sqlalchemy_url(url), after)        # and up again
