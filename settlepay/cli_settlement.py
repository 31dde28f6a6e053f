"""`settlepay settlement verify <market>`: recompute every payout of a market from its stored
results and compare it with what the ledger actually moved. Exit 1 on any difference.

What is checked, per bet on the market (each statement is one line of the report):
  1. the ledger's settlement postings for the bet (settlement, resettlement, rollback) moved
     to the player (cash + debt) exactly what the bet says was paid;
  2. a settled bet's stake left bets-in-play exactly once; an open bet's postings net to zero;
  3. a settled bet's payout recomputed from the current results equals what was paid (policy
     `upgrade_only`: what was paid may be higher, never lower);
  4. once the market is settled, no bet whose markets all have results is still open.
Read-only: one REPEATABLE READ snapshot, nothing is written.
"""

from __future__ import annotations

import argparse

from sqlalchemy import Connection, text

from domain.settlement import Pending, settle
from settlepay.cli_commands import USAGE, NoDatabase, in_one_snapshot, report
from settlepay.config import Settings, get_settings
from store import settlements

CHECKS = [
    "ledger postings to the player equal what each bet says was paid",
    "a settled bet's stake left bets-in-play exactly once; an open bet's postings net to zero",
    "each settled bet's payout recomputed from the current results equals what was paid",
    "no bet is left open once its markets have results and the market is settled",
]


def differences(conn: Connection, settings: Settings, market_id: str) -> tuple[int, list[str]]:
    """(bets checked, one line per difference); an empty list means the market is consistent."""
    bets = conn.execute(text("""
        SELECT b.id, b.stake, b.bet_type, b.place_fraction, b.place_count, b.status, b.paid,
               (SELECT array_agg(ARRAY[l.market_id, l.selection_id, l.price_num::text, l.price_den::text]
                                 ORDER BY l.leg_no) FROM bet_legs l WHERE l.bet_id = b.id) AS legs
          FROM bets b
         WHERE b.id IN (SELECT bet_id FROM bet_legs WHERE market_id = :m) AND b.status <> 'rejected'
         ORDER BY b.id"""), {"m": market_id}).all()
    ledger_rows = conn.execute(text("""
        SELECT t.reference,
               coalesce(sum(e.amount) FILTER (WHERE a.type IN ('player_cash', 'player_debt')), 0) AS player,
               coalesce(sum(e.amount) FILTER (WHERE a.type = 'bets_in_play'), 0) AS in_play
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE t.result = 'ok' AND t.kind IN ('settlement', 'resettlement', 'settlement_rollback')
           AND t.reference IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)
         GROUP BY t.reference"""), {"m": market_id}).all()
    moved = {r.reference: (int(r.player), int(r.in_play)) for r in ledger_rows}
    markets = {leg[0] for b in bets for leg in b.legs}
    results, _ = settlements.current_results(conn, markets)
    market_state = conn.execute(text("SELECT state FROM market_settlements WHERE market_id = :m"),
                                {"m": market_id}).scalar()
    upgrade_only = settings.resettlement_policy == "upgrade_only"

    found: list[str] = []
    for b in bets:
        player, in_play = moved.get(b.id, (0, 0))
        if player != b.paid:
            found.append(f"bet {b.id}: ledger moved {player} to the player, the bet says {b.paid} was paid")
        expected_in_play = -b.stake if b.status == "settled" else 0
        if in_play != expected_in_play:
            found.append(f"bet {b.id} ({b.status}): settlement postings moved {in_play} in bets-in-play, "
                         f"expected {expected_in_play}")
        legs = [(m, s, int(pn), int(pd)) for m, s, pn, pd in b.legs]
        settled = settle(settlements.domain_bet(b.bet_type, b.stake, legs, b.place_fraction, b.place_count), results)
        if isinstance(settled, Pending):
            continue
        if b.status == "settled":
            if settled.payout != b.paid and not (upgrade_only and b.paid > settled.payout):
                found.append(f"bet {b.id}: results give {settled.payout}, paid {b.paid}")
        elif market_state == "settled":
            found.append(f"bet {b.id}: all results known and the market settled, but the bet is open")
    return len(bets), found


def settlement_verify(args: argparse.Namespace) -> int:
    try:
        checked, found = in_one_snapshot(
            lambda conn: differences(conn, get_settings(), args.market_id))
    except NoDatabase:
        return USAGE
    return report(f"settlement verify {args.market_id}", CHECKS, found, "DIFFERENCE",
                  f"{checked} bets, payouts match the ledger",
                  f"{len(found)} difference(s) in {checked} bets")
