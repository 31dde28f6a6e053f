"""Errors as problem+json (RFC 9457), the only error shape the API sends.

Routes raise `Problem(status, code, title, detail)`; `install(app)` turns it, FastAPI's
validation errors, Starlette's HTTP errors (unknown path, wrong method) and any unexpected
exception into `application/problem+json`:

    {"type": "urn:settlepay:problem:<code>", "title": ..., "status": ..., "detail": ...,
     "code": "<code>", "errors": [...]}          # errors: only for validation problems

`code` is the stable, machine-readable name (clients switch on it, never on `title`). This
module must never put internals (exception text, SQL, stack traces, submitted values) in a
response: unexpected exceptions are logged and answered with a bare `internal_error`.

A database that cannot be reached (PostgreSQL down, connections cut, the pool exhausted) is a
condition the API can name: wherever it surfaces on the request path (a middleware such as the
rate limiter or the Idempotency-Key, the key's authentication, a route), the answer is 503
`database_unavailable` with `Retry-After`, never a 500 (`DatabaseUnavailableGuard` for the
middlewares, the exception handler installed here for routes). Other database errors (a
constraint, a bug in SQL) stay unexpected: 500 `internal_error`.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from settlepay.observability import logs
from workflows.contracts.refusal import Refusal

PROBLEM_JSON = "application/problem+json"
# Set on a request whose answer the idempotency middleware must not keep for replay.
DISCARD_SCOPE_KEY = "settlepay.idempotency.discard"
TYPE_PREFIX = "urn:settlepay:problem:"

log = logging.getLogger("settlepay.api")


class Problem(Exception):
    """An answer other than success, raised anywhere below a route."""

    def __init__(self, status: int, code: str, title: str, detail: str | None = None, *,
                 errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None,
                 extensions: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {code}: {detail or title}")
        self.status, self.code, self.title, self.detail = status, code, title, detail
        self.errors, self.headers, self.extensions = errors, headers, extensions

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": TYPE_PREFIX + self.code, "title": self.title,
                                "status": self.status, "code": self.code}
        if self.detail is not None:
            body["detail"] = self.detail
        if self.errors is not None:
            body["errors"] = self.errors
        for name, value in (self.extensions or {}).items():
            body.setdefault(name, value)
        return body

    def response(self) -> Response:
        return problem_response(self)


def problem_response(problem: Problem) -> Response:
    # Logged with the request's trace and request ids (code and status only, never the detail).
    log.log(logging.WARNING if problem.status >= 500 else logging.INFO, "problem answered",
            extra={"status": problem.status, "problem_code": problem.code})
    return Response(json.dumps(problem.body(), separators=(",", ":")).encode(),
                    status_code=problem.status, headers=problem.headers, media_type=PROBLEM_JSON)


class ProblemBody(BaseModel):
    """The problem+json document (for the OpenAPI description)."""

    type: str
    title: str
    status: int
    code: str
    detail: str | None = None
    errors: list[dict[str, Any]] | None = None


def _documented(description: str) -> dict[str, Any]:
    return {"description": description, "model": ProblemBody,
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/ProblemBody"}}}}


# `responses=` for routers: the problems every authenticated /v1 route can answer.
PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _documented("Malformed request (bad JSON, missing or invalid Idempotency-Key)"),
    401: _documented("No API key, or an unknown or revoked one"),
    403: _documented("The API key lacks the scope this request needs"),
    404: _documented("No such resource (or it belongs to another partner)"),
    409: _documented("Conflict, e.g. a request with the same Idempotency-Key is still running"),
    422: _documented("Validation failed, or the Idempotency-Key was used for another request"),
    413: _documented("The request body is larger than the API accepts"),
    429: _documented("The API key's rate limit is reached: see Retry-After and RateLimit-*"),
    503: _documented("A service the request needs (the database, the workflow service) cannot "
                     "be reached just now: see Retry-After"),
}


# --- refusals: one code -> HTTP status table ---------------------------------------------------
# Every business refusal (`workflows.contracts.refusal.Refusal`: a gate's code, a contract's
# refusal code) is answered with the status listed here; a code not listed is a 422. One section
# per capability; codes are the contracts' StrEnum values.
STATUS_BY_CODE: dict[str, int] = {
    # compliance gates (compliance/gates.py): the player may not do this now. Bad input the
    # gates also refuse (currency_not_supported, amount_below/above_*) is the default 422.
    "player_not_found": 404,
    "player_not_active": 403,
    "self_excluded": 403,
    "timed_out": 403,
    "geolocation_required": 403,
    "geolocation_expired": 403,
    "ip_changed": 403,
    "outside_licensed_jurisdiction": 403,
    "anonymous_ip": 403,
    "ip_outside_licensed_country": 403,
    "deposit_limit_exceeded": 403,
    "kyc_not_verified": 403,
    "open_debt": 403,
    # players (commands/players.py)
    "player_exists": 409,
    # deposits (workflows/contracts/deposit.py DepositRefusal; a deposit's failure codes are
    # its status, never an HTTP answer)
    "deposit_not_found": 404,
    "deposit_already_failed": 409,
    "deposit_not_in_review": 409,
    # withdrawals and the second factor (workflows/contracts/withdrawal.py WithdrawalRefusal,
    # commands/second_factor.py SecondFactorRefusal; payout_destination_unknown and the
    # second_factor_malformed / _invalid / _failed codes are the default 422)
    "second_factor_not_expected": 409,
    "withdrawal_not_cancellable": 409,
    "withdrawal_finished": 409,
    "withdrawal_not_awaiting_approval": 409,
    "totp_already_enrolled": 409,
    "second_factor_not_pending": 409,
    "second_factor_locked": 429,      # too many wrong codes of an enrolment (Retry-After)
    # kyc (workflows/contracts/kyc.py KycRefusal; player_not_found: above)
    "kyc_already_verified": 409,
    "kyc_rejected": 409,
    "kyc_in_progress": 409,
    "kyc_not_in_review": 409,
    "kyc_provider_refused": 422,
    # bets and settlement
    # bets (commands/bets.py BetRefusal, and SettlementRefusal's market_settled a bet is refused
    # with; invalid_* and payout_above_maximum are the default 422)
    "bet_id_conflict": 409,
    "bet_id_ambiguous": 409,
    "market_settled": 409,
    "insufficient_funds": 402,
    # settlement (workflows/contracts/settlement.py SettlementRefusal; invalid_result: 422)
    "market_closed": 409,
    "market_has_result": 409,
    "market_not_found": 404,
    "result_version_stale": 409,
    "result_version_conflict": 409,
    "correction_window_closed": 409,
    "result_not_current": 409,
    "result_not_found": 404,
    "result_rolled_back": 409,
    "operator_only": 403,
    "cancellation_conflict": 409,
    "cancellation_not_found": 404,
    # cash-out (commands/bets.py BetRefusal; invalid_cash_out: 422)
    "bet_settled": 409,
    "bet_cashed_out": 409,
    "bet_not_open": 409,
    "cash_out_quote_expired": 409,
    "cash_out_quote_conflict": 409,
    "cash_out_not_found": 404,
    "cash_out_reversal_disabled": 403,
    # free bets and bonuses (commands/promotions.py PromotionRefusal; invalid_promotion: 422)
    "insufficient_free_bet": 402,
    "free_bet_conflict": 409,
    "bonus_conflict": 409,
    "bonus_active": 409,
    "bonus_not_found": 404,
    "bonus_not_active": 409,
    # api keys (commands/api_keys.py ApiKeyRefusal; api_key_invalid: 422, operator_only: above)
    "scope_not_held": 403,
    "partner_mismatch": 403,
    "api_key_not_found": 404,
    "api_key_not_live": 409,
    # limits and geolocation (commands/limits.py, domain/limits.py InvalidRequest codes: 422)
    "invalid_limit_amount": 422,
    "self_exclusion_too_short": 422,
    "time_out_out_of_bounds": 422,
    # partner webhooks (commands/webhooks.py WebhookRefusal; webhook_url_refused,
    # event_types_invalid, rotation_grace_too_long, recover_since_too_far_back: the default 422)
    "webhook_endpoint_not_found": 404,
    "event_not_found": 404,
    "webhook_endpoint_disabled": 409,
    # payment reconciliation (commands/reconciliation.py; reconciliation_window_*: 422)
    "reconciliation_break_not_open": 409,
    # provider webhooks (api/routes/stripe_webhooks.py, api/routes/kyc.py): a missing, wrong or
    # stale signature
    "webhook_signature_invalid": 400,
    # infrastructure (database_unavailable below): PostgreSQL cannot be reached just now
    "database_unavailable": 503,
}
DEFAULT_REFUSAL_STATUS = 422


def refused(refusal: Refusal, title: str | None = None, *,
            extensions: dict[str, Any] | None = None) -> Problem:
    """The problem+json answer to a business refusal, its status from STATUS_BY_CODE."""
    status = STATUS_BY_CODE.get(refusal.code, DEFAULT_REFUSAL_STATUS)
    return Problem(status, refusal.code, title or "The request was refused", refusal.reason,
                   extensions=extensions)


# Problems used from more than one place.
def not_found(what: str, identifier: str) -> Problem:
    return Problem(404, f"{what}_not_found", f"No such {what.replace('_', ' ')}",
                   f"There is no {what.replace('_', ' ')} {identifier!r}.")


DATABASE_RETRY_AFTER_SECONDS = 5
# SQLSTATEs of a database that is not there: class 08 (connection exception), the server
# shutting down or starting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03
# cannot_connect_now) and no connection slot left (53300 too_many_connections).
_UNAVAILABLE_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_database_unavailable(error: BaseException) -> bool:
    """Whether `error` says the database cannot be reached (rather than refused a statement):
    no connection could be made or kept, or the pool had none to give in time."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):    # QueuePool: no connection in time
        return True
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        if error.connection_invalidated:
            return True
        error = error.orig if error.orig is not None else error
    if isinstance(error, psycopg.OperationalError):
        sqlstate = error.sqlstate   # None: no server answer (refused, reset, closed)
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _UNAVAILABLE_SQLSTATES
    return False


