"""`POST /v1/players/{id}/geolocation`: the partner app reports the device's location.

The check runs (provider facts, then the rules in `domain.geo`: `compliance.geolocation.locate`),
is stored (`commands.geolocation.record_check`), and the decision comes back with its reason and
`valid_until`; deposits, bets and withdrawals are then gated on it. A blocked location is still a
successful request (201): the check happened and is on record. This module translates HTTP only.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlalchemy import Connection

from adapters.geolocation.interface import (
    GeolocationProvider,
    GeolocationUnavailable,
    LocationRequest,
)
from api.auth import PlayersWriter, visible_player
from api.deps import EngineDep, SettingsDep
from api.problems import PROBLEM_RESPONSES, Problem
from api.schemas.geolocation import GeolocationCheck, GeolocationCheckCreate
from commands.geolocation import check_payload, record_check
from compliance.geolocation import locate
from settlepay.config import Settings
from settlepay.db import run_in_transaction

router = APIRouter(tags=["geolocation"], responses=PROBLEM_RESPONSES)


def provider_for(request: Request, settings: Settings) -> GeolocationProvider:
    """The app's provider (tests and the dev stack may set one), else the offline default."""
    provider = getattr(request.app.state, "geolocation_provider", None)
    if provider is None:
        from adapters.geolocation import from_settings

        provider = from_settings(settings)
    return provider


@router.post("/v1/players/{player_id}/geolocation", status_code=201,
             response_model=GeolocationCheck, summary="Check a player's location")
def create_geolocation_check(player_id: str, body: GeolocationCheckCreate, request: Request,
                             principal: PlayersWriter, settings: SettingsDep,
                             engine: EngineDep) -> GeolocationCheck:
    provider = provider_for(request, settings)
    location = LocationRequest(body.latitude, body.longitude, str(body.ip_address))
    with engine.connect() as conn:  # 404 before asking the provider anything
        visible_player(conn, principal, player_id)
    now = datetime.now(UTC)
    try:  # outside any transaction: a vendor may take a while
        facts, decision = locate(settings, provider, location, now)
    except GeolocationUnavailable as error:
        raise Problem(503, "geolocation_unavailable", "Geolocation provider unavailable",
                      "The location could not be checked right now; retry.") from error

    def work(conn: Connection) -> GeolocationCheck:
        visible_player(conn, principal, player_id)
        stored = record_check(conn, player_id=player_id, request=location,
                              provider=provider.name, facts=facts, decision=decision, now=now,
                              actor=principal.actor)
        return GeolocationCheck.model_validate(check_payload(stored))

    return run_in_transaction(engine, work)
