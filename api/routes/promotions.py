"""Free bets, bonus funds and deposit-match offers (issue 15).

    POST /v1/free_bets                         an operator grants a free bet (201; the same
                                               grant id again: 200, the first answer)
    POST /v1/bonuses                           an operator credits bonus funds with wagering
                                               terms (defaults from SETTLEPAY_BONUS_*)
    GET  /v1/bonuses/{id}                      where a bonus stands (a partner: its players')
    GET  /v1/players/{id}/promotions           a player's free bets and bonus funds
    POST /v1/bonuses/{id}/forfeit              an operator forfeits an active bonus
    PUT  /v1/promotions/deposit_match/{partner}   an operator sets a partner's deposit match
    GET  /v1/promotions/deposit_match/{partner}   read it (a partner: its own)

Free bets and bonuses are the house's money: only operator keys (`operator:review`) give or take
them; a deposit match is credited by the deposit itself. HTTP only: the rules live in
commands/promotions.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response
from sqlalchemy import Connection

from api.auth import Operator, PlayersReader, visible_player
from api.deps import EngineDep, SettingsDep
from api.problems import PROBLEM_RESPONSES, not_found, refused
from api.schemas.promotions import (
    Bonus,
    BonusCreate,
    BonusForfeit,
    DepositMatch,
    DepositMatchSet,
    FreeBetGrant,
    FreeBetGrantCreate,
    PromotionBalances,
)
from commands import promotions
from settlepay.db import run_in_transaction
from store import promotions as store

router = APIRouter(prefix="/v1", tags=["promotions"], responses=PROBLEM_RESPONSES)


@router.post("/free_bets", status_code=201, response_model=FreeBetGrant,
             responses={200: {"model": FreeBetGrant, "description": "Already granted (same id)"}},
             summary="Grant a free bet (operators)")
def grant_free_bet(body: FreeBetGrantCreate, response: Response, principal: Operator,
                   engine: EngineDep) -> FreeBetGrant:
    def work(conn: Connection) -> tuple[dict[str, object], bool]:
        visible_player(conn, principal, body.player_id)
        return promotions.grant_free_bet(conn, grant_id=body.id, player_id=body.player_id,
                                         amount=body.amount, currency=body.currency,
                                         reason=body.reason, actor=principal.actor)

    try:
        grant, replayed = run_in_transaction(engine, work)
    except promotions.PromotionRefused as error:
        raise refused(error.refusal, "The free bet cannot be granted") from error
    if replayed:
        response.status_code = 200
    return FreeBetGrant.model_validate({**grant, "replayed": replayed})


@router.post("/bonuses", status_code=201, response_model=Bonus,
             responses={200: {"model": Bonus, "description": "Already credited (same id)"}},
             summary="Credit bonus funds with a wagering requirement (operators)")
def credit_bonus(body: BonusCreate, response: Response, principal: Operator, engine: EngineDep,
                 settings: SettingsDep) -> Bonus:
    now = datetime.now(UTC)
    try:
        terms = promotions.BonusTerms(
            body.amount * (settings.bonus_wagering_multiplier
                           if body.wagering_multiplier is None else body.wagering_multiplier),
            promotions.parse_min_odds(body.min_odds or settings.bonus_min_odds),
            body.expires_at or now + timedelta(days=settings.bonus_valid_days))

        def work(conn: Connection) -> tuple[dict[str, object], bool]:
            visible_player(conn, principal, body.player_id)
            return promotions.credit_bonus(conn, bonus_id=body.id, player_id=body.player_id,
                                           amount=body.amount, currency=body.currency,
                                           terms=terms, actor=principal.actor, now=now)

        bonus, replayed = run_in_transaction(engine, work)
    except promotions.PromotionRefused as error:
        raise refused(error.refusal, "The bonus cannot be credited") from error
    if replayed:
        response.status_code = 200
    return Bonus.model_validate({**bonus, "replayed": replayed})


@router.get("/bonuses/{bonus_id}", response_model=Bonus,
            summary="Where a bonus stands: wagered so far, converted or forfeited")
def retrieve_bonus(bonus_id: str, principal: PlayersReader, engine: EngineDep) -> Bonus:
    def work(conn: Connection) -> dict[str, object] | None:
        row = store.bonus(conn, bonus_id)
        if row is None or not principal.sees_partner(row["partner_id"]):
            return None
        # Read for update: a bonus past its expiry is forfeited as it is looked at.
        current = promotions.read_bonus(conn, bonus_id, actor=principal.actor)
        return promotions.bonus_resource(current) if current is not None else None

    bonus = run_in_transaction(engine, work)
    if bonus is None:
        raise not_found("bonus", bonus_id)
    return Bonus.model_validate(bonus)


@router.post("/bonuses/{bonus_id}/forfeit", response_model=Bonus,
             summary="Forfeit an active bonus: its funds back to the house (operators)")
def forfeit_bonus(bonus_id: str, body: BonusForfeit, principal: Operator,
                  engine: EngineDep) -> Bonus:
    try:
        bonus = run_in_transaction(engine, lambda conn: promotions.forfeit_bonus(
            conn, bonus_id, reason=body.reason, actor=principal.actor))
    except promotions.PromotionRefused as error:
        raise refused(error.refusal, "The bonus cannot be forfeited") from error
    return Bonus.model_validate(bonus)


@router.put("/promotions/deposit_match/{partner_id}", response_model=DepositMatch,
            summary="Set a partner's deposit-match offer (operators)")
def set_deposit_match(partner_id: str, body: DepositMatchSet, principal: Operator,
                      engine: EngineDep) -> DepositMatch:
    try:
        offer = run_in_transaction(engine, lambda conn: promotions.set_deposit_match(
            conn, partner_id=partner_id, percent=body.percent, max_amount=body.max_amount,
            wagering_multiplier=body.wagering_multiplier, min_odds=body.min_odds,
            valid_days=body.valid_days, active=body.active, actor=principal.actor))
    except promotions.PromotionRefused as error:
        raise refused(error.refusal, "The offer cannot be set") from error
    return DepositMatch.model_validate(offer)


@router.get("/promotions/deposit_match/{partner_id}", response_model=DepositMatch,
            summary="A partner's deposit-match offer (a partner key: its own)")
def deposit_match(partner_id: str, principal: PlayersReader, engine: EngineDep) -> DepositMatch:
    with engine.connect() as conn:
        offer = store.deposit_match_offer(conn, partner_id)
    if offer is None or not principal.sees_partner(partner_id):
        raise not_found("deposit_match_offer", partner_id)
    return DepositMatch.model_validate(promotions.deposit_match_resource(offer))


@router.get("/players/{player_id}/promotions", response_model=PromotionBalances,
            summary="A player's free bets and bonus funds per currency")
def player_promotions(player_id: str, principal: PlayersReader,
                      engine: EngineDep) -> PromotionBalances:
    with engine.connect() as conn:
        visible_player(conn, principal, player_id)
        balances = promotions.promotion_balances(conn, player_id)
    return PromotionBalances.model_validate({"player_id": player_id, "balances": balances})
