"""Geolocation checks stored on the real database, and the gate every money path passes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from adapters.geolocation import from_settings
from adapters.geolocation.interface import LocationRequest
from compliance.gates import GateRequest, Operation
from tests.support.compliance import (
    BLOCKLISTED_IP,
    CANADA_IP,
    NJ_RESIDENTIAL_IP,
    NOW,
    PLAYER_IP,
    PROXY_IP,
    VPN_IP,
    allow_location,
    check_gates,
    check_player,
)

HOBOKEN = (40.7440, -74.0324)          # NJ, ~0.7 miles from the NY line in the Hudson
PRINCETON = (40.3487, -74.6593)        # NJ, far from any border
MANHATTAN = (40.7580, -73.9855)        # NY
OPERATIONS = list(Operation)


def run_check(engine, settings, player_id, where, ip, now=NOW):
    return check_player(engine, settings, from_settings(settings), player_id=player_id,
                        request=LocationRequest(*where, ip), actor="api_key:test", now=now)


def request(player_id, operation=Operation.DEPOSIT, ip=NJ_RESIDENTIAL_IP, amount=10_000):
    return GateRequest(player_id, operation, amount, "USD", ip)


def gate(engine, settings, req, now):
    with engine.connect() as conn:
        return check_gates(conn, settings, req, now)


@pytest.mark.parametrize("operation", OPERATIONS)
def test_no_check_on_record_means_geolocation_required(engine, geo_settings, make_player,
                                                       operation):
    player = make_player()
    decision = gate(engine, geo_settings, request(player, operation), NOW)
    assert (decision.allowed, decision.code) == (False, "geolocation_required")


def test_check_far_from_border_is_valid_20_minutes(engine, geo_settings, make_player):
    player = make_player()
    check = run_check(engine, geo_settings, player, PRINCETON, NJ_RESIDENTIAL_IP)
    assert check.allowed and check.jurisdiction == "US-NJ" and check.distance_to_border_miles > 1
    assert check.valid_until == NOW + timedelta(minutes=20)
    assert check.ip_country == "US"

    for operation in OPERATIONS:
        assert gate(engine, geo_settings, request(player, operation),
                    NOW + timedelta(minutes=19, seconds=59)).allowed
    expired = gate(engine, geo_settings, request(player), NOW + timedelta(minutes=20))
    assert (expired.allowed, expired.code) == (False, "geolocation_expired")


def test_check_near_a_border_is_valid_5_minutes(engine, geo_settings, make_player):
    player = make_player()
    check = run_check(engine, geo_settings, player, HOBOKEN, NJ_RESIDENTIAL_IP)
    assert check.allowed and check.jurisdiction == "US-NJ" and check.distance_to_border_miles < 1
    assert check.valid_until == NOW + timedelta(minutes=5)
    assert gate(engine, geo_settings, request(player, Operation.BET),
                NOW + timedelta(minutes=4)).allowed
    assert gate(engine, geo_settings, request(player, Operation.BET),
                NOW + timedelta(minutes=6)).code == "geolocation_expired"


def test_ip_change_voids_a_valid_check_until_checked_again(engine, geo_settings, make_player):
    player = make_player()
    run_check(engine, geo_settings, player, PRINCETON, NJ_RESIDENTIAL_IP)
    moved = gate(engine, geo_settings, request(player, ip="203.0.113.11"),
                 NOW + timedelta(minutes=1))
    assert (moved.allowed, moved.code) == (False, "ip_changed")
    assert "203.0.113.11" in moved.reason
    # The same address written differently is the same address.
    run_check(engine, geo_settings, player, PRINCETON, "::ffff:203.0.113.11",
              now=NOW + timedelta(minutes=2))
    assert gate(engine, geo_settings, request(player, ip="::ffff:203.0.113.11"),
                NOW + timedelta(minutes=3)).allowed
    # A server-side request without an IP is judged on time and place only.
    assert gate(engine, geo_settings, request(player, ip=None), NOW + timedelta(minutes=3)).allowed


def test_device_outside_licensed_states_is_blocked_with_the_reason(engine, geo_settings,
                                                                   make_player):
    player = make_player()
    check = run_check(engine, geo_settings, player, MANHATTAN, NJ_RESIDENTIAL_IP)
    assert not check.allowed and check.code == "outside_licensed_jurisdiction"
    decision = gate(engine, geo_settings, request(player, Operation.WITHDRAWAL),
                    NOW + timedelta(minutes=1))
    assert (decision.allowed, decision.code) == (False, "outside_licensed_jurisdiction")
    assert "US-NY" in decision.reason


@pytest.mark.parametrize("ip, flag",
                         [(VPN_IP, "is_anonymous_vpn"), (PROXY_IP, "is_anonymous_proxy"),
                                      (BLOCKLISTED_IP, "in_anonymous_blocklist")])
def test_anonymous_ip_is_blocked(engine, geo_settings, make_player, ip, flag):
    player = make_player()
    check = run_check(engine, geo_settings, player, PRINCETON, ip)
    assert not check.allowed and check.code == "anonymous_ip" and flag in check.anonymous_flags
    decision = gate(engine, geo_settings, request(player, Operation.BET, ip=ip),
                    NOW + timedelta(minutes=1))
    assert (decision.code, decision.allowed) == ("anonymous_ip", False)
    assert flag in decision.reason


def test_ip_in_another_country_is_blocked(engine, geo_settings, make_player):
    player = make_player()
    check = run_check(engine, geo_settings, player, PRINCETON, CANADA_IP)
    assert (check.allowed, check.code, check.ip_country) == (False, "ip_outside_licensed_country",
                                                             "CA")


def test_the_latest_check_decides_and_every_check_is_kept_and_audited(engine, geo_settings,
                                                                      make_player):
    player = make_player()
    run_check(engine, geo_settings, player, MANHATTAN, NJ_RESIDENTIAL_IP, now=NOW)
    run_check(engine, geo_settings, player, PRINCETON, NJ_RESIDENTIAL_IP,
              now=NOW + timedelta(minutes=1))
    assert gate(engine, geo_settings, request(player), NOW + timedelta(minutes=2)).allowed
    with engine.connect() as conn:
        stored = conn.execute(text("""SELECT code FROM geolocation_checks WHERE player_id = :p
                                      ORDER BY checked_at"""), {"p": player}).scalars().all()
        audited = conn.execute(text("""SELECT count(*) FROM audit_log
                                       WHERE record::jsonb->>'subject_id' = :p
                                       AND record::jsonb->>'action' = 'geolocation.checked'"""),
                               {"p": player}).scalar()
    assert stored == ["outside_licensed_jurisdiction", "allowed"]
    assert audited == 2
    # Evidence is append-only.
    with pytest.raises(Exception, match="append-only"):
        with engine.begin() as conn:
            conn.execute(text("""UPDATE geolocation_checks SET allowed = true, code = 'allowed'
                                 WHERE player_id = :p"""), {"p": player})


def test_helper_for_other_areas_gives_a_valid_check_with_default_settings(engine, settings,
                                                                          make_player):
    player = make_player()
    check = allow_location(engine, settings, player, now=NOW)
    assert check.allowed and check.ip_country == "US"
    assert gate(engine, settings, request(player, Operation.WITHDRAWAL, ip=PLAYER_IP),
                NOW + timedelta(minutes=1)).allowed
