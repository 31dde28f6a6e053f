"""Recording a geolocation check: the evidence row and its audit record, in one transaction.

The provider is asked and the rules decide before (`compliance.geolocation.locate`, outside
any transaction); this stores what they said. Rows are append-only evidence of where the
player was when they moved money.
Must never: call the provider, or open its own transaction.
"""

from __future__ import annotations

import ipaddress
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

import audit
from adapters.geolocation.interface import LocationRequest
from domain.geo import GeoDecision, LocationFacts
from store import geolocation as checks
from store.geolocation import GeolocationCheck


def check_payload(check: GeolocationCheck) -> dict[str, Any]:
    """The geolocation check resource, as the API answers it."""
    return {
        "object": "geolocation_check", "id": check.id, "player_id": check.player_id,
        "allowed": check.allowed, "code": check.code, "reason": check.reason,
        "jurisdiction": check.jurisdiction,
        "distance_to_border_miles": check.distance_to_border_miles,
        "latitude": check.latitude, "longitude": check.longitude,
        "ip_address": check.ip_address, "ip_country": check.ip_country,
        "anonymous_flags": list(check.anonymous_flags), "provider": check.provider,
        "checked_at": check.checked_at.isoformat(), "valid_until": check.valid_until.isoformat(),
    }


def record_check(conn: Connection, *, player_id: str, request: LocationRequest, provider: str,
                 facts: LocationFacts, decision: GeoDecision, now: datetime,
                 actor: str) -> GeolocationCheck:
    """Store the check the provider and the rules made, with its audit record."""
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
