"""Batches straight through commands/settlement.py: settle, resettle (delta only),
upgrade_only, clawback into debt, rollback, replays and a crash before commit — with the real
ledger and database."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import text

from commands import settlement as settlements
from ledger import AccountRef
from settlepay.db import run_in_transaction
from store import bets as bet_store
from tests.support.factories import ledger_violations
from tests.support.settlement import (
    account,
    bet_row,
    cash,
    funded_player,
    place,
    player_debt,
    post_result,
    roll_back,
    settle_inline,
    uid,
    verify_differences,
)
from workflows.contracts.settlement import Mode


@pytest.fixture
def market() -> str:
    return uid("mkt")


def run_market(engine, settings, market, version, mode=Mode.SETTLE, batch_size=3, fail=False):
    return settle_inline(engine, settings, market, version, mode, batch_size=batch_size, fail=fail)


WIN = {"result": "won"}
LOSE = {"result": "lost"}


def test_settle_pays_winners_once_and_balances(engine, settings, market):
    a, b = funded_player(engine, 10_000), funded_player(engine, 10_000)
    bets_a = [place(engine, settings, a, 1_000, [(market, "home", "2.50")]) for _ in range(4)]
    bet_b = place(engine, settings, b, 2_000, [(market, "away", "3/1")])
    assert cash(engine, a) == 6_000 and cash(engine, b) == 8_000
    assert account(engine, AccountRef.bets_in_play(a, "GBP")) == 4_000

    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE})
    out = run_market(engine, settings, market, 1)
    assert (out.processed, out.posted) == (5, 5)
    assert cash(engine, a) == 6_000 + 4 * 2_500 and cash(engine, b) == 8_000
    assert account(engine, AccountRef.bets_in_play(a, "GBP")) == 0
    assert all(bet_row(engine, x)["status"] == "settled" for x in bets_a + [bet_b])

    again = run_market(engine, settings, market, 1)      # a re-run (retry, second workflow)
    assert again.posted == 0 and cash(engine, a) == 16_000
    assert ledger_violations(engine) == []


def test_resettlement_posts_only_the_delta_linked_to_the_original(engine, settings, market):
    p = funded_player(engine, 5_000)
    winner = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    loser = place(engine, settings, p, 1_000, [(market, "away", "3.00")])
    unchanged = place(engine, settings, p, 1_000, [(market, "draw", "4.00")])
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE, "draw": LOSE})
    run_market(engine, settings, market, 1)
    assert cash(engine, p) == 2_000 + 2_000

    # Stat correction: away won, not home.
    post_result(engine, settings, market, 2, {"home": LOSE, "away": WIN, "draw": LOSE})
    out = run_market(engine, settings, market, 2)
    assert out.posted == 2                                   # the unchanged bet gets nothing
    assert cash(engine, p) == 2_000 + 3_000
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT t.idempotency_key, t.kind, o.idempotency_key AS corrects
              FROM ledger_transactions t JOIN ledger_transactions o ON o.id = t.corrects_id
             WHERE t.reference = ANY(:ids) ORDER BY t.idempotency_key"""),
            {"ids": [winner, loser, unchanged]}).all()
    assert [(r.idempotency_key, r.kind, r.corrects) for r in rows] == sorted([
        (f"bet:{loser}:v2", "resettlement", f"bet:{loser}:v1"),
        (f"bet:{winner}:v2", "resettlement", f"bet:{winner}:v1")])
    history = bet_store.get(engine.connect(), winner)["settlements"]
    assert [(s["kind"], s["version"], s["payout"], s["delta"]) for s in history] == [
        ("settlement", 1, 2_000, 2_000), ("resettlement", 2, 0, -2_000)]
    assert ledger_violations(engine) == []


def test_clawback_beyond_cash_goes_to_debt(engine, settings, market):
    p = funded_player(engine, 1_000)
    place(engine, settings, p, 1_000, [(market, "home", "5.00")])
    post_result(engine, settings, market, 1, {"home": WIN})
    run_market(engine, settings, market, 1)
    assert cash(engine, p) == 5_000
    # The player withdraws most of it (simulated by moving cash out through the ledger).
    import ledger
    from ledger import Transfer
    run_in_transaction(engine, lambda c: ledger.post(c, Transfer(
        key=f"test-withdraw:{p}", kind="withdrawal", reference=p,
        legs=(ledger.Leg(AccountRef.player_cash(p, "GBP"), -4_000),
              ledger.Leg(AccountRef.gateway_clearing("test", "GBP"), 4_000)))))
    post_result(engine, settings, market, 2, {"home": LOSE})
    run_market(engine, settings, market, 2)
    assert cash(engine, p) == 0
    assert player_debt(engine, p) == 4_000          # an open debt: withdrawals are refused
    assert ledger_violations(engine) == []


