"""Free bets and bonus funds: granting them, what a stake takes from them, wagering, conversion
and forfeiture, each with its ledger posting, audit record and outbox event in the caller's
transaction.

    grant_free_bet(conn, ...)     house promotions -> the player's free-bet balance
                                  (`free_bet:<grant id>:grant`)
    credit_bonus(conn, ...)       house promotions -> the player's bonus funds
                                  (`bonus:<id>:credit`), with its wagering terms; one active
                                  bonus per player and currency
    match_deposit(conn, deposit)  a succeeded deposit: the partner's deposit-match offer, once
                                  per player (called by commands/deposits.py)
    forfeit_on_withdrawal(...)    a withdrawal before the wagering is met forfeits the bonus
                                  (as configured; called by commands/withdrawals.py)
    stake_plan(conn, ...)         which accounts a stake comes from (bets placement)
    bonus_targets(conn, ...)      where the bonus share of each bet's returns goes now
    count_wagering(conn, ...)     settled qualifying bets count towards their bonus; a bonus
                                  whose requirement is met converts to cash
    uncount_wagering(conn, ...)   a cancelled (refunded) bet counts no more
    forfeit / expire_if_due       bonus funds back to the house (`bonus:<id>:forfeit`)

Stake order (settings.bonus_stake_order): a cash bet takes `cash_first` player cash and then
bonus funds for the rest, or `bonus_first` bonus funds and then cash. The part taken from bonus
funds is the bet's `stake_bonus`; the same share of whatever the bet returns goes back to bonus
funds while its bonus is active (domain/settlement/plan.py). A free bet is staked from the
free-bet balance only (funding `free_bet`) and pays winnings only.

Wagering: a bet counts towards the bonus that was active when it was placed, once, when it is
first settled with a result other than void, if its price (a parlay: the product of its legs'
prices) is at or above the bonus's minimum; the whole stake counts. When the bonus's wagered
total reaches its requirement, its remaining bonus funds convert to player cash
(`bonus:<id>:convert`). A bonus not converted by its expiry is forfeited the next time it is
looked at (placement, settlement, withdrawal, reading it): its remaining funds go back to house
promotions. After a bonus is converted, the bonus share of its bets still in play goes to cash;
after it is forfeited, to the house. Withdrawals take cash only (player cash); bonus funds and
free bets never leave through a withdrawal.
Must never: open its own transaction, move money outside the ledger, or start a workflow.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
import ledger
import outbox
from domain import odds as odds_mod
from domain.settlement.plan import Account, Funding, StoredBet, bet_price
from ledger import AccountRef, AccountType, Leg, ResultCode, Transfer
from settlepay.config import Settings
from store import players
from store import promotions as store
from workflows.contracts.refusal import Refusal


class PromotionRefusal(StrEnum):
    FREE_BET_CONFLICT = "free_bet_conflict"        # a grant id reused for another grant
    BONUS_CONFLICT = "bonus_conflict"              # a bonus id reused for another bonus
    BONUS_ACTIVE = "bonus_active"                  # the player already has an active bonus
    BONUS_NOT_FOUND = "bonus_not_found"
    BONUS_NOT_ACTIVE = "bonus_not_active"          # already converted or forfeited
    INVALID_PROMOTION = "invalid_promotion"        # terms that cannot be applied
    INSUFFICIENT_FREE_BET = "insufficient_free_bet"   # the free-bet balance is short


class BonusStatus(StrEnum):
    ACTIVE = "active"
    CONVERTED = "converted"
    FORFEITED = "forfeited"


class StakeOrder(StrEnum):
    CASH_FIRST = "cash_first"
    BONUS_FIRST = "bonus_first"


PLAYER_NOT_FOUND = "player_not_found"


class PromotionRefused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.refusal = Refusal(str(code), reason)


@dataclass(frozen=True)
class BonusTerms:
    wagering_requirement: int        # minor units to wager
    min_odds: Fraction               # lowest decimal price that counts
    expires_at: datetime


@dataclass(frozen=True)
class StakePlan:
    """Where a stake comes from: the ledger legs, its bonus part and the bonus it counts for."""
    legs: tuple[Leg, ...]
    stake_bonus: int
    bonus_id: str | None


def _hash(body: Mapping[str, Any]) -> bytes:
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def parse_min_odds(text: str) -> Fraction:
    """A minimum price as decimal odds ("1.50"), fractional ("1/2") or American ("-200")."""
    try:
        price = odds_mod.parse(text, odds_mod.detect_format(text))
    except (odds_mod.InvalidOdds, ValueError, TypeError) as error:
        raise PromotionRefused(PromotionRefusal.INVALID_PROMOTION,
                               f"minimum odds {text!r}: {error}") from error
    return Fraction(price.numerator, price.denominator)


def default_terms(settings: Settings, amount: int, now: datetime) -> BonusTerms:
    return BonusTerms(amount * settings.bonus_wagering_multiplier,
                      parse_min_odds(settings.bonus_min_odds),
                      now + timedelta(days=settings.bonus_valid_days))


def _player(conn: Connection, player_id: str) -> RowMapping:
    player = players.get(conn, player_id)
    if player is None:
        raise PromotionRefused(PLAYER_NOT_FOUND, f"player {player_id} does not exist")
    return player


# --- resources ------------------------------------------------------------------------------

def free_bet_grant_resource(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": "free_bet_grant", "id": row["id"], "player_id": row["player_id"],
            "partner_id": row["partner_id"], "currency": row["currency"].strip(),
            "amount": row["amount"], "reason": row["reason"],
            "granted_by": row["granted_by"], "created_at": _iso(row["created_at"])}


def bonus_resource(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": "bonus", "id": row["id"], "player_id": row["player_id"],
            "partner_id": row["partner_id"], "currency": row["currency"].strip(),
            "amount": row["amount"], "source": row["source"], "source_ref": row["source_ref"],
            "wagering_requirement": row["wagering_requirement"], "wagered": row["wagered"],
            "min_odds": f"{row['min_odds_num']}/{row['min_odds_den']}",
            "status": row["status"], "expires_at": _iso(row["expires_at"]),
            "converted_amount": row["converted_amount"],
            "forfeited_amount": row["forfeited_amount"],
            "forfeit_reason": row["forfeit_reason"], "created_at": _iso(row["created_at"]),
            "closed_at": _iso(row["closed_at"])}


def deposit_match_resource(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"object": "deposit_match_offer", "partner_id": row["partner_id"],
            "percent": row["percent"], "max_amount": row["max_amount"],
            "wagering_multiplier": row["wagering_multiplier"],
            "min_odds": f"{row['min_odds_num']}/{row['min_odds_den']}",
            "valid_days": row["valid_days"], "active": row["active"],
            "updated_at": _iso(row["updated_at"])}


def promotion_balances(conn: Connection, player_id: str) -> list[dict[str, Any]]:
    """The player's free bets and bonus funds per currency (minor units), with the active
    bonus's id: what GET /v1/players/{id}/promotions shows."""
    by_currency: dict[str, dict[str, Any]] = {}
    names = {AccountType.PLAYER_FREE_BET: "free_bet",
             AccountType.FREE_BETS_IN_PLAY: "free_bets_in_play",
             AccountType.PLAYER_BONUS: "bonus"}
    for balance in ledger.balances(conn, f"player:{player_id}"):
        name = names.get(balance.account.type)
        if name is None:
            continue
        view = by_currency.setdefault(balance.account.currency, {
            "currency": balance.account.currency, "free_bet": 0, "free_bets_in_play": 0,
            "bonus": 0, "active_bonus_id": None})
        view[name] = balance.posted
    for currency, view in by_currency.items():
        active = store.active_bonus(conn, player_id, currency)
        view["active_bonus_id"] = active["id"] if active is not None else None
    return [by_currency[currency] for currency in sorted(by_currency)]


