"""/v1/bets: take a bet from the betting engine, read a bet and its settlement history, list
bets (api/pagination.py: newest first by placed_at; filters player, status, created[...] and,
for operator keys, partner; a cursor is a bet id as the partner knows it).

The engine's bet id is the idempotency key, per partner: the same bet sent again gets the first
answer (201 then 200 with the same body, or the same problem), another bet under a used id is a
409, and another partner's bet with the same id is another bet (it is never seen: 404).
`POST /v1/bets/{id}/cash_out` cashes a bet out (all of it or a share of its stake) at the betting
engine's quote; `POST /v1/bets/{id}/cash_out/reversal` (operators, when
SETTLEPAY_CASH_OUT_REVERSAL_ENABLED) reverses the latest cash-out on a palpable error.
HTTP only: taking a bet and cashing it out is commands/bets.py, the maths domain/settlement.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated

from fastapi import APIRouter, Query, Response
from sqlalchemy import Connection

from api.auth import BetsWriter, Operator, PlayersReader, Principal, visible_player
from api.deps import EngineDep, SettingsDep
from api.pagination import ListParams, PartnerFilter, invalid_cursor, read_page, tenancy
from api.problems import PROBLEM_RESPONSES, Problem, not_found, refused
from api.schemas.bets import Bet, BetCreate, BetList, CashOutCreate, CashOutReversalCreate
from commands import bets
from settlepay.db import run_in_transaction
from store import bets as bet_store
from workflows.contracts.refusal import Refusal

router = APIRouter(prefix="/v1/bets", tags=["bets"], responses=PROBLEM_RESPONSES)

@router.post("", status_code=201, response_model=Bet,
             summary="Place a bet (stake into bets in play)")
def place(body: BetCreate, response: Response, principal: BetsWriter, engine: EngineDep,
          settings: SettingsDep) -> Bet:
    request = bets.BetRequest(
        bet_id=body.id, player_id=body.player_id, stake=body.stake, currency=body.currency,
        bet_type=body.bet_type,
        legs=tuple(bets.LegRequest(leg.market_id, leg.selection_id, leg.odds, leg.odds_format)
                   for leg in body.legs),
        place_fraction=body.each_way.place_fraction if body.each_way else None,
        places=body.each_way.places if body.each_way else None, ip_address=body.ip_address,
        funding=body.funding)

    def work(conn: Connection) -> bets.Placed:
        visible_player(conn, principal, body.player_id)   # 404 for another partner's player
        return bets.place(conn, settings, request, actor=principal.actor)

    try:
        placed = run_in_transaction(engine, work)
    except bets.BetRefused as error:
        raise refused(error.refusal, "The bet cannot be taken") from error
    if placed.refusal is not None:
        raise refused(placed.refusal, "The bet was refused")
    response.headers["Location"] = f"/v1/bets/{body.id}"
    if placed.replayed:
        response.status_code = 200
    return Bet.model_validate(bets.bet_resource(placed.bet))


@router.get("", response_model=BetList, summary="List bets",
            description="The bets this key can see, newest first, each with its settlements.")
def list_bets(
    query: ListParams, principal: PlayersReader, engine: EngineDep,
    partner: PartnerFilter = None,
    player: Annotated[str | None, Query(min_length=1, max_length=64,
                                        description="Only this player's bets.")] = None,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,32}$",
                                        description="Only bets in this status.")] = None,
) -> BetList:
    tenant = tenancy(principal, partner)
    owner = tenant.scope.get("partner_id") or tenant.filters.get("partner_id")
    with engine.connect() as conn:
        cursors = {name: _internal_cursor(conn, name, getattr(query, name), owner)
                   for name in ("starting_after", "ending_before")}
        try:
            page = read_page(conn, bet_store.LISTING, replace(query, **cursors), tenant,
                             filters={"player_id": player, "status": status})
        except Problem as problem:   # name the cursor as the client sent it
            name = "ending_before" if query.ending_before else "starting_after"
            raise invalid_cursor(name, getattr(query, name)) from problem
        found = bet_store.get_many(conn, [row["id"] for row in page.rows])
    return BetList(url=router.prefix, has_more=page.has_more,
                   data=[Bet.model_validate(bets.bet_resource(bet)) for bet in found])


def _internal_cursor(conn: Connection, parameter: str, cursor: str | None,
                     partner_id: str | None) -> str | None:
    """The internal id of the bet a cursor names (bet ids are the partners' own, unique per
    partner): under the key's or the chosen partner, or the one bet of any partner with it."""
    if cursor is None:
        return None
    if partner_id is not None:
        return bets.internal_id(partner_id, cursor)
    found = bet_store.ids_for(conn, cursor)
    if len(found) != 1:   # unknown, or used by several partners: name one with ?partner=
        raise invalid_cursor(parameter, cursor)
    return found[0]


