"""Cash-out through commands/bets.py with the real ledger and database: one balanced posting
(`bet:<id>:cashout`), partial cash-outs, the refusals (settled, expired quote, a known result,
bad shares), a quote replayed, the race with settlement on two interleaved connections (one
way only), a cash-out left alone by later results, corrections and rollbacks, and an
operator's reversal on a palpable error. After each: ledger check, audit verify and
settlement verify are clean."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from commands import bets
from commands import settlement as settlements
from ledger import AccountRef
from settlepay.db import run_in_transaction
from store import bets as bet_store
from store import settlements as settlement_store
from tests.support.factories import wait_until
from tests.support.products import all_clean, balances, cash_out, house
from tests.support.races import in_thread, named_connection, waiting_on_a_lock
from tests.support.settlement import (
    account,
    bet_row,
    funded_player,
    place,
    post_result,
    roll_back,
    run_market,
    settle_inline,
    uid,
)
from workflows.contracts.settlement import Mode

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


def refusal(engine, settings, bet_id, value, **kw) -> str:
    with pytest.raises(bets.BetRefused) as refused:
        cash_out(engine, settings, bet_id, value, **kw)
    return refused.value.refusal.code


def test_a_whole_cash_out_is_one_balanced_posting_and_later_results_leave_it_alone(
        engine, settings, market):
    p = funded_player(engine, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "3.00")])
    revenue = house(engine)["revenue"]

    after, replayed = cash_out(engine, settings, bet, 1_800)
    assert not replayed and after["status"] == "cashed_out"
    assert balances(engine, p)["cash"] == 1_800 and balances(engine, p)["in_play"] == 0
    assert house(engine)["revenue"] == revenue - 800           # the rest from the house
    assert keys(engine, bet) == [f"bet:{bet}:stake", f"bet:{bet}:cashout"]

    # Worked example: the market settles, is corrected, is rolled back: the cash-out stands.
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    post_result(engine, settings, market, 2, {"home": LOSE})
    run_market(engine, settings, market, 2)
    assert roll_back(engine, settings, market, 2)
    run_market(engine, settings, market, 2, Mode.ROLLBACK)
    assert balances(engine, p)["cash"] == 1_800
    assert keys(engine, bet) == [f"bet:{bet}:stake", f"bet:{bet}:cashout"]
    row = bet_row(engine, bet)
    assert (row["status"], row["paid"], row["cashed_out_value"]) == ("cashed_out", 0, 1_800)
    history = bet_store.get(engine.connect(), bet)["settlements"]
    assert [(h["kind"], h["version"], h["payout"]) for h in history] == [("cash_out", 1, 1_800)]
    all_clean(engine, settings, market)


def test_a_partial_cash_out_leaves_the_rest_of_the_stake_to_settle(engine, settings, market):
    p = funded_player(engine, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "2.50")])
    after, _ = cash_out(engine, settings, bet, 500, stake=400)
    assert after["status"] == "open" and after["cashed_out_stake"] == 400
    assert balances(engine, p) | {"cash": 500, "in_play": 600} == balances(engine, p)
    second, _ = cash_out(engine, settings, bet, 150, stake=200)
    assert second["cashed_out_stake"] == 600 and second["cashed_out_value"] == 650

    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    row = bet_row(engine, bet)
    assert (row["status"], row["paid"]) == ("settled", 1_000)      # 400 left at 2.50
    assert balances(engine, p)["cash"] == 650 + 1_000
    assert balances(engine, p)["in_play"] == 0
    assert keys(engine, bet) == [f"bet:{bet}:stake", f"bet:{bet}:cashout",
                                 f"bet:{bet}:cashout:2", f"bet:{bet}:v1"]
    # A correction resettles the remaining 400 only.
    post_result(engine, settings, market, 2, {"home": LOSE})
    run_market(engine, settings, market, 2)
    assert balances(engine, p)["cash"] == 650
    all_clean(engine, settings, market)


def test_cash_out_is_refused_once_settled_after_expiry_or_once_the_result_is_known(
        engine, settings, market):
    p = funded_player(engine, 4_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    assert refusal(engine, settings, bet, 900, expires_in=-1) == "cash_out_quote_expired"
    assert refusal(engine, settings, bet, 900, stake=0) == "invalid_cash_out"
    assert refusal(engine, settings, bet, 900, stake=1_001) == "invalid_cash_out"
    ew = place(engine, settings, p, 1_000, [(market, "horse", "5.00")], bet_type="each_way",
               place_fraction="1/4", places=3)
    assert refusal(engine, settings, ew, 300, stake=301) == "invalid_cash_out"

    # The same quote again replays; the quote id with other values is a conflict.
    expiry = datetime.now(UTC) + timedelta(minutes=1)
    first, replayed = cash_out(engine, settings, bet, 900, stake=500, quote_id="q-1",
                               expires_at=expiry)
    again, replayed_again = cash_out(engine, settings, bet, 900, stake=500, quote_id="q-1",
                                     expires_at=expiry)
    assert (replayed, replayed_again) == (False, True) and again == first
    assert refusal(engine, settings, bet, 901, stake=500, quote_id="q-1",
                   expires_at=expiry) == "cash_out_quote_conflict"
    assert balances(engine, p)["cash"] == 2_000 + 900

    # The result is recorded, the settlement has not reached the bet yet: too late.
    post_result(engine, settings, market, 1, {"home": WIN, "horse": LOSE})
    assert refusal(engine, settings, bet, 900) == "market_settled"
    run_market(engine, settings, market, 1)
    assert refusal(engine, settings, bet, 900) == "bet_settled"
    assert balances(engine, p)["cash"] == 2_000 + 900 + 1_000     # 500 left at 2.00
    all_clean(engine, settings, market)


async def test_a_cash_out_waiting_on_a_settlement_batch_is_refused_and_the_bet_is_paid_once(
        engine, settings, market):
    p = funded_player(engine, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    post_result(engine, settings, market, 1, {"home": WIN})
    name = f"cashout-{uuid.uuid4().hex[:8]}"
    request = bets.CashOutRequest("q-race", 1_500, datetime.now(UTC) + timedelta(minutes=1))
    with engine.connect() as batch:
        batch_tx = batch.begin()
        # The settlement batch has the bet locked and paid, not yet committed.
        hi = settlement_store.round_end(batch, market, "", 100)
        out = settlements.settle_range(batch, settings, market, 1, Mode.SETTLE, "", hi,
                                       actor="system:test")
        assert out.posted == 1

        def race() -> object:
            with named_connection(engine, name) as conn, conn.begin():
                return bets.cash_out(conn, settings, bet, request, actor="system:test")

        thread, outcome = in_thread(race)
        await wait_until(lambda: waiting_on_a_lock(engine, name) or not thread.is_alive(),
                         timeout=10)
        batch_tx.commit()
    thread.join(timeout=30)
    assert isinstance(outcome.get("error"), bets.BetRefused)
    assert outcome["error"].refusal.code in ("bet_settled", "market_settled")
    assert balances(engine, p)["cash"] == 2_000
    assert bet_row(engine, bet)["status"] == "settled"
    all_clean(engine, settings, market)


async def test_a_settlement_waiting_on_a_cash_out_leaves_the_cashed_out_bet_alone(
        engine, settings, market):
    p = funded_player(engine, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    name = f"result-{uuid.uuid4().hex[:8]}"
    request = bets.CashOutRequest("q-race", 1_500, datetime.now(UTC) + timedelta(minutes=1))
    with engine.connect() as cashing:
        cashing_tx = cashing.begin()
        bets.cash_out(cashing, settings, bet, request, actor="system:test")

        def result_and_settle() -> settlements.BatchOutcome:
            with named_connection(engine, name) as conn, conn.begin():
                settlements.record_result(conn, settings, market, 1, {"home": WIN},
                                          actor="system:test")
            return run_market(engine, settings, market, 1)

        thread, outcome = in_thread(result_and_settle)
        await wait_until(lambda: waiting_on_a_lock(engine, name) or not thread.is_alive(),
                         timeout=10)
        cashing_tx.commit()
    thread.join(timeout=30)
    assert "error" not in outcome, outcome
    assert balances(engine, p)["cash"] == 1_500                  # the cash-out, nothing else
    assert bet_row(engine, bet)["status"] == "cashed_out"
    assert keys(engine, bet) == [f"bet:{bet}:stake", f"bet:{bet}:cashout"]
    all_clean(engine, settings, market)


def test_an_operator_reverses_a_palpable_cash_out_and_the_bet_settles_on_its_result(
        engine, settings, market):
    p = funded_player(engine, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    cash_out(engine, settings, bet, 5_000)                      # a palpable error
    post_result(engine, settings, market, 1, {"home": LOSE})
    run_market(engine, settings, market, 1)
    with pytest.raises(bets.BetRefused) as off:
        run_in_transaction(engine, lambda c: bets.reverse_cash_out(
            c, settings, bet, reason="palpable", actor="operator:test"))
    assert off.value.refusal.code == "cash_out_reversal_disabled"

    # The player spent part of it meanwhile.
    import ledger
    from ledger import Transfer
    run_in_transaction(engine, lambda c: ledger.post(c, Transfer(
        key=f"test-spend:{p}", kind="withdrawal", reference=p,
        legs=(ledger.Leg(AccountRef.player_cash(p, "GBP"), -4_000),
              ledger.Leg(AccountRef.gateway_clearing("test", "GBP"), 4_000)))))
    enabled = settings.model_copy(update={"cash_out_reversal_enabled": True})
    after = run_in_transaction(engine, lambda c: bets.reverse_cash_out(
        c, enabled, bet, reason="palpable", actor="operator:test"))
    # Reversed, then settled against the known result (lost) at once.
    assert after["status"] == "settled" and after["paid"] == 0
    assert balances(engine, p)["cash"] == 0 and balances(engine, p)["debt"] == -4_000
    assert account(engine, AccountRef.bets_in_play(p, "GBP")) == 0
    assert keys(engine, bet) == [f"bet:{bet}:stake", f"bet:{bet}:cashout",
                                 f"bet:{bet}:cashout:reversal", f"bet:{bet}:v1"]
    assert settle_inline(engine, settings, market, 1).posted == 0
    all_clean(engine, settings, market)