# --- free bets ------------------------------------------------------------------------------

def grant_free_bet(conn: Connection, *, grant_id: str, player_id: str, amount: int,
                   currency: str, reason: str, actor: str) -> tuple[dict[str, Any], bool]:
    """Give the player a free bet of `amount`; returns (grant, replayed). The same grant id
    with the same details replays; with others it is a conflict."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise PromotionRefused(PromotionRefusal.INVALID_PROMOTION,
                               "a free bet is a positive amount of minor units")
    request_hash = _hash({"player_id": player_id, "amount": amount, "currency": currency,
                          "reason": reason})
    player = _player(conn, player_id)
    existing = store.free_bet_grant(conn, grant_id)
    if existing is not None:
        if bytes(existing["request_hash"]) != request_hash:
            raise PromotionRefused(PromotionRefusal.FREE_BET_CONFLICT,
                                   f"free bet {grant_id} was granted with other details")
        return free_bet_grant_resource(existing), True
    posted = ledger.post(conn, Transfer(
        key=f"free_bet:{grant_id}:grant", kind="free_bet_grant", reference=grant_id,
        legs=(Leg(AccountRef.house_promotions(currency), -amount),
              Leg(AccountRef.free_bet(player_id, currency), amount))))
    if not posted.ok:
        raise RuntimeError(f"ledger refused free bet grant {grant_id}: {posted.code}")
    store.insert_free_bet_grant(conn, grant_id=grant_id, player_id=player_id,
                                partner_id=player["partner_id"], currency=currency,
                                amount=amount, reason=reason, request_hash=request_hash,
                                granted_by=actor)
    row = store.free_bet_grant(conn, grant_id)
    assert row is not None
    resource = free_bet_grant_resource(row)
    audit.record(conn, actor=actor, action="free_bet.granted", subject_type="player",
                 subject_id=player_id, before=None,
                 after={"grant_id": grant_id, "amount": amount, "currency": currency,
                        "reason": reason, "ledger_transaction_id": posted.transaction_id})
    outbox.emit(conn, event_type="free_bet.granted", aggregate_type="free_bet_grant",
                aggregate_id=grant_id, payload=resource, player_id=player_id,
                partner_id=player["partner_id"])
    return resource, False


# --- bonuses --------------------------------------------------------------------------------

def credit_bonus(conn: Connection, *, bonus_id: str, player_id: str, amount: int,
                 currency: str, terms: BonusTerms, actor: str, source: str = "promotion",
                 source_ref: str | None = None,
                 now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Credit bonus funds with their wagering terms; returns (bonus, replayed). Refused while
    the player has another active bonus in the currency."""
    now = now or datetime.now(UTC)
    if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
        raise PromotionRefused(PromotionRefusal.INVALID_PROMOTION,
                               "a bonus is a positive amount of minor units")
    if terms.wagering_requirement < 0 or terms.min_odds < 1 or terms.expires_at <= now:
        raise PromotionRefused(PromotionRefusal.INVALID_PROMOTION,
                               "a bonus needs a wagering requirement >= 0, minimum odds of at "
                               "least 1.00 and an expiry in the future")
    request_hash = _hash({"player_id": player_id, "amount": amount, "currency": currency,
                          "requirement": terms.wagering_requirement,
                          "min_odds": str(terms.min_odds), "source": source,
                          "source_ref": source_ref})
    player = _player(conn, player_id)
    existing = store.bonus(conn, bonus_id)
    if existing is not None:
        if bytes(existing["request_hash"]) != request_hash:
            raise PromotionRefused(PromotionRefusal.BONUS_CONFLICT,
                                   f"bonus {bonus_id} was credited with other details")
        return bonus_resource(existing), True
    active = current_bonus(conn, player_id, currency, now=now, actor=actor)
    if active is not None:
        raise PromotionRefused(PromotionRefusal.BONUS_ACTIVE,
                               f"player {player_id} already has bonus {active['id']} active "
                               f"in {currency}")
    store.insert_bonus(conn, bonus_id=bonus_id, player_id=player_id,
                       partner_id=player["partner_id"], currency=currency, amount=amount,
                       source=source, source_ref=source_ref,
                       wagering_requirement=terms.wagering_requirement,
                       min_odds=(terms.min_odds.numerator, terms.min_odds.denominator),
                       expires_at=terms.expires_at, request_hash=request_hash,
                       created_by=actor)
    posted = ledger.post(conn, Transfer(
        key=f"bonus:{bonus_id}:credit", kind="bonus_credit", reference=bonus_id,
        legs=(Leg(AccountRef.house_promotions(currency), -amount),
              Leg(AccountRef.bonus(player_id, currency), amount))))
    if not posted.ok:
        raise RuntimeError(f"ledger refused bonus credit {bonus_id}: {posted.code}")
    row = store.bonus(conn, bonus_id)
    assert row is not None
    resource = bonus_resource(row)
    audit.record(conn, actor=actor, action="bonus.credited", subject_type="bonus",
                 subject_id=bonus_id, before=None,
                 after={**resource, "ledger_transaction_id": posted.transaction_id})
    outbox.emit(conn, event_type="bonus.credited", aggregate_type="bonus",
                aggregate_id=bonus_id, payload=resource, player_id=player_id,
                partner_id=player["partner_id"])
    if terms.wagering_requirement == 0:
        convert(conn, row, actor=actor)
        row = store.bonus(conn, bonus_id)
        assert row is not None
    return bonus_resource(row), False


