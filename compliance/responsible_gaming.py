"""Responsible gaming: exclusions and deposit limits as gates, and the deposit-limit reservation.

Gates (registered in `compliance.registry`):
  exclusion_gate       self-excluded / timed-out players cannot deposit or bet (withdrawals pass)
  deposit_limit_gate   a deposit that would exceed a limit is refused early (no lock: advisory)

The decision that counts is `reserve_deposit_amount`: under the player's responsible-gaming lock
it applies due limit changes, re-checks exclusions and limits, and records the amount against
the limits, all in the caller's transaction, so concurrent deposits cannot together exceed a
limit. The deposit flow calls it right after `compliance.gates.check`, in the same transaction,
and `release_deposit_amount` when the deposit fails. Both are idempotent per deposit id.

Every change writes an audit record and an outbox event in the same transaction.
Must never: commit (the caller owns the transaction) or read the clock when given `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection

import audit
import outbox
from compliance.gates import ALLOWED, GateDecision, GateRequest, Operation
from domain.limits import (
    WINDOWS,
    ChangeKind,
    Exclusion,
    ExclusionKind,
    InvalidRequest,
    Period,
    blocking_exclusion,
    check_deposit,
    effective_limits,
    plan_limit_change,
    self_exclusion,
    time_out,
    window_start,
)
from settlepay.config import Settings
from store import responsible_gaming as store

SYSTEM_ACTOR = "system:responsible_gaming"


class Code(StrEnum):
    SELF_EXCLUDED = "self_excluded"
    TIMED_OUT = "timed_out"
    DEPOSIT_LIMIT_EXCEEDED = "deposit_limit_exceeded"
    PLAYER_NOT_FOUND = "player_not_found"


class ReservationConflict(Exception):
    """The deposit id was reserved before with another player, amount or currency."""


class PlayerNotFound(Exception):
    pass


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# --- gates ---------------------------------------------------------------------------------

def _exclusion_decision(exclusion: Exclusion | None, operation: str) -> GateDecision | None:
    if exclusion is None:
        return None
    code = Code.SELF_EXCLUDED if exclusion.kind is ExclusionKind.SELF_EXCLUSION else Code.TIMED_OUT
    return GateDecision.deny(code.value, f"player is in {exclusion.describe()}: {operation}s are "
                                         "blocked, withdrawals remain possible")


def exclusion_gate(conn: Connection, settings: Settings, req: GateRequest, *,
                   now: datetime | None = None) -> GateDecision | None:
    items = [s.exclusion for s in store.exclusions(conn, req.player_id)]
    operation = str(req.operation)
    return _exclusion_decision(blocking_exclusion(items, operation, _now(now)), operation)


def deposit_limit_gate(conn: Connection, settings: Settings, req: GateRequest, *,
                       now: datetime | None = None) -> GateDecision | None:
    if req.operation != Operation.DEPOSIT:
        return None
    now = _now(now)
    limits = _limits_in_force(conn, req.player_id, now).get(req.currency, {})
    if not limits:
        return None
    breach = check_deposit(limits, _used(conn, req.player_id, req.currency, limits, now), req.amount)
    if breach is None:
        return None
    return GateDecision.deny(Code.DEPOSIT_LIMIT_EXCEEDED.value, breach.reason(req.currency))


# --- reservation (the deposit flow) ----------------------------------------------------------

def reserve_deposit_amount(conn: Connection, player_id: str, amount: int, currency: str,
                           deposit_id: str, *, actor: str = SYSTEM_ACTOR,
                           now: datetime | None = None) -> GateDecision:
    """Check the player's exclusions and deposit limits and count `amount` against them.

    Same deposit id + same request -> the same answer (a refusal too); same id + a different
    player, amount or currency -> ReservationConflict.
    """
    now = _now(now)
    replay = _replay(store.usage(conn, deposit_id), player_id, amount, currency)
    if replay is not None:
        return replay
    if store.player_partner(conn, player_id) is None:
        return GateDecision.deny(Code.PLAYER_NOT_FOUND.value, f"player {player_id} does not exist")
    store.lock_player(conn, player_id)
    # A concurrent call for the same deposit may have committed while we waited for the lock.
    replay = _replay(store.usage(conn, deposit_id), player_id, amount, currency)
    if replay is not None:
        return replay
    _apply_due_changes(conn, player_id, now)

    items = [s.exclusion for s in store.exclusions(conn, player_id)]
    decision = _exclusion_decision(blocking_exclusion(items, Operation.DEPOSIT.value, now), "deposit")
    limits = store.limits(conn, player_id).get(currency, {})
    used = _used(conn, player_id, currency, limits, now) if limits else {}
    if decision is None:
        breach = check_deposit(limits, used, amount)
        decision = (GateDecision.deny(Code.DEPOSIT_LIMIT_EXCEEDED.value, breach.reason(currency))
                    if breach else ALLOWED)

    status = "reserved" if decision.allowed else "rejected"
    store.add_usage(conn, store.Usage(deposit_id, player_id, currency, amount, status,
                                      decision.code, decision.reason, now))
    audit.record(conn, actor=actor, action=f"deposit_limit.{status}", subject_type="deposit",
                 subject_id=deposit_id, before=None,
                 after={"player_id": player_id, "amount": amount, "currency": currency,
                        "code": decision.code, "limits": {p.value: v for p, v in limits.items()},
                        "used_before": {p.value: v for p, v in used.items()}})
    return decision


def release_deposit_amount(conn: Connection, deposit_id: str, *, actor: str = SYSTEM_ACTOR,
                           now: datetime | None = None) -> bool:
    """Stop counting a failed deposit against the limits. True when something was released."""
    usage = store.usage(conn, deposit_id, for_update=True)
    if usage is None or usage.status != "reserved":
        return False
    store.release_usage(conn, deposit_id, _now(now))
    audit.record(conn, actor=actor, action="deposit_limit.released", subject_type="deposit",
                 subject_id=deposit_id, before={"status": "reserved"},
                 after={"status": "released", "player_id": usage.player_id, "amount": usage.amount,
                        "currency": usage.currency})
    return True


def _replay(usage: store.Usage | None, player_id: str, amount: int, currency: str) -> GateDecision | None:
    if usage is None:
        return None
    if (usage.player_id, usage.amount, usage.currency) != (player_id, amount, currency):
        raise ReservationConflict(
            f"deposit {usage.deposit_id} was reserved for {usage.player_id} {usage.amount} {usage.currency}")
    return ALLOWED if usage.code == ALLOWED.code else GateDecision.deny(usage.code, usage.reason)


def _used(conn: Connection, player_id: str, currency: str, limits: Mapping[Period, int],
          now: datetime) -> dict[Period, int]:
    return store.used(conn, player_id, currency, {p: window_start(p, now) for p in limits}, now)


# --- limits ----------------------------------------------------------------------------------

def _limits_in_force(conn: Connection, player_id: str, now: datetime) -> dict[str, dict[Period, int]]:
    """Stored limits with due pending changes applied in memory (for readers without the lock)."""
    stored = store.limits(conn, player_id)
    pending = store.pending_changes(conn, player_id)
    currencies = set(stored) | {c.currency for c in pending}
    return {cur: effective_limits(stored.get(cur, {}), [c.change for c in pending if c.currency == cur], now)
            for cur in currencies}


def _apply_due_changes(conn: Connection, player_id: str, now: datetime) -> None:
    """Make loosenings whose cool-off has passed the limits in force (caller holds the lock)."""
    stored = store.limits(conn, player_id)
    for item in store.pending_changes(conn, player_id):
        if item.change.effective_at > now:
            continue
        before = stored.get(item.currency, {}).get(item.change.period)
        store.set_limit(conn, player_id, item.currency, item.change.period, item.change.amount, now)
        store.resolve_pending(conn, item.id, "applied", now)
        _announce(conn, player_id, SYSTEM_ACTOR, "deposit_limit.changed", item.currency,
                  item.change.period, before, item.change.amount, item.change.effective_at)


def set_deposit_limits(conn: Connection, settings: Settings, player_id: str, currency: str,
                       requested: Mapping[Period, int | None], *, actor: str,
                       now: datetime | None = None) -> dict[str, Any]:
    """Ask for new limits (None removes one): tighter at once, looser after the cool-off."""
    now = _now(now)
    if currency not in settings.supported_currencies:
        raise InvalidRequest("currency_not_supported", f"currency {currency} is not supported")
    if store.player_partner(conn, player_id) is None:
        raise PlayerNotFound(player_id)
    store.lock_player(conn, player_id)
    _apply_due_changes(conn, player_id, now)
    current = store.limits(conn, player_id).get(currency, {})
    pending = {c.change.period: c for c in store.pending_changes(conn, player_id) if c.currency == currency}
    cool_off = timedelta(hours=settings.deposit_limit_cool_off_hours)
    # Plan every period before writing any: one bad amount refuses the whole request.
    plans = {Period(p): plan_limit_change(current.get(Period(p)), amount, now, cool_off)
             for p, amount in requested.items()}
    for period, plan in plans.items():
        amount = requested[period]
        waiting = pending.get(period)
        if plan.kind is ChangeKind.LOOSEN and waiting is not None and waiting.change.amount == amount:
            continue  # asked again (a retried PUT): the cool-off keeps running, not restarted
        if period in pending:  # a new request replaces the waiting one, whatever it asks
            store.resolve_pending(conn, pending[period].id, "superseded", now)
        if plan.kind is ChangeKind.TIGHTEN:
            store.set_limit(conn, player_id, currency, period, amount, now)
            _announce(conn, player_id, actor, "deposit_limit.changed", currency, period,
                      current.get(period), amount, now)
        elif plan.kind is ChangeKind.LOOSEN:
            store.add_pending(conn, player_id, currency, period, amount, plan, now)
            _announce(conn, player_id, actor, "deposit_limit.change_scheduled", currency, period,
                      current.get(period), amount, plan.effective_at)
        elif period in pending:
            _announce(conn, player_id, actor, "deposit_limit.change_cancelled", currency, period,
                      current.get(period), current.get(period), now)
    return limits_view(conn, player_id, now=now)


def _announce(conn: Connection, player_id: str, actor: str, event: str, currency: str, period: Period,
              before: int | None, after: int | None, effective_at: datetime) -> None:
    payload = {"player_id": player_id, "currency": currency, "period": period.value,
               "amount": after, "previous_amount": before, "effective_at": effective_at.isoformat()}
    audit.record(conn, actor=actor, action=event, subject_type="player", subject_id=player_id,
                 before={"currency": currency, "period": period.value, "amount": before}, after=payload)
    outbox.emit(conn, event_type=event, aggregate_type="player", aggregate_id=player_id,
                payload=payload, player_id=player_id, partner_id=store.player_partner(conn, player_id))


def limits_view(conn: Connection, player_id: str, *, now: datetime | None = None) -> dict[str, Any]:
    """The player's limits as the API shows them: in force, pending, used and left per window."""
    now = _now(now)
    in_force = _limits_in_force(conn, player_id, now)
    pending = [c for c in store.pending_changes(conn, player_id) if c.change.effective_at > now]
    currencies = sorted(set(in_force) | {c.currency for c in pending})
    out: dict[str, Any] = {"player_id": player_id, "currencies": []}
    for currency in currencies:
        limits = in_force.get(currency, {})
        used = store.used(conn, player_id, currency, {p: window_start(p, now) for p in WINDOWS}, now)
        waiting = {c.change.period: c for c in pending if c.currency == currency}
        periods = []
        for period in Period:
            if period not in limits and period not in waiting:
                continue
            limit = limits.get(period)
            change = waiting.get(period)
            periods.append({
                "period": period.value, "amount": limit, "used": used[period],
                "remaining": None if limit is None else max(limit - used[period], 0),
                "pending_change": None if change is None else {
                    "amount": change.change.amount, "effective_at": change.change.effective_at,
                    "requested_at": change.requested_at},
            })
        out["currencies"].append({"currency": currency, "limits": periods})
    return out


