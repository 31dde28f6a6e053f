"""The names of API scopes, in one place, and what a key of each role gets by default.

A scope names one thing a key may do. Routes ask for one with `api.auth.require(Scope.X)`;
`commands.api_keys` refuses to make a key with a scope that is not listed here. Nothing else:
which player a key may see is the role's business (tenant isolation), not a scope's.
Must never: import anything first-party outside `domain` (store, commands and api all read it).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Scope(StrEnum):
    PLAYERS_READ = "players:read"
    PLAYERS_WRITE = "players:write"
    DEPOSITS_WRITE = "deposits:write"
    WITHDRAWALS_WRITE = "withdrawals:write"
    BETS_WRITE = "bets:write"
    RESULTS_WRITE = "results:write"        # market results (settlement input)
    WEBHOOKS_WRITE = "webhooks:write"      # webhook endpoints, events, attempts, resends
    API_KEYS_READ = "api_keys:read"        # list and read API keys (never their secrets)
    API_KEYS_WRITE = "api_keys:write"      # create, roll and revoke API keys
    OPERATOR_REVIEW = "operator:review"    # manual reviews: withdrawals, KYC, corrections


class Role(StrEnum):
    PARTNER = "partner"      # a sportsbook partner: sees its own players only
    OPERATOR = "operator"    # the house's back office: sees every player


ALL_SCOPES: frozenset[str] = frozenset(Scope)

# What a key of each role gets when no scopes are named (dev stack, `create_api_key` callers).
PARTNER_DEFAULT: frozenset[str] = ALL_SCOPES - {Scope.OPERATOR_REVIEW, Scope.RESULTS_WRITE}
OPERATOR_DEFAULT: frozenset[str] = ALL_SCOPES


# Scopes only an operator key may hold: a partner key never gets them, whoever makes it.
OPERATOR_ONLY: frozenset[str] = frozenset({Scope.OPERATOR_REVIEW})


def default_scopes(role: Role | str) -> frozenset[str]:
    return PARTNER_DEFAULT if role == Role.PARTNER else OPERATOR_DEFAULT


def unknown(scopes: Iterable[str]) -> list[str]:
    """The given scope names that are not defined here (empty when all are known)."""
    return sorted(str(s) for s in scopes if str(s) not in ALL_SCOPES)