def database_unavailable() -> Problem:
    return Problem(503, "database_unavailable", "Service temporarily unavailable",
                   "The database cannot be reached just now. Retry in "
                   f"{DATABASE_RETRY_AFTER_SECONDS} s (a write with the same Idempotency-Key).",
                   headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)})


def _database_problem(error: BaseException) -> Problem:
    # The error's type only: its text names hosts and ports, never for the logs' readers.
    log.warning("database unavailable: %s", type(error).__name__)
    return database_unavailable()


class DatabaseUnavailableGuard:
    """Pure ASGI, just inside the request context (api/app.py): a database-unavailable error
    raised by any middleware or route below it, before an answer started, is answered 503
    problem+json. Anything else goes on up unchanged."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watching(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watching)
        except Exception as error:
            if started or not is_database_unavailable(error):
                raise
            await _database_problem(error).response()(scope, receive, send)


def _phrase(status: int) -> str | None:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return None


async def _on_problem(request: Request, exc: Problem) -> Response:
    if exc.code == "validation_error":  # a route's own validation: not kept, as below
        request.scope[DISCARD_SCOPE_KEY] = True
    return exc.response()


async def _on_http_exception(request: Request, exc: StarletteHTTPException) -> Response:
    phrase = _phrase(exc.status_code)
    code = phrase.lower().replace(" ", "_").replace("-", "_") if phrase else "http_error"
    detail = exc.detail if isinstance(exc.detail, str) and exc.detail != phrase else None
    return Problem(exc.status_code, code, phrase or "Error", detail,
                   headers=getattr(exc, "headers", None)).response()


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # The submitted value is left out on purpose: it may be a secret or personal data.
    return [{"loc": [str(part) for part in error.get("loc", ())],
             "message": error.get("msg", "invalid"),
             "type": error.get("type", "value_error")} for error in exc.errors()]


async def _on_validation_error(request: Request, exc: RequestValidationError) -> Response:
    errors = _field_errors(exc)
    if any(error["type"] == "json_invalid" for error in errors):
        problem = Problem(400, "malformed_json", "The request body is not valid JSON",
                          "Send a JSON object with Content-Type: application/json.", errors=errors)
    else:
        problem = Problem(422, "validation_error", "The request is not valid",
                          "See `errors` for each field that failed validation.", errors=errors)
    # A request that failed validation never ran: its answer is not kept for idempotent replay,
    # so the client may fix the body and retry with the same Idempotency-Key (as Stripe does).
    request.scope[DISCARD_SCOPE_KEY] = True
    return problem.response()


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    # This handler may run after the request's span ended (trace_id 0): logs.trace_id() falls
    # back to the ids the request came in with, and the answer names the trace to look for.
    trace_id = logs.trace_id()
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return Problem(500, "internal_error", "Internal server error",
                   "The request failed unexpectedly; it has been logged.",
                   extensions={"trace_id": trace_id} if trace_id else None).response()


async def _on_database_error(request: Request, exc: Exception) -> Response:
    if not is_database_unavailable(exc):
        raise exc   # unexpected after all: the 500 handler below logs and answers it
    return _database_problem(exc).response()


def install(app: FastAPI) -> None:
    app.add_exception_handler(Problem, _on_problem)
    app.add_exception_handler(sqlalchemy.exc.SQLAlchemyError, _on_database_error)
    app.add_exception_handler(psycopg.Error, _on_database_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
