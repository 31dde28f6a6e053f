"""The API versions the partner API serves, and which one a request is served under.

A version is a date (`YYYY-MM-DD`). `VERSIONS` lists the served ones, oldest first; the last is
the current one. Every API key is pinned to a version (api_keys.api_version, set when the key is
made: the current one, or one asked for), so an integration keeps its behaviour when a new
version appears. A request is served under:

1. the version its `Settlepay-Version` header names (one of VERSIONS, or 400), else
2. its key's pinned version, else (no key, or a key pinned to a version no longer served)
3. the oldest served version not older than the pin, else the current one.

The policy (what needs a new version, how long an old one stays served, how to upgrade) is the
README's "API versions" paragraph and api/versioning.py. Read VERSIONS through this module
(`api_versions.VERSIONS`), never copied, so there is one list.
Must never: import anything first-party outside `domain`.
"""

from __future__ import annotations

import re

VERSIONS: tuple[str, ...] = ("2026-12-01", "2026-12-06")
# The changelog: what each version changed against the one before it (README "API versions").
CHANGES: dict[str, str] = {
    "2026-12-01": "The first version.",
    "2026-12-06": "Identifiers and codes (currency, partner_id, payment_method, return_url, "
                  "email, jurisdiction, document number and country, second-factor codes, "
                  "payout destinations) are taken exactly as sent: surrounding white space is "
                  "refused (422 validation_error), as their schemas always said, instead of "
                  "being stripped.",
}
# The version from which a change applies (request bodies read it through api.versioning).
EXACT_IDENTIFIERS = "2026-12-06"
FORMAT = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def current() -> str:
    return VERSIONS[-1]


def at_least(version: str, change: str) -> bool:
    """Whether a request served under `version` has `change` (a version of CHANGES)."""
    return version >= change


def served(version: str) -> bool:
    return version in VERSIONS


def for_pin(pinned: str | None) -> str:
    """The version a request without a header is served under, for a key pinned to `pinned`
    (None: no key). A retired pin moves up to the oldest version still served after it."""
    if pinned is None:
        return current()
    return next((version for version in VERSIONS if version >= pinned), current())