def test_upgrade_only_keeps_downgrades_out_but_applies_upgrades(engine, settings, market):
    policy = settings.model_copy(update={"resettlement_policy": "upgrade_only"})
    p = funded_player(engine, 2_000)
    a = place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    b = place(engine, settings, p, 1_000, [(market, "away", "3.00")])
    post_result(engine, policy, market, 1, {"home": WIN, "away": LOSE})
    run_market(engine, policy, market, 1)
    assert cash(engine, p) == 2_000
    post_result(engine, policy, market, 2, {"home": LOSE, "away": WIN})
    out = run_market(engine, policy, market, 2)
    assert (out.posted, out.skipped) == (1, 1)
    assert cash(engine, p) == 5_000        # the winner keeps 2,000, the new one gets 3,000
    assert bet_row(engine, a)["paid"] == 2_000 and bet_row(engine, a)["payout"] == 0
    assert bet_row(engine, b)["paid"] == 3_000
    history = bet_store.get(engine.connect(), a)["settlements"]
    assert history[-1]["applied"] is False and history[-1]["delta"] == 0


def test_rollback_reopens_bets_and_reverses_every_posting(engine, settings, market):
    p = funded_player(engine, 3_000)
    before_house = account(engine, AccountRef.house_revenue("GBP"))
    ids = [place(engine, settings, p, 1_000, [(market, sel, "2.00")])
           for sel in ("home", "away", "draw")]
    push = {"result": "lost", "void_factor": "1"}
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE, "draw": push})
    run_market(engine, settings, market, 1)
    post_result(engine, settings, market, 2, {"home": LOSE, "away": WIN, "draw": push})
    run_market(engine, settings, market, 2)
    assert cash(engine, p) == 3_000

    assert run_in_transaction(engine, lambda c: settlements.record_rollback(
        c, settings, market, 2, actor="operator:t"))
    out = run_market(engine, settings, market, 2, mode=Mode.ROLLBACK)
    assert out.posted == 3
    assert cash(engine, p) == 0
    assert account(engine, AccountRef.bets_in_play(p, "GBP")) == 3_000
    assert account(engine, AccountRef.house_revenue("GBP")) == before_house
    assert all(bet_row(engine, i)["status"] == "open" for i in ids)
    assert run_market(engine, settings, market, 2, mode=Mode.ROLLBACK).posted == 0

    # A new version settles the reopened bets afresh.
    post_result(engine, settings, market, 3, {"home": WIN, "away": LOSE, "draw": LOSE})
    run_market(engine, settings, market, 3)
    assert cash(engine, p) == 2_000
    assert ledger_violations(engine) == []


def test_a_correction_leaves_the_bets_it_cannot_change_unlocked(engine, settings, market):
    """A correction reads which bets it may change without locking the others: a bet whose
    selection's result stays the same is neither locked nor written (another transaction
    holding it does not hold the run up), a changed one gets its delta, a parlay with a leg
    on the market is planned as always, and verify finds the payouts right."""
    p, q = funded_player(engine, 5_000), funded_player(engine, 5_000)
    changed = place(engine, settings, p, 1_000, [(market, "away", "3.00")])
    same = [place(engine, settings, q, 1_000, [(market, sel, "2.00")]) for sel in ("home",
                                                                                   "draw")]
    other = uid("mkt")
    parlay = place(engine, settings, p, 1_000, [(market, "home", "2.00"), (other, "x", "2.00")],
                   bet_type="parlay")
    post_result(engine, settings, other, 1, {"x": WIN})
    run_market(engine, settings, other, 1)
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE, "draw": LOSE})
    assert run_market(engine, settings, market, 1).posted == 4
    assert cash(engine, p) == 3_000 + 4_000 and cash(engine, q) == 3_000 + 2_000

    with engine.connect() as conn:       # a first settlement reads every bet in one go
        assert settlements.store.unchanged_results(conn, market) == []
    post_result(engine, settings, market, 2, {"home": WIN, "away": WIN, "draw": LOSE})
    with engine.connect() as conn:
        assert settlements.store.unchanged_results(conn, market) == [
            "1:draw", "1:home", "2:away", "2:draw", "2:home"]
    with engine.connect() as holder:
        holder.execute(text("SELECT 1 FROM bets WHERE id = ANY(:ids) FOR UPDATE"),
                       {"ids": same})

        def correct(conn):
            conn.execute(text("SET LOCAL lock_timeout = '3s'"))
            return settlements.settle_range(conn, settings, market, 2, Mode.SETTLE, "",
                                            "\uffff", actor="system:test")
        out = run_in_transaction(engine, correct)
        holder.rollback()
    assert (out.processed, out.posted, out.changed, out.payout_delta) == (4, 1, 1, 3_000)
    assert cash(engine, p) == 3_000 + 4_000 + 3_000 and cash(engine, q) == 5_000
    assert [bet_row(engine, b)["version"] for b in same] == [1, 1]
    assert bet_row(engine, changed)["version"] == 2
    assert bet_row(engine, parlay)["status"] == "settled"
    assert verify_differences(engine, settings, market) == []
    assert run_market(engine, settings, market, 2).posted == 0     # a re-run posts nothing
    assert ledger_violations(engine) == []


