"""Which events an endpoint gets: its `event_types` filters, and the volume rule.

    matches(["deposit.*", "withdrawal.paid"], "deposit.succeeded")    # True
    matches(["*"], "bet.settled")                                     # False: per-bet, ask for it
    matches(["bet.*"], "bet.settled")                                 # True

A filter is `*` (everything but per-bet events), `<prefix>.*` (every type under the prefix,
per-bet ones included when the prefix names them) or an exact type. Pure.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

EVERYTHING = "*"
DEFAULT_FILTERS = (EVERYTHING,)

# One per bet: a 100,000-bet market would be 100,000 deliveries per partner. By subscription.
PER_BET_TYPES = frozenset({"bet.placed", "bet.rejected", "bet.settled", "bet.resettled",
                           "bet.rolled_back"})
# About the webhooks themselves: go to the partner's other endpoints, never cause another.
ENDPOINT_DISABLED = "endpoint.disabled"
MESSAGE_EXHAUSTED = "message.attempt.exhausted"
OPERATIONAL_TYPES = frozenset({ENDPOINT_DISABLED, MESSAGE_EXHAUSTED})
TEST = "webhook.test"

FILTER = re.compile(r"^(\*|[a-z0-9_]+(\.[a-z0-9_]+)*(\.\*)?)$")
FILTERS_MAX = 64


def invalid_filters(filters: Iterable[str]) -> list[str]:
    """The filters that are not `*`, `prefix.*` or a type name (empty: all fine)."""
    return [f for f in filters if len(f) > 200 or not FILTER.match(f)]


def matches(filters: Iterable[str], event_type: str) -> bool:
    for pattern in filters:
        if pattern == EVERYTHING:
            if event_type not in PER_BET_TYPES:
                return True
        elif pattern.endswith(".*"):
            if event_type.startswith(pattern[:-1]):
                return True
        elif pattern == event_type:
            return True
    return False


def wants_per_bet(filters: Iterable[str]) -> bool:
    """Whether these filters take any per-bet event (so per-bet events must be made)."""
    return any(matches(filters, event_type) for event_type in PER_BET_TYPES)
