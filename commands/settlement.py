"""Settlement commands: every change to a market's results and its bets' settlement, with its
audit record and outbox event, in the caller's transaction.

    record_result(conn, ...)    store a result version (replay / conflict / stale / window)
    record_rollback(conn, ...)  mark the current result rolled back (its bets will reopen)
    reopen_market(conn, ...)    an operator opens a market closed for betting again
    begin / finish              the market_settlements row of a settlement run
    settle_range(conn, ...)     settle / resettle / roll back one part of a round, a page of
                                bets at a time (PAGE_SIZE; memory bounded by the page), each
                                page set-based: one ledger.post_many, one insert of history
                                rows, one update of bets, one audit record, one outbox event
                                per partner
    betting_refusal(conn, ...)  for bet placement: the markets' shared locks, and whether one
                                of them is closed for betting
    cancel_market(conn, ...)    UOF BetCancel: every open or settled bet on the market (placed
                                in the window, if one is given) refunded in full, one posting
                                each (`bet:<id>:cancel:<n>`); final for later results
    rollback_cancellation(...)  UOF RollbackBetCancel: the refunds reversed exactly, the bets
                                open again and settled at once where their results are known

A bet that is cashed out (commands/bets.py) or cancelled is final: settlement, resettlement and
rollback runs leave it alone (domain/settlement/plan.py). Its bonus share goes where its bonus
stands (commands/promotions.py: bonus funds, cash once converted, the house once forfeited).

Ordering: a market's results, rollbacks and reopening take its advisory lock exclusive; bet
placement takes it shared (sorted) and checks "closed for betting" under it, so a bet that
checked commits before a result can be recorded (and is settled by it), and a bet after the
result is refused. A market closes for betting at its first result and stays closed after a
rollback (the outcome is public) until an operator reopens it.
Late runs: a rollback run acts only while its version is the market's latest; once a newer
version exists, that version's run settles every bet from whatever was paid. A bet that cannot
be posted (a payout above the bound, a ledger refusal) is flagged `needs_review` and reported;
the rest of its batch settles.

Rounds walk a market's bets in bet id order (the cursor); each round is split by player into
parts settled concurrently, one database transaction each. A batch locks its bets (FOR UPDATE,
in id order) and posts only what differs from what was paid, so a batch run twice (a worker
killed after commit, a retry, two workflows of the same market) posts nothing the second
time, and the ledger keys make the posting itself idempotent too. What each bet's step is
(settle, delta, reversal, nothing) is planned by domain/settlement/plan.py.
Must never: open its own transaction, compute a payout itself, or start a workflow.
"""

from __future__ import annotations

import gc
import hashlib
import json
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection

import audit
import ledger
import outbox
from commands import promotions
from domain.settlement import BetOutcome, SelectionResult
from domain.settlement.plan import (
    Account,
    PlannedLeg,
    PlannedPosting,
    RecordKind,
    SettlementRecord,
    Settler,
    Step,
    StoredBet,
    applied,
    plan_cancel,
    plan_review,
    plan_rollback,
    plan_settle,
    plan_uncancel,
)
from domain.settlement.plan import results_used as used_by
from domain.settlement.results import InvalidResult
from ledger import AccountRef, IdempotencyConflict, Transfer
from settlepay.config import Settings
from store import settlements as store
from workflows.contracts.refusal import Refusal
from workflows.contracts.settlement import (
    VERSION_MAX,
    MarketState,
    Mode,
    ResultStatus,
    SettlementRefusal,
)

__all__ = ["BatchOutcome", "IdempotencyConflict", "ResultRefused", "begin", "betting_refusal",
           "cancel_market", "finish", "record_result", "record_rollback", "reopen_market",
           "rollback_cancellation", "settle_range"]


