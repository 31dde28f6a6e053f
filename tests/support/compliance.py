"""Compliance test data: a fixed clock, IP addresses with known meanings, test MaxMind
databases, and helpers that record a geolocation check the way the API does.

Deposits, bets and withdrawals need a valid geolocation check on record (see
`compliance.geolocation`). With default settings (licensed US-NJ and US-PA, the shipped
GeoLite2 database) `allow_location` records an allowed check, valid 20 minutes from `now`:

    allow_location(engine, settings, player_id)
    GateRequest(player_id, Operation.WITHDRAWAL, 5_000, "USD", ip_address=PLAYER_IP)
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine

from adapters.geolocation import from_settings
from adapters.geolocation.interface import GeolocationProvider, LocationRequest
from commands.geolocation import record_check
from compliance import gates
from compliance.debt import debt_gate
from compliance.geolocation import locate
from compliance.kyc import kyc_gate
from compliance.request import GateDecision, GateRequest
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import players
from store.geolocation import GeolocationCheck
from tests.support.mmdb import write_mmdb

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)

# Addresses from the documentation ranges (RFC 5737), given meanings by the test databases.
NJ_RESIDENTIAL_IP = "203.0.113.10"
VPN_IP = "192.0.2.20"
PROXY_IP = "203.0.113.200"
CANADA_IP = "198.51.100.7"
BLOCKLISTED_IP = "100.64.3.4"

PRINCETON_NJ = (40.3487, -74.6593)   # far from any state border
PLAYER_IP = "128.112.0.1"            # Princeton University: US-NJ in the shipped GeoLite2

# The gates of this area and the core ones: KYC and debt would refuse bare test players first.
GATES_WITHOUT_KYC_AND_DEBT = tuple(g for g in gates.GATES if g not in (kyc_gate, debt_gate))


def insert_player(engine: Engine, jurisdiction: str = "US-NJ",
                  partner_id: str = "partner-compliance") -> str:
    """A bare active player row (no key, no location), as test setup."""
    player_id = f"ply_{uuid.uuid4().hex[:16]}"
    with engine.begin() as conn:
        players.insert(conn, player_id=player_id, partner_id=partner_id, external_ref=None,
                       first_name="Test", last_name="Player", email=None, date_of_birth=None,
                       jurisdiction=jurisdiction)
    return player_id


def write_test_mmdbs(folder: Path) -> tuple[Path, Path]:
    """A city and an anonymous-IP database giving the addresses above their meanings."""
    city = write_mmdb(folder / "city.mmdb", "GeoIP2-City", {
        "203.0.113.0/25": {"country": {"iso_code": "US"}, "subdivisions": [{"iso_code": "NJ"}]},
        "203.0.113.128/25": {"country": {"iso_code": "US"},
                             "traits": {"is_anonymous_proxy": True}},
        "198.51.100.0/24": {"country": {"iso_code": "CA"}, "subdivisions": [{"iso_code": "ON"}]},
    })
    anonymous = write_mmdb(folder / "anonymous.mmdb", "GeoIP2-Anonymous-IP", {
        "192.0.2.0/24": {"is_anonymous": True, "is_anonymous_vpn": True,
                         "is_hosting_provider": True},
    })
    return city, anonymous


def geo_settings_for(settings: Settings, city: Path, anonymous: Path) -> Settings:
    """Settings licensing US-NJ and US-PA, reading the test databases."""
    return settings.model_copy(update={
        "licensed_jurisdictions": ["US-NJ", "US-PA"],
        "geoip_city_db_path": str(city), "geoip_anonymous_db_path": str(anonymous),
        "geoip_anonymous_cidrs": ["100.64.0.0/10"],
    })


def check_player(engine: Engine, settings: Settings, provider: GeolocationProvider, *,
                 player_id: str, request: LocationRequest, actor: str,
                 now: datetime | None = None) -> GeolocationCheck:
    """Locate, decide and record, as the API route does (the provider before the transaction)."""
    now = now or datetime.now(UTC)
    facts, decision = locate(settings, provider, request, now)
    return run_in_transaction(engine, lambda conn: record_check(
        conn, player_id=player_id, request=request, provider=provider.name, facts=facts,
        decision=decision, now=now, actor=actor))


def allow_location(engine: Engine, settings: Settings, player_id: str, *, ip: str = PLAYER_IP,
                   now: datetime | None = None) -> GeolocationCheck:
    check = check_player(engine, settings, from_settings(settings), player_id=player_id,
                         request=LocationRequest(*PRINCETON_NJ, ip), actor="system:tests",
                         now=now)
    if not check.allowed:
        raise AssertionError(f"the test location was refused: {check.code} {check.reason}")
    return check


def check_gates(conn: Connection, settings: Settings, req: GateRequest, now: datetime,
                only: Sequence[gates.Gate] = GATES_WITHOUT_KYC_AND_DEBT) -> GateDecision:
    """`compliance.gates.check` at `now`, without the KYC and debt gates (see above)."""
    return gates.check(conn, settings, req, now=now, gates=only)
