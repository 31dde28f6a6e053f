"""domain/settlement/plan.py over plain values, no database: what each bet's step posts (legs,
keys, the key it corrects), what it records and how the bet changes."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.settlement import SelectionResult
from domain.settlement import settle as settle_alone
from domain.settlement.plan import (
    PAYOUT_MINOR_MAX,
    Account,
    BetStatus,
    PlannedLeg,
    PostingKind,
    RecordKind,
    Settler,
    StoredBet,
    domain_bet,
    plan_rollback,
    plan_settle,
    results_used,
    reversal_legs,
    settlement_key,
    settlement_legs,
)

WON, LOST = SelectionResult("won"), SelectionResult("lost")
VOID = SelectionResult("lost", void_factor=1)


def single(price: tuple[int, int] = (5, 2), stake: int = 1_000, **kw: object) -> StoredBet:
    bet = StoredBet(id="p/b1", player_id="ply", partner_id="p", currency="GBP", stake=stake,
                    bet_type="single", place_fraction=None, place_count=None,
                    status=BetStatus.OPEN, paid=0, payout=None, version=None,
                    settlement_key=None, legs=(("m", "home", *price),))
    return replace(bet, **kw)


def settle(bet: StoredBet, result: SelectionResult, version: int = 1,
           upgrade_only: bool = False):
    results = {("m", "home"): result}
    return plan_settle(bet, "m", results, {"m": version}, results_used(bet, results),
                       upgrade_only=upgrade_only)


def amounts(legs: tuple[PlannedLeg, ...]) -> dict[Account, int]:
    return {leg.account: leg.amount for leg in legs}


def test_an_open_winner_moves_its_stake_out_of_play_and_pays_the_return():
    step = settle(single(), WON)
    assert step.posting.key == "bet:p/b1:v1" and step.posting.kind == PostingKind.SETTLEMENT
    assert step.posting.corrects is None
    assert amounts(step.posting.legs) == {Account.BETS_IN_PLAY: -1_000,
                                          Account.PLAYER_CASH: 2_500,
                                          Account.HOUSE_REVENUE: -1_500}
    assert step.record.kind == RecordKind.SETTLEMENT and step.record.delta == 2_500
    assert step.record.results == {"m/home": WON.to_json()}
    assert (step.update.status, step.update.paid, step.update.version,
            step.update.settlement_key) == (BetStatus.SETTLED, 2_500, 1, "bet:p/b1:v1")


def test_a_loser_pays_the_house_and_a_void_returns_the_stake():
    assert amounts(settle(single(), LOST).posting.legs) == {Account.BETS_IN_PLAY: -1_000,
                                                            Account.HOUSE_REVENUE: 1_000}
    assert amounts(settle(single(), VOID).posting.legs) == {Account.BETS_IN_PLAY: -1_000,
                                                            Account.PLAYER_CASH: 1_000}


def test_a_parlay_waits_for_its_other_markets():
    parlay = single(bet_type="parlay", legs=(("m", "home", 2, 1), ("n", "away", 3, 1)))
    step = settle(parlay, WON)
    assert step.pending and step.posting is None and step.update is None


def test_a_correction_posts_only_the_delta_and_links_the_first_posting():
    settled = single(status=BetStatus.SETTLED, paid=2_500, payout=2_500, version=1,
                     settlement_key="bet:p/b1:v1")
    step = settle(settled, LOST, version=2)
    assert step.posting.key == "bet:p/b1:v2" and step.posting.kind == PostingKind.RESETTLEMENT
    assert step.posting.corrects == "bet:p/b1:v1"
    assert amounts(step.posting.legs) == {Account.PLAYER_CASH: -2_500,
                                          Account.HOUSE_REVENUE: 2_500}
    assert step.posting.legs[0].shortfall_to_debt          # a clawback may become debt
    assert step.update.settlement_key == "bet:p/b1:v1"     # corrections keep linking the first
    assert settle(settled, WON, version=2) is None         # unchanged: nothing
    assert settle(settled, LOST, version=1) is None        # a re-run: nothing


def test_upgrade_only_keeps_a_downgrade_out_and_records_it():
    settled = single(status=BetStatus.SETTLED, paid=2_500, payout=2_500, version=1,
                     settlement_key="bet:p/b1:v1")
    step = settle(settled, LOST, version=2, upgrade_only=True)
    assert step.skipped and step.posting is None
    assert step.record.applied is False and step.record.delta == 0
    assert (step.update.paid, step.update.payout, step.update.version) == (2_500, 0, 2)
    back = settle(replace(settled, payout=0, version=2), WON, version=3)
    assert back.posting is None and back.update.payout == 2_500 and back.update.version == 2


def test_a_rollback_reverses_exactly_what_was_posted_and_opens_a_new_generation():
    settled = single(status=BetStatus.SETTLED, paid=2_500, payout=2_500, version=1,
                     settlement_key="bet:p/b1:v1")
    step = plan_rollback(settled, "m", 1, {})
    assert step.posting.key == "bet:p/b1:rollback:v1"
    assert step.posting.kind == PostingKind.ROLLBACK
    assert step.posting.corrects == "bet:p/b1:v1"
    forward = amounts(settlement_legs(1_000, 2_500))
    assert amounts(step.posting.legs) == {a: -amount for a, amount in forward.items()}
    assert (step.update.status, step.update.paid, step.update.rollbacks) == (
        BetStatus.OPEN, 0, 1)
    assert plan_rollback(single(), "m", 1, {}) is None      # an open bet: nothing to reverse


def test_after_a_rollback_the_keys_name_the_generation_so_none_is_reused():
    reopened = single(rollbacks=1)
    assert settle(reopened, WON, version=1).posting.key == "bet:p/b1:g1:v1"
    settled = replace(reopened, status=BetStatus.SETTLED, paid=2_500, payout=2_500,
                      version=2, settlement_key="bet:p/b1:g1:v2")
    assert settle(settled, LOST, version=3).posting.key == "bet:p/b1:g1:v3"
    assert plan_rollback(settled, "m", 2, {}).posting.key == "bet:p/b1:g1:rollback:v2"
    keys = {settlement_key("b", v, g) for v in range(1, 4) for g in range(3)}
    assert len(keys) == 9


def test_a_payout_no_ledger_amount_can_hold_is_flagged_for_review_not_posted():
    huge = single(price=(10**17, 1))
    step = settle(huge, WON)
    assert step.posting is None and step.record is None
    assert step.review is not None and str(PAYOUT_MINOR_MAX) in step.review
    assert step.update.needs_review == step.review and step.update.status == BetStatus.OPEN


@given(stake=st.integers(1, 10**12), paid=st.integers(0, 10**13))
def test_every_planned_posting_sums_to_zero(stake, paid):
    assert sum(leg.amount for leg in settlement_legs(stake, paid)) == 0
    assert sum(leg.amount for leg in reversal_legs(stake, paid)) == 0


RESULTS = {("m", "home"): WON, ("m", "away"): LOST, ("m", "draw"): VOID,
           ("m", "half"): SelectionResult("won", void_factor="0.5"),
           ("m", "heat"): SelectionResult("won", dead_heat_factor="1/3", position=1, tied=3),
           ("n", "home"): SelectionResult("won", rule4="0.15"),
           ("n", "away"): SelectionResult("lost", position=2)}
PRICES = st.tuples(st.integers(1, 40), st.integers(1, 7)).map(lambda p: (p[0] + p[1], p[1]))


@st.composite
def stored_bets(draw) -> StoredBet:
    """Singles, parlays and each-way bets over RESULTS (and a market without a result)."""
    kind = draw(st.sampled_from(["single", "parlay", "each_way"]))
    selections = [("m", s) for s in ("home", "away", "draw", "half", "heat")] + [
        ("n", "home"), ("n", "away"), ("o", "home")]
    if kind == "parlay":
        m_leg = draw(st.sampled_from(selections[:5]))
        n_leg = draw(st.sampled_from(selections[5:]))
        legs = (m_leg + draw(PRICES), n_leg + draw(PRICES))
    else:
        legs = (draw(st.sampled_from(selections)) + draw(PRICES),)
    stake = draw(st.integers(1, 10**9)) * (2 if kind == "each_way" else 1)
    return replace(single(stake=stake), bet_type=kind, legs=legs,
                   place_fraction="1/4" if kind == "each_way" else None,
                   place_count=3 if kind == "each_way" else None)


@given(bets=st.lists(stored_bets(), min_size=1, max_size=40))
def test_a_batch_settler_gives_each_bet_exactly_what_settling_it_alone_gives(bets):
    """The Settler works out each bet shape once per unit staked and scales it by the stake:
    payout, exact return, outcome and leg outcomes are settle()'s for every bet, to the
    minor unit, whatever the order and repetition of shapes in the batch."""
    settler = Settler(RESULTS)
    for bet in bets + bets:       # every shape seen again: the cached path
        alone = settle_alone(domain_bet(bet.bet_type, bet.stake, bet.legs, bet.place_fraction,
                                        bet.place_count), RESULTS)
        assert settler.settle(bet) == alone
        assert settler.used(bet) == results_used(bet, RESULTS)
        assert plan_settle(bet, "m", RESULTS, {"m": 1, "n": 1}, settler.used(bet),
                           upgrade_only=False, settler=settler) == \
            plan_settle(bet, "m", RESULTS, {"m": 1, "n": 1}, results_used(bet, RESULTS),
                        upgrade_only=False)


def test_a_batch_settler_still_refuses_a_bad_stake_of_a_shape_it_has_seen():
    settler = Settler(RESULTS)
    each_way = replace(single(stake=1_000), bet_type="each_way", place_fraction="1/4",
                       place_count=3)
    assert settler.settle(each_way).payout == 1_937     # 500 x 2.50 + 500 x 1.375
    with pytest.raises(ValueError, match="even"):
        settler.settle(replace(each_way, stake=1_001))
    with pytest.raises(ValueError, match="positive"):
        settler.settle(replace(each_way, stake=0))
