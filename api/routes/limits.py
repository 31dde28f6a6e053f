"""Responsible-gaming endpoints: deposit limits, self-exclusion, time-outs.

    PUT  /v1/players/{id}/limits          {"currency": "USD", "day": 10000, "week": null}
                                          (a period left out is unchanged, null removes it)
    GET  /v1/players/{id}/limits          limits in force, pending loosenings, usage, exclusions
    POST /v1/players/{id}/self-exclusion  {"duration_days": 365} or {"permanent": true}
    POST /v1/players/{id}/time-out        {"duration_hours": 72}

The rules (tighter at once, looser after 24 h, exclusions cannot be lifted) live in
`domain.limits`, the changes in `commands.limits`; this module translates HTTP only.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter
from sqlalchemy import Connection, Engine

from api.auth import PlayersReader, PlayersWriter, Principal, visible_player
from api.deps import EngineDep, SettingsDep
from api.problems import PROBLEM_RESPONSES, Problem, not_found, refused
from api.schemas.limits import (
    DepositLimitsUpdate,
    Exclusion,
    Limits,
    SelfExclusionCreate,
    TimeOutCreate,
)
from commands import limits as commands
from compliance import limits as compliance
from domain.limits import InvalidRequest
from settlepay.db import run_in_transaction
from store.responsible_gaming import StoredExclusion
from workflows.contracts.refusal import Refusal

router = APIRouter(prefix="/v1/players/{player_id}", tags=["responsible gaming"],
                   responses=PROBLEM_RESPONSES)


def _invalid(error: InvalidRequest) -> Problem:
    return refused(Refusal(error.code, str(error)), "The request breaks a responsible-gaming rule")


def _limits(conn: Connection, player_id: str) -> Limits:
    now = datetime.now(UTC)
    view = compliance.limits_view(conn, player_id, now)
    exclusions = [commands.exclusion_payload(player_id, e)
                  for e in compliance.active_exclusions(conn, player_id, now)]
    return Limits.model_validate({**view, "exclusions": exclusions})


@router.get("/limits", response_model=Limits, summary="A player's deposit limits and exclusions")
def get_limits(player_id: str, principal: PlayersReader, engine: EngineDep) -> Limits:
    with engine.connect() as conn:
        visible_player(conn, principal, player_id)
        return _limits(conn, player_id)


@router.put("/limits", response_model=Limits, summary="Set deposit limits")
def put_limits(player_id: str, body: DepositLimitsUpdate, principal: PlayersWriter,
               settings: SettingsDep, engine: EngineDep) -> Limits:
    def work(conn: Connection) -> Limits:
        visible_player(conn, principal, player_id)
        commands.set_deposit_limits(conn, settings, player_id, body.currency, body.requested(),
                                    actor=principal.actor)
        return _limits(conn, player_id)

    try:
        return run_in_transaction(engine, work)
    except InvalidRequest as error:
        raise _invalid(error) from error
    except commands.PlayerNotFound as error:
        raise not_found("player", player_id) from error


def _exclude(engine: Engine, principal: Principal, player_id: str,
             make: Callable[[Connection], StoredExclusion]) -> Exclusion:
    def work(conn: Connection) -> Exclusion:
        visible_player(conn, principal, player_id)
        return Exclusion.model_validate(commands.exclusion_payload(player_id, make(conn)))

    try:
        return run_in_transaction(engine, work)
    except InvalidRequest as error:
        raise _invalid(error) from error
    except commands.PlayerNotFound as error:
        raise not_found("player", player_id) from error


@router.post("/self-exclusion", status_code=201, response_model=Exclusion,
             summary="Self-exclude a player (at least 6 months, or permanently)")
def create_self_exclusion(player_id: str, body: SelfExclusionCreate, principal: PlayersWriter,
                          engine: EngineDep) -> Exclusion:
    duration = None if body.permanent else timedelta(days=body.duration_days or 0)
    return _exclude(engine, principal, player_id, lambda conn: commands.self_exclude(
        conn, player_id, duration, actor=principal.actor))


@router.post("/time-out", status_code=201, response_model=Exclusion,
             summary="Give a player a time-out (24 hours to 6 weeks)")
def create_time_out(player_id: str, body: TimeOutCreate, principal: PlayersWriter,
                    engine: EngineDep) -> Exclusion:
    duration = timedelta(hours=body.duration_hours)
    return _exclude(engine, principal, player_id, lambda conn: commands.take_time_out(
        conn, player_id, duration, actor=principal.actor))