# --- exclusions ------------------------------------------------------------------------------

def self_exclude(conn: Connection, player_id: str, duration: timedelta | None, *, actor: str,
                 now: datetime | None = None) -> store.StoredExclusion:
    """Self-exclusion from now, for `duration` (at least 6 months) or permanently (None)."""
    return _exclude(conn, player_id, self_exclusion(_now(now), duration), actor, "player.self_excluded")


def take_time_out(conn: Connection, player_id: str, duration: timedelta, *, actor: str,
                  now: datetime | None = None) -> store.StoredExclusion:
    return _exclude(conn, player_id, time_out(_now(now), duration), actor, "player.timed_out")


def _exclude(conn: Connection, player_id: str, exclusion: Exclusion, actor: str,
             event: str) -> store.StoredExclusion:
    partner = store.player_partner(conn, player_id)
    if partner is None:
        raise PlayerNotFound(player_id)
    # The lock orders this against deposits being reserved right now: they finish before or
    # see the exclusion.
    store.lock_player(conn, player_id)
    stored = store.add_exclusion(conn, player_id, exclusion, actor)
    payload = exclusion_json(stored)
    audit.record(conn, actor=actor, action=event, subject_type="player", subject_id=player_id,
                 before=None, after=payload)
    outbox.emit(conn, event_type=event, aggregate_type="player", aggregate_id=player_id,
                payload=payload, player_id=player_id, partner_id=partner)
    return stored


def active_exclusions(conn: Connection, player_id: str, *, now: datetime | None = None) -> list[store.StoredExclusion]:
    return store.active_exclusions(store.exclusions(conn, player_id), _now(now))


def exclusion_json(stored: store.StoredExclusion) -> dict[str, Any]:
    e = stored.exclusion
    return {"id": stored.id, "kind": e.kind.value, "starts_at": e.starts_at.isoformat(),
            "ends_at": e.ends_at.isoformat() if e.ends_at else None, "permanent": e.ends_at is None}
