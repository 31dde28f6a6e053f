"""`settlepay settlement verify MARKET`: a market's settlement, recomputed from its stored
results and compared with what the ledger moved. Each check is an invariant in words and the
function that returns one line per bet breaking it; `run(conn, settings, market)` returns
(bets checked, every line): an empty list means the market is consistent.

Facts read once, in the caller's snapshot (one REPEATABLE READ transaction from the CLI):
the market's bets (not rejected) with their legs, the sums the ledger's settlement postings
(settlement, resettlement, settlement_rollback) moved per bet to the player (cash + debt) and
in bets-in-play, the current results of every market the bets touch, the market's run state.
Must never: write.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from domain.settlement import Pending, Settled, settle
from domain.settlement.plan import BetStatus, domain_bet
from settlepay.config import Settings
from store import settlements as store


@dataclass(frozen=True)
class CheckedBet:
    id: str
    stake: int
    status: str
    paid: int
    moved_to_player: int        # by the ledger's settlement postings of the bet
    moved_in_play: int
    recomputed: Settled | Pending   # from the current results
    needs_review: str | None = None  # flagged by settlement: reported, left as it was


@dataclass(frozen=True)
class Facts:
    bets: list[CheckedBet]
    market_state: str | None
    upgrade_only: bool


def _paid_as_moved(facts: Facts) -> list[str]:
    return [f"bet {b.id}: ledger moved {b.moved_to_player} to the player, the bet says "
            f"{b.paid} was paid" for b in facts.bets if b.moved_to_player != b.paid]


def _stake_left_in_play_once(facts: Facts) -> list[str]:
    found = []
    for b in facts.bets:
        expected = -b.stake if b.status == BetStatus.SETTLED else 0
        if b.moved_in_play != expected:
            found.append(f"bet {b.id} ({b.status}): settlement postings moved {b.moved_in_play} "
                         f"in bets-in-play, expected {expected}")
    return found


def _paid_as_recomputed(facts: Facts) -> list[str]:
    found = []
    for b in facts.bets:
        if (b.status != BetStatus.SETTLED or isinstance(b.recomputed, Pending)
                or b.needs_review is not None):
            continue
        payout = b.recomputed.payout
        if payout != b.paid and not (facts.upgrade_only and b.paid > payout):
            found.append(f"bet {b.id}: results give {payout}, paid {b.paid}")
    return found


def _none_left_open(facts: Facts) -> list[str]:
    if facts.market_state != "settled":
        return []
    return [f"bet {b.id}: all results known and the market settled, but the bet is open"
            for b in facts.bets
            if b.status == BetStatus.OPEN and not isinstance(b.recomputed, Pending)
            and b.needs_review is None]


# (invariant in words, the function returning one line per bet that breaks it)
CHECKS: list[tuple[str, Callable[[Facts], list[str]]]] = [
    ("ledger postings to the player equal what each bet says was paid", _paid_as_moved),
    ("a settled bet's stake left bets-in-play exactly once; an open bet's postings net to zero",
     _stake_left_in_play_once),
    ("each settled bet's payout recomputed from the current results equals what was paid "
     "(upgrade_only: what was paid may be higher, never lower; a bet flagged for review is "
     "left as it was)", _paid_as_recomputed),
    ("no bet is left open once its markets have results and the market is settled "
     "(but a bet flagged for review, which settlement reported instead)", _none_left_open),
]


def facts(conn: Connection, settings: Settings, market_id: str) -> Facts:
    rows = conn.execute(text("""
        SELECT b.id, b.stake, b.bet_type, b.place_fraction, b.place_count, b.status, b.paid,
               b.needs_review,
               (SELECT array_agg(ARRAY[l.market_id, l.selection_id, l.price_num::text,
                                       l.price_den::text] ORDER BY l.leg_no)
                  FROM bet_legs l WHERE l.bet_id = b.id) AS legs
          FROM bets b
         WHERE b.id IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)
           AND b.status <> 'rejected'
         ORDER BY b.id"""), {"m": market_id}).all()
    moved_rows = conn.execute(text("""
        SELECT t.reference,
               coalesce(sum(e.amount) FILTER (WHERE a.type IN ('player_cash', 'player_debt')),
                        0) AS player,
               coalesce(sum(e.amount) FILTER (WHERE a.type = 'bets_in_play'), 0) AS in_play
          FROM ledger_transactions t
          JOIN ledger_entries e ON e.transaction_id = t.id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE t.result = 'ok'
           AND t.kind IN ('settlement', 'resettlement', 'settlement_rollback')
           AND t.reference IN (SELECT bet_id FROM bet_legs WHERE market_id = :m)
         GROUP BY t.reference"""), {"m": market_id}).all()
    moved = {r.reference: (int(r.player), int(r.in_play)) for r in moved_rows}
    legs = {r.id: tuple((m, s, int(num), int(den)) for m, s, num, den in r.legs) for r in rows}
    results, _ = store.current_results(conn, {leg[0] for ls in legs.values() for leg in ls})
    run = store.run_row(conn, market_id)

    def checked(row: Any) -> CheckedBet:
        player, in_play = moved.get(row.id, (0, 0))
        bet = domain_bet(row.bet_type, int(row.stake), legs[row.id], row.place_fraction,
                         row.place_count)
        return CheckedBet(row.id, int(row.stake), row.status, int(row.paid), player, in_play,
                          settle(bet, results), row.needs_review)

    return Facts([checked(r) for r in rows], run.state if run is not None else None,
                 settings.resettlement_policy == "upgrade_only")


def run(conn: Connection, settings: Settings, market_id: str) -> tuple[int, list[str]]:
    """(bets checked, one line per difference); an empty list means the market is consistent."""
    found = facts(conn, settings, market_id)
    return len(found.bets), [line for _, check in CHECKS for line in check(found)]


# The name bench/settlement.py and older callers use.
differences = run
