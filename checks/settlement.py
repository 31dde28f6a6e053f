"""`settlepay settlement verify MARKET`: a market's settlement, recomputed from its stored
results and compared with what the ledger moved. Each check is an invariant in words and the
function that returns one line per bet breaking it; `run(conn, settings, market)` returns
(bets checked, every line): an empty list means the market is consistent.

Facts read a page of bets at a time (`PAGE_SIZE`, keyset on the bet id; memory is bounded by
the page), in the caller's snapshot (one REPEATABLE READ transaction from the CLI): the
market's bets (not rejected) with their legs, funding, cash-outs and cancellation; the sums
the ledger's postings of each bet after its stake moved to the player (cash, debt, bonus funds,
free bet) and in its in-play account, by family: settlement (settlement, resettlement,
settlement_rollback), cash-out (cash_out, cash_out_reversal), cancellation (bet_cancel,
bet_cancel_rollback); the current results of every market the bets touch; the market's run
state. Free bets, bonus stakes, cash-outs and cancellations are checked as the invariants say.
Must never: write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, text

from domain.settlement import Pending, Settled
from domain.settlement.plan import (
    BetStatus,
    Funding,
    Settler,
    StoredBet,
    refund_for,
    returns_for,
)
from settlepay.config import Settings
from store import settlements as store
from store.settlements import BET_COLUMNS as _BET_COLUMNS

# Ledger transaction kinds that move a bet's money after its stake, by family.
SETTLE_KINDS = ("settlement", "resettlement", "settlement_rollback")
CASH_OUT_KINDS = ("cash_out", "cash_out_reversal")
CANCEL_KINDS = ("bet_cancel", "bet_cancel_rollback")
FINAL_STATUSES = (BetStatus.SETTLED, BetStatus.CANCELLED, BetStatus.CASHED_OUT)


@dataclass(frozen=True)
class Moved:
    """What one family of a bet's postings moved: to the player (cash, debt, bonus funds, free
    bet; for a cash bet also house promotions, where a forfeited bonus's share goes) and in
    its in-play account."""
    player: int = 0
    in_play: int = 0


@dataclass(frozen=True)
class CheckedBet:
    id: str
    stake: int
    status: str
    paid: int
    moved_to_player: int        # by the ledger's postings of the bet after its stake
    moved_in_play: int
    recomputed: Settled | Pending | None   # from the current results (None: nothing in play)
    needs_review: str | None = None  # flagged by settlement: reported, left as it was
    stored: StoredBet | None = None  # the bet as settlement reads it (remaining stake)
    cashed_out_stake: int = 0
    cashed_out_value: int = 0
    by_family: dict[str, Moved] = field(default_factory=dict)

    @property
    def returned(self) -> int:
        """What the bet says went back to the player: paid, cash-outs, the free bet."""
        free_bet = self.stored.returned_free_bet if self.stored is not None else 0
        return self.paid + self.cashed_out_value + free_bet


@dataclass(frozen=True)
class Facts:
    bets: list[CheckedBet]
    market_state: str | None
    upgrade_only: bool


def _paid_as_moved(facts: Facts) -> list[str]:
    return [f"bet {b.id}: ledger moved {b.moved_to_player} to the player, the bet says "
            f"{b.returned} was paid" for b in facts.bets if b.moved_to_player != b.returned]


def _stake_left_in_play_once(facts: Facts) -> list[str]:
    found = []
    for b in facts.bets:
        expected = -b.stake if b.status in FINAL_STATUSES else -b.cashed_out_stake
        if b.moved_in_play != expected:
            found.append(f"bet {b.id} ({b.status}): settlement postings moved {b.moved_in_play} "
                         f"in bets-in-play, expected {expected}")
    return found


def _paid_as_recomputed(facts: Facts) -> list[str]:
    found = []
    for b in facts.bets:
        if (b.status != BetStatus.SETTLED or not isinstance(b.recomputed, Settled)
                or b.needs_review is not None or b.stored is None):
            continue
        expected = returns_for(b.stored, b.recomputed)
        if expected == b.stored.returned:
            continue
        if facts.upgrade_only and b.stored.returned.total > expected.total:
            continue   # a downgrade kept out
        if expected.paid != b.paid:
            found.append(f"bet {b.id}: results give {expected.paid}, paid {b.paid}")
        elif expected.free_bet != b.stored.returned_free_bet:
            found.append(f"bet {b.id}: results return a free bet of {expected.free_bet}, "
                         f"{b.stored.returned_free_bet} was returned")
        else:
            found.append(f"bet {b.id}: the bonus share of its return is {expected.bonus}, "
                         f"{b.stored.paid_bonus} went to bonus funds")
    return found


def _none_left_open(facts: Facts) -> list[str]:
    if facts.market_state != "settled":
        return []
    return [f"bet {b.id}: all results known and the market settled, but the bet is open"
            for b in facts.bets
            if b.status == BetStatus.OPEN and isinstance(b.recomputed, Settled)
            and b.needs_review is None]


def _cash_outs_moved_their_values(facts: Facts) -> list[str]:
    found = []
    for b in facts.bets:
        moved = b.by_family.get("cash_out", Moved())
        if moved.player != b.cashed_out_value or moved.in_play != -b.cashed_out_stake:
            found.append(f"bet {b.id}: cash-out postings moved {moved.player} to the player and "
                         f"{moved.in_play} in play; its cash-outs say {b.cashed_out_value} for "
                         f"{b.cashed_out_stake} of its stake")
    return found


def _cashed_out_bets_left_alone(facts: Facts) -> list[str]:
    found = []
    for b in facts.bets:
        if b.status != BetStatus.CASHED_OUT:
            continue
        for family in ("settle", "cancel"):
            moved = b.by_family.get(family, Moved())
            if moved != Moved() or b.paid:
                found.append(f"bet {b.id} (cashed out): its {family} postings net "
                             f"{moved.player} to the player and {moved.in_play} in play; paid "
                             f"{b.paid}")
    return found


def _cancelled_bets_refunded_in_full(facts: Facts) -> list[str]:
    found = []
    for b in facts.bets:
        if b.status != BetStatus.CANCELLED or b.stored is None:
            continue
        refund = refund_for(b.stored)
        if (b.paid, b.stored.paid_bonus, b.stored.returned_free_bet) != (
                refund.paid, refund.bonus, refund.free_bet):
            found.append(f"bet {b.id} (cancelled): returned {b.paid} (bonus "
                         f"{b.stored.paid_bonus}, free bet {b.stored.returned_free_bet}); a "
                         f"full refund is {refund.paid} (bonus {refund.bonus}, free bet "
                         f"{refund.free_bet})")
    return found


# (invariant in words, the function returning one line per bet that breaks it)
CHECKS: list[tuple[str, Callable[[Facts], list[str]]]] = [
    ("ledger postings to the player equal what each bet says was returned (paid, cash-outs, "
     "a free bet given back)", _paid_as_moved),
    ("a settled, cancelled or cashed-out bet's stake left its in-play account exactly once; an "
     "open bet's only by what was cashed out", _stake_left_in_play_once),
    ("each settled bet's payout recomputed from the current results equals what was paid, a "
     "free bet paying winnings only and giving the free bet back when void, the bonus share "
     "in bonus funds (upgrade_only: what was paid may be higher, never lower; a bet flagged "
     "for review is left as it was)", _paid_as_recomputed),
    ("no bet is left open once its markets have results and the market is settled "
     "(but a bet flagged for review, which settlement reported instead)", _none_left_open),
    ("each bet's cash-out postings moved exactly its cash-outs' values and stakes",
     _cash_outs_moved_their_values),
    ("a cashed-out bet is final: its settlement and cancellation postings net to zero",
     _cashed_out_bets_left_alone),
    ("a cancelled bet was refunded in full: its remaining stake back where it came from",
     _cancelled_bets_refunded_in_full),
]


# The market's bets are read a page at a time (keyset on the bet id), with the ledger's
# postings of that page's bets: what verify holds in memory is bounded by the page, whatever
# the market's size. Every check is about one bet at a time, so pages add up.
PAGE_SIZE = 10_000

_MOVED = """
        SELECT t.reference, t.kind, b.funding,
               coalesce(sum(e.amount) FILTER (WHERE a.type IN ('player_cash', 'player_debt',
                        'player_bonus', 'player_free_bet')), 0) AS player,
               coalesce(sum(e.amount) FILTER (WHERE a.type = 'house_promotions'), 0)
                   AS promotions,
               coalesce(sum(e.amount) FILTER (WHERE a.type IN ('bets_in_play',
                        'free_bets_in_play')), 0) AS in_play
          FROM ledger_transactions t
          JOIN bets b ON b.id = t.reference
          JOIN ledger_entries e ON e.transaction_id = t.id
          JOIN ledger_accounts a ON a.id = e.account_id
         WHERE t.result = 'ok' AND t.kind = ANY(:kinds) AND t.reference = ANY(:ids)
         GROUP BY t.reference, t.kind, b.funding"""


def _page(conn: Connection, market_id: str, after: str, limit: int | None,
          ) -> tuple[list[Any], str | None]:
    """The market's next `limit` bets after bet id `after` (None: all of them), in id order,
    the rejected ones left out; and the last bet id of the page (None: no bet was left). One
    ordered index scan of the market's legs per page, so a page costs the same at the end of
    a big market as at its start."""
    rows = conn.execute(text(f"""
        SELECT {_BET_COLUMNS}, b.needs_review, b.cashed_out_value, b.status = 'rejected'
                   AS rejected
          FROM (SELECT bet_id FROM bet_legs WHERE market_id = :m AND bet_id > :after
                 ORDER BY bet_id LIMIT :limit) page
          JOIN bets b ON b.id = page.bet_id
         ORDER BY b.id"""), {"m": market_id, "after": after, "limit": limit}).all()
    last = rows[-1].id if rows else None
    return [r for r in rows if not r.rejected], last


def _checked_bets(conn: Connection, rows: list[Any]) -> list[CheckedBet]:
    """The page's bets with what the ledger moved for each and their recomputed settlement."""
    moved_rows = conn.execute(text(_MOVED), {
        "ids": [r.id for r in rows],
        "kinds": list(SETTLE_KINDS + CASH_OUT_KINDS + CANCEL_KINDS)}).all()
    family_of = {**dict.fromkeys(SETTLE_KINDS, "settle"),
                 **dict.fromkeys(CASH_OUT_KINDS, "cash_out"),
                 **dict.fromkeys(CANCEL_KINDS, "cancel")}
    moved: dict[str, dict[str, Moved]] = {}
    for r in moved_rows:
        # A cash bet's bonus share goes to house promotions once its bonus is forfeited; a
        # free bet's house side is house promotions (not the player's).
        player = int(r.player) + (int(r.promotions) if r.funding == Funding.CASH else 0)
        families = moved.setdefault(r.reference, {})
        before = families.get(family_of[r.kind], Moved())
        families[family_of[r.kind]] = Moved(before.player + player,
                                            before.in_play + int(r.in_play))
    results, _ = store.current_results(
        conn, {m for r in rows for m, _, _, _ in r.legs})
    settler = Settler(results)
    legs_seen: dict[tuple[str, ...], tuple[Any, ...]] = {}

    def checked(row: Any) -> CheckedBet:
        stored = store.stored_bet(row, legs_seen)
        families = moved.get(row.id, {})
        recomputed = settler.settle(stored) if stored.stake > 0 else None
        return CheckedBet(
            row.id, int(row.stake), row.status, int(row.paid),
            sum(m.player for m in families.values()),
            sum(m.in_play for m in families.values()), recomputed, row.needs_review,
            stored=stored, cashed_out_stake=int(row.cashed_out_stake),
            cashed_out_value=int(row.cashed_out_value), by_family=families)

    return [checked(r) for r in rows]