def test_a_crash_before_commit_leaves_nothing_and_the_retry_pays_once(engine, settings, market):
    p = funded_player(engine, 2_000)
    place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    place(engine, settings, p, 1_000, [(market, "home", "2.00")])
    post_result(engine, settings, market, 1, {"home": WIN})
    with pytest.raises(RuntimeError, match="injected"):
        run_market(engine, settings, market, 1, fail=True)
    assert cash(engine, p) == 0
    with engine.connect() as conn:
        assert conn.execute(text(
            "SELECT count(*) FROM ledger_transactions WHERE kind = 'settlement' "
            "AND reference IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)"),
                            {"m": market}).scalar() == 0
    run_market(engine, settings, market, 1)
    run_market(engine, settings, market, 1)
    assert cash(engine, p) == 4_000


def test_results_replay_conflict_stale_and_window(engine, settings, market):
    post_result(engine, settings, market, 2, {"home": WIN})
    assert post_result(engine, settings, market, 2, {"home": WIN})[1] is True
    with pytest.raises(settlements.ResultRefused) as conflict:
        post_result(engine, settings, market, 2, {"home": LOSE})
    assert conflict.value.code == "result_version_conflict"
    with pytest.raises(settlements.ResultRefused) as stale:
        post_result(engine, settings, market, 1, {"home": LOSE})
    assert stale.value.code == "result_version_stale"
    with pytest.raises(settlements.ResultRefused) as bad:
        post_result(engine, settings, market, 3, {"home": {"result": "won", "void_factor": 0.5}})
    assert bad.value.code == "invalid_result"
    # Settled long ago: the correction window has closed.
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO market_settlements (market_id, version, state, workflow_id,
                                            first_settled_at)
            VALUES (:m, 2, 'settled', 'wf', now() - interval '100 hours')"""), {"m": market})
    with pytest.raises(settlements.ResultRefused) as late:
        post_result(engine, settings, market, 3, {"home": LOSE})
    assert late.value.code == "correction_window_closed"


def _twin_markets(engine, settings) -> list[tuple[str, list[str], list[str]]]:
    """Two markets with the same bets (stakes, prices, selections, players' bet order), each
    with players of its own: (market, players, bets in placing order) of each."""
    twins = []
    for _ in range(2):
        market = uid("mkt")
        players = [funded_player(engine, 50_000) for _ in range(3)]
        bets = [place(engine, settings, players[i % 3], 500 + 100 * i,
                      [(market, ("home", "away", "draw")[i % 3], ("2.50", "3/1", "5.0")[i % 2])])
                for i in range(11)]
        twins.append((market, players, bets))
    return twins


def _state(engine, players, bets) -> list[object]:
    """What a market's settlement left: each bet's row and each player's accounts."""
    rows = [tuple(bet_row(engine, b)[k] for k in ("status", "paid", "payout", "version",
                                                    "rollbacks")) for b in bets]
    accounts = [(cash(engine, p), account(engine, AccountRef.bets_in_play(p, "GBP")),
                 player_debt(engine, p)) for p in players]
    return [rows, accounts]


def test_a_batch_settled_page_by_page_leaves_the_ledger_as_one_page_does(
        engine, settings, monkeypatch):
    """Memory is bounded by the page: a batch never reads more than `page_size` bets at once,
    and settling, resettling and rolling back a market a page of 2 at a time moves exactly
    the money one page of everything moves (same payouts, balances, postings, verify)."""
    (paged, paged_players, paged_bets), (whole, whole_players, whole_bets) = \
        _twin_markets(engine, settings)
    pages_read: list[int] = []

    def spy(read):
        def reading(*args, **kw):
            found = read(*args, **kw)
            pages_read.append(len(found))
            return found
        return reading

    # A page is read whole (bets_in_range) or, in a correction, told apart first
    # (page_in_range: only the bets it may change are then read whole).
    for name in ("bets_in_range", "page_in_range"):
        monkeypatch.setattr(settlements.store, name, spy(getattr(settlements.store, name)))

    def run(market, version, page_size, mode=Mode.SETTLE):
        return run_in_transaction(engine, lambda c: settlements.settle_range(
            c, settings, market, version, mode, "", "\uffff", actor="system:test",
            page_size=page_size))

    steps = [(1, {"home": WIN, "away": LOSE, "draw": LOSE}, Mode.SETTLE),
             (2, {"home": LOSE, "away": WIN, "draw": {"result": "lost", "void_factor": "1"}},
              Mode.SETTLE),
             (2, None, Mode.ROLLBACK),
             (3, {"home": WIN, "away": WIN, "draw": LOSE}, Mode.SETTLE)]
    for version, selections, mode in steps:
        for market in (paged, whole):
            if selections is None:
                roll_back(engine, settings, market, version)
            else:
                post_result(engine, settings, market, version, selections)
        pages_read.clear()
        small = run(paged, version, page_size=2, mode=mode)
        assert max(pages_read) == 2 and len(pages_read) == 6    # 11 bets: 5 full pages + 1
        big = run(whole, version, page_size=100, mode=mode)
        assert (small.pages, big.pages) == (6, 1)
        assert (small.processed, small.posted, small.payout_delta, small.changed,
                small.steps) == (big.processed, big.posted, big.payout_delta, big.changed,
                                 big.steps)
        assert small.posted > 0
        assert _state(engine, paged_players, paged_bets) == \
            _state(engine, whole_players, whole_bets)
        assert verify_differences(engine, settings, paged) == []
        assert verify_differences(engine, settings, whole) == []
    assert run(paged, 3, page_size=2).posted == 0          # a re-run posts nothing
    assert ledger_violations(engine) == []


def test_pages_are_settled_without_full_collections_and_the_collector_comes_back(
        engine, settings, market, monkeypatch):
    """While a page is settled the cyclic collector runs its young generations only (a page's
    objects made it walk the whole heap again and again); its thresholds come back when the
    last page of the process is done, also after a page that failed."""
    before = gc.get_threshold()
    p = funded_player(engine, 3_000)
    for sel in ("home", "away", "draw"):
        place(engine, settings, p, 1_000, [(market, sel, "2.00")])
    post_result(engine, settings, market, 1, {"home": WIN, "away": LOSE, "draw": LOSE})
    during: list[tuple[int, int, int]] = []
    settle_page = settlements._settle_page

    def spy(*args, **kw):
        during.append(gc.get_threshold())
        return settle_page(*args, **kw)

    monkeypatch.setattr(settlements, "_settle_page", spy)
    out = run_in_transaction(engine, lambda c: settlements.settle_range(
        c, settings, market, 1, Mode.SETTLE, "", "\uffff", actor="system:test", page_size=2))
    assert (out.pages, out.posted) == (2, 3) and len(during) == 2
    assert all(t[:2] == before[:2] and t[2] >= 1 << 30 for t in during)
    assert gc.get_threshold() == before

    def broken(*args, **kw):
        raise RuntimeError("a page that fails")

    monkeypatch.setattr(settlements, "_settle_page", broken)
    post_result(engine, settings, market, 2, {"home": LOSE, "away": WIN, "draw": LOSE})
    with pytest.raises(RuntimeError):
        run_in_transaction(engine, lambda c: settlements.settle_range(
            c, settings, market, 2, Mode.SETTLE, "", "\uffff", actor="system:test"))
    assert gc.get_threshold() == before

    # Pages of several batches at once (threads): the thresholds come back with the last.
    settlements._PAGES.__enter__()
    settlements._PAGES.__enter__()
    settlements._PAGES.__exit__(None, None, None)
    assert gc.get_threshold()[2] >= 1 << 30
    settlements._PAGES.__exit__(None, None, None)
    assert gc.get_threshold() == before
