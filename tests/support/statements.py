"""A player's money history with every kind of ledger movement, for the statement tests
(ledger/statement.py, /v1/players/{id}/transactions and /balances).

    moments = money_history(engine, player_id)     # the moment after each of the 11 steps
    HISTORY_LINES                                   # the 16 lines it makes, oldest first
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Connection, Engine, text

import ledger
from ledger import AccountRef, Leg, PostResult, Transfer
from ledger.types import AccountType

CASH, BIP = AccountType.PLAYER_CASH, AccountType.BETS_IN_PLAY
PENDING, DEBT = AccountType.PLAYER_PENDING_WITHDRAWAL, AccountType.PLAYER_DEBT

# (kind, account, amount, balance, held_change, held) of every line, oldest first; within a
# transaction the lines go by account id, i.e. in the order the accounts were first used:
# cash, bets in play, pending withdrawal, debt.
HISTORY_LINES = [
    ("deposit", CASH, 10_000, 10_000, 0, 0),
    ("bet_stake", CASH, -3_000, 7_000, 0, 0),
    ("bet_stake", BIP, 3_000, 3_000, 0, 0),
    ("settlement", CASH, 7_500, 14_500, 0, 0),
    ("settlement", BIP, -3_000, 0, 0, 0),
    ("hold", CASH, 0, 14_500, 14_000, 14_000),
    ("hold_void", CASH, 0, 14_500, -14_000, 0),
    ("hold", CASH, 0, 14_500, 10_000, 10_000),
    ("hold_post", CASH, -10_000, 4_500, -10_000, 0),
    ("hold_post", PENDING, 10_000, 10_000, 0, 0),
    ("withdrawal", PENDING, -10_000, 0, 0, 0),
    ("resettlement", CASH, -4_500, 0, 0, 0),
    ("resettlement", DEBT, -3_000, -3_000, 0, 0),
    ("deposit", CASH, 5_000, 5_000, 0, 0),
    ("debt_repayment", CASH, -3_000, 2_000, 0, 0),
    ("debt_repayment", DEBT, 3_000, 0, 0, 0),
]

# After each step: (cash posted, held, bets in play, pending withdrawal, debt account).
HISTORY_BALANCES = [
    (10_000, 0, 0, 0, 0), (7_000, 0, 3_000, 0, 0), (14_500, 0, 0, 0, 0),
    (14_500, 14_000, 0, 0, 0), (14_500, 0, 0, 0, 0), (14_500, 10_000, 0, 0, 0),
    (4_500, 0, 0, 10_000, 0), (4_500, 0, 0, 0, 0), (0, 0, 0, 0, -3_000),
    (5_000, 0, 0, 0, -3_000), (2_000, 0, 0, 0, 0),
]


def money_history(engine: Engine, player: str) -> list[datetime]:
    """Deposit, stake, win, a withdrawal cancelled (hold voided), one paid (hold posted and
    cleared), the win corrected to a loss (a resettlement whose shortfall becomes debt), a
    second deposit and the debt repaid: eleven steps, each its own database transaction, as
    the commands post them. Returns the moment after each step."""
    cash, bip = AccountRef.player_cash(player, "USD"), AccountRef.bets_in_play(player, "USD")
    pending = AccountRef.pending_withdrawal(player, "USD")
    debt = AccountRef.player_debt(player, "USD")
    house, gateway = AccountRef.house_revenue("USD"), AccountRef.gateway_clearing("stripe", "USD")

    def post(key: str, kind: str, *legs: Leg, reference: str | None = None,
             corrects: str | None = None) -> Callable[[Connection], PostResult]:
        return lambda conn: ledger.post(conn, Transfer(
            key=f"{player}:{key}", kind=kind, legs=legs, reference=reference,
            corrects=corrects and f"{player}:{corrects}"))

    steps: list[Callable[[Connection], PostResult]] = [
        post("dep1", "deposit", Leg(gateway, -10_000), Leg(cash, 10_000), reference="dep_1"),
        post("stake", "bet_stake", Leg(cash, -3_000), Leg(bip, 3_000), reference="b1"),
        post("settle", "settlement", Leg(bip, -3_000), Leg(cash, 7_500), Leg(house, -4_500),
             reference="b1"),
        lambda c: ledger.hold(c, f"{player}:w1:hold", cash, pending, 14_000, reference="wd_1"),
        lambda c: ledger.void_hold(c, f"{player}:w1:void", f"{player}:w1:hold"),
        lambda c: ledger.hold(c, f"{player}:w2:hold", cash, pending, 10_000, reference="wd_2"),
        lambda c: ledger.post_hold(c, f"{player}:w2:post", f"{player}:w2:hold"),
        post("w2:clear", "withdrawal", Leg(pending, -10_000), Leg(gateway, 10_000),
             reference="wd_2"),
        post("resettle", "resettlement", Leg(cash, -7_500, shortfall_to=debt), Leg(house, 7_500),
             reference="b1", corrects="settle"),
        post("dep2", "deposit", Leg(gateway, -5_000), Leg(cash, 5_000), reference="dep_2"),
        post("repay", "debt_repayment", Leg(cash, -3_000), Leg(debt, 3_000), reference="wd_3"),
    ]
    moments = []
    for step in steps:
        with engine.begin() as conn:
            assert step(conn).ok
        with engine.connect() as conn:
            moments.append(conn.execute(text("SELECT clock_timestamp()")).scalar_one())
    return moments
