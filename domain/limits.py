"""Responsible-gaming rules: deposit limits, their changes, self-exclusion and time-outs.

Deposit limits (minor units, per currency) cap what a player deposits in a rolling window:
a day (24 h), a week (7 days) or a month (30 days). Rolling windows have no midnight or
time-zone edge a player could game by depositing at 23:59 and again at 00:01.

Changing a limit:
  - tightening (a lower limit, or a limit where there was none) takes effect at once;
  - loosening (a higher limit, or removing it) takes effect only after the cool-off (24 h):
    it waits as a pending change, which a later request replaces;
  - asking for the limit in force cancels any pending change.

Self-exclusion (for a period, at least 6 months, or permanent) and a time-out (24 h to 6 weeks)
block deposits and bets from the moment they are asked for; withdrawals stay possible, the
player's money is theirs. Neither can be shortened or lifted early: a new request can only add.

Must never: touch a database or the clock (callers pass `now`); amounts are integers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class Period(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


WINDOWS: dict[Period, timedelta] = {
    Period.DAY: timedelta(days=1),
    Period.WEEK: timedelta(days=7),
    Period.MONTH: timedelta(days=30),
}
LONGEST_WINDOW = max(WINDOWS.values())

SELF_EXCLUSION_MIN = timedelta(days=182)
TIME_OUT_MIN = timedelta(hours=24)
TIME_OUT_MAX = timedelta(weeks=6)


class InvalidRequest(ValueError):
    """A request the rules refuse (bad amount, duration out of bounds); `code` names it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- deposit limits ------------------------------------------------------------------------

class ChangeKind(StrEnum):
    TIGHTEN = "tighten"        # in force at once
    LOOSEN = "loosen"          # in force after the cool-off
    UNCHANGED = "unchanged"    # the limit asked for is the one in force


@dataclass(frozen=True)
class LimitChangePlan:
    kind: ChangeKind
    effective_at: datetime


def plan_limit_change(current: int | None, requested: int | None, now: datetime,
                      cool_off: timedelta) -> LimitChangePlan:
    """How a request to move a limit from `current` to `requested` (None = no limit) lands."""
    if requested is not None and (isinstance(requested, bool) or not isinstance(requested, int)
                                  or requested <= 0):
        raise InvalidRequest("invalid_limit_amount",
                             "a deposit limit is a positive integer in minor units")
    if requested == current:
        return LimitChangePlan(ChangeKind.UNCHANGED, now)
    tighter = requested is not None and (current is None or requested < current)
    if tighter:
        return LimitChangePlan(ChangeKind.TIGHTEN, now)
    return LimitChangePlan(ChangeKind.LOOSEN, now + cool_off)


@dataclass(frozen=True)
class PendingChange:
    period: Period
    amount: int | None          # None: the limit goes away
    effective_at: datetime


def effective_limits(current: Mapping[Period, int], pending: Iterable[PendingChange],
                     now: datetime) -> dict[Period, int]:
    """The limits in force at `now`: the stored ones with every due pending change applied."""
    limits = dict(current)
    for change in sorted(pending, key=lambda c: c.effective_at):
        if change.effective_at > now:
            continue
        if change.amount is None:
            limits.pop(change.period, None)
        else:
            limits[change.period] = change.amount
    return limits


@dataclass(frozen=True)
class LimitBreach:
    period: Period
    limit: int
    used: int
    requested: int

    @property
    def remaining(self) -> int:
        return max(self.limit - self.used, 0)

    def reason(self, currency: str) -> str:
        return (f"{self.period.value} deposit limit of {self.limit} {currency} minor units "
                f"reached: {self.used} used, {self.remaining} left, {self.requested} asked")


def window_start(period: Period, now: datetime) -> datetime:
    return now - WINDOWS[period]


def check_deposit(limits: Mapping[Period, int], used: Mapping[Period, int],
                  amount: int) -> LimitBreach | None:
    """The breach with the least room left, or None when `amount` fits every limit."""
    breaches = [LimitBreach(p, limit, used.get(p, 0), amount)
                for p, limit in limits.items() if used.get(p, 0) + amount > limit]
    return min(breaches, key=lambda b: (b.remaining, list(Period).index(b.period)), default=None)


# --- self-exclusion and time-outs --------------------------------------------------------

class ExclusionKind(StrEnum):
    SELF_EXCLUSION = "self_exclusion"
    TIME_OUT = "time_out"


# Operations an exclusion blocks ("withdrawal" is deliberately absent).
BLOCKED_OPERATIONS = frozenset({"deposit", "bet"})


@dataclass(frozen=True)
class Exclusion:
    kind: ExclusionKind
    starts_at: datetime
    ends_at: datetime | None    # None: permanent

    def active(self, now: datetime) -> bool:
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)

    def describe(self) -> str:
        until = "permanently" if self.ends_at is None else f"until {self.ends_at.isoformat()}"
        return f"{self.kind.value.replace('_', '-')} {until}"


def self_exclusion(now: datetime, duration: timedelta | None) -> Exclusion:
    """A self-exclusion starting now; `duration` None means permanent."""
    if duration is not None and duration < SELF_EXCLUSION_MIN:
        raise InvalidRequest("self_exclusion_too_short",
                             f"a self-exclusion lasts at least {SELF_EXCLUSION_MIN.days} days; "
                             "for a shorter break use a time-out")
    ends_at = None if duration is None else now + duration
    return Exclusion(ExclusionKind.SELF_EXCLUSION, now, ends_at)


def time_out(now: datetime, duration: timedelta) -> Exclusion:
    if not TIME_OUT_MIN <= duration <= TIME_OUT_MAX:
        raise InvalidRequest("time_out_out_of_bounds",
                             f"a time-out lasts from {TIME_OUT_MIN} to {TIME_OUT_MAX.days} days")
    return Exclusion(ExclusionKind.TIME_OUT, now, now + duration)


def blocking_exclusion(exclusions: Iterable[Exclusion], operation: str,
                       now: datetime) -> Exclusion | None:
    """The exclusion that blocks `operation` now (the longest-lasting one), or None."""
    if operation not in BLOCKED_OPERATIONS:
        return None
    active = [e for e in exclusions if e.active(now)]
    if not active:
        return None
    # Self-exclusion is named before a time-out; then the one that lasts longest.
    return max(active, key=lambda e: (e.kind is ExclusionKind.SELF_EXCLUSION,
                                      e.ends_at is None, e.ends_at or now))
