"""`settlement verify` covers free bets, bonus stakes, cash-outs and cancellations (issue 15): a
market with one of each verifies clean; then each is broken in one way (a payment to a
cashed-out bet, a cash-out the bet does not show, a bonus share recorded wrong, a cancelled bet
not refunded in full) and verify names the bet and what is wrong."""

from __future__ import annotations

import pytest
from sqlalchemy import text

import ledger
from ledger import AccountRef, Transfer
from settlepay.db import run_in_transaction
from tests.support.products import cancel, cash_out, credit_bonus, grant_free_bet
from tests.support.settlement import (
    funded_player,
    place,
    post_result,
    run_market,
    uid,
    verify_differences,
)


@pytest.fixture
def market() -> str:
    return uid("mkt")


def pay(engine, bet_id: str, player: str, amount: int, kind: str = "settlement") -> None:
    run_in_transaction(engine, lambda c: ledger.post(c, Transfer(
        key=f"stray:{uid('k')}", kind=kind, reference=bet_id,
        legs=(ledger.Leg(AccountRef.player_cash(player, "GBP"), amount),
              ledger.Leg(AccountRef.house_revenue("GBP"), -amount)))))


def set_bet(engine, bet_id: str, **columns: int) -> None:
    with engine.begin() as conn:
        for column, value in columns.items():
            conn.execute(text(f"UPDATE bets SET {column} = :v WHERE id = :b"),
                         {"v": value, "b": bet_id})


def lines_about(engine, settings, market: str, bet_id: str) -> list[str]:
    return [line for line in verify_differences(engine, settings, market)
            if line.startswith(f"bet {bet_id}")]


def test_verify_covers_cash_outs_free_bets_bonus_shares_and_cancellations(engine, settings,
                                                                         market):
    p = funded_player(engine, 2_000)
    credit_bonus(engine, p, 500, multiplier=100)
    grant_free_bet(engine, p, 700)
    cashed = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    bonus_bet = place(engine, settings, p, 1_500, [(market, "home", "2.00")])   # 500 bonus
    free = place(engine, settings, p, 700, [(market, "home", "3.00")], funding="free_bet")
    cash_out(engine, settings, cashed, 900)
    post_result(engine, settings, market, 1, {"home": {"result": "won"}})
    run_market(engine, settings, market, 1)
    cancelled_market = uid("mkt")
    cancelled = place(engine, settings, p, 300, [(cancelled_market, "x", "2.00")])
    cancel(engine, settings, cancelled_market)
    assert verify_differences(engine, settings, market) == []
    assert verify_differences(engine, settings, cancelled_market) == []

    pay(engine, cashed, p, 400)                      # a result paid to a cashed-out bet
    assert lines_about(engine, settings, market, cashed) == [
        f"bet {cashed}: ledger moved 1300 to the player, the bet says 900 was paid",
        f"bet {cashed} (cashed out): its settle postings net 400 to the player and 0 in "
        "play; paid 0"]
    set_bet(engine, free, returned_free_bet=700)     # a winning free bet says it was void
    assert f"bet {free}: results return a free bet of 0, 700 was returned" in lines_about(
        engine, settings, market, free)
    set_bet(engine, bonus_bet, paid_bonus=0)         # its bonus share recorded as cash
    assert lines_about(engine, settings, market, bonus_bet) == [
        f"bet {bonus_bet}: the bonus share of its return is 1000, 0 went to bonus funds"]
    set_bet(engine, cancelled, paid=200)             # not refunded in full
    found = lines_about(engine, settings, cancelled_market, cancelled)
    assert f"bet {cancelled}: ledger moved 300 to the player, the bet says 200 was paid" in found
    assert any("(cancelled): returned 200" in line for line in found)
    set_bet(engine, cashed, cashed_out_value=800)    # a cash-out the bet does not show
    assert any("cash-out postings moved 900 to the player" in line
               for line in lines_about(engine, settings, market, cashed))
