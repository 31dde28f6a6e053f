"""Responsible-gaming commands on the real database: exclusions, limit changes, and the
deposit's gate and reservation (commands/limits.py), with the gates that read them."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import text

from adapters.geolocation import from_settings
from adapters.geolocation.interface import LocationRequest
from commands import limits as rg
from compliance import limits as gates_of_limits
from compliance.gates import GateRequest, Operation
from domain.limits import InvalidRequest, Period
from settlepay.db import run_in_transaction
from tests.support.compliance import (
    NJ_RESIDENTIAL_IP,
    NOW,
    check_gates,
    check_player,
    geo_settings_for,
    insert_player,
    write_test_mmdbs,
)
from tests.support.factories import ledger_violations

DAY = timedelta(hours=24)
PRINCETON = (40.3487, -74.6593)


@pytest.fixture
def make_player(engine):
    return lambda jurisdiction="US-NJ": insert_player(engine, jurisdiction)


@pytest.fixture(scope="module")
def geo_settings(settings, tmp_path_factory):
    return geo_settings_for(settings, *write_test_mmdbs(tmp_path_factory.mktemp("mmdb")))


def deposit_id() -> str:
    return f"dep_{uuid.uuid4().hex[:12]}"


def reserve(engine, player, amount, dep=None, now=NOW, currency="USD"):
    return run_in_transaction(engine, lambda conn: rg.reserve_deposit_amount(
        conn, player, amount, currency, dep or deposit_id(), actor="workflow:test", now=now))


def set_limits(engine, settings, player, now=NOW, currency="USD", **limits):
    with engine.begin() as conn:
        return rg.set_deposit_limits(conn, settings, player, currency,
                                     {Period(p): v for p,
                                      v in limits.items()}, actor="api_key:test", now=now)


def in_force(view, currency="USD"):
    for block in view["currencies"]:
        if block["currency"] == currency:
            return {row["period"]: row["amount"] for row in block["limits"]
                    if row["amount"] is not None}
    return {}


def view_at(engine, player, now):
    with engine.connect() as conn:
        return gates_of_limits.limits_view(conn, player, now)


def audit_actions(engine, player):
    with engine.connect() as conn:
        return conn.execute(text("""SELECT record::jsonb->>'action' FROM audit_log
                                    WHERE record::jsonb->>'subject_id' = :p ORDER BY seq"""),
                            {"p": player}).scalars().all()


def outbox_events(engine, player):
    with engine.connect() as conn:
        return conn.execute(text("""SELECT event_type FROM outbox_events WHERE player_id = :p
                                    ORDER BY id"""), {"p": player}).scalars().all()


# --- exclusions -------------------------------------------------------------------------

def test_self_excluded_player_cannot_deposit_or_bet_but_can_withdraw(engine, geo_settings,
                                                                     make_player):
    player = make_player()
    check_player(engine, geo_settings, from_settings(geo_settings), player_id=player,
                 request=LocationRequest(*PRINCETON, NJ_RESIDENTIAL_IP), actor="api_key:test",
                 now=NOW)
    with engine.begin() as conn:
        stored = rg.self_exclude(conn, player, timedelta(days=365), actor="api_key:test", now=NOW)
    assert stored.exclusion.ends_at == NOW + timedelta(days=365)

    later = NOW + timedelta(minutes=1)
    with engine.connect() as conn:
        for operation in (Operation.DEPOSIT, Operation.BET):
            decision = check_gates(conn, geo_settings,
                                   GateRequest(player, operation, 1_000, "USD",
                                               NJ_RESIDENTIAL_IP), later)
            assert (decision.allowed, decision.code) == (False, "self_excluded")
            assert "withdrawals remain possible" in decision.reason
        withdrawal = check_gates(conn, geo_settings,
                                 GateRequest(player, Operation.WITHDRAWAL, 1_000, "USD",
                                             NJ_RESIDENTIAL_IP), later)
    assert withdrawal.allowed, withdrawal
    # The reservation (the authoritative deposit check) refuses too, and says so every time.
    dep = deposit_id()
    assert reserve(engine, player, 1_000, dep, now=later).code == "self_excluded"
    assert reserve(engine, player, 1_000, dep, now=later).code == "self_excluded"
    assert "player.self_excluded" in audit_actions(engine, player)
    assert "player.self_excluded" in outbox_events(engine, player)


def test_time_out_blocks_until_it_ends_and_cannot_be_lifted(engine, settings, make_player):
    player = make_player()
    with engine.begin() as conn:
        rg.take_time_out(conn, player, timedelta(hours=72), actor="api_key:test", now=NOW)
    bet = GateRequest(player, Operation.BET, 500, "USD")
    with engine.connect() as conn:
        out = gates_of_limits.exclusion_gate(conn, settings, bet, NOW + timedelta(hours=71))
        assert out.code == "timed_out"
        assert gates_of_limits.exclusion_gate(conn, settings, bet,
                                              NOW + timedelta(hours=72)) is None
    with pytest.raises(Exception, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("DELETE FROM player_exclusions WHERE player_id = :p"), {"p": player})
    with pytest.raises(InvalidRequest):
        with engine.begin() as conn:
            rg.take_time_out(conn, player, timedelta(hours=1), actor="api_key:test", now=NOW)


# --- limit changes ----------------------------------------------------------------------

def test_tightening_takes_effect_at_once_loosening_after_24_hours(engine, settings, make_player):
    player = make_player()
    view = set_limits(engine, settings, player, day=10_000, week=50_000)
    assert in_force(view) == {"day": 10_000, "week": 50_000}

    # Tighter: immediately.
    view = set_limits(engine, settings, player, now=NOW + timedelta(hours=1), day=5_000)
    assert in_force(view)["day"] == 5_000

    # Looser: pending for 24 h, the old limit holds meanwhile (and is what deposits meet).
    asked = NOW + timedelta(hours=2)
    view = set_limits(engine, settings, player, now=asked, day=20_000, week=None)
    assert in_force(view) == {"day": 5_000, "week": 50_000}
    day_row = next(r for r in view["currencies"][0]["limits"] if r["period"] == "day")
    assert day_row["pending_change"]["amount"] == 20_000
    assert day_row["pending_change"]["effective_at"] == asked + DAY

    almost = asked + DAY - timedelta(seconds=1)
    assert in_force(view_at(engine, player, almost)) == {"day": 5_000, "week": 50_000}
    assert reserve(engine, player, 6_000, now=almost).code == "deposit_limit_exceeded"

    # After the cool-off the looser limits are in force, for readers and for deposits.
    after = asked + DAY
    assert in_force(view_at(engine, player, after)) == {"day": 20_000}
    assert reserve(engine, player, 6_000, now=after).allowed
    with engine.connect() as conn:
        stored = conn.execute(text(
            "SELECT period, amount FROM deposit_limits WHERE player_id = :p"), {"p": player}).all()
        statuses = conn.execute(text(
            "SELECT status FROM deposit_limit_changes WHERE player_id = :p"),
            {"p": player}).scalars().all()
    assert dict(stored) == {"day": 20_000}     # the reservation applied the due changes
    assert sorted(statuses) == ["applied", "applied"]
    actions = audit_actions(engine, player)
    assert actions.count("deposit_limit.change_scheduled") == 2
    assert actions.count("deposit_limit.changed") == 3 + 2   # 3 tightenings, 2 applied loosenings
    assert outbox_events(engine, player).count("deposit_limit.changed") == 5


def test_a_new_request_replaces_a_pending_loosening(engine, settings, make_player):
    player = make_player()
    set_limits(engine, settings, player, day=10_000)
    set_limits(engine, settings, player, now=NOW + timedelta(hours=1), day=30_000)
    # The same loosening asked again (a retried PUT) keeps its cool-off running.
    view = set_limits(engine, settings, player, now=NOW + timedelta(hours=1, minutes=30),
                      day=30_000)
    pending = view["currencies"][0]["limits"][0]["pending_change"]
    assert (pending["amount"], pending["effective_at"]) == (30_000, NOW + timedelta(hours=25))
    # Changing one's mind back to the limit in force cancels the waiting loosening.
    set_limits(engine, settings, player, now=NOW + timedelta(hours=2), day=10_000)
    assert in_force(view_at(engine, player, NOW + timedelta(days=3))) == {"day": 10_000}
    assert "deposit_limit.change_cancelled" in audit_actions(engine, player)


def test_invalid_limit_requests_write_nothing(engine, settings, make_player):
    player = make_player()
    with pytest.raises(InvalidRequest):
        set_limits(engine, settings, player, day=10_000, week=0)
    with pytest.raises(InvalidRequest):
        set_limits(engine, settings, player, currency="XXX", day=10_000)
    assert view_at(engine, player, NOW)["currencies"] == []
    with pytest.raises(rg.PlayerNotFound):
        set_limits(engine, settings, "ply_nobody", day=10_000)


# --- the reservation ----------------------------------------------------------------------

def test_reservation_counts_against_rolling_windows_and_release_gives_it_back(engine, settings,
                                                                              make_player):
    player = make_player()
    set_limits(engine, settings, player, day=10_000, week=15_000)
    first, second = deposit_id(), deposit_id()
    assert reserve(engine, player, 6_000, first).allowed
    refused = reserve(engine, player, 5_000, second, now=NOW + timedelta(hours=1))
    assert (refused.allowed, refused.code) == (False, "deposit_limit_exceeded")
    assert "4000 left" in refused.reason

    # A failed deposit stops counting; releasing twice is harmless.
    with engine.begin() as conn:
        assert rg.release_deposit_amount(conn, first, now=NOW + timedelta(hours=2)) is True
        assert rg.release_deposit_amount(conn, first, now=NOW + timedelta(hours=2)) is False
    assert reserve(engine, player, 9_000, now=NOW + timedelta(hours=3)).allowed
    # A day later the daily window has room again, but the week has only 6,000 left.
    assert reserve(engine, player, 7_000,
                   now=NOW + timedelta(hours=28)).code == "deposit_limit_exceeded"
    assert reserve(engine, player, 6_000, now=NOW + timedelta(hours=28)).allowed
    view = view_at(engine, player, NOW + timedelta(hours=28))
    week = next(r for r in view["currencies"][0]["limits"] if r["period"] == "week")
    assert (week["used"], week["remaining"]) == (15_000, 0)


def test_reservation_is_idempotent_per_deposit(engine, settings, make_player):
    player = make_player()
    set_limits(engine, settings, player, day=10_000)
    dep = deposit_id()
    assert reserve(engine, player, 8_000, dep).allowed
    assert reserve(engine, player, 8_000, dep).allowed           # replay: counted once
    assert reserve(engine, player, 2_000).allowed                # so 2,000 still fit
    with pytest.raises(rg.ReservationConflict):
        reserve(engine, player, 9_000, dep)
    refused = deposit_id()
    assert reserve(engine, player, 1, refused).code == "deposit_limit_exceeded"
    with engine.begin() as conn:                                  # a refusal is remembered too
        rg.release_deposit_amount(conn, refused)
    assert reserve(engine, player, 1, refused).code == "deposit_limit_exceeded"
    with engine.connect() as conn:
        rows = conn.execute(text("""SELECT status, count(*) FROM deposit_limit_usage
                                    WHERE player_id = :p GROUP BY 1"""), {"p": player}).all()
    assert dict(rows) == {"reserved": 2, "rejected": 1}


def test_concurrent_deposits_cannot_exceed_a_limit(engine, settings, make_player):
    player = make_player()
    set_limits(engine, settings, player, day=10_000)
    threads_count, amount = 8, 3_000          # only 3 x 3,000 fit in 10,000
    barrier = threading.Barrier(threads_count)
    results: list = [None] * threads_count

    def deposit(i: int) -> None:
        def work(conn):
            barrier_wait_once()
            return rg.reserve_deposit_amount(conn, player, amount, "USD", f"dep_conc_{player}_{i}",
                                             actor="workflow:test", now=NOW)
        waited = []

        def barrier_wait_once():
            if not waited:
                waited.append(True)
                barrier.wait(timeout=30)
        results[i] = run_in_transaction(engine, work)

    threads = [threading.Thread(target=deposit, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(r.allowed for r in results) == 3
    assert {r.code for r in results if not r.allowed} == {"deposit_limit_exceeded"}
    with engine.connect() as conn:
        reserved = conn.execute(text("""SELECT COALESCE(SUM(amount), 0) FROM deposit_limit_usage
                                        WHERE player_id = :p AND status = 'reserved'"""),
                                {"p": player}).scalar()
    assert reserved == 9_000


def test_concurrent_first_reservations_of_one_deposit_record_it_once(engine, make_player):
    """A player without a lock row yet (store.lock_player makes it the first time): the same
    deposit reserved by 8 transactions at once is recorded once and every one gets its answer."""
    player, dep = make_player(), deposit_id()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM responsible_gaming_players "
                                 "WHERE player_id = :p"), {"p": player}).scalar() == 0
    threads_count = 8
    barrier = threading.Barrier(threads_count)
    results: list = [None] * threads_count
    errors: list = []

    def deposit(i: int) -> None:
        def work(conn):
            barrier.wait(timeout=30)
            return rg.reserve_deposit_amount(conn, player, 2_000, "USD", dep,
                                             actor="workflow:test", now=NOW)
        try:
            results[i] = run_in_transaction(engine, work, attempts=1)
        except Exception as error:   # any failure fails the test below
            errors.append(error)

    threads = [threading.Thread(target=deposit, args=(i,)) for i in range(threads_count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert [(r.allowed, r.code) for r in results] == [(True, "allowed")] * threads_count
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT status, amount FROM deposit_limit_usage "
                                 "WHERE deposit_id = :d"), {"d": dep}).all()
    assert [tuple(r) for r in rows] == [("reserved", 2_000)]
    assert audit_actions(engine, dep) == ["deposit_limit.reserved"]


def test_exclusion_gate_and_reservation_disagree_never(engine, settings, make_player):
    """A self-exclusion taken while deposits are in flight: later reservations all refuse."""
    player = make_player()
    assert reserve(engine, player, 1_000).allowed
    with engine.begin() as conn:
        rg.self_exclude(conn, player, None, actor="operator:alice", now=NOW)
    for _ in range(3):
        assert reserve(engine, player, 1_000,
                       now=NOW + timedelta(seconds=1)).code == "self_excluded"
    with engine.connect() as conn:
        active = gates_of_limits.active_exclusions(conn, player, NOW + timedelta(days=10_000))
        assert active[0].exclusion.ends_at is None


# --- issue 9, item 10: a retried deposit gate refuses its own deposit ------------------------

def located_player(engine, geo_settings, make_player) -> str:
    player = make_player()
    check_player(engine, geo_settings, from_settings(geo_settings), player_id=player,
                 request=LocationRequest(*PRINCETON, NJ_RESIDENTIAL_IP), actor="api_key:test",
                 now=NOW)
    return player


def gate(engine, settings, player, amount, dep, now=NOW + timedelta(minutes=1)):
    req = GateRequest(player, Operation.DEPOSIT, amount, "USD", NJ_RESIDENTIAL_IP, deposit_id=dep)
    return run_in_transaction(engine, lambda conn: rg.gate_deposit(
        conn, settings, req, actor="workflow:test", now=now))


def day_used(engine, player, now=NOW + timedelta(minutes=2)) -> int:
    view = view_at(engine, player, now)
    return next(r["used"] for r in view["currencies"][0]["limits"] if r["period"] == "day")


def test_a_retried_deposit_gate_passes_its_own_reservation_and_counts_it_once(
        engine, geo_settings, make_player):
    player = located_player(engine, geo_settings, make_player)
    set_limits(engine, geo_settings, player, day=10_000)
    dep = deposit_id()
    first = gate(engine, geo_settings, player, 8_000, dep)
    assert first.allowed, first
    # The activity is retried (its first attempt committed, then the worker lost the answer):
    # the same gate for the same deposit passes, and the amount is counted once.
    retried = gate(engine, geo_settings, player, 8_000, dep,
                   now=NOW + timedelta(minutes=1, seconds=5))
    assert (retried.allowed, retried.code) == (True, "allowed"), retried
    assert day_used(engine, player) == 8_000
    # Another deposit is still refused at the limit.
    other = gate(engine, geo_settings, player, 8_000, deposit_id())
    assert (other.allowed, other.code) == (False, "deposit_limit_exceeded")
    assert day_used(engine, player) == 8_000
    with engine.connect() as conn:
        reserved = conn.execute(text("""SELECT count(*) FROM deposit_limit_usage
                                        WHERE deposit_id = :d AND status = 'reserved'"""),
                                {"d": dep}).scalar_one()
    assert reserved == 1
    assert ledger_violations(engine) == []


def test_the_deposit_limit_gate_never_counts_the_gated_deposits_own_reservation(
        engine, settings, make_player):
    player = make_player()
    set_limits(engine, settings, player, day=10_000)
    dep = deposit_id()
    assert reserve(engine, player, 8_000, dep).allowed
    later = NOW + timedelta(minutes=1)
    with engine.connect() as conn:
        own = gates_of_limits.deposit_limit_gate(conn, settings, GateRequest(
            player, Operation.DEPOSIT, 8_000, "USD", deposit_id=dep), later)
        another = gates_of_limits.deposit_limit_gate(conn, settings, GateRequest(
            player, Operation.DEPOSIT, 8_000, "USD", deposit_id=deposit_id()), later)
    assert own is None
    assert another is not None and another.code == "deposit_limit_exceeded"
    assert "2000 left" in another.reason


def test_a_gate_refusal_before_the_reservation_records_nothing(engine, settings, make_player):
    player = make_player()          # no geolocation check on record
    dep = deposit_id()
    refused = gate(engine, settings, player, 5_000, dep)
    assert (refused.allowed, refused.code) == (False, "geolocation_required")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deposit_limit_usage WHERE deposit_id = :d"),
                            {"d": dep}).scalar_one() == 0
