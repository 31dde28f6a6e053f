"""store/responsible_gaming.py on the real database: `reservation_reads` and
`limits_and_pending` (one statement each) answer exactly what the separate reads answer,
whatever the session's time zone."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from domain.limits import ChangeKind, Exclusion, ExclusionKind, LimitChangePlan, Period
from store import responsible_gaming as store
from tests.support.compliance import insert_player

NOW = datetime(2026, 3, 2, 12, 0, 0, 123_456, tzinfo=UTC)


def fill(engine, player: str, deposit: str) -> None:
    with engine.begin() as conn:
        store.lock_player(conn, player)
        store.set_limit(conn, player, "USD", Period.DAY, 10_000, NOW)
        store.set_limit(conn, player, "USD", Period.MONTH, 9_000_000_000_000, NOW)  # > 2**32
        store.set_limit(conn, player, "EUR", Period.WEEK, 5_000, NOW)
        for when, period, amount in ((NOW + timedelta(hours=24), Period.WEEK, None),
                                     (NOW + timedelta(hours=3), Period.DAY, 20_000)):
            store.add_pending(conn, player, "USD", period, amount,
                              LimitChangePlan(ChangeKind.LOOSEN, when), NOW)
        store.add_exclusion(conn, player, Exclusion(ExclusionKind.TIME_OUT, NOW,
                                                    NOW + timedelta(days=1)), "api_key:test")
        store.add_exclusion(conn, player, Exclusion(ExclusionKind.SELF_EXCLUSION,
                                                    NOW - timedelta(microseconds=1), None),
                            "operator:alice")
        store.add_usage(conn, store.Usage(deposit, player, "USD", 2_500, "rejected",
                                          "deposit_limit_exceeded", "over the day's 10,000 «USD»",
                                          NOW + timedelta(seconds=1)))


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata", "America/St_Johns"])
def test_reservation_reads_answer_as_the_separate_reads(engine, zone):
    player, deposit = insert_player(engine), f"dep_{uuid.uuid4().hex[:12]}"
    fill(engine, player, deposit)
    with engine.begin() as conn:
        conn.execute(text(f"SET LOCAL TIME ZONE '{zone}'"))
        reads = store.reservation_reads(conn, player, deposit)
        assert reads.usage == store.usage(conn, deposit)
        assert reads.limits == store.limits(conn, player)
        assert reads.pending == store.pending_changes(conn, player)
        assert reads.exclusions == store.exclusions(conn, player)
        assert store.limits_and_pending(conn, player) == (reads.limits, reads.pending)
    assert reads.usage is not None and reads.usage.reserved_at == NOW + timedelta(seconds=1)
    assert [c.change.period for c in reads.pending] == [Period.DAY, Period.WEEK]
    assert [s.exclusion.kind for s in reads.exclusions] == [ExclusionKind.SELF_EXCLUSION,
                                                             ExclusionKind.TIME_OUT]


def test_reservation_reads_of_a_player_with_nothing_recorded(engine):
    player = insert_player(engine)
    with engine.begin() as conn:
        reads = store.reservation_reads(conn, player, "dep_none")
    assert reads == store.ReservationReads(None, {}, [], [])
    with engine.connect() as conn:
        assert store.limits_and_pending(conn, player) == ({}, [])
