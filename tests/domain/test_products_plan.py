"""domain/settlement/plan.py for issue 15 over plain values: what a free bet, a bonus-funded
bet, a cash-out and a cancellation post (legs, keys), and that cashed-out and cancelled bets
are final for settlement and rollback."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from domain.settlement import SelectionResult
from domain.settlement.plan import (
    Account,
    BetStatus,
    Funding,
    PlannedLeg,
    Returns,
    StoredBet,
    applied,
    movement_legs,
    plan_cancel,
    plan_cash_out,
    plan_rollback,
    plan_settle,
    plan_uncancel,
    results_used,
)

WON, LOST = SelectionResult("won"), SelectionResult("lost")
VOID = SelectionResult("lost", void_factor=1, void_reason="4")


def single(price: tuple[int, int] = (2, 1), stake: int = 2_500, **kw: object) -> StoredBet:
    bet = StoredBet(id="p/b1", player_id="ply", partner_id="p", currency="USD", stake=stake,
                    bet_type="single", place_fraction=None, place_count=None,
                    status=BetStatus.OPEN, paid=0, payout=None, version=None,
                    settlement_key=None, legs=(("m", "home", *price),))
    return replace(bet, **kw)


def settle(bet: StoredBet, result: SelectionResult, version: int = 1):
    results = {("m", "home"): result}
    return plan_settle(bet, "m", results, {"m": version}, results_used(bet, results),
                       upgrade_only=False)


def amounts(legs: tuple[PlannedLeg, ...]) -> dict[Account, int]:
    return {leg.account: leg.amount for leg in legs}


def test_a_free_bet_at_evens_returns_its_winnings_only_a_void_the_free_bet():
    free = single(funding=Funding.FREE_BET)
    won = settle(free, WON)
    assert amounts(won.posting.legs) == {Account.FREE_BETS_IN_PLAY: -2_500,
                                         Account.PLAYER_CASH: 2_500}
    assert (won.update.paid, won.update.returned_free_bet) == (2_500, 0)
    void = settle(free, VOID)
    assert amounts(void.posting.legs) == {Account.FREE_BETS_IN_PLAY: -2_500,
                                          Account.PLAYER_FREE_BET: 2_500}
    assert amounts(settle(free, LOST).posting.legs) == {Account.FREE_BETS_IN_PLAY: -2_500,
                                                        Account.HOUSE_PROMOTIONS: 2_500}
    # Corrected from void to won: the free bet taken back (into debt if spent), cash paid.
    corrected = settle(applied(free, void.update), WON, version=2)
    legs = {leg.account: leg for leg in corrected.posting.legs}
    assert legs[Account.PLAYER_FREE_BET].amount == -2_500
    assert legs[Account.PLAYER_FREE_BET].shortfall_to_debt
    assert legs[Account.PLAYER_CASH].amount == 2_500 and Account.HOUSE_PROMOTIONS not in legs


def test_a_bonus_funded_return_is_shared_rounding_down_and_goes_where_its_bonus_stands():
    bet = single(price=(7, 3), stake=1_000, stake_bonus=333)
    step = settle(bet, WON)                   # returns 2,333 (7/3 of 1,000, rounded down)
    assert amounts(step.posting.legs) == {Account.BETS_IN_PLAY: -1_000,
                                          Account.PLAYER_CASH: 2_333 - 776,
                                          Account.PLAYER_BONUS: 776,
                                          Account.HOUSE_REVENUE: -1_333}
    converted = settle(replace(bet, bonus_target=Account.PLAYER_CASH), WON)
    assert amounts(converted.posting.legs)[Account.PLAYER_CASH] == 2_333
    forfeited = settle(replace(bet, bonus_target=Account.HOUSE_PROMOTIONS), WON)
    assert amounts(forfeited.posting.legs)[Account.HOUSE_PROMOTIONS] == 776


def test_a_cash_out_posts_the_share_and_keys_each_cash_out_apart():
    bet = single(stake=1_000, stake_bonus=400)
    whole = plan_cash_out(bet, 1, 1_000, 1_500, {"quote_id": "q"}, "m")
    assert whole.final and whole.posting.key == "bet:p/b1:cashout"
    assert amounts(whole.posting.legs) == {Account.BETS_IN_PLAY: -1_000,
                                           Account.PLAYER_CASH: 900, Account.PLAYER_BONUS: 600,
                                           Account.HOUSE_REVENUE: -500}
    part = plan_cash_out(bet, 2, 500, 100, {"quote_id": "q2"}, "m")
    assert not part.final and part.posting.key == "bet:p/b1:cashout:2"
    assert (part.stake_bonus, part.value_bonus) == (200, 40)


def test_cashed_out_and_cancelled_bets_are_final_for_results_and_rollbacks():
    for status in (BetStatus.CASHED_OUT, BetStatus.CANCELLED):
        bet = single(status=status, version=1, settlement_key="k")
        assert settle(bet, WON) is None
        assert plan_rollback(bet, "m", 1, {}) is None


def test_a_cancellation_refunds_in_full_and_its_rollback_reverses_it_one_generation_later():
    settled = applied(single(), settle(single(), WON).update)
    cancelled = plan_cancel(settled, "m", 7, {"reason_code": "4"})
    assert cancelled.posting.key == "bet:p/b1:cancel:7"
    assert cancelled.posting.corrects == "bet:p/b1:v1"
    assert amounts(cancelled.posting.legs) == {Account.PLAYER_CASH: -2_500,
                                               Account.HOUSE_REVENUE: 2_500}
    after = applied(settled, cancelled.update)
    assert (after.status, after.paid) == (BetStatus.CANCELLED, 2_500)
    undone = plan_uncancel(after, "m", 7, {})
    assert undone.posting.key == "bet:p/b1:cancel:7:rollback"
    assert amounts(undone.posting.legs) == {Account.BETS_IN_PLAY: 2_500,
                                            Account.PLAYER_CASH: -2_500}
    reopened = applied(after, undone.update)
    assert settle(reopened, WON).posting.key == "bet:p/b1:g1:v1"
    assert plan_uncancel(after, "m", 8, {}) is None


@given(in_play=st.integers(-10**6, 10**6), cash=st.integers(-10**6, 10**6),
       bonus=st.integers(-10**6, 10**6), free=st.integers(-10**6, 10**6),
       funding=st.sampled_from(list(Funding)),
       target=st.sampled_from([Account.PLAYER_BONUS, Account.PLAYER_CASH,
                               Account.HOUSE_PROMOTIONS]))
def test_every_movement_balances_and_names_each_account_once(in_play, cash, bonus, free,
                                                            funding, target):
    legs = movement_legs(funding, in_play, Returns(cash, bonus, free), target)
    assert sum(leg.amount for leg in legs) == 0
    assert len({leg.account for leg in legs}) == len(legs)
    assert all(leg.amount for leg in legs)
    assert all(leg.shortfall_to_debt == (leg.amount < 0 and leg.account in (
        Account.PLAYER_CASH, Account.PLAYER_BONUS, Account.PLAYER_FREE_BET)) for leg in legs)
