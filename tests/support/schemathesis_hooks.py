"""Schemathesis hooks for tests/api/test_openapi_contract.py (loaded via SCHEMATHESIS_HOOKS).

Only schema-valid (positive) cases are touched, and only to make them what a real client with
real data sends; negative cases go out as generated, so malformed input is still tried:

* a POST gets a fresh Idempotency-Key: generated keys repeat across cases, and a key sent
  again with another body is rightly refused (422), which is not what the case tests;
* list cursors name items the API really listed (recorded from earlier answers of the same
  list under the same key), or are left out: a made-up id names no item (400 invalid_cursor),
  and the two cursors exclude each other -- rules no JSON Schema can state;
* a whole number drawn as a float (134.0, an integer to JSON Schema) is sent as 134: the API
  reads JSON numbers literally and money never floats (StrictInt), by design;
* an operator key names the partner a player or a webhook endpoint is made for (a partner key
  is its partner; the schema cannot make a field required for one role only);
* a statement period ends after it starts;
* a withdrawal is asked for the player the test made ready for one (KYC verified, located,
  funded; SETTLEPAY_ST_WITHDRAWAL_PLAYER) in its currency, from its located IP address, so
  the stateful links go on from a real withdrawal to its second factor.

What the schema cannot promise -- business rules over schema-valid data -- is REFUSALS: per
operation, the documented problem codes (api/problems.py STATUS_BY_CODE) a schema-valid request
may still be refused with. The test allows their statuses in positive_data_acceptance, and the
check `positive_refusals_are_documented_business_rules` below holds every such refusal to the
list: the right code with its status, documented for the operation, and never
`validation_error` (that would be the schema promising what the API refuses).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import schemathesis

from api.problems import DEFAULT_REFUSAL_STATUS, STATUS_BY_CODE

_RUN = uuid.uuid4().hex[:12]
_COUNTER = itertools.count()
PARTNER = "schemathesis-partner"
WITHDRAWAL_PLAYER = os.environ.get("SETTLEPAY_ST_WITHDRAWAL_PLAYER")

_GATES = ("currency_not_supported", "amount_below_minimum", "amount_above_maximum")
_WINDOW = ("reconciliation_window_empty", "reconciliation_window_in_future")
REFUSALS: dict[str, tuple[str, ...]] = {
    "POST /v1/deposits": _GATES,
    "POST /v1/withdrawals": (*_GATES, "payout_destination_unknown"),
    "POST /v1/bets": (*_GATES, "invalid_odds", "invalid_bet", "invalid_place_terms",
                      "payout_above_maximum"),
    "POST /v1/bets/{bet_id}/cash_out": ("invalid_cash_out",),
    "POST /v1/free_bets": ("invalid_promotion",),
    "POST /v1/bonuses": ("invalid_promotion",),
    "PUT /v1/promotions/deposit_match/{partner_id}": ("invalid_promotion",),
    "POST /v1/markets/{market_id}/results": ("invalid_result",),
    "POST /v1/markets/{market_id}/cancellations": ("invalid_cancellation",),
    "POST /v1/players/{player_id}/2fa/totp/confirm": ("second_factor_invalid",
                                                      "second_factor_malformed"),
    "POST /v1/players/{player_id}/second_factor/totp/confirm": ("second_factor_invalid",
                                                                "second_factor_malformed"),
    "POST /v1/withdrawals/{withdrawal_id}/2fa": ("second_factor_invalid",
                                                 "second_factor_malformed",
                                                 "second_factor_failed"),
    "POST /v1/withdrawals/{withdrawal_id}/second_factor": ("second_factor_invalid",
                                                           "second_factor_malformed",
                                                           "second_factor_failed"),
    "PUT /v1/players/{player_id}/limits": ("invalid_limit_amount", "currency_not_supported"),
    "POST /v1/players/{player_id}/self-exclusion": ("self_exclusion_too_short",),
    "POST /v1/players/{player_id}/time-out": ("time_out_out_of_bounds",),
    "POST /v1/webhook_endpoints": ("webhook_url_refused", "event_types_invalid"),
    "PATCH /v1/webhook_endpoints/{endpoint_id}": ("webhook_url_refused", "event_types_invalid"),
    "POST /v1/webhook_endpoints/{endpoint_id}/rotate_secret": ("rotation_grace_too_long",),
    "POST /v1/webhook_endpoints/{endpoint_id}/recover": ("recover_since_too_far_back",),
    "POST /v1/reconciliation/runs": _WINDOW,
    "POST /v1/api_keys": ("api_key_invalid",),
    # Provider webhooks: a schema-valid body without the provider's signature (a secret no
    # schema carries) is refused 400; signed deliveries are tests/security/test_webhook_*.
    "POST /v1/webhooks/stripe": ("webhook_signature_invalid",),
    "POST /v1/webhooks/kyc": ("webhook_signature_invalid",),
}


def refusal_status(code: str) -> int:
    return STATUS_BY_CODE.get(code, DEFAULT_REFUSAL_STATUS)


def _is_positive(case: Any) -> bool:
    meta = getattr(case, "_meta", None) or getattr(case, "meta", None)
    if meta is None:
        return True
    return str(getattr(meta.generation.mode, "value", meta.generation.mode)) == "positive"


def _label(case: Any) -> str:
    return f"{case.method.upper()} {case.operation.path}"


# What lists answered: item ids and next cursors, per operation and filters (one operator key
# throughout): a cursor must name an item of the list as filtered.
_IDS: dict[tuple[str, str], list[str]] = defaultdict(list)
_CURSORS: dict[tuple[str, str], list[str]] = defaultdict(list)
_NOT_FILTERS = ("starting_after", "ending_before", "cursor", "limit")


def _listing(case: Any) -> tuple[str, str]:
    query = case.query or {}
    filters = sorted((str(k), str(v)) for k, v in query.items() if k not in _NOT_FILTERS)
    return _label(case), f"{case.formatted_path}?{filters}"


def _whole(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {key: _whole(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_whole(item) for item in value]
    return value


def _moment(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _cursors(case: Any) -> None:
    query = case.query
    if not query:
        return
    listing = _listing(case)
    if "starting_after" in query and "ending_before" in query:
        del query["ending_before"]
    for name in ("starting_after", "ending_before"):
        if name in query:
            known = _IDS.get(listing)
            if known:
                query[name] = known[len(str(query[name])) % len(known)]
            else:
                del query[name]
    if "cursor" in query:
        known = _CURSORS.get(listing)
        if known:
            query["cursor"] = known[-1]
        else:
            del query["cursor"]


def _period(query: dict[str, Any]) -> None:
    start, end = _moment(query.get("created[gte]")), _moment(query.get("created[lt]"))
    if start is None or end is None or (start.tzinfo is None) != (end.tzinfo is None):
        return
    if end <= start:
        query["created[lt]"] = (start + timedelta(days=1)).isoformat()


def _past(query: dict[str, Any]) -> None:
    """Balances `at` a moment: a client asks about the past (the API refuses a future one, a
    rule the schema cannot state; generated moments may lie minutes ahead of the clock)."""
    moment = _moment(query.get("at"))
    if moment is None:
        return
    now = datetime.now(moment.tzinfo or UTC)
    if moment.tzinfo is None:
        now = now.replace(tzinfo=None)
    if moment > now - timedelta(seconds=1):
        query["at"] = (now - timedelta(days=1)).isoformat()


@schemathesis.hook
def before_call(ctx: Any, case: Any, kwargs: Any) -> None:
    if not _is_positive(case):
        return
    label = _label(case)
    method = case.method.upper()
    if method == "GET":
        _cursors(case)
        if label.endswith("/transactions.csv") and case.query:
            _period(case.query)
        if label.endswith("/balances") and case.query:
            _past(case.query)
        return
    if isinstance(case.body, (dict, list)):
        case.body = _whole(case.body)
    if label in ("POST /v1/players", "POST /v1/webhook_endpoints") and \
            isinstance(case.body, dict) and case.body.get("partner_id") is None:
        case.body["partner_id"] = PARTNER
    if label == "POST /v1/withdrawals" and WITHDRAWAL_PLAYER and isinstance(case.body, dict):
        case.body["player_id"] = WITHDRAWAL_PLAYER
        case.body["currency"] = "USD"
        case.body.pop("ip_address", None)     # another IP than the located one: ip_changed
        case.body.pop("payout_destination", None)   # the account's default
    if method == "POST":
        if case.headers is None:
            case.headers = {}
        case.headers["Idempotency-Key"] = f"st-{_RUN}-{next(_COUNTER)}"


@schemathesis.hook
def after_call(ctx: Any, case: Any, response: Any) -> None:
    if case.method.upper() != "GET" or response.status_code != 200:
        return
    try:
        body = response.json()
    except ValueError:
        return
    if not isinstance(body, dict):
        return
    listing = _listing(case)
    if isinstance(body.get("data"), list):
        for item in body["data"]:
            if isinstance(item, dict) and isinstance(item.get("id"), str) and \
                    item["id"] not in _IDS[listing]:
                _IDS[listing].append(item["id"])
    if isinstance(body.get("next_cursor"), str) and body["next_cursor"]:
        _CURSORS[listing].append(body["next_cursor"])


@schemathesis.check
def positive_refusals_are_documented_business_rules(ctx: Any, response: Any,
                                                    case: Any) -> bool | None:
    """A schema-valid request refused with 400/422 must be refused for a business rule the
    operation documents (REFUSALS), with that code's status; never for `validation_error`."""
    if not _is_positive(case) or response.status_code not in (400, 422):
        return None
    label = _label(case)
    allowed = REFUSALS.get(label)
    if allowed is None:
        return None          # positive_data_acceptance (without 400/422 allowed) judges it
    try:
        code = response.json().get("code")
    except (ValueError, AttributeError):
        code = None
    if code not in allowed:
        raise AssertionError(f"{label}: schema-valid data refused {response.status_code} "
                             f"{code!r}, not one of the documented refusals {allowed}")
    if response.status_code != refusal_status(code):
        raise AssertionError(f"{label}: {code!r} answered {response.status_code}, "
                             f"not its status {refusal_status(code)}")
    return None
