"""/v1/bets: take a bet from the betting engine, read a bet and its settlement history.

The engine's bet id is the idempotency key: the same bet sent again gets the first answer
(201 then 200 with the same body, or the same problem), another bet under a used id is a 409.
HTTP only: the rules live in store/bets.py and domain/settlement.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy import Engine

from api.auth import Principal, require, visible_player
from api.deps import get_engine, get_settings
from api.problems import PROBLEM_RESPONSES, Problem, not_found
from api.scopes import Scope
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import bets

router = APIRouter(prefix="/v1/bets", tags=["bets"], responses=PROBLEM_RESPONSES)

ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"

# Why a bet was refused -> HTTP status. Every code is also the problem's `code`.
REJECTION_STATUS = {"insufficient_funds": 402, "market_settled": 409, "player_not_found": 404}


class LegIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    market_id: str = Field(min_length=1, max_length=128, pattern=ID)
    selection_id: str = Field(min_length=1, max_length=128, pattern=ID)
    odds: StrictStr = Field(min_length=1, max_length=16,
                            description='As offered, as a string: "2.50", "10/1", "+150" (never a JSON number).')
    odds_format: Literal["decimal", "fractional", "american"] | None = None


class EachWayTerms(BaseModel):
    model_config = ConfigDict(extra="forbid")
    place_fraction: StrictStr = Field(pattern=r"^\d{1,2}/\d{1,2}$", description='e.g. "1/5"')
    places: StrictInt = Field(ge=1, le=10)


class BetCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=128, pattern=ID, description="The betting engine's bet id.")
    player_id: str = Field(min_length=1, max_length=128)
    stake: StrictInt = Field(gt=0, le=10**12, description="Minor units; each-way: both parts together.")
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    bet_type: Literal["single", "parlay", "each_way"]
    legs: list[LegIn] = Field(min_length=1, max_length=20)
    each_way: EachWayTerms | None = None
    ip_address: str | None = Field(None, max_length=45, description="The player's IP, for the geolocation gate.")


def bet_view(bet: dict[str, Any]) -> dict[str, Any]:
    """The bet as a Stripe-like resource."""
    view = {k: v for k, v in bet.items() if k not in ("partner_id", "place_fraction", "place_count")}
    view["object"] = "bet"
    view["currency"] = bet["currency"].strip()
    view["each_way"] = ({"place_fraction": bet["place_fraction"], "places": bet["place_count"]}
                        if bet["place_fraction"] else None)
    return view


@router.post("", status_code=201, summary="Place a bet (stake into bets in play)")
def place(body: BetCreate, response: Response,
          principal: Principal = Depends(require(Scope.BETS_WRITE)),
          engine: Engine = Depends(get_engine), settings: Settings = Depends(get_settings)) -> dict:
    request = bets.BetRequest(
        bet_id=body.id, player_id=body.player_id, stake=body.stake, currency=body.currency,
        bet_type=body.bet_type,
        legs=tuple(bets.LegRequest(l.market_id, l.selection_id, l.odds, l.odds_format) for l in body.legs),
        place_fraction=body.each_way.place_fraction if body.each_way else None,
        places=body.each_way.places if body.each_way else None, ip_address=body.ip_address)

    def work(conn):
        visible_player(conn, principal, body.player_id)   # 404 for another partner's player
        return bets.place(conn, settings, request, actor=principal.actor)

    try:
        placed = run_in_transaction(engine, work)
    except bets.BetConflict as error:
        raise Problem(409, "bet_id_conflict", "Bet id already used", str(error)) from error
    except bets.InvalidBet as error:
        raise Problem(REJECTION_STATUS.get(error.code, 422), error.code, "The bet cannot be taken",
                      error.detail) from error
    if placed.rejected:
        code = placed.bet["reject_code"]
        status = REJECTION_STATUS.get(code, 403)   # gates: the player may not bet now
        raise Problem(status, code, "The bet was refused", placed.bet["reject_reason"])
    response.headers["Location"] = f"/v1/bets/{body.id}"
    if placed.replayed:
        response.status_code = 200
    return bet_view(placed.bet)


@router.get("/{bet_id}", summary="Retrieve a bet with every version of its settlement")
def retrieve(bet_id: str, principal: Principal = Depends(require(Scope.PLAYERS_READ)),
             engine: Engine = Depends(get_engine)) -> dict:
    with engine.connect() as conn:
        bet = bets.get(conn, bet_id)
    if bet is None or not principal.sees_partner(bet["partner_id"]):
        raise not_found("bet", bet_id)
    return bet_view(bet)
