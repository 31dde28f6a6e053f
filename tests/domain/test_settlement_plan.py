"""domain/settlement/plan.py over plain values, no database: what each bet's step posts (legs,
keys, the key it corrects), what it records and how the bet changes."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given
from hypothesis import strategies as st

from domain.settlement import SelectionResult
from domain.settlement.plan import (
    PAYOUT_MINOR_MAX,
    Account,
    BetStatus,
    PlannedLeg,
    PostingKind,
    RecordKind,
    StoredBet,
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