def _bonus_balance(conn: Connection, player_id: str, currency: str) -> int:
    return ledger.balance(conn, AccountRef.bonus(player_id, currency.strip())).available


def _close(conn: Connection, bonus: Mapping[str, Any], status: BonusStatus, amount: int,
           reason: str | None, actor: str, transaction_id: int | None) -> None:
    store.close_bonus(conn, bonus["id"], status=status,
                      converted_amount=amount if status == BonusStatus.CONVERTED else None,
                      forfeited_amount=amount if status == BonusStatus.FORFEITED else None,
                      forfeit_reason=reason)
    row = store.bonus(conn, bonus["id"])
    assert row is not None
    event = f"bonus.{status}"
    audit.record(conn, actor=actor, action=event, subject_type="bonus", subject_id=bonus["id"],
                 before={"status": bonus["status"], "wagered": bonus["wagered"]},
                 after={"status": str(status), "amount": amount, "reason": reason,
                        "wagered": row["wagered"], "ledger_transaction_id": transaction_id})
    outbox.emit(conn, event_type=event, aggregate_type="bonus", aggregate_id=bonus["id"],
                payload=bonus_resource(row), player_id=bonus["player_id"],
                partner_id=bonus["partner_id"])


def convert(conn: Connection, bonus: Mapping[str, Any], *, actor: str) -> int:
    """The wagering is met: the remaining bonus funds become player cash; returns the amount.
    The caller holds the bonus row's lock."""
    player_id, currency = bonus["player_id"], bonus["currency"].strip()
    amount = _bonus_balance(conn, player_id, currency)
    transaction_id = None
    if amount > 0:
        posted = ledger.post(conn, Transfer(
            key=f"bonus:{bonus['id']}:convert", kind="bonus_conversion", reference=bonus["id"],
            legs=(Leg(AccountRef.bonus(player_id, currency), -amount),
                  Leg(AccountRef.player_cash(player_id, currency), amount))))
        if not posted.ok:
            raise RuntimeError(f"ledger refused bonus conversion {bonus['id']}: {posted.code}")
        transaction_id = posted.transaction_id
    _close(conn, bonus, BonusStatus.CONVERTED, amount, None, actor, transaction_id)
    return amount


