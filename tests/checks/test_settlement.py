"""checks/settlement.py through `settlepay settlement verify <market>`: exit 0 when every payout
matches the ledger, exit 1 with a line per difference when the ledger and the recomputed
payouts disagree."""

from __future__ import annotations

import pytest

import ledger
from ledger import AccountRef, Transfer
from settlepay import cli
from settlepay.config import get_settings
from settlepay.db import run_in_transaction
from tests.support.settlement import funded_player, place, post_result, run_market, uid


@pytest.fixture
def market() -> str:
    return uid("mkt")


def settle_market(engine, settings, market, version, selections):
    """Post a result and run its settlement the way the workflow does (begin, batches, finish)."""
    post_result(engine, settings, market, version, selections)
    run_market(engine, settings, market, version, batch_size=100)


def verify(monkeypatch, database_url, market, capsys):
    monkeypatch.setenv("SETTLEPAY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        code = cli.main(["settlement", "verify", market])
    finally:
        get_settings.cache_clear()
    return code, capsys.readouterr()


def test_verify_passes_then_catches_a_stray_payment(engine, settings, market, database_url,
                                                     monkeypatch, capsys):
    p = funded_player(engine, 5_000)
    winner = place(engine, settings, p, 1_000, [(market, "a", "2.00")])
    place(engine, settings, p, 1_000, [(market, "b", "2.00")])
    settle_market(engine, settings, market, 1, {"a": {"result": "won"}, "b": {"result": "lost"}})
    settle_market(engine, settings, market, 2,
                  {"a": {"result": "won", "void_factor": "0.5"}, "b": {"result": "lost"}})

    code, out = verify(monkeypatch, database_url, market, capsys)
    assert code == 0, out.out + out.err
    assert "2 bets, payouts match the ledger" in out.out

    # Someone pays the winner again outside the settlement code: verify must notice.
    run_in_transaction(engine, lambda c: ledger.post(c, Transfer(
        key=f"stray:{winner}", kind="resettlement", reference=winner,
        legs=(ledger.Leg(AccountRef.player_cash(p, "GBP"), 500),
              ledger.Leg(AccountRef.house_revenue("GBP"), -500)))))
    code, out = verify(monkeypatch, database_url, market, capsys)
    assert code == 1
    assert f"bet {winner}: ledger moved 2000 to the player, the bet says 1500 was paid" in out.out


def test_verify_catches_a_bet_left_open(engine, settings, market, database_url, monkeypatch,
                                        capsys):
    p = funded_player(engine, 1_000)
    settle_market(engine, settings, market, 1, {"a": {"result": "won"}})
    # A bet slipped onto the market after it settled (bypassing the intake check): it stays open.
    from sqlalchemy import text
    bet = place(engine, settings, p, 1_000, [(market + "_x", "a", "2.00")])
    with engine.begin() as conn:
        conn.execute(text("UPDATE bet_legs SET market_id = :m WHERE bet_id = :b"),
                     {"m": market, "b": bet})
    code, out = verify(monkeypatch, database_url, market, capsys)
    assert code == 1
    assert f"bet {bet}: all results known and the market settled, but the bet is open" in out.out


def test_verify_reads_page_by_page_and_finds_what_one_page_finds(engine, settings, market):
    """Verify holds one page of bets at a time: pages of 2 over 7 bets check every bet and
    report exactly the differences that reading them all at once reports."""
    from checks import settlement as checks

    p = funded_player(engine, 20_000)
    bets = [place(engine, settings, p, 1_000, [(market, "ab"[i % 2], "2.00")]) for i in range(7)]
    settle_market(engine, settings, market, 1, {"a": {"result": "won"}, "b": {"result": "lost"}})
    with engine.connect() as conn:
        assert checks.run(conn, settings, market, page_size=2) == (7, [])
        assert [len(page.bets) for page in checks.pages(conn, settings, market, 2)] == \
            [2, 2, 2, 1]
    for stray in (bets[0], bets[5]):      # paid again outside settlement, in two pages
        run_in_transaction(engine, lambda c, b=stray: ledger.post(c, Transfer(
            key=f"stray:{b}", kind="resettlement", reference=b,
            legs=(ledger.Leg(AccountRef.player_cash(p, "GBP"), 500),
                  ledger.Leg(AccountRef.house_revenue("GBP"), -500)))))
    with engine.connect() as conn:
        paged = checks.run(conn, settings, market, page_size=2)
        whole = checks.run(conn, settings, market, page_size=None)
    assert paged[0] == whole[0] == 7
    assert sorted(paged[1]) == sorted(whole[1]) and len(paged[1]) == 2
    assert {line.split(":")[0] for line in paged[1]} == {f"bet {bets[0]}", f"bet {bets[5]}"}
