"""Responsible-gaming changes: deposit limits, self-exclusion, time-out, and the deposit-limit
reservation a deposit makes (and releases when it fails).

`gate_deposit` is the deposit's whole gate: every compliance gate, then the reservation, which
under the player's responsible-gaming lock applies due limit changes, re-checks exclusions and
limits and records the amount against the limits, in the caller's transaction, so concurrent
deposits cannot together exceed a limit. It is idempotent per deposit id: once a deposit's
reservation (or its refusal) is recorded, a retry gets that recorded answer and counts nothing
twice. `release_deposit_amount` stops counting a failed deposit.

Every change writes its audit record (and, for the player's limits and exclusions, an outbox
event) in the caller's transaction.
Must never: commit (the caller owns the transaction) or read the clock when given `now`.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection

import audit
import outbox
from compliance import gates
from compliance.limits import Code, exclusion_refusal, limit_refusal, limits_view, used
from compliance.request import ALLOWED, GateDecision, GateRequest, Operation
from domain.limits import (
    ChangeKind,
    Exclusion,
    InvalidRequest,
    Period,
    plan_limit_change,
    self_exclusion,
    time_out,
)
from settlepay.config import Settings
from store import responsible_gaming as store

SYSTEM_ACTOR = "system:responsible_gaming"


class ReservationConflict(Exception):
    """The deposit id was reserved before with another player, amount or currency."""


class PlayerNotFound(Exception):
    pass


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# --- the deposit's gate and reservation -------------------------------------------------------

def gate_deposit(conn: Connection, settings: Settings, req: GateRequest, *, actor: str,
                 now: datetime | None = None) -> GateDecision:
    """Every gate, then the reservation of `req.amount` for deposit `req.deposit_id`.

    A retry for the same deposit gets the recorded answer of the reservation (issue 9, item 10:
    a retried gate used to count the deposit's own reservation and refuse it).
    """
    if req.operation is not Operation.DEPOSIT or req.deposit_id is None:
        raise ValueError("gate_deposit gates a deposit: operation DEPOSIT and a deposit_id")
    now = _now(now)
    recorded = _replay(store.usage(conn, req.deposit_id), req.player_id, req.amount, req.currency)
    if recorded is not None:
        return recorded
    decision = gates.check(conn, settings, req, now=now)
    if not decision.allowed:
        return decision
    # The gates found the player (player_active) and the deposit has no reservation yet (read
    # above, in this transaction): the reservation starts at the player's lock.
    return _reserve_under_lock(conn, req.player_id, req.amount, req.currency, req.deposit_id,
                               actor=actor, now=now)


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
    return _reserve_under_lock(conn, player_id, amount, currency, deposit_id, actor=actor, now=now)


def _reserve_under_lock(conn: Connection, player_id: str, amount: int, currency: str,
                        deposit_id: str, *, actor: str, now: datetime) -> GateDecision:
    """The reservation from the player's lock on, for an existing player: every read that
    decides it is made under the lock, each once."""
    store.lock_player(conn, player_id)
    reads = store.reservation_reads(conn, player_id, deposit_id)
    # A concurrent call for the same deposit may have committed while we waited for the lock.
    replay = _replay(reads.usage, player_id, amount, currency)
    if replay is not None:
        return replay
    limits = _apply_due_changes(conn, player_id, reads.limits, reads.pending,
                                now).get(currency, {})

    items = [s.exclusion for s in reads.exclusions]
    refusal = exclusion_refusal(items, Operation.DEPOSIT.value, now)
    counted = used(conn, player_id, currency, limits, now) if limits else {}
    if refusal is None:
        refusal = limit_refusal(limits, counted, amount, currency)
    decision = GateDecision(refusal)

    status = "reserved" if decision.allowed else "rejected"
    store.add_usage(conn, store.Usage(deposit_id, player_id, currency, amount, status,
                                      decision.code, decision.reason, now))
    audit.record(conn, actor=actor, action=f"deposit_limit.{status}", subject_type="deposit",
                 subject_id=deposit_id, before=None,
                 after={"player_id": player_id, "amount": amount, "currency": currency,
                        "code": decision.code, "limits": {p.value: v for p, v in limits.items()},
                        "used_before": {p.value: v for p, v in counted.items()}})
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
                 after={"status": "released", "player_id": usage.player_id,
                        "amount": usage.amount, "currency": usage.currency})
    return True


def _replay(usage: store.Usage | None, player_id: str, amount: int,
            currency: str) -> GateDecision | None:
    """The recorded answer for this deposit, None when nothing is recorded yet."""
    if usage is None:
        return None
    if (usage.player_id, usage.amount, usage.currency) != (player_id, amount, currency):
        raise ReservationConflict(f"deposit {usage.deposit_id} was reserved for "
                                  f"{usage.player_id} {usage.amount} {usage.currency}")
    return ALLOWED if usage.code == ALLOWED.code else GateDecision.deny(usage.code, usage.reason)


# --- limits ----------------------------------------------------------------------------------

def _apply_due_changes(conn: Connection, player_id: str, stored: dict[str, dict[Period, int]],
                       pending: list[store.StoredChange],
                       now: datetime) -> dict[str, dict[Period, int]]:
    """Make loosenings whose cool-off has passed the limits in force (caller holds the lock;
    `stored` and `pending` are the player's limits and pending changes read under it).
    Returns the limits in force afterwards (currency -> period -> amount), as a read of
    deposit_limits would now answer them."""
    in_force = {currency: dict(periods) for currency, periods in stored.items()}
    for item in pending:
        if item.change.effective_at > now:
            continue
        before = stored.get(item.currency, {}).get(item.change.period)
        store.set_limit(conn, player_id, item.currency, item.change.period, item.change.amount,
                        now)
        if item.change.amount is None:
            in_force.get(item.currency, {}).pop(item.change.period, None)
        else:
            in_force.setdefault(item.currency, {})[item.change.period] = item.change.amount
        store.resolve_pending(conn, item.id, "applied", now)
        _announce(conn, player_id, SYSTEM_ACTOR, "deposit_limit.changed", item.currency,
                  item.change.period, before, item.change.amount, item.change.effective_at)
    return {currency: periods for currency, periods in in_force.items() if periods}


def set_deposit_limits(conn: Connection, settings: Settings, player_id: str, currency: str,
                       requested: Mapping[Period, int | None], *, actor: str,
                       now: datetime | None = None) -> dict[str, Any]:
    """Ask for new limits (None removes one): tighter at once, looser after the cool-off.
    Returns the limits view (`compliance.limits.limits_view`) after the change."""
    now = _now(now)
    if currency not in settings.supported_currencies:
        raise InvalidRequest("currency_not_supported", f"currency {currency} is not supported")
    if store.player_partner(conn, player_id) is None:
        raise PlayerNotFound(player_id)
    store.lock_player(conn, player_id)
    current = _apply_due_changes(conn, player_id, store.limits(conn, player_id),
                                 store.pending_changes(conn, player_id), now).get(currency, {})
    pending = {c.change.period: c for c in store.pending_changes(conn, player_id)
               if c.currency == currency}
    cool_off = timedelta(hours=settings.deposit_limit_cool_off_hours)
    # Plan every period before writing any: one bad amount refuses the whole request.
    plans = {Period(p): plan_limit_change(current.get(Period(p)), amount, now, cool_off)
             for p, amount in requested.items()}
    for period, plan in plans.items():
        amount = requested[period]
        waiting = pending.get(period)
        if (plan.kind is ChangeKind.LOOSEN and waiting is not None
                and waiting.change.amount == amount):
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
    return limits_view(conn, player_id, now)


def _announce(conn: Connection, player_id: str, actor: str, event: str, currency: str,
              period: Period, before: int | None, after: int | None,
              effective_at: datetime) -> None:
    payload = {"player_id": player_id, "currency": currency, "period": period.value,
               "amount": after, "previous_amount": before,
               "effective_at": effective_at.isoformat()}
    audit.record(conn, actor=actor, action=event, subject_type="player", subject_id=player_id,
                 before={"currency": currency, "period": period.value, "amount": before},
                 after=payload)
    outbox.emit(conn, event_type=event, aggregate_type="player", aggregate_id=player_id,
                payload=payload, player_id=player_id,
                partner_id=store.player_partner(conn, player_id))


# --- exclusions ------------------------------------------------------------------------------

def exclusion_payload(player_id: str, stored: store.StoredExclusion) -> dict[str, Any]:
    """The exclusion resource: the API's answer and the outbox event's payload."""
    e = stored.exclusion
    return {"object": "exclusion", "id": stored.id, "player_id": player_id,
            "kind": e.kind.value, "starts_at": e.starts_at.isoformat(),
            "ends_at": e.ends_at.isoformat() if e.ends_at else None,
            "permanent": e.ends_at is None}


def self_exclude(conn: Connection, player_id: str, duration: timedelta | None, *, actor: str,
                 now: datetime | None = None) -> store.StoredExclusion:
    """Self-exclusion from now, for `duration` (at least 6 months) or permanently (None)."""
    return _exclude(conn, player_id, self_exclusion(_now(now), duration), actor,
                    "player.self_excluded")


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
    payload = exclusion_payload(player_id, stored)
    audit.record(conn, actor=actor, action=event, subject_type="player", subject_id=player_id,
                 before=None, after=payload)
    outbox.emit(conn, event_type=event, aggregate_type="player", aggregate_id=player_id,
                payload=payload, player_id=player_id, partner_id=partner)
    return stored
