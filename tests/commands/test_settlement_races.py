"""Settlement under races, reruns and retries (issue 9 items 1, 2a, 6 and 15), each scenario
reproduced against the real commands, ledger and database; after each, `ledger check` and
`settlement verify` are clean."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import Engine, text

from audit.verify import verify as audit_verify
from commands import bets
from commands import settlement as settlements
from ledger import AccountRef
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from tests.support.factories import audit_actions, ledger_violations, wait_until
from tests.support.races import in_thread, named_connection, waiting_on_a_lock
from tests.support.settlement import (
    account,
    bet_row,
    cash,
    funded_player,
    place,
    post_result,
    roll_back,
    run_market,
    settle_inline,
    uid,
    verify_differences,
)
from workflows.contracts.settlement import VERSION_MAX, Mode, SettlementRefusal

WIN = {"result": "won"}
LOSE = {"result": "lost"}


@pytest.fixture
def market() -> str:
    return uid("mkt")


def clean(engine: Engine, settings: Settings, *markets: str) -> None:
    """`ledger check`, `audit verify` and `settlement verify` of each market all pass."""
    assert ledger_violations(engine) == []
    with engine.connect() as conn:
        assert audit_verify(conn).problems == []
    for market in markets:
        assert verify_differences(engine, settings, market) == []


def ledger_keys(engine: Engine, bet_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("""SELECT idempotency_key FROM ledger_transactions
                                          WHERE reference = :b AND result = 'ok' ORDER BY id"""),
                                 {"b": bet_id}).scalars())


# --- item 1: a late rollback batch must not undo a newer version ---------------------------

def test_a_late_rollback_batch_leaves_the_newer_versions_settlement_alone(engine, settings,
                                                                         market):
    p = funded_player(engine, 2_000)
    ids = [place(engine, settings, p, 1_000, [(market, "home", "2.50")]) for _ in range(2)]
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1, workflow_id=f"settle-{market}-v1")
    assert cash(engine, p) == 5_000

    # v1 is rolled back; its run begins, but its batches are late ...
    assert roll_back(engine, settings, market, 1)
    rollback_run = f"rollback-{market}-v1"
    run_in_transaction(engine, lambda c: settlements.begin(c, settings, market, 1,
                                                           Mode.ROLLBACK, rollback_run))
    # ... v2 arrives and its run settles every bet first ...
    post_result(engine, settings, market, 2, {"home": LOSE})
    run_market(engine, settings, market, 2, workflow_id=f"settle-{market}-v2")
    assert cash(engine, p) == 0 and all(bet_row(engine, b)["status"] == "settled" for b in ids)

    # ... then the rollback's batch for the same range runs: it must not reverse v2.
    late = settle_inline(engine, settings, market, 1, Mode.ROLLBACK)
    assert late.posted == 0
    run_in_transaction(engine, lambda c: settlements.finish(c, market, 1, Mode.ROLLBACK,
                                                            rollback_run, late.processed, 0))
    assert all(bet_row(engine, b)["status"] == "settled" for b in ids)
    assert account(engine, AccountRef.bets_in_play(p, "GBP")) == 0
    assert cash(engine, p) == 0
    # v2 run again (a retry): nothing to post, no idempotency conflict.
    assert settle_inline(engine, settings, market, 2).posted == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT state, version FROM market_settlements "
                                 "WHERE market_id = :m"), {"m": market}).one() == ("settled", 2)
    clean(engine, settings, market)


def test_a_bet_settled_again_after_a_rollback_never_reuses_a_settlement_key(engine, settings,
                                                                           market):
    p = funded_player(engine, 1_000)
    bet = place(engine, settings, p, 1_000, [(market, "home", "3.00")])
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    assert roll_back(engine, settings, market, 1)
    run_market(engine, settings, market, 1, Mode.ROLLBACK)
    assert bet_row(engine, bet)["status"] == "open"
    post_result(engine, settings, market, 2, {"home": WIN})
    run_market(engine, settings, market, 2)
    assert roll_back(engine, settings, market, 2)
    run_market(engine, settings, market, 2, Mode.ROLLBACK)
    post_result(engine, settings, market, 3, {"home": LOSE})
    run_market(engine, settings, market, 3)

    keys = ledger_keys(engine, bet)
    assert keys == [f"bet:{bet}:stake", f"bet:{bet}:v1", f"bet:{bet}:rollback:v1",
                    f"bet:{bet}:g1:v2", f"bet:{bet}:g1:rollback:v2", f"bet:{bet}:g2:v3"]
    assert len(set(keys)) == len(keys)
    assert cash(engine, p) == 0 and bet_row(engine, bet)["paid"] == 0
    clean(engine, settings, market)


# --- item 2a: bet placement and result recording are ordered per market --------------------

def _bet_request(player_id: str, market: str) -> bets.BetRequest:
    return bets.BetRequest(bet_id=uid("bet"), player_id=player_id, stake=1_000, currency="GBP",
                           bet_type="single", legs=(bets.LegRequest(market, "home", "2.00"),))


async def test_a_bet_that_checked_then_waited_while_the_result_came_is_settled(engine, settings,
                                                                               market):
    p = funded_player(engine, 1_000)
    req = _bet_request(p, market)
    bet_name, result_name = (f"{what}-{uuid.uuid4().hex[:8]}" for what in ("bet", "result"))
    with engine.connect() as blocker:
        blocker_tx = blocker.begin()
        # Something else holds the player's cash row: the bet will check its market, then
        # wait here (at its stake posting).
        blocker.execute(text("""SELECT b.shard FROM ledger_balances b
                                  JOIN ledger_accounts a ON a.id = b.account_id
                                 WHERE a.owner = :owner AND a.type = 'player_cash'
                                   FOR UPDATE OF b"""), {"owner": f"player:{p}"})

        def place_bet() -> bets.Placed:
            with named_connection(engine, bet_name) as conn, conn.begin():
                return bets.place(conn, settings, req, actor="system:test")

        def record_and_settle() -> settlements.BatchOutcome:
            with named_connection(engine, result_name) as conn, conn.begin():
                settlements.record_result(conn, settings, market, 1, {"home": WIN},
                                          actor="system:test")
            return run_market(engine, settings, market, 1)

        bet_thread, bet_outcome = in_thread(place_bet)
        await wait_until(lambda: waiting_on_a_lock(engine, bet_name), timeout=10)
        result_thread, result_outcome = in_thread(record_and_settle)
        # The result waits for the bet (per-market lock), or, without it, is recorded and the
        # market settles while the bet is still waiting.
        await wait_until(lambda: waiting_on_a_lock(engine, result_name)
                         or not result_thread.is_alive(), timeout=10)
        blocker_tx.rollback()
    bet_thread.join(timeout=30)
    result_thread.join(timeout=30)
    assert "error" not in bet_outcome and "error" not in result_outcome, (bet_outcome,
                                                                          result_outcome)
    placed = bet_outcome["value"]
    if placed.refusal is None:      # taken: then it must have been settled
        row = bet_row(engine, placed.bet["id"])
        assert row["status"] == "settled" and row["paid"] == 2_000
        assert cash(engine, p) == 2_000
    else:                           # or refused, its stake never taken
        assert cash(engine, p) == 1_000
    assert account(engine, AccountRef.bets_in_play(p, "GBP")) == 0
    clean(engine, settings, market)


async def test_a_bet_placed_while_the_result_is_being_recorded_is_refused(engine, settings,
                                                                         market):
    p = funded_player(engine, 1_000)
    name = f"bet-{uuid.uuid4().hex[:8]}"
    with engine.connect() as result_conn:
        result_tx = result_conn.begin()
        settlements.record_result(result_conn, settings, market, 1, {"home": WIN},
                                  actor="system:test")

        def place_bet() -> bets.Placed:
            with named_connection(engine, name) as conn, conn.begin():
                return bets.place(conn, settings, _bet_request(p, market),
                                  actor="system:test")

        thread, outcome = in_thread(place_bet)
        await wait_until(lambda: waiting_on_a_lock(engine, name) or not thread.is_alive(),
                         timeout=10)
        result_tx.commit()
    thread.join(timeout=30)
    assert "error" not in outcome, outcome
    placed = outcome["value"]
    assert placed.refusal is not None and placed.refusal.code == "market_settled"
    run_market(engine, settings, market, 1)
    assert cash(engine, p) == 1_000
    clean(engine, settings, market)


# --- item 6: batches that fail forever -------------------------------------------------------

def test_a_parlay_whose_result_versions_sum_past_32_bits_settles(engine, settings, market):
    other = uid("mkt")
    p = funded_player(engine, 1_000)
    parlay = place(engine, settings, p, 1_000, [(market, "a", "2.00"), (other, "b", "2.00")],
                   bet_type="parlay")
    first, second = 2_000_000_000, 2_100_000_000          # epoch-second style versions
    post_result(engine, settings, market, first, {"a": WIN})
    run_market(engine, settings, market, first)
    post_result(engine, settings, other, second, {"b": WIN})
    out = run_market(engine, settings, other, second)
    assert out.posted == 1
    row = bet_row(engine, parlay)
    assert row["status"] == "settled" and row["version"] == first + second
    assert cash(engine, p) == 4_000
    clean(engine, settings, market, other)


def test_a_batch_holding_one_impossible_bet_settles_the_others_and_flags_that_one(
        engine, settings, market):
    p = funded_player(engine, 3_000)
    normal = [place(engine, settings, p, 1_000, [(market, "home", "2.00")]) for _ in range(2)]
    impossible = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    with engine.begin() as conn:   # taken before payouts were bounded at intake
        conn.execute(text("UPDATE bet_legs SET price_num = :n, price_den = 1 WHERE bet_id = :b"),
                     {"n": 10**17, "b": impossible})
    post_result(engine, settings, market, 1, {"home": WIN})
    out = run_market(engine, settings, market, 1, parts=1)
    assert out.posted == 2 and out.needs_review == 1
    assert all(bet_row(engine, b)["status"] == "settled" for b in normal)
    flagged = bet_row(engine, impossible)
    assert flagged["status"] == "open" and flagged["needs_review"]
    assert cash(engine, p) == 4_000
    assert account(engine, AccountRef.bets_in_play(p, "GBP")) == 1_000
    assert "settlement.bets_need_review" in audit_actions(engine, market)
    assert settle_inline(engine, settings, market, 1, parts=1).posted == 0   # not retried
    clean(engine, settings, market)


def test_a_result_version_beyond_the_bound_is_refused_before_anything_is_written(
        engine, settings, market):
    with pytest.raises(settlements.ResultRefused) as refused:
        post_result(engine, settings, market, VERSION_MAX + 1, {"home": WIN})
    assert refused.value.code == SettlementRefusal.INVALID_RESULT
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM market_results WHERE market_id = :m"),
                            {"m": market}).scalar() == 0


# --- item 15: audit only what happened; bets.settled per partner -----------------------------

def test_begin_of_an_older_versions_late_run_writes_no_audit_record(engine, settings, market):
    p = funded_player(engine, 1_000)
    place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    post_result(engine, settings, market, 1, {"home": WIN})
    post_result(engine, settings, market, 2, {"home": LOSE})
    run_market(engine, settings, market, 2, workflow_id=f"settle-{market}-v2")
    before = audit_actions(engine, market)
    # The run of v1 starts late: it changes nothing about the market's run, so no record.
    state = run_in_transaction(engine, lambda c: settlements.begin(
        c, settings, market, 1, Mode.SETTLE, f"settle-{market}-v1"))
    assert state == "settled"
    # A retried begin of the market's own run changes nothing either.
    run_in_transaction(engine, lambda c: settlements.begin(
        c, settings, market, 2, Mode.SETTLE, f"settle-{market}-v2"))
    assert audit_actions(engine, market) == before
    clean(engine, settings, market)


def test_bets_settled_events_carry_their_partner_and_never_mix_partners(engine, settings,
                                                                       market):
    partners = [f"partner-{uuid.uuid4().hex[:8]}" for _ in range(2)]
    players = [funded_player(engine, 2_000, partner_id=partner) for partner in partners]
    placed = {player: [place(engine, settings, player, 1_000, [(market, "home", "2.00")])
                       for _ in range(2)] for player in players}
    post_result(engine, settings, market, 1, {"home": WIN})
    settle_inline(engine, settings, market, 1, parts=1, batch_size=10)
    assert roll_back(engine, settings, market, 1)
    settle_inline(engine, settings, market, 1, Mode.ROLLBACK, parts=1, batch_size=10)
    with engine.connect() as conn:
        rows = conn.execute(text("""SELECT event_type, partner_id, payload FROM outbox_events
                                     WHERE aggregate_id = :m AND event_type LIKE 'bets.%'
                                     ORDER BY id"""), {"m": market}).all()
    assert sorted((r.event_type, r.partner_id) for r in rows) == sorted(
        (event, partner) for event in ("bets.settled", "bets.rolled_back")
        for partner in partners)
    for row in rows:
        payload = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
        assert payload["partner_id"] == row.partner_id
        player = players[partners.index(row.partner_id)]
        assert sorted(b["bet_id"] for b in payload["bets"]) == sorted(placed[player])
    clean(engine, settings, market)
