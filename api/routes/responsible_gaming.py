"""Responsible-gaming endpoints: deposit limits, self-exclusion, time-outs.

    PUT  /v1/players/{id}/limits          {"currency": "USD", "day": 10000, "week": null}
                                          (a period left out is unchanged, null removes it)
    GET  /v1/players/{id}/limits          limits in force, pending loosenings, usage, exclusions
    POST /v1/players/{id}/self-exclusion  {"duration_days": 365} or {"permanent": true}
    POST /v1/players/{id}/time-out        {"duration_hours": 72}

The rules (tighter at once, looser after 24 h, exclusions cannot be lifted) live in
`domain.limits`; this module translates HTTP only.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, require, visible_player
from api.deps import get_engine, get_settings
from api.problems import Problem, not_found
from api.scopes import Scope
from compliance import responsible_gaming as rg
from domain.limits import InvalidRequest, Period
from settlepay.config import Settings
from settlepay.db import transaction

router = APIRouter(tags=["responsible gaming"])

LimitAmount = Annotated[StrictInt, Field(gt=0, le=10**15)]


class DepositLimitsUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    currency: str = Field(pattern=r"^[A-Z]{3}$")
    day: LimitAmount | None = None
    week: LimitAmount | None = None
    month: LimitAmount | None = None

    @model_validator(mode="after")
    def names_a_period(self) -> DepositLimitsUpdate:
        if not self.model_fields_set & {"day", "week", "month"}:
            raise ValueError("name at least one of day, week, month (null removes a limit)")
        return self

    def requested(self) -> dict[Period, int | None]:
        return {Period(p): getattr(self, p) for p in ("day", "week", "month") if p in self.model_fields_set}


class SelfExclusionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_days: StrictInt | None = Field(default=None, gt=0, le=36500)
    permanent: StrictBool = False

    @model_validator(mode="after")
    def one_of(self) -> SelfExclusionCreate:
        if self.permanent == (self.duration_days is not None):
            raise ValueError("give either duration_days or permanent: true")
        return self


class TimeOutCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    duration_hours: StrictInt = Field(gt=0, le=24 * 366)


def _invalid(error: InvalidRequest) -> Problem:
    return Problem(422, error.code, "The request breaks a responsible-gaming rule", str(error))


def _view(conn, player_id: str) -> dict[str, Any]:
    view = rg.limits_view(conn, player_id)
    view["object"] = "responsible_gaming_limits"
    view["exclusions"] = [rg.exclusion_json(e) for e in rg.active_exclusions(conn, player_id)]
    return view


@router.get("/v1/players/{player_id}/limits")
async def get_limits(player_id: str, principal: Principal = Depends(require(Scope.PLAYERS_READ)),
                     engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with engine.connect() as conn:
            visible_player(conn, principal, player_id)
            return _view(conn, player_id)

    return await run_in_threadpool(run)


@router.put("/v1/players/{player_id}/limits")
async def put_limits(player_id: str, body: DepositLimitsUpdate,
                     principal: Principal = Depends(require(Scope.PLAYERS_WRITE)),
                     settings: Settings = Depends(get_settings),
                     engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    def run() -> dict[str, Any]:
        with transaction(engine) as conn:
            visible_player(conn, principal, player_id)
            try:
                rg.set_deposit_limits(conn, settings, player_id, body.currency, body.requested(),
                                      actor=principal.actor)
            except InvalidRequest as error:
                raise _invalid(error) from error
            except rg.PlayerNotFound as error:
                raise not_found("player", player_id) from error
            return _view(conn, player_id)

    return await run_in_threadpool(run)


def _exclude(engine: Engine, principal: Principal, player_id: str, make) -> dict[str, Any]:
    with transaction(engine) as conn:
        visible_player(conn, principal, player_id)
        try:
            stored = make(conn)
        except InvalidRequest as error:
            raise _invalid(error) from error
        except rg.PlayerNotFound as error:
            raise not_found("player", player_id) from error
        return {"object": "exclusion", "player_id": player_id, **rg.exclusion_json(stored)}


@router.post("/v1/players/{player_id}/self-exclusion", status_code=201)
async def create_self_exclusion(player_id: str, body: SelfExclusionCreate,
                                principal: Principal = Depends(require(Scope.PLAYERS_WRITE)),
                                engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    duration = None if body.permanent else timedelta(days=body.duration_days)
    return await run_in_threadpool(_exclude, engine, principal, player_id,
                                   lambda conn: rg.self_exclude(conn, player_id, duration, actor=principal.actor))


@router.post("/v1/players/{player_id}/time-out", status_code=201)
async def create_time_out(player_id: str, body: TimeOutCreate,
                          principal: Principal = Depends(require(Scope.PLAYERS_WRITE)),
                          engine: Engine = Depends(get_engine)) -> dict[str, Any]:
    duration = timedelta(hours=body.duration_hours)
    return await run_in_threadpool(_exclude, engine, principal, player_id,
                                   lambda conn: rg.take_time_out(conn, player_id, duration, actor=principal.actor))
