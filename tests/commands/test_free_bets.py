"""Free bets through the real commands and ledger: granted by an operator or a promotion onto
the player's free-bet balance, staked into free bets in play, settled paying winnings only,
a void giving the free bet back (not cash), resettled and rolled back on their own accounts,
cashed out for cash, refused when the balance is short. After each: ledger check, audit
verify and settlement verify are clean."""

from __future__ import annotations

import pytest

from commands import promotions
from settlepay.db import run_in_transaction
from tests.support.products import all_clean, balances, cash_out, grant_free_bet, house
from tests.support.settlement import (
    bet_row,
    funded_player,
    place,
    post_result,
    roll_back,
    run_market,
    uid,
)
from workflows.contracts.settlement import Mode

WIN = {"result": "won"}
LOSE = {"result": "lost"}
VOID = {"result": "lost", "void_factor": "1"}


@pytest.fixture
def market() -> str:
    return uid("mkt")


def test_a_free_bet_pays_winnings_only(engine, settings, market):
    # Worked example (published operator rules): a $25 free bet at +100 returns $25, not $50.
    p = funded_player(engine, 0, currency="USD")
    grant_free_bet(engine, p, 2_500, currency="USD")
    promotions_before = house(engine, "USD")["promotions"]
    bet = place(engine, settings, p, 2_500, [(market, "home", "+100")], currency="USD",
                funding="free_bet")
    assert balances(engine, p, "USD") | {"free_bet": 0, "free_in_play": 2_500} == (
        balances(engine, p, "USD"))

    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    assert balances(engine, p, "USD")["cash"] == 2_500               # winnings only
    assert balances(engine, p, "USD")["free_in_play"] == 0
    assert house(engine, "USD")["promotions"] == promotions_before    # the token came back
    row = bet_row(engine, bet)
    assert (row["status"], row["paid"], row["returned_free_bet"]) == ("settled", 2_500, 0)
    all_clean(engine, settings, market)


def test_a_void_free_bet_returns_the_free_bet_then_corrections_and_rollbacks_move_it(
        engine, settings, market):
    p = funded_player(engine, 0)
    grant_free_bet(engine, p, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "3.00")], funding="free_bet")
    loser = funded_player(engine, 0)
    grant_free_bet(engine, loser, 500)
    place(engine, settings, loser, 500, [(market, "home", "3.00")], funding="free_bet")

    post_result(engine, settings, market, 1, {"home": VOID})
    run_market(engine, settings, market, 1)
    assert balances(engine, p) | {"cash": 0, "free_bet": 1_000, "free_in_play": 0} == (
        balances(engine, p))                                         # the free bet, not cash
    assert bet_row(engine, bet)["returned_free_bet"] == 1_000

    # Corrected to a win: the free bet is taken back, the winnings paid.
    post_result(engine, settings, market, 2, {"home": WIN})
    run_market(engine, settings, market, 2)
    assert balances(engine, p) | {"cash": 2_000, "free_bet": 0} == balances(engine, p)
    assert balances(engine, loser) | {"cash": 1_000, "free_bet": 0} == balances(engine, loser)

    # Rolled back: the stake is in play again, nothing paid.
    assert roll_back(engine, settings, market, 2)
    run_market(engine, settings, market, 2, Mode.ROLLBACK)
    assert balances(engine, p) | {"cash": 0, "free_bet": 0, "free_in_play": 1_000} == (
        balances(engine, p))
    post_result(engine, settings, market, 3, {"home": LOSE})
    run_market(engine, settings, market, 3)
    assert balances(engine, p) | {"cash": 0, "free_bet": 0, "free_in_play": 0} == (
        balances(engine, p))
    all_clean(engine, settings, market)


def test_a_free_bet_respent_before_a_correction_takes_it_back_becomes_debt(engine, settings,
                                                                          market):
    other = uid("mkt")
    p = funded_player(engine, 0)
    grant_free_bet(engine, p, 1_000)
    place(engine, settings, p, 1_000, [(market, "home", "2.00")], funding="free_bet")
    post_result(engine, settings, market, 1, {"home": VOID})
    run_market(engine, settings, market, 1)
    place(engine, settings, p, 1_000, [(other, "home", "2.00")], funding="free_bet")
    post_result(engine, settings, market, 2, {"home": LOSE})
    run_market(engine, settings, market, 2)
    assert balances(engine, p) | {"free_bet": 0, "debt": -1_000} == balances(engine, p)
    all_clean(engine, settings, market, other)


def test_a_free_bet_is_refused_when_the_balance_is_short_and_grants_replay(engine, settings,
                                                                          market):
    from commands import bets
    p = funded_player(engine, 5_000)
    grant_free_bet(engine, p, 500)
    request = bets.BetRequest(bet_id=uid("bet"), player_id=p, stake=1_000, currency="GBP",
                              bet_type="single", legs=(bets.LegRequest(market, "h", "2.0"),),
                              funding="free_bet")
    placed = run_in_transaction(engine, lambda c: bets.place(c, settings, request,
                                                             actor="system:test"))
    assert placed.refusal is not None and placed.refusal.code == "insufficient_free_bet"
    assert balances(engine, p) | {"cash": 5_000, "free_bet": 500} == balances(engine, p)

    def grant(amount: int) -> tuple[dict, bool]:
        return run_in_transaction(engine, lambda c: promotions.grant_free_bet(
            c, grant_id="fb-replay-" + p, player_id=p, amount=amount, currency="GBP",
            reason="welcome", actor="operator:test"))

    assert grant(700)[1] is False and grant(700)[1] is True
    with pytest.raises(promotions.PromotionRefused) as conflict:
        grant(800)
    assert conflict.value.refusal.code == "free_bet_conflict"
    assert balances(engine, p)["free_bet"] == 1_200
    all_clean(engine, settings)


def test_a_free_bet_cashes_out_for_cash(engine, settings, market):
    p = funded_player(engine, 0)
    grant_free_bet(engine, p, 1_000)
    promotions_before = house(engine)["promotions"]
    bet = place(engine, settings, p, 1_000, [(market, "home", "4.00")], funding="free_bet")
    cash_out(engine, settings, bet, 1_700)
    assert balances(engine, p) | {"cash": 1_700, "free_in_play": 0, "free_bet": 0} == (
        balances(engine, p))
    assert house(engine)["promotions"] == promotions_before + 1_000 - 1_700
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    assert balances(engine, p)["cash"] == 1_700
    all_clean(engine, settings, market)


def test_upgrade_only_keeps_a_returned_free_bet_when_a_correction_would_take_it(
        engine, settings, market):
    policy = settings.model_copy(update={"resettlement_policy": "upgrade_only"})
    p = funded_player(engine, 0)
    grant_free_bet(engine, p, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "3.00")], funding="free_bet")
    post_result(engine, policy, market, 1, {"home": VOID})
    run_market(engine, policy, market, 1)
    post_result(engine, policy, market, 2, {"home": LOSE})
    out = run_market(engine, policy, market, 2)
    assert out.skipped == 1
    assert balances(engine, p) | {"cash": 0, "free_bet": 1_000} == balances(engine, p)
    assert bet_row(engine, bet)["returned_free_bet"] == 1_000
    all_clean(engine, policy, market)