PartnerOfBet = Annotated[str | None, Query(
    max_length=64, description="Operators: the partner whose bet this is, when several partners "
                               "use the id (partner keys always read their own).")]


def _internal_id(conn: Connection, principal: Principal, bet_id: str,
                 partner_id: str | None) -> str:
    """The internal id of the bet this key means (404: none it can see; 409: ambiguous)."""
    owner = partner_id if principal.is_operator else principal.partner_id
    found = bet_store.ids_for(conn, bet_id, partner_id=owner)
    if len(found) > 1:
        raise refused(Refusal(bets.BetRefusal.BET_ID_AMBIGUOUS,
                              f"{len(found)} partners use bet id {bet_id!r}; "
                              "name one with ?partner_id="), "Which bet?")
    if not found:
        raise not_found("bet", bet_id)
    return found[0]


@router.get("/{bet_id}", response_model=Bet,
            summary="Retrieve a bet with every version of its settlement")
def retrieve(bet_id: str, principal: PlayersReader, engine: EngineDep,
             partner_id: PartnerOfBet = None) -> Bet:
    with engine.connect() as conn:
        bet = bet_store.get(conn, _internal_id(conn, principal, bet_id, partner_id))
    if bet is None:
        raise not_found("bet", bet_id)
    return Bet.model_validate(bets.bet_resource(bet))


@router.post("/{bet_id}/cash_out", response_model=Bet,
             summary="Cash a bet out at the betting engine's quote (all of it or a share)")
def cash_out(bet_id: str, body: CashOutCreate, response: Response, principal: BetsWriter,
             engine: EngineDep, settings: SettingsDep, partner_id: PartnerOfBet = None) -> Bet:
    request = bets.CashOutRequest(quote_id=body.quote_id, value=body.value,
                                  expires_at=body.expires_at, stake=body.stake)

    def work(conn: Connection) -> tuple[dict[str, object], bool]:
        internal = _internal_id(conn, principal, bet_id, partner_id)
        return bets.cash_out(conn, settings, internal, request, actor=principal.actor)

    try:
        bet, replayed = run_in_transaction(engine, work)
    except bets.BetRefused as error:
        raise refused(error.refusal, "The bet cannot be cashed out") from error
    response.status_code = 200 if replayed else 201
    return Bet.model_validate(bets.bet_resource(bet))


@router.post("/{bet_id}/cash_out/reversal", response_model=Bet,
             summary="Reverse a bet's latest cash-out on a palpable error (operators)")
def reverse_cash_out(bet_id: str, body: CashOutReversalCreate, principal: Operator,
                     engine: EngineDep, settings: SettingsDep,
                     partner_id: PartnerOfBet = None) -> Bet:
    def work(conn: Connection) -> dict[str, object]:
        internal = _internal_id(conn, principal, bet_id, partner_id)
        return bets.reverse_cash_out(conn, settings, internal, reason=body.reason,
                                     actor=principal.actor)

    try:
        bet = run_in_transaction(engine, work)
    except bets.BetRefused as error:
        raise refused(error.refusal, "The cash-out cannot be reversed") from error
    return Bet.model_validate(bets.bet_resource(bet))
