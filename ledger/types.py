"""The ledger's vocabulary: accounts, legs, transfers and named result codes.

Amounts are signed integers in minor units. A transfer's legs sum to zero per currency; a
positive amount raises an account's balance, a negative one lowers it. An account's balance is
the sum of its entries (for a split "hot" account: the sum over its balance rows).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

from domain.frozen import quick_init


class AccountType(StrEnum):
    PLAYER_CASH = "player_cash"                    # what the player can bet or withdraw
    PLAYER_PENDING_WITHDRAWAL = "player_pending_withdrawal"  # held for a withdrawal in flight
    BETS_IN_PLAY = "bets_in_play"                  # stakes of open bets (a liability)
    PLAYER_DEBT = "player_debt"                    # negative balance = what the player owes
    HOUSE_REVENUE = "house_revenue"                # the operator's result; hot
    GATEWAY_CLEARING = "gateway_clearing"          # per provider; negative = owed to us; hot
    # Sportsbook products (issue 15). A free bet and a bonus are the house's promises, not
    # cash: they live on their own accounts and reach player cash only through a settlement
    # (free-bet winnings, bonus-funded returns) or a bonus conversion.
    PLAYER_FREE_BET = "player_free_bet"            # free-bet balance the player may stake
    FREE_BETS_IN_PLAY = "free_bets_in_play"        # free-bet stakes of open bets (a liability)
    PLAYER_BONUS = "player_bonus"                  # bonus funds: stakeable, never withdrawable
    HOUSE_PROMOTIONS = "house_promotions"          # the cost of free bets and bonuses; hot


# Accounts whose available balance (posted - pending debits) may never go below zero.
NO_NEGATIVE = frozenset({AccountType.PLAYER_CASH, AccountType.PLAYER_PENDING_WITHDRAWAL,
                         AccountType.BETS_IN_PLAY, AccountType.PLAYER_FREE_BET,
                         AccountType.FREE_BETS_IN_PLAY, AccountType.PLAYER_BONUS})
# Accounts that nearly every transfer touches: their balance is split over several rows.
HOT = frozenset({AccountType.HOUSE_REVENUE, AccountType.GATEWAY_CLEARING,
                 AccountType.HOUSE_PROMOTIONS})

HOUSE = "house"


@quick_init   # made per player account of a settlement page (commands/settlement.py)
@dataclass(frozen=True, order=True)
class AccountRef:
    owner: str
    type: AccountType
    currency: str

    @staticmethod
    def player_cash(player_id: str, currency: str) -> AccountRef:
        return AccountRef(f"player:{player_id}", AccountType.PLAYER_CASH, currency)

    @staticmethod
    def pending_withdrawal(player_id: str, currency: str) -> AccountRef:
        return AccountRef(f"player:{player_id}", AccountType.PLAYER_PENDING_WITHDRAWAL, currency)

    @staticmethod
    def bets_in_play(player_id: str, currency: str) -> AccountRef:
        return AccountRef(f"player:{player_id}", AccountType.BETS_IN_PLAY, currency)

    @staticmethod
    def player_debt(player_id: str, currency: str) -> AccountRef:
        return AccountRef(f"player:{player_id}", AccountType.PLAYER_DEBT, currency)

    @staticmethod
    def house_revenue(currency: str) -> AccountRef:
        return AccountRef(HOUSE, AccountType.HOUSE_REVENUE, currency)

    @staticmethod
    def free_bet(player_id: str, currency: str) -> AccountRef:
        return AccountRef(f"player:{player_id}", AccountType.PLAYER_FREE_BET, currency)

    @staticmethod
    def free_bets_in_play(player_id: str, currency: str) -> AccountRef:
        return AccountRef(f"player:{player_id}", AccountType.FREE_BETS_IN_PLAY, currency)

    @staticmethod
    def bonus(player_id: str, currency: str) -> AccountRef:
        return AccountRef(f"player:{player_id}", AccountType.PLAYER_BONUS, currency)

    @staticmethod
    def house_promotions(currency: str) -> AccountRef:
        return AccountRef(HOUSE, AccountType.HOUSE_PROMOTIONS, currency)

    @staticmethod
    def gateway_clearing(provider: str, currency: str) -> AccountRef:
        return AccountRef(f"gateway:{provider}", AccountType.GATEWAY_CLEARING, currency)


@quick_init   # made per posting of a batch: domain/frozen.py
@dataclass(frozen=True)
class Leg:
    account: AccountRef
    amount: int
    # Only for a debit of a no-negative account: the part its available balance cannot cover
    # is taken from this account instead (a clawback overflowing into the player's debt).
    shortfall_to: AccountRef | None = None


@quick_init   # made per posting of a batch: domain/frozen.py
@dataclass(frozen=True)
class Transfer:
    key: str                      # idempotency key from the business operation
    kind: str                     # deposit, bet_stake, settlement, resettlement, withdrawal, ...
    legs: tuple[Leg, ...]
    reference: str | None = None  # the business object: deposit id, bet id, ...
    corrects: str | None = None   # key of the transaction this one corrects (resettlement)
    metadata: dict[str, Any] = field(default_factory=dict)

    def request_hash(self, metadata_text: str | None = None) -> bytes:
        """Hash of everything but the key: same key + same hash is a replay.

        repr() of a tuple of str / int / None is unambiguous and stable, and several times
        cheaper than canonical JSON on the batch path; metadata (free-form) goes as JSON.
        `metadata_text`: `metadata_json(self.metadata)`, when the caller has it already (a
        batch whose transfers share one metadata dict writes it once).
        """
        if not self.metadata:
            metadata_text = None
        elif metadata_text is None:
            metadata_text = metadata_json(self.metadata)
        return hash_request(self.kind, self.reference, self.corrects, legs_hash_text(self.legs),
                            metadata_text)


def legs_hash_text(legs: tuple[Leg, ...]) -> str:
    """The legs' part of a request hash: repr() of a tuple of str / int / None per leg. A
    batch whose transfers share one tuple of legs makes it once (ledger.post_many)."""
    return repr(tuple(
        (leg.account.owner, leg.account.type._value_, leg.account.currency, leg.amount,
         None if leg.shortfall_to is None
         else (leg.shortfall_to.owner, leg.shortfall_to.type._value_))
        for leg in legs))


def hash_request(kind: str, reference: str | None, corrects: str | None, legs_text: str,
                 metadata_text: str | None) -> bytes:
    """Transfer.request_hash from its parts: the repr of (kind, reference, corrects, legs)
    (`legs_text`: legs_hash_text), then the metadata's JSON when there is metadata."""
    body = f"({kind!r}, {reference!r}, {corrects!r}, {legs_text})"
    if metadata_text is not None:
        body += metadata_text
    return hashlib.sha256(body.encode()).digest()


