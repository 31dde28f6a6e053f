"""The geolocation rules: blocked reasons and the 20 / 5 minute validity windows."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.geo import GeoPolicy, LocationFacts, decide
from domain.geo.decision import GeoCode
from tests.support.compliance import NOW

POLICY = GeoPolicy(licensed_jurisdictions=frozenset({"US-NJ", "US-PA"}))


def test_allowed_far_from_a_border_lasts_20_minutes():
    d = decide(LocationFacts("US-NJ", 12.5, "US", "US-NJ"), POLICY, NOW)
    assert d.allowed and d.code is GeoCode.ALLOWED
    assert d.valid_until == NOW + timedelta(minutes=20)
    assert "US-NJ" in d.reason and "12.50 miles" in d.reason


@pytest.mark.parametrize("miles, minutes", [(0.0, 5), (0.2, 5), (0.999, 5), (1.0, 20), (1.5, 20)])
def test_within_one_mile_of_a_border_lasts_5_minutes(miles, minutes):
    d = decide(LocationFacts("US-PA", miles, "US"), POLICY, NOW)
    assert d.allowed
    assert d.valid_until == NOW + timedelta(minutes=minutes)


def test_outside_licensed_jurisdiction_is_blocked_with_where():
    d = decide(LocationFacts("US-NY", 0.3, "US"), POLICY, NOW)
    assert not d.allowed and d.code is GeoCode.OUTSIDE_LICENSED_JURISDICTION
    assert "US-NY" in d.reason
    nowhere = decide(LocationFacts(None, 4.0), POLICY, NOW)
    assert nowhere.code is GeoCode.OUTSIDE_LICENSED_JURISDICTION


def test_anonymous_ip_blocks_even_inside_a_licensed_state():
    d = decide(LocationFacts("US-NJ", 10, "US", anonymous_flags=("is_anonymous_vpn",)), POLICY, NOW)
    assert not d.allowed and d.code is GeoCode.ANONYMOUS_IP and "is_anonymous_vpn" in d.reason


def test_ip_in_another_country_blocks_unless_the_policy_says_otherwise():
    facts = LocationFacts("US-NJ", 10, "CA")
    assert decide(facts, POLICY, NOW).code is GeoCode.IP_OUTSIDE_LICENSED_COUNTRY
    lenient = GeoPolicy(POLICY.licensed_jurisdictions, ip_country_must_match=False)
    assert decide(facts, lenient, NOW).allowed
    # An unknown IP location (private address, not in the database) is not a reason to block.
    assert decide(LocationFacts("US-NJ", 10, None), POLICY, NOW).allowed
