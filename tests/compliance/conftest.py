"""Fixtures for the compliance gates: players, the state polygons, a clock, test MaxMind DBs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from adapters.geolocation.census_states import shapefile_path, us_states
from compliance import gates
from compliance.gates import ALLOWED, GateDecision, GateRequest
from store import players
from tests.compliance.mmdb import write_mmdb

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# Addresses from the documentation ranges (RFC 5737), given meanings by the test databases.
NJ_RESIDENTIAL_IP = "203.0.113.10"
VPN_IP = "192.0.2.20"
PROXY_IP = "203.0.113.200"
CANADA_IP = "198.51.100.7"
BLOCKLISTED_IP = "100.64.3.4"


@pytest.fixture
def make_player(engine):
    def make(jurisdiction: str = "US-NJ") -> str:
        player_id = f"ply_{uuid.uuid4().hex[:16]}"
        with engine.begin() as conn:
            players.insert(conn, player_id=player_id, partner_id="partner-compliance", external_ref=None,
                           first_name="Test", last_name="Player", email=None, date_of_birth=None,
                           jurisdiction=jurisdiction)
        return player_id
    return make


@pytest.fixture(scope="session")
def states():
    return us_states()


@pytest.fixture(scope="session")
def shapely_states():
    """The same shapefile as shapely geometries: the independent implementation we check against."""
    import shapefile
    from shapely.geometry import shape

    with shapefile.Reader(str(shapefile_path())) as reader:
        return {f"US-{rec['STUSPS']}": shape(shp.__geo_interface__)
                for shp, rec in zip(reader.shapes(), reader.records())}


@pytest.fixture(scope="session")
def mmdb_files(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("mmdb")
    city = write_mmdb(folder / "city.mmdb", "GeoIP2-City", {
        "203.0.113.0/25": {"country": {"iso_code": "US"}, "subdivisions": [{"iso_code": "NJ"}]},
        "203.0.113.128/25": {"country": {"iso_code": "US"}, "traits": {"is_anonymous_proxy": True}},
        "198.51.100.0/24": {"country": {"iso_code": "CA"}, "subdivisions": [{"iso_code": "ON"}]},
    })
    anonymous = write_mmdb(folder / "anonymous.mmdb", "GeoIP2-Anonymous-IP", {
        "192.0.2.0/24": {"is_anonymous": True, "is_anonymous_vpn": True, "is_hosting_provider": True},
    })
    return city, anonymous


@pytest.fixture(scope="session")
def geo_settings(settings, mmdb_files):
    city, anonymous = mmdb_files
    return settings.model_copy(update={
        "licensed_jurisdictions": ["US-NJ", "US-PA"],
        "geoip_city_db_path": str(city), "geoip_anonymous_db_path": str(anonymous),
        "geoip_anonymous_cidrs": ["100.64.0.0/10"],
    })


def check_gates(conn, settings, req: GateRequest, now: datetime) -> GateDecision:
    """`compliance.gates.check` restricted to the core gates and this area's, with "now" given.

    Other capabilities' gates (KYC, debt) would refuse these bare test players first.
    """
    from compliance import geolocation, responsible_gaming as rg

    mine = {geolocation.geolocation_gate, rg.exclusion_gate, rg.deposit_limit_gate}
    for gate in gates.GATES:
        if gate in mine:
            decision = gate(conn, settings, req, now=now)
        elif gate.__module__ == "compliance.gates":
            decision = gate(conn, settings, req)
        else:
            continue
        if decision is not None and not decision.allowed:
            return decision
    return ALLOWED
