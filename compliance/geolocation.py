"""Geolocation: run a check for a player and gate money movements on the latest one.

`locate` asks the provider for facts and `domain.geo.decide` judges them (outside any database
transaction: a vendor may take a while); `record` stores the check with its audit record.
`geolocation_gate` (registered in `compliance.registry`) lets a deposit, bet or withdrawal
through only with a valid check on record:
  geolocation_required            no check yet
  <the check's code>              the latest check blocked (outside_licensed_jurisdiction,
                                  anonymous_ip, ip_outside_licensed_country)
  geolocation_expired             past its valid_until (20 min, 5 near a border)
  ip_changed                      the request comes from another IP than the check did
When the caller passes no IP address (a server-side flow), the IP comparison is skipped.
Must never: call the provider inside a database transaction, or decide rules itself.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

import audit
from adapters.geolocation.interface import GeolocationProvider, LocationRequest
from compliance.gates import GateDecision, GateRequest
from domain.geo import GeoDecision, GeoPolicy, LocationFacts, decide
from domain.geo.decision import GeoCode
from settlepay.config import Settings
from store import geolocation as checks
from store.geolocation import GeolocationCheck


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
    facts = provider.locate(request)
    return facts, decide(facts, policy(settings), now)


def record(conn: Connection, *, player_id: str, request: LocationRequest, provider: str,
           facts: LocationFacts, decision: GeoDecision, now: datetime, actor: str) -> GeolocationCheck:
    stored = checks.insert(conn, GeolocationCheck(
        id=checks.new_id(), player_id=player_id, checked_at=now,
        latitude=request.latitude, longitude=request.longitude,
        ip_address=str(ipaddress.ip_address(request.ip_address)), provider=provider,
        jurisdiction=facts.jurisdiction, distance_to_border_miles=facts.distance_to_border_miles,
        ip_country=facts.ip_country, ip_subdivision=facts.ip_subdivision,
        anonymous_flags=tuple(facts.anonymous_flags), allowed=decision.allowed,
        code=str(decision.code), reason=decision.reason, valid_until=decision.valid_until,
    ))
    audit.record(conn, actor=actor, action="geolocation.checked", subject_type="player",
                 subject_id=player_id, before=None,
                 after={"check_id": stored.id, "allowed": stored.allowed, "code": stored.code,
                        "jurisdiction": stored.jurisdiction, "ip_address": stored.ip_address,
                        "distance_to_border_miles": stored.distance_to_border_miles,
                        "valid_until": stored.valid_until.isoformat()})
    return stored


def check_player(engine, settings: Settings, provider: GeolocationProvider, *, player_id: str,
                 request: LocationRequest, actor: str, now: datetime | None = None) -> GeolocationCheck:
    """Locate, decide and store in one call (the provider runs before the transaction opens)."""
    from settlepay.db import transaction

    now = now or datetime.now(UTC)
    facts, decision = locate(settings, provider, request, now)
    with transaction(engine) as conn:
        return record(conn, player_id=player_id, request=request, provider=provider.name,
                      facts=facts, decision=decision, now=now, actor=actor)


def verdict(check: GeolocationCheck | None, ip_address: str | None, now: datetime) -> GateDecision | None:
    """What the latest check says about a request made now from `ip_address` (None: allowed)."""
    if check is None:
        return GateDecision.deny(GeoCode.GEOLOCATION_REQUIRED.value,
                                 "no geolocation check on record: check the player's location first")
    if not check.allowed:
        return GateDecision.deny(check.code, check.reason)
    if now >= check.valid_until:
        return GateDecision.deny(GeoCode.GEOLOCATION_EXPIRED.value,
                                 f"the geolocation check expired at {check.valid_until.isoformat()}")
    if ip_address is not None and not _same_ip(ip_address, check.ip_address):
        return GateDecision.deny(GeoCode.IP_CHANGED.value,
                                 f"the IP address changed since the geolocation check "
                                 f"({check.ip_address} -> {ip_address}): check again")
    return None


def geolocation_gate(conn: Connection, settings: Settings, req: GateRequest, *,
                     now: datetime | None = None) -> GateDecision | None:
    return verdict(checks.latest(conn, req.player_id), req.ip_address, now or datetime.now(UTC))


def _same_ip(a: str, b: str) -> bool:
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False