def pages(conn: Connection, settings: Settings, market_id: str,
          page_size: int | None = PAGE_SIZE) -> Iterator[Facts]:
    """The market's facts a page of bets at a time (None: one page of every bet)."""
    run = store.run_row(conn, market_id)
    state = run.state if run is not None else None
    upgrade_only = settings.resettlement_policy == "upgrade_only"
    after: str | None = ""
    while after is not None:
        rows, last = _page(conn, market_id, after, page_size)
        if rows:
            yield Facts(_checked_bets(conn, rows), state, upgrade_only)
        after = last if page_size is not None else None


def facts(conn: Connection, settings: Settings, market_id: str) -> Facts:
    """Every bet of the market at once (small markets, tests); `run` reads page by page."""
    found = list(pages(conn, settings, market_id, None))
    run = store.run_row(conn, market_id)
    return Facts([b for page in found for b in page.bets],
                 run.state if run is not None else None,
                 settings.resettlement_policy == "upgrade_only")


def run(conn: Connection, settings: Settings, market_id: str,
        page_size: int | None = PAGE_SIZE) -> tuple[int, list[str]]:
    """(bets checked, one line per difference); an empty list means the market is consistent.
    Reads `page_size` bets at a time; the lines come check by check within each page."""
    checked, found = 0, []
    for page in pages(conn, settings, market_id, page_size):
        checked += len(page.bets)
        found += [line for _, check in CHECKS for line in check(page)]
    return checked, found


# The name bench/settlement.py and older callers use.
differences = run
