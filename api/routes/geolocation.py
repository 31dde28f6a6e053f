"""`POST /v1/players/{id}/geolocation`: the partner app reports the device's location.

The check runs (provider facts, then the rules in `domain.geo`), is stored, and the decision
comes back with its reason and `valid_until`; deposits, bets and withdrawals are then gated on
it (`compliance.geolocation`). A blocked location is still a successful request (201): the check
happened and is on record. This module translates HTTP only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from adapters.geolocation.interface import GeolocationProvider, GeolocationUnavailable, LocationRequest
from api.auth import Principal, require, visible_player
from api.deps import get_engine, get_settings
from api.problems import Problem
from api.scopes import Scope
from compliance import geolocation
from settlepay.config import Settings
from settlepay.db import transaction
from store.geolocation import GeolocationCheck

router = APIRouter(tags=["geolocation"])


class GeolocationCheckCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    latitude: float = Field(ge=-90, le=90, allow_inf_nan=False)
    longitude: float = Field(ge=-180, le=180, allow_inf_nan=False)
    ip_address: IPvAnyAddress


def provider_for(request: Request, settings: Settings) -> GeolocationProvider:
    """The app's provider (tests and the dev stack may set one), else the offline default."""
    provider = getattr(request.app.state, "geolocation_provider", None)
    if provider is None:
        from adapters.geolocation import from_settings

        provider = from_settings(settings)
    return provider


def check_json(check: GeolocationCheck) -> dict[str, Any]:
    return {
        "object": "geolocation_check", "id": check.id, "player_id": check.player_id,
        "allowed": check.allowed, "code": check.code, "reason": check.reason,
        "jurisdiction": check.jurisdiction, "distance_to_border_miles": check.distance_to_border_miles,
        "latitude": check.latitude, "longitude": check.longitude, "ip_address": check.ip_address,
        "ip_country": check.ip_country, "anonymous_flags": list(check.anonymous_flags),
        "provider": check.provider, "checked_at": check.checked_at.isoformat(),
        "valid_until": check.valid_until.isoformat(),
    }


@router.post("/v1/players/{player_id}/geolocation", status_code=201)
async def create_geolocation_check(
    player_id: str, body: GeolocationCheckCreate, request: Request,
    principal: Principal = Depends(require(Scope.PLAYERS_WRITE)),
    settings: Settings = Depends(get_settings), engine: Engine = Depends(get_engine),
) -> dict[str, Any]:
    provider = provider_for(request, settings)
    location = LocationRequest(body.latitude, body.longitude, str(body.ip_address))

    def run() -> GeolocationCheck:
        with engine.connect() as conn:  # 404 before asking the provider anything
            visible_player(conn, principal, player_id)
        now = datetime.now(UTC)
        try:
            facts, decision = geolocation.locate(settings, provider, location, now)
        except GeolocationUnavailable as error:
            raise Problem(503, "geolocation_unavailable", "Geolocation provider unavailable",
                          "The location could not be checked right now; retry.") from error
        with transaction(engine) as conn:
            visible_player(conn, principal, player_id)
            return geolocation.record(conn, player_id=player_id, request=location,
                                      provider=provider.name, facts=facts, decision=decision,
                                      now=now, actor=principal.actor)

    return check_json(await run_in_threadpool(run))
