"""Examples for every operation of the OpenAPI document, made in one place (so /docs is complete).

    install(app)     # api/app.py: app.openapi() adds the examples to the generated document

For every operation:
* its JSON request body gets an `example`: the model's own (`model_config` json_schema_extra
  `examples`), else one built from its schema (`example_of`: the fields' `examples`, defaults,
  enum values, formats and patterns, with the realistic values of NAMED for common names);
* each success answer gets an `example`, built the same way from its response model (the CSV
  statement gets a CSV text);
* each problem answer (application/problem+json) gets `examples`, one per problem `code` the
  operation can answer with that status: the API-wide ones (PROBLEMS_BY_STATUS: no key, a
  missing scope, bad JSON, rate limits, Idempotency-Key misuse ...), the not-found code of each
  path parameter, and, for the requests that change something, the refusals of its area
  (REFUSALS_BY_TAG: codes of api/problems.py STATUS_BY_CODE, under the status that table gives
  them), and the refusals a path parameter answers on any method, reads included
  (REFUSALS_BY_PARAMETER: a bet id several partners use). Problem bodies are made by the same
  functions the API answers with.

tests/api/test_openapi_examples.py walks the document: every operation has them, and every
example validates against its own schema. Must never: change a schema, a status or a route.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from api import versioning
from api.auth import _unauthorized
from api.body_limit import DEFAULT_MAX_BYTES, too_large
from api.idempotency import _in_use, _reused, required_idempotency_key
from api.problems import (
    PROBLEM_JSON,
    Problem,
    database_unavailable,
    not_found,
    refused,
)
from api.rate_limits import too_many
from domain.rate_limits import Decision, RateLimit
from workflows.contracts.refusal import Refusal

EXAMPLE_MOMENT = "2026-12-01T09:30:00Z"

# Realistic values for common property names (used when they fit the property's schema).
NAMED: dict[str, Any] = {
    "currency": "USD", "country": "US", "jurisdiction": "US-NJ", "email": "ada@example.com",
    "first_name": "Ada", "last_name": "Lovelace", "date_of_birth": "1990-12-10",
    "external_ref": "crm-4711", "name": "checkout service", "partner_id": "acme-sportsbook",
    "player_id": "pl_3f9c2a7b1d", "deposit_id": "dep_8a1c0e44f2", "bet_id": "bet_20261201_0042",
    "market_id": "mkt_nfl_2026_w14_kc_buf", "withdrawal_id": "wd_5b7e1c9a03",
    "selection_id": "home", "selection": "home", "code": "492039", "url":
    "https://partner.example.com/webhooks/settlepay", "payment_method": "pm_card_visa",
    "ip_address": "203.0.113.7", "reason": "requested by the player", "description":
    "Requested by the player", "amount": 5000, "stake": 1000, "odds": "2.50", "version": 1,
    "result_version": 1, "requests": 50, "window_seconds": 1, "latitude": 40.2206,
    "longitude": -74.7597, "accuracy_meters": 25, "secret": "whsec_4f1d9a0c7e2b", "prefix":
    "sp_Zm9vYmFyYmF6", "type": "deposit.succeeded", "object_id": "dep_8a1c0e44f2",
    "api_version": versioning.CURRENT, "expiry": "12/30", "region": "NJ",
    "event_type": "deposit.succeeded", "min_odds": "1.50", "note": "documents checked",
    "payout_destination": "pd_7f3a9c21e0", "destination": "pm_card_visa",
}
# A sample key for an object of free-form keys (additionalProperties), by property name.
SAMPLE_KEYS: dict[str, str] = {"rate_limits": "*", "selections": "home", "totals": "USD",
                               "counts": "matched", "residual": "USD"}
_STRINGS = ("example", "crm-4711", "USD", "US", "492039", "2026-12-01", "ada@example.com",
            "https://partner.example.com/webhooks/settlepay", "pm_card_visa", "12/30", "abc",
            "home", "US-NJ", "a")
_FORMATS = {"date-time": EXAMPLE_MOMENT, "date": "2026-12-01", "ipv4": "203.0.113.7",
            "ipv6": "2001:db8::7", "ipvanyaddress": "203.0.113.7", "email": "ada@example.com",
            "uri": "https://partner.example.com/webhooks/settlepay", "uuid":
            "7c9e6679-7425-40de-944b-e07fc1f90ae7"}

# --- problems -------------------------------------------------------------------------------

_VALIDATION = Problem(422, "validation_error", "The request is not valid",
                      "See `errors` for each field that failed validation.",
                      errors=[{"loc": ["body", "amount"], "message": "Input should be greater "
                               "than 0", "type": "greater_than"}])
_BUILDERS: dict[str, Callable[[], Problem]] = {
    "malformed_json": lambda: Problem(
        400, "malformed_json", "The request body is not valid JSON",
        "Send a JSON object with Content-Type: application/json.",
        errors=[{"loc": ["body", 1], "message": "JSON decode error", "type": "json_invalid"}]),
    "api_version_unknown": versioning.unknown_version,
    "idempotency_key_invalid": lambda: Problem(
        400, "idempotency_key_invalid", "Invalid Idempotency-Key",
        "An Idempotency-Key has 1 to 255 characters."),
    "idempotency_key_required": lambda: Problem(
        400, "idempotency_key_required", "Idempotency-Key header required",
        "This request moves money: send a unique `Idempotency-Key` header (for example a "
        "UUID) and reuse it when you retry."),
    "invalid_cursor": lambda: Problem(400, "invalid_cursor", "Unknown cursor",
                                      "starting_after names no item of this list."),
    "api_key_missing": lambda: _unauthorized("Send your API key as `Authorization: Bearer "
                                             "<key>`.", "api_key_missing"),
    "api_key_invalid": lambda: _unauthorized("The API key is unknown or revoked.",
                                             "api_key_invalid"),
    "insufficient_scope": lambda: Problem(403, "insufficient_scope", "The API key lacks a scope",
                                          "This request needs the scope 'players:write'."),
    "not_found": lambda: Problem(404, "not_found", "Not Found"),
    "idempotency_key_in_use": _in_use,
    "payload_too_large": lambda: too_large(DEFAULT_MAX_BYTES),
    "validation_error": lambda: _VALIDATION,
    "idempotency_key_reused": _reused,
    "rate_limited": lambda: too_many(Decision(False, RateLimit(100, 1), 0.0)),
    "webhook_signature_invalid": lambda: Problem(
        400, "webhook_signature_invalid", "Invalid webhook signature",
        "The signature header does not match the payload."),
    "database_unavailable": database_unavailable,
    "temporal_unavailable": lambda: Problem(
        503, "temporal_unavailable", "Workflow service unavailable",
        "The workflow service cannot be reached; retry shortly."),
}
# The problems any authenticated /v1 operation may answer, by status (api/app.py middlewares,
# api/auth.py, FastAPI's validation); writes add the Idempotency-Key ones.
PROBLEMS_BY_STATUS: dict[int, tuple[str, ...]] = {
    400: ("malformed_json", "api_version_unknown"),
    401: ("api_key_missing", "api_key_invalid"),
    403: ("insufficient_scope",),
    404: ("not_found",),
    409: (),
    413: ("payload_too_large",),
    422: ("validation_error",),
    429: ("rate_limited",),
    503: ("database_unavailable", "temporal_unavailable"),
}
# Every POST may carry an Idempotency-Key (api/idempotency.py; other methods ignore it).
POST_PROBLEMS: dict[int, tuple[str, ...]] = {
    400: ("idempotency_key_invalid",),
    409: ("idempotency_key_in_use",),
    422: ("idempotency_key_reused",),
}
# The business refusals of each area (the route's tag), answered by its writes. Their status is
# STATUS_BY_CODE's (a code it does not list: 422).
_GATES = ("player_not_active", "self_excluded", "timed_out", "geolocation_required",
          "kyc_not_verified")
REFUSALS_BY_TAG: dict[str, tuple[str, ...]] = {
    "players": ("player_exists",),
    "deposits": (*_GATES, "deposit_limit_exceeded", "currency_not_supported",
                 "deposit_already_failed", "deposit_not_in_review"),
    "withdrawals": (*_GATES, "open_debt", "second_factor_not_expected",
                    "withdrawal_not_cancellable", "withdrawal_finished",
                    "withdrawal_not_awaiting_approval", "second_factor_locked",
                    "payout_destination_unknown"),
    "second factor": ("totp_already_enrolled", "second_factor_not_pending",
                      "second_factor_locked", "second_factor_invalid"),
    "kyc": ("kyc_already_verified", "kyc_rejected", "kyc_in_progress", "kyc_not_in_review",
            "kyc_provider_refused"),
    "bets": (*_GATES, "insufficient_funds", "bet_id_conflict", "bet_id_ambiguous",
             "market_settled", "bet_settled", "bet_cashed_out", "bet_not_open",
             "cash_out_quote_expired", "cash_out_quote_conflict", "cash_out_not_found",
             "cash_out_reversal_disabled"),
    "markets": ("market_closed", "market_has_result", "result_version_stale",
                "result_version_conflict", "correction_window_closed", "result_not_current",
                "result_not_found", "result_rolled_back", "operator_only",
                "cancellation_conflict", "cancellation_not_found", "invalid_result"),
    "promotions": ("insufficient_free_bet", "free_bet_conflict", "bonus_conflict",
                   "bonus_active", "bonus_not_active", "invalid_promotion"),
    "responsible gaming": ("invalid_limit_amount", "self_exclusion_too_short",
                           "time_out_out_of_bounds"),
    "geolocation": ("outside_licensed_jurisdiction", "anonymous_ip",
                    "ip_outside_licensed_country"),
    "api_keys": ("scope_not_held", "partner_mismatch", "operator_only", "api_key_not_live",
                 "api_key_invalid"),
    "webhooks": ("webhook_endpoint_disabled", "webhook_url_refused", "event_types_invalid",
                 "webhook_signature_invalid"),
    "reconciliation": ("reconciliation_break_not_open", "reconciliation_window_empty"),
    "statements": (),
}
# The refusals a path parameter answers on any method, reads included: a bet id is the partner's
# own, so an operator naming one that several partners use is asked which (409).
REFUSALS_BY_PARAMETER: dict[str, tuple[str, ...]] = {"bet_id": ("bet_id_ambiguous",)}
# The resource a path parameter names, where it is not the parameter's name without "_id".
RESOURCE_BY_PARAMETER = {"key_id": "api_key", "endpoint_id": "webhook_endpoint",
                         "run_id": "reconciliation_run", "break_id": "reconciliation_break",
                         "partner_id": "deposit_match_offer"}


def status_of(code: str) -> int:
    """The status a problem code is answered with (a refusal's: STATUS_BY_CODE, else 422)."""
    return _problem(code).status


def _problem(code: str) -> Problem:
    if code in _BUILDERS:
        return _BUILDERS[code]()
    if code.endswith("_not_found"):
        what = code.removesuffix("_not_found")
        return not_found(what, NAMED.get(f"{what}_id", f"{what}_123"))
    reason = code.replace("_", " ").capitalize() + "."
    return refused(Refusal(code, reason))


def _writes(method: str) -> bool:
    return method.upper() in ("POST", "PUT", "PATCH", "DELETE")


def _refusals(method: str, path: str, tags: list[str]) -> list[str]:
    """The business refusals an operation answers: its tags' (writes only) and its path
    parameters' (every method)."""
    codes = [code for parameter in re.findall(r"{([a-z_]+)}", path)
             for code in REFUSALS_BY_PARAMETER.get(parameter, ())]
    if _writes(method):
        codes += [code for tag in tags for code in REFUSALS_BY_TAG.get(tag, ())]
    return codes


def refusal_statuses(method: str, path: str, tags: list[str]) -> set[int]:
    """The statuses of the refusals an operation can answer."""
    return {status_of(code) for code in _refusals(method, path, tags)}


def problem_codes(method: str, path: str, tags: list[str], status: int, *,
                  pages: bool = False, key_required: bool = False) -> list[str]:
    """The problem codes an operation answers with `status` (see the module docstring);
    `pages`: it is a list with cursors; `key_required`: it needs an Idempotency-Key."""
    codes = list(PROBLEMS_BY_STATUS.get(status, ()))
    if pages and status == 400:
        codes.append("invalid_cursor")
    if key_required and status == 400:
        codes.append("idempotency_key_required")
    if method.upper() == "POST":
        codes += POST_PROBLEMS.get(status, ())
    if status == 404:
        for parameter in re.findall(r"{([a-z_]+)}", path):
            resource = RESOURCE_BY_PARAMETER.get(parameter, parameter.removesuffix("_id"))
            codes.append(f"{resource}_not_found")
    codes += [code for code in _refusals(method, path, tags) if status_of(code) == status]
    return list(dict.fromkeys(codes))


def problem_examples(method: str, path: str, tags: list[str], status: int, *,
                     pages: bool = False, key_required: bool = False) -> dict[str, Any]:
    examples = {}
    for code in problem_codes(method, path, tags, status, pages=pages,
                              key_required=key_required):
        problem = _problem(code)
        if problem.status == status:
            examples[code] = {"summary": problem.title, "value": problem.body()}
    return examples


# --- bodies from schemas --------------------------------------------------------------------

def _resolve(schema: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _fits(value: Any, schema: dict[str, Any]) -> bool:
    if isinstance(value, str):
        if schema.get("type") not in (None, "string"):
            return False
        if "pattern" in schema and not re.search(schema["pattern"], value):
            return False
        return schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", 10**9)
    if isinstance(value, bool):
        return schema.get("type") == "boolean"
    if isinstance(value, (int, float)):
        if schema.get("type") not in ("integer", "number") or (
                schema.get("type") == "integer" and not isinstance(value, int)):
            return False
        return (schema.get("minimum", float("-inf")) <= value <= schema.get("maximum",
                                                                             float("inf"))
                and value > schema.get("exclusiveMinimum", float("-inf"))
                and value < schema.get("exclusiveMaximum", float("inf")))
    return False


def _number(schema: dict[str, Any], integer: bool) -> int | float:
    low = schema.get("minimum", schema.get("exclusiveMinimum", 0) + (1 if integer else 0.5))
    high = schema.get("maximum", schema.get("exclusiveMaximum", float("inf")))
    value = max(low, 1 if integer else 1.5)
    value = min(value, high) if high != float("inf") else value
    return int(value) if integer else value


def _named_strings(name: str | None, owner: str | None) -> tuple[str, ...]:
    """Plausible strings for a property `name` of an object whose `object` is `owner`."""
    if not name:
        return ()
    if name == "id":
        return (NAMED.get(f"{owner}_id", f"{(owner or 'obj')[:3]}_7f3a9c21e0"),)
    if name.endswith("_id"):
        return (f"{name.removesuffix('_id')[:3]}_7f3a9c21e0",)
    if name.endswith("reason"):
        return ("requested by the player",)
    if name.endswith("_key") or name == "reference":
        return ("bet-bet_20261201_0042:stake", "dep_8a1c0e44f2")
    if name.endswith("code"):
        return ("insufficient_funds",)
    if name.endswith("fraction"):
        return ("1/4",)
    if name in ("price", "outcome", "result"):
        return ("2.50", "won")
    return (name,)


def example_of(schema: dict[str, Any], components: dict[str, Any], name: str | None = None,
               depth: int = 0, owner: str | None = None) -> Any:
    """A value of `schema`: its own example, or one built from it (NAMED values by `name`)."""
    schema = _resolve(schema, components)
    for key in ("example", "const"):
        if key in schema:
            return schema[key]
    if schema.get("examples"):
        return schema["examples"][0]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        # An object's anyOf / oneOf only constrains its properties: built below, all present.
        if key in schema and "properties" not in schema:
            branches = [b for b in schema[key] if _resolve(b, components).get("type") != "null"]
            if name in NAMED and any(_fits(NAMED[name], _resolve(b, components))
                                     for b in branches):
                return NAMED[name]
            return (example_of(branches[0], components, name, depth, owner) if branches
                    else None)
    if "allOf" in schema:
        return example_of(schema["allOf"][0], components, name, depth, owner)
    kind = schema.get("type")
    if name in NAMED and _fits(NAMED[name], schema):
        return NAMED[name]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        kind_of = _resolve(properties.get("object", {}), components)
        owner = kind_of.get("const", kind_of.get("default", kind_of.get("enum", [None])[0]))
        value = {key: example_of(sub, components, key, depth + 1, owner)
                 for key, sub in properties.items()
                 if depth < 6 or key in schema.get("required", ())}
        extra = schema.get("additionalProperties")
        if not properties and isinstance(extra, dict) and depth < 6:
            value[SAMPLE_KEYS.get(name or "", "key")] = example_of(extra, components, None,
                                                                   depth + 1)
        return value
    if kind == "array":
        item = example_of(schema.get("items", {}), components, _singular(name), depth + 1)
        return [item] * max(1, schema.get("minItems", 1)) if depth < 6 else []
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        return next((s for s in (*_named_strings(name, owner), *_STRINGS)
                     if _fits(s, schema)), "example")
    if kind in ("integer", "number"):
        return _number(schema, kind == "integer")
    if kind == "boolean":
        return False
    return None


def _singular(name: str | None) -> str | None:
    return name[:-1] if name and name.endswith("s") else name


# --- the document ---------------------------------------------------------------------------

CSV_EXAMPLE = ("id,created_at,type,amount,currency,balance_after,reference\n"
               f"ltx_1,{EXAMPLE_MOMENT},deposit,5000,USD,5000,dep_8a1c0e44f2\n"
               f"ltx_2,{EXAMPLE_MOMENT},stake,-1000,USD,4000,bet_20261201_0042\n")


def add_examples(document: dict[str, Any],
                 key_required: frozenset[tuple[str, str]] = frozenset()) -> dict[str, Any]:
    """Fill in the examples of every operation (in place). `key_required`: the (METHOD, path)
    of the operations that need an Idempotency-Key. A problem status no code of the operation
    is answered with (409 of a read, say) is dropped from its description."""
    components = document.get("components", {}).get("schemas", {})
    for path, methods in document.get("paths", {}).items():
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            body = operation.get("requestBody", {}).get("content", {})
            for media in body.values():
                if "schema" in media and "example" not in media:
                    media["example"] = example_of(media["schema"], components)
            tags = operation.get("tags", [])
            pages = any(p.get("name") == "starting_after" for p in operation.get("parameters", []))
            responses = operation["responses"]
            documented = {int(s) for s in responses}
            for status in sorted(refusal_statuses(method, path, tags) - documented):
                responses[str(status)] = {          # e.g. 402 insufficient_funds of a bet
                    "description": f"Refused: {HTTPStatus(status).phrase}",
                    "content": {PROBLEM_JSON: {"schema": {
                        "$ref": "#/components/schemas/ProblemBody"}}}}
            for status, response in list(responses.items()):
                for media_type, media in response.get("content", {}).items():
                    if media_type == PROBLEM_JSON:
                        examples = problem_examples(
                            method, path, tags, int(status), pages=pages,
                            key_required=(method.upper(), path) in key_required)
                        if examples:
                            media.setdefault("examples", examples)
                        elif path.startswith("/v1/") and "examples" not in media:
                            del responses[status]
                    elif media_type == "text/csv":
                        media.setdefault("example", CSV_EXAMPLE)
                    elif "schema" in media and "example" not in media:
                        media["example"] = example_of(media["schema"], components)
    return document


def install(app: FastAPI) -> None:
    """app.openapi() returns the generated document with its examples."""
    generate = app.openapi
    done: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        document = generate()               # FastAPI's, made once and cached on the app
        if not done or done[0] is not document:
            done[:] = [add_examples(document, _key_required(app))]
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _key_required(app: FastAPI) -> frozenset[tuple[str, str]]:
    """(METHOD, path) of the routes depending on required_idempotency_key."""
    def needs(dependant: Dependant) -> bool:
        return dependant.call is required_idempotency_key or any(
            needs(sub) for sub in dependant.dependencies)

    def routes(found: list[Any]) -> Iterator[APIRoute]:
        for route in found:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):   # an included router (FastAPI >= 0.120)
                yield from routes(route.original_router.routes)

    return frozenset((method, route.path) for route in routes(app.routes)
                     if needs(route.dependant) for method in route.methods)