def metadata_json(metadata: dict[str, Any]) -> str:
    """`json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=str)`, the same
    text, for the request hash (flat_json writes the usual flat dict directly)."""
    flat = flat_json(metadata, sort_keys=True, item_separator=",", key_separator=":")
    if flat is not None:
        return flat
    return json.dumps(metadata, sort_keys=True, separators=(",", ":"), default=str)


def flat_json(data: dict[str, Any], *, sort_keys: bool = False, item_separator: str = ", ",
              key_separator: str = ": ") -> str | None:
    """The text json.dumps gives a flat dict of str keys and str / int / None values (a
    settlement posting's market and version) with these options, written without the
    encoder's per-call set-up (a batch writes thousands); None for any other dict."""
    parts = []
    for name in sorted(data) if sort_keys else data:
        if type(name) is not str:
            return None
        value = data[name]
        if type(value) is str:
            text = _json_str(value)
        elif type(value) is int:
            text = int.__repr__(value)
        elif value is None:
            text = "null"
        else:
            return None
        parts.append(f"{_json_str(name)}{key_separator}{text}")
    return "{" + item_separator.join(parts) + "}"


class ResultCode(StrEnum):
    """Named outcomes, as TigerBeetle names them. Rejections are stored and replayed too."""
    OK = "ok"
    INSUFFICIENT_FUNDS = "insufficient_funds"          # a no-negative account would go below 0
    HOLD_NOT_FOUND = "hold_not_found"
    HOLD_ALREADY_POSTED = "hold_already_posted"
    HOLD_ALREADY_VOIDED = "hold_already_voided"
    HOLD_AMOUNT_EXCEEDED = "hold_amount_exceeded"      # posting more than was held


@quick_init   # made per posting of a batch: domain/frozen.py
@dataclass(frozen=True)
class PostResult:
    code: ResultCode
    transaction_id: int | None
    replayed: bool = False        # the key was seen before: this is the stored first answer
    shortfall: int = 0            # moved to shortfall accounts (e.g. player debt)

    @property
    def ok(self) -> bool:
        return self.code is ResultCode.OK


@dataclass(frozen=True)
class Balance:
    account: AccountRef
    posted: int
    pending_debits: int
    pending_credits: int

    @property
    def available(self) -> int:
        return self.posted - self.pending_debits


class LedgerError(Exception):
    """Base of the ledger's exceptions (programming or contract errors, not business results)."""


class InvalidTransfer(LedgerError, ValueError):
    """The transfer is malformed: fewer than two legs, unbalanced, zero amount, bad currency."""


class IdempotencyConflict(LedgerError):
    """The key was used before for a different request."""
