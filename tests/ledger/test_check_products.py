"""`ledger check`'s invariants of free-bet and bonus accounts (issue 15), against a ledger that
breaks each of them in one way: grants, stakes, settlements and a bonus conversion report
nothing; then each wrong posting (or account) is reported under its invariant. Everything
happens in one transaction that is rolled back: the corruptions never reach other tests."""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, text

import ledger
from ledger import AccountRef, Leg, Transfer
from ledger.check import INVARIANTS
from ledger.check import run as check

SHAPE = ("free-bet and bonus accounts are players' single-row no-negative accounts; house "
         "promotions is the house's")
KINDS = "free-bet and bonus accounts move only in the postings that may touch them"
FREE_STAKE = ("a free-bet stake moves only from the player's free-bet balance to their free "
              "bets in play, never from or to cash")
BONUS_MOVES = ("a bonus conversion moves bonus funds to the same player's cash; a forfeiture "
               "moves them to house promotions; a credit comes from house promotions")


def reported(conn: Connection, invariant: str, about: str) -> list[str]:
    """The violations of `invariant` that mention `about` (this test's own rows)."""
    assert invariant in INVARIANTS
    return [v for v in check(conn, limit=1_000)
            if v.startswith(f"{invariant}: ") and about in v]


def post(conn: Connection, key: str, kind: str, *legs: tuple[AccountRef, int]) -> str:
    result = ledger.post(conn, Transfer(key=key, kind=kind, reference=key,
                                        legs=tuple(Leg(a, n) for a, n in legs)))
    assert result.ok, result
    return f"transaction {result.transaction_id} "


def test_free_bet_and_bonus_invariants_hold_then_each_wrong_posting_is_reported(engine):
    ann, tag = f"ann-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex[:8]
    promotions = AccountRef.house_promotions("USD")
    free, free_play = AccountRef.free_bet(ann, "USD"), AccountRef.free_bets_in_play(ann, "USD")
    bonus, cash = AccountRef.bonus(ann, "USD"), AccountRef.player_cash(ann, "USD")
    with engine.connect() as conn, conn.begin() as transaction:
        healthy = [
            post(conn, f"{tag}-grant", "free_bet_grant", (promotions, -1_000), (free, 1_000)),
            post(conn, f"{tag}-stake", "bet_stake", (free, -1_000), (free_play, 1_000)),
            post(conn, f"{tag}-won", "settlement", (free_play, -1_000), (cash, 1_500),
                 (promotions, -500)),
            post(conn, f"{tag}-credit", "bonus_credit", (promotions, -800), (bonus, 800)),
            post(conn, f"{tag}-convert", "bonus_conversion", (bonus, -300), (cash, 300)),
            post(conn, f"{tag}-forfeit", "bonus_forfeit", (bonus, -500), (promotions, 500))]
        for invariant in (KINDS, FREE_STAKE, BONUS_MOVES):
            for transaction_id in healthy:
                assert reported(conn, invariant, transaction_id) == []
        assert reported(conn, SHAPE, f"player:{ann} ") == []

        stray = post(conn, f"{tag}-stray", "deposit",
                     (AccountRef.gateway_clearing("x", "USD"), -50), (free, 50))
        assert [v.endswith("(deposit) moves player_free_bet")
                for v in reported(conn, KINDS, stray)] == [True]
        cash_stake = post(conn, f"{tag}-cash-stake", "bet_stake", (cash, -100), (free_play, 100))
        assert len(reported(conn, FREE_STAKE, cash_stake)) == 1
        post(conn, f"{tag}-credit-2", "bonus_credit", (promotions, -100), (bonus, 100))
        wrong = post(conn, f"{tag}-wrong-convert", "bonus_conversion", (bonus, -100),
                     (AccountRef.player_cash(f"bob-{tag}", "USD"), 100))
        assert len(reported(conn, BONUS_MOVES, wrong)) == 1
        conn.execute(text("UPDATE ledger_accounts SET no_negative = false "
                          "WHERE owner = :o AND type = 'player_bonus'"), {"o": f"player:{ann}"})
        assert len(reported(conn, SHAPE, f"player:{ann} ")) == 1
        transaction.rollback()
