"""Market cancellation as the Unified Odds Feed sends it, through commands/settlement.py with the
real ledger: BetCancel refunds every bet on the market in full (cash, bonus funds and free bets
each back where they came from; settled bets corrected to the refund; a partly cashed-out bet
its remaining stake), optionally only bets placed within a window, with a reason code; later
results do nothing; RollbackBetCancel reverses the refunds exactly and settles the bets on
the results known by then. After each: ledger check, audit verify and settlement verify are
clean."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text

from commands import bets
from commands import settlement as settlements
from settlepay.db import run_in_transaction
from store import bets as bet_store
from tests.support.products import (
    all_clean,
    balances,
    cancel,
    cash_out,
    credit_bonus,
    grant_free_bet,
    uncancel,
)
from tests.support.settlement import (
    bet_row,
    funded_player,
    place,
    post_result,
    run_market,
    uid,
)

WIN = {"result": "won"}
LOSE = {"result": "lost"}


@pytest.fixture
def market() -> str:
    return uid("mkt")


def keys(engine, bet_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("""SELECT idempotency_key FROM ledger_transactions
                                          WHERE reference = :b AND result = 'ok' ORDER BY id"""),
                                 {"b": bet_id}).scalars())


def test_a_cancelled_market_refunds_its_stakes_and_later_results_do_nothing(engine, settings,
                                                                           market):
    # Worked example: a cancelled market refunds its stakes, and later results do nothing.
    p = funded_player(engine, 1_300)
    credit_bonus(engine, p, 500)
    grant_free_bet(engine, p, 400)
    cash_bet = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    mixed = place(engine, settings, p, 600, [(market, "away", "3.00")])    # 300 cash, 300 bonus
    free = place(engine, settings, p, 400, [(market, "home", "2.00")], funding="free_bet")
    partly = place(engine, settings, p, 200, [(market, "home", "2.00")])   # from bonus funds
    cash_out(engine, settings, partly, 50, stake=100)              # its value: bonus funds
    assert balances(engine, p) | {"cash": 0, "bonus": 50, "free_bet": 0} == balances(engine, p)

    resource, replayed = cancel(engine, settings, market, "bc-1", reason_code="4")
    assert not replayed and resource["bets_cancelled"] == 4
    assert balances(engine, p) | {"cash": 1_300, "bonus": 450, "free_bet": 400, "in_play": 0,
                                  "free_in_play": 0} == balances(engine, p)
    assert all(bet_row(engine, b)["status"] == "cancelled"
               for b in (cash_bet, mixed, free, partly))
    assert keys(engine, cash_bet) == [f"bet:{cash_bet}:stake", f"bet:{cash_bet}:cancel:"
                                      f"{bet_row(engine, cash_bet)['cancellation_id']}"]
    history = bet_store.get(engine.connect(), cash_bet)["settlements"]
    assert history[-1]["kind"] == "cancellation"
    assert history[-1]["results"]["reason_code"] == "4"

    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE})
    out = run_market(engine, settings, market, 1)
    assert out.posted == 0
    assert balances(engine, p)["cash"] == 1_300
    assert cancel(engine, settings, market, "bc-1", reason_code="4")[1] is True    # a replay
    with pytest.raises(settlements.ResultRefused) as conflict:
        cancel(engine, settings, market, "bc-1", reason_code="5")
    assert conflict.value.code == "cancellation_conflict"
    all_clean(engine, settings, market)


def test_a_cancellation_corrects_settled_bets_to_a_refund_and_closes_the_market(
        engine, settings, market):
    p = funded_player(engine, 2_000)
    winner = place(engine, settings, p, 1_000, [(market, "home", "3.00")])
    loser = place(engine, settings, p, 1_000, [(market, "away", "3.00")])
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE})
    run_market(engine, settings, market, 1)
    assert balances(engine, p)["cash"] == 3_000
    cancel(engine, settings, market)
    assert balances(engine, p)["cash"] == 2_000
    assert [bet_row(engine, b)["paid"] for b in (winner, loser)] == [1_000, 1_000]
    request = bets.BetRequest(bet_id=uid("bet"), player_id=p, stake=100, currency="GBP",
                              bet_type="single", legs=(bets.LegRequest(market, "home", "2"),))
    placed = run_in_transaction(engine, lambda c: bets.place(c, settings, request,
                                                             actor="system:test"))
    assert placed.refusal is not None and placed.refusal.code == "market_settled"
    all_clean(engine, settings, market)


def test_a_cancellation_window_refunds_only_the_bets_placed_within_it(engine, settings,
                                                                     market):
    p = funded_player(engine, 3_000)
    before = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    start = datetime.now(UTC)
    inside = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    end = datetime.now(UTC)
    after = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    resource, _ = cancel(engine, settings, market, "window", placed_from=start,
                         placed_until=end)
    assert resource["bets_cancelled"] == 1
    assert [bet_row(engine, b)["status"] for b in (before, inside, after)] == [
        "open", "cancelled", "open"]
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    assert balances(engine, p)["cash"] == 1_000 + 2 * 2_000
    with pytest.raises(settlements.ResultRefused) as backwards:
        cancel(engine, settings, market, "bad", placed_from=end, placed_until=start)
    assert backwards.value.code == "invalid_cancellation"
    all_clean(engine, settings, market)


def test_rolling_back_a_cancellation_reverses_the_refunds_and_settles_on_known_results(
        engine, settings, market):
    other = uid("mkt")
    p = funded_player(engine, 2_000)
    single = place(engine, settings, p, 1_000, [(market, "home", "2.50")])
    parlay = place(engine, settings, p, 1_000, [(market, "home", "2.00"), (other, "x", "2.00")],
                   bet_type="parlay")
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    assert balances(engine, p)["cash"] == 2_500
    cancel(engine, settings, market, "bc")
    assert balances(engine, p)["cash"] == 2_000

    resource, replayed = uncancel(engine, settings, market, "bc")
    assert not replayed and resource["status"] == "rolled_back"
    # The single is settled again on v1 (new keys, one generation later); the parlay waits.
    assert bet_row(engine, single)["status"] == "settled"
    assert bet_row(engine, parlay)["status"] == "open"
    assert balances(engine, p) | {"cash": 2_500, "in_play": 1_000} == balances(engine, p)
    history = bet_store.get(engine.connect(), single)["settlements"]
    assert [h["kind"] for h in history] == ["settlement", "cancellation",
                                            "cancellation_rollback", "settlement"]
    cancellation = history[1]["version"]
    assert keys(engine, single)[-2:] == [f"bet:{single}:cancel:{cancellation}:rollback",
                                         f"bet:{single}:g1:v1"]
    assert uncancel(engine, settings, market, "bc")[1] is True
    post_result(engine, settings, other, 1, {"x": WIN})
    run_market(engine, settings, other, 1)
    assert balances(engine, p)["cash"] == 2_500 + 4_000
    with pytest.raises(settlements.ResultRefused) as unknown:
        uncancel(engine, settings, market, "nope")
    assert unknown.value.code == "cancellation_not_found"
    all_clean(engine, settings, market, other)


def test_a_void_result_carries_its_reason_code_into_the_bets_history(engine, settings, market):
    p = funded_player(engine, 1_000)
    voided = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    post_result(engine, settings, market, 1, {"home": {"result": "lost", "void_factor": "1",
                                                       "void_reason": 12}})
    run_market(engine, settings, market, 1)
    history = bet_store.get(engine.connect(), voided)["settlements"]
    assert history[-1]["results"][f"{market}/home"]["void_reason"] == "12"
    assert balances(engine, p)["cash"] == 1_000
    with pytest.raises(settlements.ResultRefused) as refused:
        post_result(engine, settings, market, 2, {"home": {"result": "won",
                                                           "void_reason": "12"}})
    assert refused.value.code == "invalid_result"          # a reason needs a void
    all_clean(engine, settings, market)