class ResultRefused(Exception):
    """A result, rollback or run that must not be applied; `code` names why."""

    def __init__(self, code: SettlementRefusal, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail

    @property
    def refusal(self) -> Refusal:
        return Refusal(str(self.code), self.detail)


# --- results --------------------------------------------------------------------------------

def parse_selections(selections: dict[str, Any]) -> dict[str, SelectionResult]:
    if not selections:
        raise ResultRefused(SettlementRefusal.INVALID_RESULT,
                            "a result names at least one selection")
    try:
        return {str(sid): SelectionResult.from_json(dict(r)) for sid, r in selections.items()}
    except (InvalidResult, KeyError, ValueError, TypeError) as error:
        raise ResultRefused(SettlementRefusal.INVALID_RESULT,
                            f"invalid selection result: {error}") from error


def _window_check(conn: Connection, settings: Settings, market_id: str, now: datetime) -> None:
    first = store.first_settled_at(conn, market_id)
    if first is not None and now > first + timedelta(hours=settings.correction_window_hours):
        raise ResultRefused(SettlementRefusal.CORRECTION_WINDOW_CLOSED,
                            f"market {market_id} was first settled at {first.isoformat()}; "
                            f"corrections are accepted for {settings.correction_window_hours} "
                            "hours")


def record_result(conn: Connection, settings: Settings, market_id: str, version: int,
                  selections: dict[str, Any], *, actor: str,
                  now: datetime | None = None) -> tuple[dict[str, Any], bool]:
    """Store result `version` for the market; returns (result, replayed).

    Same version with the same selections replays; with others it is a conflict; a version not
    above every earlier one is stale; a correction after the window is refused.
    """
    now = now or datetime.now(UTC)
    if isinstance(version, bool) or not isinstance(version, int) or not (
            1 <= version <= VERSION_MAX):
        raise ResultRefused(SettlementRefusal.INVALID_RESULT,
                            f"a result version is an integer from 1 to {VERSION_MAX}")
    parsed = parse_selections(selections)
    canonical = {sid: r.to_json() for sid, r in sorted(parsed.items())}
    # One writer per market at a time: result versions are decided in order (and after every
    # bet that checked the market while it was open).
    store.lock_market(conn, market_id)
    same = store.result_row(conn, market_id, version)
    if same is not None:
        if same.selections != canonical:
            raise ResultRefused(SettlementRefusal.RESULT_VERSION_CONFLICT,
                                f"version {version} of market {market_id} was received with "
                                "other results")
        return {"market_id": market_id, "version": version, "selections": canonical,
                "status": same.status}, True
    latest = store.latest_version(conn, market_id)
    if latest is not None and version <= latest:
        raise ResultRefused(SettlementRefusal.RESULT_VERSION_STALE,
                            f"market {market_id} already has result version {latest}; "
                            "send a higher one")
    _window_check(conn, settings, market_id, now)
    previous = store.supersede_current(conn, market_id)
    store.insert_result(conn, market_id, version, canonical, actor)
    store.close_betting(conn, market_id)
    audit.record(conn, actor=actor, action="market.result_received", subject_type="market",
                 subject_id=market_id, before={"version": previous} if previous else None,
                 after={"version": version, "selections": canonical})
    outbox.emit(conn, event_type="market.result_received", aggregate_type="market",
                aggregate_id=market_id,
                payload={"market_id": market_id, "version": version, "corrects": previous})
    return {"market_id": market_id, "version": version, "selections": canonical,
            "status": str(ResultStatus.CURRENT)}, False


def record_rollback(conn: Connection, settings: Settings, market_id: str, version: int, *,
                    actor: str, now: datetime | None = None) -> bool:
    """Mark result `version` rolled back; True if it was current, False if already rolled
    back."""
    now = now or datetime.now(UTC)
    store.lock_market(conn, market_id)
    status = store.result_status(conn, market_id, version)
    if status == ResultStatus.ROLLED_BACK:
        return False
    if status != ResultStatus.CURRENT:
        raise ResultRefused(SettlementRefusal.RESULT_NOT_CURRENT,
                            f"version {version} is not the current result of market {market_id}")
    _window_check(conn, settings, market_id, now)
    store.mark_rolled_back(conn, market_id, version)
    audit.record(conn, actor=actor, action="market.result_rolled_back", subject_type="market",
                 subject_id=market_id, before={"version": version, "status": "current"},
                 after={"version": version, "status": "rolled_back"})
    outbox.emit(conn, event_type="market.result_rolled_back", aggregate_type="market",
                aggregate_id=market_id, payload={"market_id": market_id, "version": version})
    return True


def reopen_market(conn: Connection, market_id: str, *, actor: str) -> bool:
    """Open a market closed for betting again (an operator's decision, after a rollback); True
    if it was closed, False if it already takes bets. Refused while a result is current."""
    store.lock_market(conn, market_id)
    betting = store.market_betting(conn, market_id)
    if betting is None:
        raise ResultRefused(SettlementRefusal.MARKET_NOT_FOUND,
                            f"market {market_id} has never had a result")
    if store.markets_with_current_result(conn, [market_id]):
        raise ResultRefused(SettlementRefusal.MARKET_HAS_RESULT,
                            f"market {market_id} has a current result; roll it back first")
    if betting == "open":
        return False
    store.reopen_betting(conn, market_id, actor)
    audit.record(conn, actor=actor, action="market.reopened", subject_type="market",
                 subject_id=market_id, before={"betting": "closed"}, after={"betting": "open"})
    outbox.emit(conn, event_type="market.reopened", aggregate_type="market",
                aggregate_id=market_id, payload={"market_id": market_id, "betting": "open"})
    return True


# --- bets against results -------------------------------------------------------------------

def betting_refusal(conn: Connection, market_ids: Iterable[str]) -> Refusal | None:
    """For a bet being placed, in its transaction: take the markets' shared locks (sorted;
    result recording takes them exclusive) and say whether any market is closed for betting.
    None: every market takes bets. The locks are held to the end of the transaction."""
    markets = sorted(set(market_ids))
    store.lock_markets_shared(conn, markets)
    resulted = store.markets_with_current_result(conn, markets)
    if resulted:
        return Refusal(str(SettlementRefusal.MARKET_SETTLED),
                       f"market {resulted[0]} already has a result")
    closed = store.closed_markets(conn, markets)
    if closed:
        return Refusal(str(SettlementRefusal.MARKET_CLOSED),
                       f"market {closed[0]} is closed for betting: it has had a result "
                       "(since rolled back); an operator may reopen it")
    return None


# --- a settlement run -----------------------------------------------------------------------

def begin(conn: Connection, settings: Settings, market_id: str, version: int, mode: Mode,
          workflow_id: str) -> MarketState:
    """Mark the market's run started; returns the state. Refuses a run whose result is gone."""
    status = store.result_status(conn, market_id, version)
    if status is None:
        raise ResultRefused(SettlementRefusal.RESULT_NOT_FOUND,
                            f"market {market_id} has no result version {version}")
    if mode == Mode.SETTLE and status == ResultStatus.ROLLED_BACK:
        raise ResultRefused(SettlementRefusal.RESULT_ROLLED_BACK,
                            f"result version {version} of market {market_id} was rolled back")
    row = store.run_row(conn, market_id, for_update=True)
    was = MarketState(row.state) if row is not None else None
    if row is not None and (row.version > version
                            or (row.version, row.workflow_id) == (version, workflow_id)):
        # A late run of an older version still settles against the current results, but it
        # does not take the market's status back to its version; a retried begin of the
        # market's own run changes nothing. Nothing happened: no record.
        return MarketState(row.state)
    if mode == Mode.ROLLBACK:
        state = MarketState.ROLLING_BACK
    elif was in (MarketState.SETTLED, MarketState.RESETTLING):
        state = MarketState.RESETTLING
    else:
        state = MarketState.SETTLING
    store.upsert_run(conn, market_id, version, state, workflow_id)
    audit.record(conn, actor=f"workflow:{workflow_id}", action=f"market.{state}",
                 subject_type="market", subject_id=market_id,
                 before={"state": str(was) if was else None},
                 after={"state": str(state), "version": version})
    return state


def finish(conn: Connection, market_id: str, version: int, mode: Mode, workflow_id: str,
           processed: int, posted: int) -> dict[str, Any]:
    """Mark the run done (only if it is still the market's newest run) and announce it."""
    state = MarketState.ROLLED_BACK if mode == Mode.ROLLBACK else MarketState.SETTLED
    updated = store.finish_run(conn, market_id, workflow_id, state, processed, posted)
    result = store.summary(conn, market_id)
    if updated:
        audit.record(conn, actor=f"workflow:{workflow_id}", action=f"market.{state}",
                     subject_type="market", subject_id=market_id, before=None,
                     after={"version": version, "bets_processed": processed,
                            "bets_posted": posted})
        outbox.emit(conn, event_type=f"market.{state}", aggregate_type="market",
                    aggregate_id=market_id,
                    payload={"market_id": market_id, "version": version,
                             "bets": result["bets"], "totals": result["totals"]})
    return result


# --- one batch ------------------------------------------------------------------------------

@dataclass
class BatchOutcome:
    processed: int = 0          # bets looked at
    posted: int = 0             # ledger postings made
    pending: int = 0            # parlays still waiting for another market
    skipped: int = 0            # upgrade_only downgrades kept out
    payout_delta: int = 0       # net moved to players by this batch
    needs_review: int = 0       # bets that could not be posted (named in the audit record)
    steps: dict[str, int] = field(default_factory=dict)  # history rows written, by kind
    changed: int = 0            # bets that got a history row
    pages: int = 0              # pages of bets read (PAGE_SIZE each, the last one fewer)


# Pages are planned one at a time per process. Planning is pure Python, so the worker's
# concurrent batches (threads) cannot plan in parallel anyway; taking turns, instead of
# switching the interpreter between them every few milliseconds, lets one batch's page go
# to the database while the next is planned, rather than all of them finishing planning at
# once and the database waiting for them. Held only around pure computation (no I/O).
_PLANNING = threading.Lock()

class _YoungCollectionsOnly:
    """While any page of any batch of this process is being settled, the cyclic garbage
    collector collects its young generations only: no full collection (a walk over every live
    object of the process) starts; the usual thresholds come back when the last page is done.

    A page makes hundreds of thousands of objects (bets, steps, postings, rows) that live
    until the page is written and then go by reference counting; while they live they pushed
    the collector into full collections, again and again: 44 % of the worker's CPU when
    settling 100,000 bets (bench/settlement.py). Young collections still run, so cyclic
    garbage that is made and dropped meanwhile is found as before; what survives them waits
    for the next full collection after the pages."""

    _NEVER = 1 << 30     # gen-1 collections before a full one: never, in practice

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pages = 0
        self._thresholds = gc.get_threshold()

    def __enter__(self) -> None:
        with self._lock:
            if self._pages == 0:
                self._thresholds = gc.get_threshold()
                gc.set_threshold(*self._thresholds[:2], self._NEVER)
            self._pages += 1

    def __exit__(self, *_: object) -> None:
        with self._lock:
            self._pages -= 1
            if self._pages == 0:
                gc.set_threshold(*self._thresholds)


_PAGES = _YoungCollectionsOnly()

# A batch reads, plans and writes its bets a page at a time (keyset on the bet id, in the
# batch's one transaction): what a batch holds in memory is bounded by the page, not by the
# batch or the market. Each page is one post_many, one insert of history rows, one update of
# bets, one audit record and one event per partner. A part of a round holds about batch_size
# bets (give or take the split by player): a page takes a whole part of the usual batches
# (2,000 by default, 5,000 in bench/settlement.py) at once.
PAGE_SIZE = 10_000


_ACCOUNTS = {
    Account.BETS_IN_PLAY: AccountRef.bets_in_play,
    Account.PLAYER_CASH: AccountRef.player_cash,
    Account.FREE_BETS_IN_PLAY: AccountRef.free_bets_in_play,
    Account.PLAYER_FREE_BET: AccountRef.free_bet,
    Account.PLAYER_BONUS: AccountRef.bonus,
}


# Account references are immutable values: a batch asks for the same few per player and the
# house's for every bet, so they are made once (bounded: the least recently used go first).
@lru_cache(maxsize=65_536)
def _account(kind: Account, player_id: str, currency: str) -> AccountRef:
    if kind in _ACCOUNTS:
        return _ACCOUNTS[kind](player_id, currency)
    if kind == Account.HOUSE_PROMOTIONS:
        return AccountRef.house_promotions(currency)
    return AccountRef.house_revenue(currency)


@lru_cache(maxsize=16_384)
def _debt(player_id: str, currency: str) -> AccountRef:
    return AccountRef.player_debt(player_id, currency)


def transfer_of(posting: PlannedPosting, player_id: str, currency: str) -> Transfer:
    """The ledger transfer of a planned posting."""
    return Transfer(key=posting.key, kind=str(posting.kind), reference=posting.bet_id,
                    corrects=posting.corrects,
                    legs=_ledger_legs(posting.legs, player_id, currency),
                    metadata={"market": posting.market_id, "version": posting.version})


def _ledger_legs(legs: tuple[PlannedLeg, ...], player_id: str, currency: str,
                 ) -> tuple[ledger.Leg, ...]:
    # by position (account, amount, shortfall_to), as the values made per bet are
    return tuple(ledger.Leg(_account(leg.account, player_id, currency), leg.amount,
                            _debt(player_id, currency) if leg.shortfall_to_debt else None)
                 for leg in legs)


def with_bonus_targets(conn: Connection, bets: list[StoredBet], *, actor: str,
                       now: datetime | None = None,
                       ) -> tuple[list[StoredBet], dict[str, dict[str, Any]]]:
    """The bets with where their bonus share goes now (their bonuses locked, expired ones
    forfeited), and the bonus rows."""
    bonuses = promotions.bonus_targets(conn, bets, now=now or datetime.now(UTC), actor=actor)
    return [replace(bet, bonus_target=promotions.TARGETS[bonuses[bet.bonus_id]["status"]])
            if bet.bonus_id in bonuses else bet for bet in bets], bonuses


def _transfers(planned: list[tuple[StoredBet, Step]]) -> list[Transfer | None]:
    """The ledger transfer of each planned step (None: the step posts nothing). The ledger
    legs of one player's postings with the same planned legs (movement_legs shares them) are
    made once: keyed by the planned legs' identity, which `made` keeps alive."""
    made: dict[tuple[int, str, str], tuple[tuple[PlannedLeg, ...], tuple[ledger.Leg, ...]]] = {}
    # One metadata dict per run (market, version): ledger.post_many writes each dict once.
    metadata: dict[tuple[str, int], dict[str, Any]] = {}
    transfers: list[Transfer | None] = []
    for bet, step in planned:
        posting = step.posting
        if posting is None:
            transfers.append(None)
            continue
        key = (id(posting.legs), bet.player_id, bet.currency)
        found = made.get(key)
        if found is None:
            found = made[key] = (posting.legs, _ledger_legs(posting.legs, bet.player_id,
                                                            bet.currency))
        run = (posting.market_id, posting.version)
        shared = metadata.get(run)
        if shared is None:
            shared = metadata[run] = {"market": posting.market_id, "version": posting.version}
        # by position (key, kind, legs, reference, corrects, metadata): a class called with
        # keywords gets them as a dict, built and unpacked again per transfer
        transfers.append(Transfer(posting.key, str(posting.kind), found[1], posting.bet_id,
                                  posting.corrects, shared))
    return transfers


def _execute(conn: Connection, market_id: str, planned: list[tuple[StoredBet, Step]],
             bonuses: dict[str, dict[str, Any]], actor: str,
             transfers: list[Transfer | None] | None = None,
             ) -> tuple[list[tuple[StoredBet, Step]], list[SettlementRecord], list[str]]:
    """Post the steps' postings in order (one post_many), keep their history rows, update the
    bets (a bet's last step wins) and count first settlements towards their bonus. A posting
    the ledger refuses flags its bet for review instead. Returns (steps as applied, records
    kept, ledger keys posted)."""
    if transfers is None:
        transfers = _transfers(planned)
    postings = [t for t in transfers if t is not None]
    results = iter(ledger.post_many(conn, postings))
    posted = [next(results) if t is not None else None for t in transfers]
    # A posting the ledger refuses (an in-play account short of the stake: a broken invariant)
    # must not hold up the rest of the batch for ever: that bet is flagged for review instead.
    refused = {bet.id: f"ledger refused {t.key}: {r.code}"
               for (bet, _), t, r in zip(planned, transfers, posted, strict=True)
               if t is not None and r is not None and not r.ok}
    if refused:
        steps_of: dict[str, int] = defaultdict(int)
        for bet, step in planned:
            steps_of[bet.id] += step.posting is not None
        if any(steps_of[bet_id] > 1 for bet_id in refused):
            raise RuntimeError(f"ledger refused a posting of a bet with several: {refused}")
        first = {bet.id: bet for bet, _ in reversed(planned)}
        planned = ([(bet, step) for bet, step in planned if bet.id not in refused]
                   + [(first[bet_id], plan_review(first[bet_id], reason))
                      for bet_id, reason in refused.items()])
    accepted = {t.key: (r.transaction_id, r.shortfall)
                for t, r in zip(transfers, posted, strict=True)
                if t is not None and r is not None and r.ok}
    records = [step.record for bet, step in planned
               if step.record is not None and bet.id not in refused]
    store.insert_records(conn, market_id, records, accepted)
    updates = {step.update.bet_id: step.update for _, step in planned if step.update is not None}
    store.update_bets(conn, list(updates.values()))
    first_settled = [bet for bet, step in planned
                     if step.record is not None and step.record.kind == RecordKind.SETTLEMENT
                     and step.record.outcome != BetOutcome.VOID and bet.id not in refused]
    store.mark_wagered(conn, promotions.count_wagering(conn, first_settled, bonuses,
                                                       actor=actor))
    return planned, records, list(accepted)


def settle_range(conn: Connection, settings: Settings, market_id: str, version: int,
                 mode: Mode, lo: str, hi: str, *, part: int = 0, parts: int = 1, actor: str,
                 fail_before_commit: bool = False, page_size: int | None = None,
                 ) -> BatchOutcome:
    """Settle (or roll back) the bets on `market_id` with lo < id <= hi whose player falls in
    partition `part` of `parts`, in the caller's transaction, `page_size` bets at a time
    (None: PAGE_SIZE).

    Partitioning a round by player lets its batches run at once without waiting on each
    other's locks: no two parts of a round touch the same player's accounts."""
    out = BatchOutcome()
    page_size = page_size or PAGE_SIZE
    after = lo
    upgrade_only = settings.resettlement_policy == "upgrade_only"
    # A correction: the bets it cannot change (unchanged_results) are told apart without
    # locking, reading or planning them; only the others are locked and planned.
    unchanged = store.unchanged_results(conn, market_id) if mode == Mode.SETTLE else []
    while True:
        with _PAGES:
            read, last = _settle_next_page(conn, market_id, version, mode, actor, after, hi,
                                           part, parts, unchanged, upgrade_only, page_size,
                                           out)
        if read is None:
            return BatchOutcome(processed=out.processed, pages=out.pages)
        if read == 0 or read < page_size:
            break
        after = last
    if fail_before_commit:
        # Test hook: a worker dying after the work but before COMMIT.
        raise RuntimeError("injected failure before commit")
    return out


def _settle_next_page(conn: Connection, market_id: str, version: int, mode: Mode, actor: str,
                      after: str, hi: str, part: int, parts: int, unchanged: list[str],
                      upgrade_only: bool, page_size: int, out: BatchOutcome,
                      ) -> tuple[int | None, str]:
    """Read, plan and write the page of bets after `after`; returns (bets read, the last
    one's id); (0, after): none left; (None, last): the run stops here (a rollback run
    overtaken by a newer version)."""
    if unchanged:
        page = store.page_in_range(conn, market_id, after, hi, part, parts, unchanged,
                                   limit=page_size)
        if not page:
            return 0, after
        bets = store.bets_by_id(conn, [bet_id for bet_id, same in page if not same])
        read, last = len(page), page[-1][0]
    else:
        bets = store.bets_in_range(conn, market_id, after, hi, part, parts,
                                   limit=page_size)
        if not bets:
            return 0, after
        read, last = len(bets), bets[-1].id
    out.pages += 1
    out.processed += read
    if (out.pages == 1 and mode == Mode.ROLLBACK
            and (store.latest_version(conn, market_id) or 0) > version):
        # A newer version came after this rollback: its run settles every bet from what
        # was paid (read after the bets are locked, so that run's batches are either done
        # or wait).
        return None, last
    if bets:
        _settle_page(conn, market_id, version, mode, actor, (after, last), part, parts,
                     bets, upgrade_only, out)
    return read, last


def _settle_page(conn: Connection, market_id: str, version: int, mode: Mode, actor: str,
                 span: tuple[str, str], part: int, parts: int, bets: list[StoredBet],
                 upgrade_only: bool, out: BatchOutcome) -> None:
    """Plan and apply one page of a batch; add its counts to `out`."""
    bets, bonuses = with_bonus_targets(conn, bets, actor=actor)
    results, versions = store.current_results(conn, {leg[0] for bet in bets for leg in bet.legs})
    settler = Settler(results)
    planned: list[tuple[StoredBet, Step]] = []
    with _PLANNING:
        for bet in bets:
            step = (plan_rollback(bet, market_id, version, settler.used(bet))
                    if mode == Mode.ROLLBACK
                    else plan_settle(bet, market_id, results, versions, settler.used(bet),
                                     upgrade_only=upgrade_only, settler=settler))
            if step is not None:
                planned.append((bet, step))
        transfers = _transfers(planned)

    planned, records, keys = _execute(conn, market_id, planned, bonuses, actor, transfers)
    page = BatchOutcome(
        processed=len(bets), posted=len(keys),
        pending=sum(step.pending for _, step in planned),
        skipped=sum(step.skipped for _, step in planned),
        needs_review=sum(step.review is not None for _, step in planned),
        payout_delta=sum(r.delta for r in records if r.applied),
        changed=len({r.bet_id for r in records}))
    for r in records:
        page.steps[str(r.kind)] = page.steps.get(str(r.kind), 0) + 1
    _announce(conn, market_id, version, mode, actor, span, part, parts, page, planned,
              records, keys)
    out.posted += page.posted
    out.pending += page.pending
    out.skipped += page.skipped
    out.needs_review += page.needs_review
    out.payout_delta += page.payout_delta
    out.changed += page.changed
    for kind, n in page.steps.items():
        out.steps[kind] = out.steps.get(kind, 0) + n


def settle_now(conn: Connection, settings: Settings, bet_ids: list[str], market_id: str, *,
               actor: str) -> list[SettlementRecord]:
    """Settle these open bets (internal ids) against the current results of their markets at
    once, where every market has one (a bet handed back to settlement after a cash-out
    reversal); returns the history rows written."""
    bets = [bet for bet_id in sorted(bet_ids)
            if (bet := store.bet_for_update(conn, bet_id)) is not None]
    bets, bonuses = with_bonus_targets(conn, bets, actor=actor)
    results, versions = store.current_results(conn, {leg[0] for bet in bets for leg in bet.legs})
    upgrade_only = settings.resettlement_policy == "upgrade_only"
    planned = [(bet, step) for bet in bets
               if (step := plan_settle(bet, market_id, results, versions,
                                       used_by(bet, results), upgrade_only=upgrade_only))
               is not None and not step.pending]
    return _execute(conn, market_id, planned, bonuses, actor)[1]


def _item(r: SettlementRecord) -> dict[str, Any]:
    return {"bet_id": r.bet_id, "player_id": r.player_id, "kind": str(r.kind),
            "version": r.version, "payout": r.payout, "delta": r.delta, "applied": r.applied}


def _announce(conn: Connection, market_id: str, version: int, mode: Mode, actor: str,
              span: tuple[str, str], part: int, parts: int, page: BatchOutcome,
              planned: list[tuple[StoredBet, Step]], records: list[SettlementRecord],
              keys: list[str]) -> None:
    """A page's audit records and its events: one `bets.settled` / `bets.rolled_back` per
    partner (a partner hears about its own players' bets only). `span`: the page's bet ids
    (after, last]."""
    lo, hi = span
    reviews = {bet.id: step.review for bet, step in planned if step.review is not None}
    if reviews:
        audit.record(conn, actor=actor, action="settlement.bets_need_review",
                     subject_type="market", subject_id=market_id, before=None,
                     after={"version": version, "range": [lo, hi], "part": [part, parts],
                            "bets": reviews})
    if not records:
        return
    action = "rolled_back" if mode == Mode.ROLLBACK else "posted"
    audit.record(conn, actor=actor, action=f"settlement.batch_{action}",
                 subject_type="market", subject_id=market_id, before=None,
                 after={"version": version, "range": [lo, hi], "part": [part, parts],
                        "bets": len(records), "postings": page.posted,
                        "skipped": page.skipped, "payout_delta": page.payout_delta,
                        "ledger_keys": keys})
    partner_of = {bet.id: bet.partner_id for bet, _ in planned}
    by_partner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_partner[partner_of[record.bet_id]].append(_item(record))
    for partner_id, items in sorted(by_partner.items()):
        outbox.emit(conn, event_type="bets.rolled_back" if mode == Mode.ROLLBACK
                    else "bets.settled", aggregate_type="market", aggregate_id=market_id,
                    payload={"market_id": market_id, "version": version,
                             "partner_id": partner_id, "bets": items},
                    partner_id=partner_id)


# --- market cancellation (UOF BetCancel / RollbackBetCancel) --------------------------------

def cancellation_resource(row: dict[str, Any]) -> dict[str, Any]:
    """A market cancellation as the API and its events show it."""
    def iso(value: datetime | None) -> str | None:
        return value.isoformat() if value is not None else None
    return {"object": "market_cancellation", "id": row["external_id"],
            "market_id": row["market_id"], "reason_code": row["reason_code"],
            "reason": row["reason"], "placed_from": iso(row["placed_from"]),
            "placed_until": iso(row["placed_until"]), "status": row["status"],
            "bets_cancelled": row["bets_cancelled"], "created_at": iso(row["created_at"]),
            "rolled_back_at": iso(row["rolled_back_at"])}


def _cancellation_hash(reason_code: str, reason: str | None, placed_from: datetime | None,
                       placed_until: datetime | None) -> bytes:
    body = [reason_code, reason, placed_from.isoformat() if placed_from else None,
            placed_until.isoformat() if placed_until else None]
    return hashlib.sha256(json.dumps(body).encode()).digest()


def _announce_bets(conn: Connection, event_type: str, market_id: str, cancellation_id: str,
                   planned: list[tuple[StoredBet, Step]], records: list[SettlementRecord]) -> None:
    """One event per partner naming its players' bets (a partner hears of its own only)."""
    partner_of = {bet.id: bet.partner_id for bet, _ in planned}
    by_partner: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_partner[partner_of[record.bet_id]].append(_item(record))
    for partner_id, items in sorted(by_partner.items()):
        outbox.emit(conn, event_type=event_type, aggregate_type="market",
                    aggregate_id=market_id,
                    payload={"market_id": market_id, "cancellation_id": cancellation_id,
                             "partner_id": partner_id, "bets": items},
                    partner_id=partner_id)


def cancel_market(conn: Connection, settings: Settings, market_id: str, *, cancellation_id: str,
                  reason_code: str, reason: str | None, placed_from: datetime | None,
                  placed_until: datetime | None, actor: str) -> tuple[dict[str, Any], bool]:
    """BetCancel: refund in full every open or settled bet on the market (placed within the
    window, when one is given); returns (cancellation, replayed). Later results leave the
    cancelled bets alone. Without a window the market closes for betting.

    A parlay with a leg on the market is refunded in full too (as the issue asks), not
    re-priced with that leg at 1.00. A partly cashed-out bet gets its remaining stake back;
    its cash-outs stand. One transaction for the whole market (set-based postings)."""
    if placed_from is not None and placed_until is not None and placed_from >= placed_until:
        raise ResultRefused(SettlementRefusal.INVALID_CANCELLATION,
                            "a cancellation window starts before it ends")
    request_hash = _cancellation_hash(reason_code, reason, placed_from, placed_until)
    store.lock_market(conn, market_id)        # ordered with results, rollbacks and bets
    existing = store.cancellation(conn, market_id, cancellation_id)
    if existing is not None:
        if bytes(existing["request_hash"]) != request_hash:
            raise ResultRefused(SettlementRefusal.CANCELLATION_CONFLICT,
                                f"cancellation {cancellation_id} of market {market_id} was "
                                "received with other details")
        return cancellation_resource(existing), True
    internal = store.insert_cancellation(conn, market_id=market_id, external_id=cancellation_id,
                                         reason_code=reason_code, reason=reason,
                                         placed_from=placed_from, placed_until=placed_until,
                                         request_hash=request_hash, created_by=actor)
    bets, bonuses = with_bonus_targets(
        conn, store.bets_for_cancellation(conn, market_id, placed_from, placed_until),
        actor=actor)
    detail = {"cancellation": cancellation_id, "reason_code": reason_code, "reason": reason}
    planned = [(bet, step) for bet in bets
               if (step := plan_cancel(bet, market_id, internal, detail)) is not None]
    planned, records, keys = _execute(conn, market_id, planned, bonuses, actor)
    store.mark_wagered(conn, promotions.uncount_wagering(
        conn, [bet for bet, step in planned if step.review is None], bonuses), counted=False)
    store.cancellation_done(conn, internal, len(records))
    if placed_from is None and placed_until is None:
        store.close_betting(conn, market_id)
    row = store.cancellation(conn, market_id, cancellation_id)
    assert row is not None
    resource = cancellation_resource(row)
    audit.record(conn, actor=actor, action="market.bets_cancelled", subject_type="market",
                 subject_id=market_id, before=None,
                 after={**resource, "ledger_keys": keys})
    _announce_bets(conn, "bets.cancelled", market_id, cancellation_id, planned, records)
    return resource, False


def rollback_cancellation(conn: Connection, settings: Settings, market_id: str,
                          cancellation_id: str, *, actor: str) -> tuple[dict[str, Any], bool]:
    """RollbackBetCancel: the cancellation's refunds reversed exactly, its bets open again and,
    where every market of a bet has a current result, settled against it at once. Returns
    (cancellation, replayed)."""
    store.lock_market(conn, market_id)
    row = store.cancellation(conn, market_id, cancellation_id, for_update=True)
    if row is None:
        raise ResultRefused(SettlementRefusal.CANCELLATION_NOT_FOUND,
                            f"market {market_id} has no cancellation {cancellation_id!r}")
    if row["status"] == "rolled_back":
        return cancellation_resource(row), True
    bets, bonuses = with_bonus_targets(conn, store.bets_of_cancellation(conn, row["id"]),
                                       actor=actor)
    results, versions = store.current_results(conn, {leg[0] for bet in bets for leg in bet.legs})
    upgrade_only = settings.resettlement_policy == "upgrade_only"
    detail = {"cancellation": cancellation_id}
    planned: list[tuple[StoredBet, Step]] = []
    for bet in bets:
        undo = plan_uncancel(bet, market_id, row["id"], detail)
        if undo is None or undo.update is None:
            continue
        planned.append((bet, undo))
        reopened = applied(bet, undo.update)
        settled = plan_settle(reopened, market_id, results, versions, used_by(bet, results),
                              upgrade_only=upgrade_only)
        if settled is not None and not settled.pending:
            planned.append((reopened, settled))
    planned, records, keys = _execute(conn, market_id, planned, bonuses, actor)
    store.mark_cancellation_rolled_back(conn, row["id"], actor)
    after = store.cancellation(conn, market_id, cancellation_id)
    assert after is not None
    resource = cancellation_resource(after)
    audit.record(conn, actor=actor, action="market.bet_cancel_rolled_back",
                 subject_type="market", subject_id=market_id,
                 before={"status": row["status"]}, after={**resource, "ledger_keys": keys})
    _announce_bets(conn, "bets.cancel_rolled_back", market_id, cancellation_id, planned,
                   records)
    return resource, False
