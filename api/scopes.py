"""The names of API scopes, in one place.

A scope names one thing a key may do. Routes ask for one with `api.auth.require(Scope.X)`;
`store.api_keys` refuses to store a key with a scope that is not listed here. Nothing else:
which player a key may see is the role's business (tenant isolation), not a scope's.
"""

from __future__ import annotations

from enum import StrEnum


class Scope(StrEnum):
    PLAYERS_READ = "players:read"
    PLAYERS_WRITE = "players:write"
    DEPOSITS_WRITE = "deposits:write"
    WITHDRAWALS_WRITE = "withdrawals:write"
    BETS_WRITE = "bets:write"
    RESULTS_WRITE = "results:write"        # market results (settlement input)
    OPERATOR_REVIEW = "operator:review"    # manual reviews: withdrawals, KYC, corrections


ALL_SCOPES: frozenset[str] = frozenset(Scope)

# What a key of each role gets when no scopes are named (dev stack, `create_api_key` callers).
PARTNER_DEFAULT: frozenset[str] = ALL_SCOPES - {Scope.OPERATOR_REVIEW, Scope.RESULTS_WRITE}
OPERATOR_DEFAULT: frozenset[str] = ALL_SCOPES


def unknown(scopes) -> list[str]:
    """The given scope names that are not defined here (empty when all are known)."""
    return sorted(str(s) for s in scopes if str(s) not in ALL_SCOPES)
