"""Responsible gaming as gates: exclusions and deposit limits, and the limits view.

Gates (in `compliance.gates.GATES`):
  exclusion_gate       self-excluded / timed-out players cannot deposit or bet (withdrawals pass)
  deposit_limit_gate   a deposit that would exceed a limit is refused early (no lock: advisory)

The decision that counts for a deposit is the reservation (`commands.limits.reserve_deposit`):
under the player's lock it applies due limit changes, re-checks exclusions and limits with the
functions below, and records the amount against the limits. The gate never counts the gated
deposit's own reservation, so a retried check of the same deposit answers as the first did.
Must never: write (changes are `commands.limits`), or read the clock (callers pass `now`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection

from compliance.request import GateRequest, Operation
from domain.limits import (
    WINDOWS,
    Exclusion,
    ExclusionKind,
    Period,
    blocking_exclusion,
    check_deposit,
    effective_limits,
    window_start,
)
from settlepay.config import Settings
from store import responsible_gaming as store
from workflows.contracts.refusal import Refusal


class Code(StrEnum):
    SELF_EXCLUDED = "self_excluded"
    TIMED_OUT = "timed_out"
    DEPOSIT_LIMIT_EXCEEDED = "deposit_limit_exceeded"
    PLAYER_NOT_FOUND = "player_not_found"


# --- decisions ------------------------------------------------------------------------------

def exclusion_refusal(exclusions: Iterable[Exclusion], operation: str,
                      now: datetime) -> Refusal | None:
    """The refusal of an exclusion in force that blocks `operation` now, or None."""
    exclusion = blocking_exclusion(exclusions, operation, now)
    if exclusion is None:
        return None
    code = Code.SELF_EXCLUDED if exclusion.kind is ExclusionKind.SELF_EXCLUSION else Code.TIMED_OUT
    return Refusal(code.value, f"player is in {exclusion.describe()}: {operation}s are "
                               "blocked, withdrawals remain possible")


def limit_refusal(limits: Mapping[Period, int], used: Mapping[Period, int], amount: int,
                  currency: str) -> Refusal | None:
    """The refusal of a deposit of `amount` that would exceed a limit, or None."""
    breach = check_deposit(limits, used, amount)
    if breach is None:
        return None
    return Refusal(Code.DEPOSIT_LIMIT_EXCEEDED.value, breach.reason(currency))


def used(conn: Connection, player_id: str, currency: str, limits: Iterable[Period],
         now: datetime, *, deposit_id_excluded: str | None = None) -> dict[Period, int]:
    """Reserved amounts per rolling window, without the reservation of `deposit_id_excluded`."""
    return store.used(conn, player_id, currency, {p: window_start(p, now) for p in limits}, now,
                      deposit_id_excluded=deposit_id_excluded)


# --- gates ----------------------------------------------------------------------------------

def exclusion_gate(conn: Connection, settings: Settings, req: GateRequest,
                   now: datetime) -> Refusal | None:
    items = [s.exclusion for s in store.exclusions(conn, req.player_id)]
    return exclusion_refusal(items, str(req.operation), now)


def deposit_limit_gate(conn: Connection, settings: Settings, req: GateRequest,
                       now: datetime) -> Refusal | None:
    if req.operation != Operation.DEPOSIT:
        return None
    limits = limits_in_force(conn, req.player_id, now).get(req.currency, {})
    if not limits:
        return None
    counted = used(conn, req.player_id, req.currency, limits, now,
                   deposit_id_excluded=req.deposit_id)
    return limit_refusal(limits, counted, req.amount, req.currency)


# --- reads ----------------------------------------------------------------------------------

def limits_in_force(conn: Connection, player_id: str,
                    now: datetime) -> dict[str, dict[Period, int]]:
    """Stored limits with due pending changes applied in memory (for readers without the lock)."""
    stored, pending = store.limits_and_pending(conn, player_id)
    currencies = set(stored) | {c.currency for c in pending}
    return {cur: effective_limits(stored.get(cur, {}),
                                  [c.change for c in pending if c.currency == cur], now)
            for cur in currencies}


def active_exclusions(conn: Connection, player_id: str,
                      now: datetime) -> list[store.StoredExclusion]:
    return store.active_exclusions(store.exclusions(conn, player_id), now)


def limits_view(conn: Connection, player_id: str, now: datetime) -> dict[str, Any]:
    """The player's limits as the API shows them: in force, pending, used and left per window."""
    in_force = limits_in_force(conn, player_id, now)
    pending = [c for c in store.pending_changes(conn, player_id) if c.change.effective_at > now]
    currencies = sorted(set(in_force) | {c.currency for c in pending})
    out: dict[str, Any] = {"player_id": player_id, "currencies": []}
    for currency in currencies:
        limits = in_force.get(currency, {})
        counted = used(conn, player_id, currency, WINDOWS, now)
        waiting = {c.change.period: c for c in pending if c.currency == currency}
        periods = []
        for period in Period:
            if period not in limits and period not in waiting:
                continue
            limit = limits.get(period)
            change = waiting.get(period)
            periods.append({
                "period": period.value, "amount": limit, "used": counted[period],
                "remaining": None if limit is None else max(limit - counted[period], 0),
                "pending_change": None if change is None else {
                    "amount": change.change.amount, "effective_at": change.change.effective_at,
                    "requested_at": change.requested_at},
            })
        out["currencies"].append({"currency": currency, "limits": periods})
    return out
