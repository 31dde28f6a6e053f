"""Helpers other areas' tests use to get a player past the compliance gates.

Deposits, bets and withdrawals need a valid geolocation check on record (see
`compliance.geolocation`). With default settings (licensed US-NJ and US-PA, the shipped
GeoLite2 database) this records an allowed check, valid 20 minutes from `now`:

    from tests.compliance.helpers import PLAYER_IP, allow_location
    allow_location(engine, settings, player_id)
    GateRequest(player_id, Operation.WITHDRAWAL, 5_000, "USD", ip_address=PLAYER_IP)  # or None
"""

from __future__ import annotations

from datetime import datetime

from adapters.geolocation import from_settings
from adapters.geolocation.interface import LocationRequest
from compliance import geolocation
from store.geolocation import GeolocationCheck

PRINCETON_NJ = (40.3487, -74.6593)   # far from any state border
PLAYER_IP = "128.112.0.1"            # Princeton University: US-NJ in the shipped GeoLite2


def allow_location(engine, settings, player_id: str, *, ip: str = PLAYER_IP,
                   now: datetime | None = None) -> GeolocationCheck:
    check = geolocation.check_player(engine, settings, from_settings(settings), player_id=player_id,
                                     request=LocationRequest(*PRINCETON_NJ, ip), actor="system:tests", now=now)
    if not check.allowed:
        raise AssertionError(f"the test location was refused: {check.code} {check.reason}")
    return check