def forfeit(conn: Connection, bonus: Mapping[str, Any], *, reason: str, actor: str) -> int:
    """The bonus ends unconverted: its remaining funds go back to house promotions; returns the
    amount. The caller holds the bonus row's lock."""
    player_id, currency = bonus["player_id"], bonus["currency"].strip()
    amount = _bonus_balance(conn, player_id, currency)
    transaction_id = None
    if amount > 0:
        posted = ledger.post(conn, Transfer(
            key=f"bonus:{bonus['id']}:forfeit", kind="bonus_forfeit", reference=bonus["id"],
            legs=(Leg(AccountRef.bonus(player_id, currency), -amount),
                  Leg(AccountRef.house_promotions(currency), amount)),
            metadata={"reason": reason}))
        if not posted.ok:
            raise RuntimeError(f"ledger refused bonus forfeit {bonus['id']}: {posted.code}")
        transaction_id = posted.transaction_id
    _close(conn, bonus, BonusStatus.FORFEITED, amount, reason, actor, transaction_id)
    return amount


def expire_if_due(conn: Connection, bonus: dict[str, Any], *, now: datetime,
                  actor: str) -> dict[str, Any]:
    """Forfeit the (locked) bonus if it is active past its expiry; returns its row now."""
    if bonus["status"] != BonusStatus.ACTIVE or bonus["expires_at"] > now:
        return bonus
    forfeit(conn, bonus, reason="expired", actor=actor)
    row = store.bonus(conn, bonus["id"])
    assert row is not None
    return row


