"""Bonus funds through the real commands and ledger: a balance apart from cash, the stake order
(cash first or bonus first), returns shared back into bonus funds, the wagering requirement
counted from settled qualifying bets and the conversion to cash, forfeiture on expiry and on
a withdrawal, where a bet's bonus share goes after that, the deposit match. After each: ledger
check, audit verify and settlement verify are clean."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from sqlalchemy import Connection, text

from commands import deposits, promotions
from settlepay.db import run_in_transaction
from tests.support.factories import events, make_player
from tests.support.products import (
    all_clean,
    balances,
    bonus_row,
    cash_out,
    credit_bonus,
    house,
)
from tests.support.settlement import (
    bet_row,
    funded_player,
    place,
    post_result,
    roll_back,
    run_market,
    uid,
)
from workflows.contracts.deposit import Credit
from workflows.contracts.settlement import Mode

WIN = {"result": "won"}
LOSE = {"result": "lost"}
VOID = {"result": "lost", "void_factor": "1"}


@pytest.fixture
def market() -> str:
    return uid("mkt")


def test_a_stake_takes_cash_then_bonus_funds_or_the_other_way_as_configured(engine, settings,
                                                                           market):
    p = funded_player(engine, 300)
    bonus = credit_bonus(engine, p, 1_000)
    first = place(engine, settings, p, 1_000, [(market, "a", "2.00")])
    row = bet_row(engine, first)
    assert (row["stake_bonus"], row["bonus_id"]) == (700, bonus)       # cash first
    assert balances(engine, p) | {"cash": 0, "bonus": 300, "in_play": 1_000} == (
        balances(engine, p))

    q = funded_player(engine, 300)
    credit_bonus(engine, q, 1_000)
    bonus_first = settings.model_copy(update={"bonus_stake_order": "bonus_first"})
    second = place(engine, bonus_first, q, 500, [(market, "b", "2.00")])
    assert bet_row(engine, second)["stake_bonus"] == 500
    assert balances(engine, q) | {"cash": 300, "bonus": 500} == balances(engine, q)
    all_clean(engine, settings, market)


def test_bonus_funded_returns_go_back_to_bonus_funds_in_proportion(engine, settings, market):
    p = funded_player(engine, 300)
    credit_bonus(engine, p, 700, multiplier=100)
    bet = place(engine, settings, p, 1_000, [(market, "home", "2.50")])
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    # 2,500 back: 70 % of it (1,750) as bonus funds, the rest (750) as cash.
    assert balances(engine, p) | {"cash": 750, "bonus": 1_750} == balances(engine, p)
    row = bet_row(engine, bet)
    assert (row["paid"], row["paid_bonus"]) == (2_500, 1_750)
    post_result(engine, settings, market, 2, {"home": VOID})          # a correction
    run_market(engine, settings, market, 2)
    assert balances(engine, p) | {"cash": 300, "bonus": 700} == balances(engine, p)
    all_clean(engine, settings, market)


def test_settled_qualifying_bets_meet_the_wagering_and_the_bonus_converts_to_cash(
        engine, settings, market):
    p = funded_player(engine, 5_000)
    bonus = credit_bonus(engine, p, 100, multiplier=10, min_odds=Fraction(3, 2))
    low = place(engine, settings, p, 500, [(market, "low", "1.40")])     # below the minimum
    lost = place(engine, settings, p, 600, [(market, "lost", "2.00")])
    void = place(engine, settings, p, 500, [(market, "void", "2.00")])  # a void never counts
    post_result(engine, settings, market, 1, {"low": WIN, "lost": LOSE, "void": VOID})
    run_market(engine, settings, market, 1)
    assert bonus_row(engine, bonus)["wagered"] == 600
    assert bonus_row(engine, bonus)["status"] == "active"

    other = uid("mkt")
    place(engine, settings, p, 400, [(other, "home", "1.50")])
    post_result(engine, settings, other, 1, {"home": WIN})
    run_market(engine, settings, other, 1)
    row = bonus_row(engine, bonus)
    assert (row["status"], row["wagered"], row["converted_amount"]) == ("converted", 1_000, 100)
    assert balances(engine, p)["bonus"] == 0
    assert "bonus.converted" in events(engine, bonus)
    # A rollback and a new settlement do not count the same bet twice.
    assert roll_back(engine, settings, market, 1)
    run_market(engine, settings, market, 1, Mode.ROLLBACK)
    post_result(engine, settings, market, 2, {"low": WIN, "lost": LOSE, "void": VOID})
    run_market(engine, settings, market, 2)
    assert bonus_row(engine, bonus)["wagered"] == 1_000
    assert all(bet_row(engine, b)["status"] == "settled" for b in (low, lost, void))
    all_clean(engine, settings, market, other)


def test_after_conversion_a_bets_bonus_share_is_cash_after_forfeiture_the_houses(
        engine, settings, market):
    converted = funded_player(engine, 0)
    bonus = credit_bonus(engine, converted, 1_000, multiplier=1)
    open_bet = place(engine, settings, converted, 500, [(market, "home", "2.00")])
    other = uid("mkt")
    place(engine, settings, converted, 500, [(other, "home", "2.00")])
    post_result(engine, settings, other, 1, {"home": LOSE})
    run_market(engine, settings, other, 1)
    assert bonus_row(engine, bonus)["status"] == "active"          # 500 of 1,000 wagered
    forfeited = funded_player(engine, 0)
    gone = credit_bonus(engine, forfeited, 1_000)
    place(engine, settings, forfeited, 1_000, [(market, "away", "3.00")])
    run_in_transaction(engine, lambda c: promotions.forfeit_bonus(
        c, gone, reason="operator", actor="operator:test"))
    assert bonus_row(engine, gone)["forfeited_amount"] == 0        # all of it was in play
    promotions_before = house(engine)["promotions"]

    post_result(engine, settings, market, 1, {"home": WIN, "away": WIN})
    run_market(engine, settings, market, 1)
    # The winner completes the wagering (1,000): its bonus-funded return converts with it.
    assert bonus_row(engine, bonus)["status"] == "converted"
    assert balances(engine, converted) | {"cash": 1_000, "bonus": 0} == (
        balances(engine, converted))
    assert bet_row(engine, open_bet)["paid_bonus"] == 1_000
    # The forfeited bonus keeps its returns: the bet's 3,000 goes to house promotions.
    assert balances(engine, forfeited) | {"cash": 0, "bonus": 0} == balances(engine, forfeited)
    assert house(engine)["promotions"] == promotions_before + 3_000
    # A correction takes the converted bonus's share back from cash, the forfeited one's from
    # the house.
    post_result(engine, settings, market, 2, {"home": LOSE, "away": LOSE})
    run_market(engine, settings, market, 2)
    assert balances(engine, converted)["cash"] == 0
    assert house(engine)["promotions"] == promotions_before
    all_clean(engine, settings, market, other)


def test_an_expired_bonus_is_forfeited_the_next_time_it_is_looked_at(engine, settings, market):
    p = funded_player(engine, 0)
    bonus = credit_bonus(engine, p, 800)
    with engine.begin() as conn:
        conn.execute(text("UPDATE bonuses SET expires_at = now() - interval '1 second' "
                          "WHERE id = :id"), {"id": bonus})
    from commands import bets
    request = bets.BetRequest(bet_id=uid("bet"), player_id=p, stake=100, currency="GBP",
                              bet_type="single", legs=(bets.LegRequest(market, "h", "2.0"),))
    placed = run_in_transaction(engine, lambda c: bets.place(c, settings, request,
                                                             actor="system:test"))
    assert placed.refusal is not None and placed.refusal.code == "insufficient_funds"
    row = bonus_row(engine, bonus)
    assert (row["status"], row["forfeit_reason"], row["forfeited_amount"]) == (
        "forfeited", "expired", 800)
    assert balances(engine, p)["bonus"] == 0
    all_clean(engine, settings, market)


def test_a_withdrawal_before_the_wagering_is_met_forfeits_the_bonus_as_configured(
        engine, settings):
    p = funded_player(engine, 2_000)
    bonus = credit_bonus(engine, p, 500)
    kept = settings.model_copy(update={"bonus_forfeit_on_withdrawal": False})
    assert run_in_transaction(engine, lambda c: promotions.forfeit_on_withdrawal(
        c, kept, p, "GBP", "wd_test")) is None
    assert bonus_row(engine, bonus)["status"] == "active"
    assert run_in_transaction(engine, lambda c: promotions.forfeit_on_withdrawal(
        c, settings, p, "GBP", "wd_test")) == 500
    row = bonus_row(engine, bonus)
    assert (row["status"], row["forfeit_reason"]) == ("forfeited", "withdrawal")
    assert balances(engine, p) | {"cash": 2_000, "bonus": 0} == balances(engine, p)
    all_clean(engine, settings)


def test_one_active_bonus_at_a_time_and_a_bonus_credit_replays(engine, settings):
    p = funded_player(engine, 0)
    terms = promotions.BonusTerms(1_000, Fraction(3, 2), datetime.now(UTC) + timedelta(days=1))

    def credit(bonus_id: str, amount: int) -> tuple[dict, bool]:
        return run_in_transaction(engine, lambda c: promotions.credit_bonus(
            c, bonus_id=bonus_id, player_id=p, amount=amount, currency="GBP", terms=terms,
            actor="operator:test"))

    first = "b1-" + p
    assert credit(first, 100)[1] is False and credit(first, 100)[1] is True
    for bonus_id, amount, code in ((first, 200, "bonus_conflict"),
                                   ("b2-" + p, 100, "bonus_active")):
        with pytest.raises(promotions.PromotionRefused) as refused:
            credit(bonus_id, amount)
        assert refused.value.refusal.code == code
    assert balances(engine, p)["bonus"] == 100
    all_clean(engine, settings)


def test_a_partners_deposit_match_is_credited_once_per_player(engine, settings):
    p = funded_player(engine, 0, partner_id=uid("partner"))
    with engine.connect() as conn:
        partner = conn.execute(text("SELECT partner_id FROM players WHERE id = :p"),
                               {"p": p}).scalar_one()
    deposit = {"id": uid("dep"), "partner_id": partner, "player_id": p, "amount": 3_000,
               "currency": "GBP"}
    assert run_in_transaction(engine, lambda c: promotions.match_deposit(c, deposit)) is None
    run_in_transaction(engine, lambda c: promotions.set_deposit_match(
        c, partner_id=partner, percent=100, max_amount=2_000, wagering_multiplier=5,
        min_odds="1.80", valid_days=7, active=True, actor="operator:test"))
    bonus = run_in_transaction(engine, lambda c: promotions.match_deposit(c, deposit))
    assert bonus is not None
    assert (bonus["amount"], bonus["wagering_requirement"], bonus["min_odds"]) == (
        2_000, 10_000, "9/5")
    again = {**deposit, "id": uid("dep")}
    assert run_in_transaction(engine, lambda c: promotions.match_deposit(c, again)) is None
    assert balances(engine, p)["bonus"] == 2_000
    all_clean(engine, settings)


def test_a_bonus_funded_bet_cashes_out_sharing_the_value(engine, settings, market):
    p = funded_player(engine, 400)
    credit_bonus(engine, p, 600)
    bet = place(engine, settings, p, 1_000, [(market, "home", "3.00")])
    cash_out(engine, settings, bet, 1_500)
    assert balances(engine, p) | {"cash": 600, "bonus": 900, "in_play": 0} == (
        balances(engine, p))
    all_clean(engine, settings, market)


def test_a_deposit_credit_credits_the_partners_match_in_the_same_transaction(engine, settings):
    player = make_player(engine)
    run_in_transaction(engine, lambda c: promotions.set_deposit_match(
        c, partner_id=player.partner_id, percent=50, max_amount=10_000, wagering_multiplier=3,
        min_odds="1.50", valid_days=7, active=True, actor="operator:test"))
    deposit_id = f"dep_{uuid.uuid4().hex[:24]}"

    def credited(conn: Connection) -> int:
        row, _ = deposits.create(conn, deposit_id=deposit_id,
                                 player={"id": player.id, "partner_id": player.partner_id},
                                 amount=3_000, currency="USD", payment_method="pm_card_visa",
                                 actor="api_key:test")
        return deposits.credit(conn, Credit(deposit_id, player.id, 3_000, "USD", "pi_x", None))

    first = run_in_transaction(engine, credited)
    assert run_in_transaction(engine, lambda c: deposits.credit(
        c, Credit(deposit_id, player.id, 3_000, "USD", "pi_x", None))) == first   # a retry
    row = bonus_row(engine, f"deposit-match:{deposit_id}")
    assert (row["amount"], row["wagering_requirement"], row["source_ref"]) == (
        1_500, 4_500, deposit_id)
    assert balances(engine, player.id, "USD") | {"cash": 3_000, "bonus": 1_500} == (
        balances(engine, player.id, "USD"))
    all_clean(engine, settings)


def test_a_cancelled_bet_no_longer_counts_towards_the_wagering(engine, settings, market):
    from tests.support.products import cancel
    p = funded_player(engine, 5_000)
    bonus = credit_bonus(engine, p, 100, multiplier=100)
    bet = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    post_result(engine, settings, market, 1, {"home": LOSE})
    run_market(engine, settings, market, 1)
    assert bonus_row(engine, bonus)["wagered"] == 1_000
    cancel(engine, settings, market)
    assert bonus_row(engine, bonus)["wagered"] == 0
    assert bet_row(engine, bet)["bonus_wagered"] is False
    all_clean(engine, settings, market)
