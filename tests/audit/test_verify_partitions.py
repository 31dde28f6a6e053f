"""The audit chain across partitions (migration 0018): written before and after the migration,
through a lapsed maintenance and partitions archived, it verifies in global `seq` order, and
tampering in a later partition is still found."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

import audit
from settlepay import migrate
from settlepay.config import Settings
from settlepay.db import make_engine
from store import partitions
from tests.support.databases import sqlalchemy_url, temporary_database


def write(engine: Engine, count: int) -> None:
    with engine.begin() as conn:
        for n in range(count):
            audit.record(conn, actor="system:test", action="player.updated",
                         subject_type="player", subject_id=f"p{n}", after={"n": n})


def tamper(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text(sql))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))


def partition_of(engine: Engine) -> dict[int, str]:
    with engine.connect() as conn:
        return dict(conn.execute(text(
            "SELECT seq, tableoid::regclass::text FROM audit_log ORDER BY seq")).all())


def audit_partitions(made: list[str]) -> list[str]:
    """What `ensure` made for audit_log (it makes the months of the other tables too)."""
    return [name for name in made if name.startswith("audit_log")]


def report(engine: Engine) -> audit.VerifyReport:
    with engine.connect() as conn:
        return audit.verify(conn)


@pytest.fixture
def migrated_with_a_trail(settings: Settings) -> Iterator[Engine]:
    """Four records written before migration 0018, then the migration: [1, 5) is a partition
    of its own, the records after it go to the next."""
    with temporary_database("sp_audit_parts", revision="0017_second_factor_lockout") as url:
        engine = make_engine(sqlalchemy_url(url), pool_size=2, settings=settings)
        write(engine, 4)
        migrate.upgrade(sqlalchemy_url(url))
        yield engine
        engine.dispose()


def test_a_chain_across_partitions_verifies_and_tampering_in_the_second_is_found(
        migrated_with_a_trail: Engine) -> None:
    engine = migrated_with_a_trail
    write(engine, 3)
    where = partition_of(engine)
    assert where[1] == where[4] == "audit_log_s000000000001"
    assert where[5] == where[7] == "audit_log_s000000000005"
    found = report(engine)
    assert found.ok and found.records == 7, found
    tamper(engine, "UPDATE audit_log SET record = replace(record, 'p1', 'p9') WHERE seq = 6")
    assert report(engine).problems == ["record 6: hash does not match its content"]


def test_a_lapsed_maintenance_loses_nothing_and_ensure_moves_the_stranded_records(
        migrated_with_a_trail: Engine) -> None:
    """Without a partition ahead the next record lands in the DEFAULT partition; `ensure`
    makes its partition, moves it there and adds one more; the chain spans three partitions."""
    engine = migrated_with_a_trail
    with engine.begin() as conn:  # the empty partition after the migration, gone
        conn.execute(text("DROP TABLE audit_log_s000000000005"))
    write(engine, 1)
    assert partition_of(engine)[5] == "audit_log_default"
    with engine.begin() as conn:
        made = partitions.ensure(conn, datetime.now(UTC), audit_records_per_partition=3)
    assert audit_partitions(made) == [
        "audit_log_s000000000005 (1 rows moved from audit_log_default)",
        "audit_log_s000000000008"]
    write(engine, 4)
    where = partition_of(engine)
    assert [where[seq] for seq in (4, 5, 7, 8, 9)] == [
        "audit_log_s000000000001", "audit_log_s000000000005", "audit_log_s000000000005",
        "audit_log_s000000000008", "audit_log_s000000000008"]
    found = report(engine)
    assert found.ok and found.records == 9, found
    with engine.begin() as conn:  # head 9: one record left in [8, 11), so one more partition
        assert audit_partitions(partitions.ensure(conn, datetime.now(UTC),
                                                  audit_records_per_partition=3)) == [
            "audit_log_s000000000011"]
        assert audit_partitions(partitions.ensure(conn, datetime.now(UTC),
                                                  audit_records_per_partition=3)) == []
    tamper(engine, "DELETE FROM audit_log WHERE seq = 6")
    assert report(engine).problems == ["record 7: sequence gap, expected 6",
                                       "record 7: previous-hash link broken"]


def test_archived_partitions_leave_a_live_chain_that_verifies_from_the_last_archive(
        migrated_with_a_trail: Engine) -> None:
    engine = migrated_with_a_trail
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log_s000000000005"))
        partitions.ensure(conn, datetime.now(UTC), audit_records_per_partition=3)
    write(engine, 4)  # records 5 .. 8: [5, 8) full, [8, 11) being written
    later = datetime.now(UTC) + timedelta(minutes=1)
    with engine.begin() as conn:
        assert partitions.archive(conn, {"audit_log": datetime.now(UTC) - timedelta(days=1)}) \
            == []  # nothing that old
        detached = partitions.archive(conn, {"audit_log": later})
    assert detached == ["audit_log_s000000000001", "audit_log_s000000000005"]
    with engine.connect() as conn:
        manifest = conn.execute(text("SELECT partition, first_seq, last_seq, records"
                                     " FROM audit_archives ORDER BY first_seq")).all()
        # Detached, not dropped: still there to be dumped.
        assert conn.execute(text("SELECT count(*) FROM audit_log_s000000000005")).scalar() == 3
    assert [tuple(row) for row in manifest] == [("audit_log_s000000000001", 1, 4, 4),
                                                ("audit_log_s000000000005", 5, 7, 3)]
    assert sorted(partition_of(engine)) == [8]
    found = report(engine)
    assert found.ok and (found.archived_records, found.records) == (7, 1), found
    write(engine, 1)
    tamper(engine, "UPDATE audit_log SET prev_hash = sha256(prev_hash) WHERE seq = 8")
    assert report(engine).problems == ["record 8: previous-hash link broken",
                                       "record 8: hash does not match its content"]
