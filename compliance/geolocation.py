"""Geolocation: judge a player's location, and gate money movements on the latest check.

`locate` asks the provider for facts and `domain.geo.decide` judges them (outside any database
transaction: a vendor may take a while); `commands.geolocation.record_check` stores the check
with its audit record. `geolocation_gate` lets a deposit, bet or withdrawal through only with a
valid check on record:
  geolocation_required            no check yet
  <the check's code>              the latest check blocked (outside_licensed_jurisdiction,
                                  anonymous_ip, ip_outside_licensed_country)
  geolocation_expired             past its valid_until (20 min, 5 near a border)
  ip_changed                      the request comes from another IP than the check did
When the caller passes no IP address (a server-side flow), the IP comparison is skipped.
Must never: call the provider inside a database transaction, write anything, or decide rules
itself (that is `domain.geo`).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta

from sqlalchemy import Connection

from adapters.geolocation.interface import GeolocationProvider, LocationRequest
from compliance.request import GateRequest
from domain.geo import GeoDecision, GeoPolicy, LocationFacts, decide
from domain.geo.decision import GeoCode
from settlepay.config import Settings
from store import geolocation as checks
from store.geolocation import GeolocationCheck
from workflows.contracts.refusal import Refusal


def policy(settings: Settings) -> GeoPolicy:
    return GeoPolicy(
        licensed_jurisdictions=frozenset(settings.licensed_jurisdictions),
        valid_for=timedelta(minutes=settings.geolocation_valid_minutes),
        near_border_valid_for=timedelta(minutes=settings.geolocation_border_valid_minutes),
        near_border_miles=settings.geolocation_border_miles,
        ip_country_must_match=settings.geolocation_ip_country_must_match,
    )


def locate(settings: Settings, provider: GeolocationProvider, request: LocationRequest,
           now: datetime) -> tuple[LocationFacts, GeoDecision]:
    """The provider's facts about the location and the rules' decision on them (no database)."""
    facts = provider.locate(request)
    return facts, decide(facts, policy(settings), now)


def verdict(check: GeolocationCheck | None, ip_address: str | None,
            now: datetime) -> Refusal | None:
    """What the latest check says about a request made now from `ip_address` (None: allowed)."""
    if check is None:
        return Refusal(GeoCode.GEOLOCATION_REQUIRED.value,
                       "no geolocation check on record: check the player's location first")
    if not check.allowed:
        return Refusal(check.code, check.reason)
    if now >= check.valid_until:
        return Refusal(GeoCode.GEOLOCATION_EXPIRED.value,
                       f"the geolocation check expired at {check.valid_until.isoformat()}")
    if ip_address is not None and not _same_ip(ip_address, check.ip_address):
        return Refusal(GeoCode.IP_CHANGED.value,
                       f"the IP address changed since the geolocation check "
                       f"({check.ip_address} -> {ip_address}): check again")
    return None


def geolocation_gate(conn: Connection, settings: Settings, req: GateRequest,
                     now: datetime) -> Refusal | None:
    return verdict(checks.latest(conn, req.player_id), req.ip_address, now)


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False