def current_bonus(conn: Connection, player_id: str, currency: str, *, now: datetime,
                  actor: str) -> dict[str, Any] | None:
    """The player's active bonus in the currency, locked (an expired one is forfeited first,
    and None returned)."""
    bonus = store.active_bonus(conn, player_id, currency, for_update=True)
    if bonus is None:
        return None
    bonus = expire_if_due(conn, bonus, now=now, actor=actor)
    return bonus if bonus["status"] == BonusStatus.ACTIVE else None


def forfeit_bonus(conn: Connection, bonus_id: str, *, reason: str, actor: str,
                  now: datetime | None = None) -> dict[str, Any]:
    """An operator forfeits an active bonus; returns it."""
    now = now or datetime.now(UTC)
    bonus = store.bonus(conn, bonus_id, for_update=True)
    if bonus is None:
        raise PromotionRefused(PromotionRefusal.BONUS_NOT_FOUND, f"no bonus {bonus_id!r}")
    bonus = expire_if_due(conn, bonus, now=now, actor=actor)
    if bonus["status"] != BonusStatus.ACTIVE:
        raise PromotionRefused(PromotionRefusal.BONUS_NOT_ACTIVE,
                               f"bonus {bonus_id} is already {bonus['status']}")
    forfeit(conn, bonus, reason=reason, actor=actor)
    row = store.bonus(conn, bonus_id)
    assert row is not None
    return bonus_resource(row)


def read_bonus(conn: Connection, bonus_id: str, *, actor: str,
               now: datetime | None = None) -> dict[str, Any] | None:
    """The bonus as it stands now (an expired one forfeited on the way); None if unknown."""
    bonus = store.bonus(conn, bonus_id, for_update=True)
    if bonus is None:
        return None
    return expire_if_due(conn, bonus, now=now or datetime.now(UTC), actor=actor)


# --- hooks of other capabilities ------------------------------------------------------------

def match_deposit(conn: Connection, deposit: Mapping[str, Any],
                  now: datetime | None = None) -> dict[str, Any] | None:
    """A deposit succeeded: credit the partner's deposit match, if it offers one, to a player
    who never had one and has no active bonus in the currency. Returns the bonus or None."""
    now = now or datetime.now(UTC)
    offer = store.deposit_match_offer(conn, deposit["partner_id"])
    if offer is None or not offer["active"]:
        return None
    player_id, currency = deposit["player_id"], deposit["currency"].strip()
    actor = "promotion:deposit_match"
    if store.had_deposit_match(conn, player_id):
        return None
    if current_bonus(conn, player_id, currency, now=now, actor=actor) is not None:
        return None
    amount = min(deposit["amount"] * offer["percent"] // 100, offer["max_amount"])
    if amount <= 0:
        return None
    terms = BonusTerms(amount * offer["wagering_multiplier"],
                       Fraction(offer["min_odds_num"], offer["min_odds_den"]),
                       now + timedelta(days=offer["valid_days"]))
    bonus, _ = credit_bonus(conn, bonus_id=f"deposit-match:{deposit['id']}",
                            player_id=player_id, amount=amount, currency=currency, terms=terms,
                            actor=actor, source="deposit_match", source_ref=deposit["id"],
                            now=now)
    return bonus


def forfeit_on_withdrawal(conn: Connection, settings: Settings, player_id: str, currency: str,
                          withdrawal_id: str, now: datetime | None = None) -> int | None:
    """A withdrawal is going ahead: with `bonus_forfeit_on_withdrawal`, the player's active
    bonus (its wagering not met, or it would have converted) is forfeited. Returns the amount
    forfeited, or None when nothing was."""
    if not settings.bonus_forfeit_on_withdrawal:
        return None
    actor = f"withdrawal:{withdrawal_id}"
    bonus = current_bonus(conn, player_id, currency, now=now or datetime.now(UTC), actor=actor)
    if bonus is None:
        return None
    return forfeit(conn, bonus, reason="withdrawal", actor=actor)


def set_deposit_match(conn: Connection, *, partner_id: str, percent: int, max_amount: int,
                      wagering_multiplier: int, min_odds: str, valid_days: int, active: bool,
                      actor: str) -> dict[str, Any]:
    """A partner's deposit-match offer (an operator's decision), audited."""
    price = parse_min_odds(min_odds)
    before = store.deposit_match_offer(conn, partner_id)
    store.upsert_deposit_match_offer(conn, partner_id=partner_id, percent=percent,
                                     max_amount=max_amount,
                                     wagering_multiplier=wagering_multiplier,
                                     min_odds=(price.numerator, price.denominator),
                                     valid_days=valid_days, active=active, updated_by=actor)
    row = store.deposit_match_offer(conn, partner_id)
    assert row is not None
    resource = deposit_match_resource(row)
    audit.record(conn, actor=actor, action="promotion.deposit_match_set",
                 subject_type="partner", subject_id=partner_id,
                 before=deposit_match_resource(before) if before else None, after=resource)
    return resource


# --- stakes and settlement ------------------------------------------------------------------

def stake_plan(conn: Connection, settings: Settings, *, player_id: str, currency: str,
               stake: int, funding: Funding, actor: str,
               now: datetime | None = None) -> StakePlan:
    """The legs of a stake posting (to the bet's in-play account) and the bonus it counts for.
    Locks the player's active bonus (placement and settlement take it before ledger rows)."""
    if funding == Funding.FREE_BET:
        return StakePlan((Leg(AccountRef.free_bet(player_id, currency), -stake),
                          Leg(AccountRef.free_bets_in_play(player_id, currency), stake)),
                         0, None)
    in_play = Leg(AccountRef.bets_in_play(player_id, currency), stake)
    bonus = current_bonus(conn, player_id, currency, now=now or datetime.now(UTC), actor=actor)
    if bonus is None:
        return StakePlan((Leg(AccountRef.player_cash(player_id, currency), -stake), in_play),
                         0, None)
    order = StakeOrder(settings.bonus_stake_order)
    cash = max(0, ledger.balance(conn, AccountRef.player_cash(player_id, currency)).available)
    bonus_funds = max(0, _bonus_balance(conn, player_id, currency))
    if order == StakeOrder.CASH_FIRST:
        stake_bonus = stake - min(stake, cash)
    else:
        stake_bonus = min(stake, bonus_funds)
    legs = [Leg(AccountRef.player_cash(player_id, currency), -(stake - stake_bonus)),
            Leg(AccountRef.bonus(player_id, currency), -stake_bonus), in_play]
    return StakePlan(tuple(leg for leg in legs if leg.amount), stake_bonus, bonus["id"])


def insufficient(funding: Funding, code: ResultCode) -> Refusal | None:
    """The refusal of a stake posting the ledger refused for funds (None: it was posted)."""
    if code is not ResultCode.INSUFFICIENT_FUNDS:
        return None
    if funding == Funding.FREE_BET:
        return Refusal(PromotionRefusal.INSUFFICIENT_FREE_BET,
                       "the player's free-bet balance does not cover the stake")
    return Refusal("insufficient_funds",
                   "the player's cash (and bonus funds) do not cover the stake")


TARGETS = {BonusStatus.ACTIVE: Account.PLAYER_BONUS, BonusStatus.CONVERTED: Account.PLAYER_CASH,
           BonusStatus.FORFEITED: Account.HOUSE_PROMOTIONS}


def bonus_targets(conn: Connection, bets: Iterable[StoredBet], *, now: datetime,
                  actor: str) -> dict[str, dict[str, Any]]:
    """Lock the bonuses of these bets (sorted), forfeit the expired ones; bonus id -> row.
    `TARGETS[row status]` is where the bonus share of those bets' returns goes now."""
    rows = store.lock_bonuses(conn, {b.bonus_id for b in bets if b.bonus_id is not None})
    return {bonus_id: expire_if_due(conn, row, now=now, actor=actor)
            for bonus_id, row in rows.items()}


def count_wagering(conn: Connection, settled: Iterable[StoredBet],
                   bonuses: Mapping[str, dict[str, Any]], *, actor: str) -> list[str]:
    """Count first-settled qualifying bets (not void) towards their active bonus, convert the
    bonuses whose requirement is met; returns the ids of the bets counted."""
    counted: list[str] = []
    added: dict[str, int] = {}
    for bet in settled:
        bonus = bonuses.get(bet.bonus_id or "")
        if (bonus is None or bet.bonus_wagered or bet.funding != Funding.CASH
                or bonus["status"] != BonusStatus.ACTIVE):
            continue
        if bet_price(bet) < Fraction(bonus["min_odds_num"], bonus["min_odds_den"]):
            continue
        counted.append(bet.id)
        added[bonus["id"]] = added.get(bonus["id"], 0) + bet.stake
    for bonus_id, amount in sorted(added.items()):
        wagered = store.add_wagered(conn, bonus_id, amount)
        bonus = bonuses[bonus_id]
        if wagered >= bonus["wagering_requirement"]:
            convert(conn, {**bonus, "wagered": wagered}, actor=actor)
    return counted


def uncount_wagering(conn: Connection, cancelled: Iterable[StoredBet],
                     bonuses: Mapping[str, dict[str, Any]]) -> list[str]:
    """Cancelled bets that had counted towards a bonus still active count no more (a refunded
    bet was never wagered); returns their ids. A converted bonus stays converted."""
    taken: dict[str, int] = {}
    ids: list[str] = []
    for bet in cancelled:
        bonus = bonuses.get(bet.bonus_id or "")
        if bonus is None or not bet.bonus_wagered or bonus["status"] != BonusStatus.ACTIVE:
            continue
        ids.append(bet.id)
        taken[bonus["id"]] = taken.get(bonus["id"], 0) + bet.stake
    for bonus_id, amount in sorted(taken.items()):
        store.add_wagered(conn, bonus_id, -amount)
    return ids
