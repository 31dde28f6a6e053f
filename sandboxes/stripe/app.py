"""The Stripe-compatible sandbox as an ASGI app: `create_app(...)`.

Speaks Stripe's wire format for what settlepay's adapter calls (payment intents, refunds,
payouts, balance transactions, payment methods, events): form-encoded requests, JSON objects
with `object` and prefixed ids, Stripe error objects, `Idempotency-Key` honoured like Stripe
(same key + same parameters -> the stored answer with `Idempotent-Replayed: true`; different
parameters -> 400 idempotency_error; still in flight -> 409; 5xx answers are not stored).

Test controls live under /_sandbox/ (no API key): faults, 3-D Secure completion, webhook
release/resend, stats and state. State is in memory; one app instance = one Stripe account.
It must never be reachable from production configuration: it accepts any `sk_test_` key.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, NoReturn

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from sandboxes.stripe import forms
from sandboxes.stripe.errors import (
    StripeApiError,
    api_error,
    idempotency_in_use,
    idempotency_mismatch,
    invalid,
    rate_limited,
)
from sandboxes.stripe.faults import Faults
from sandboxes.stripe.state import Account, new_id, public
from sandboxes.stripe.webhooks import WebhookDispatcher

# A Stripe API handler: (account, path parameters, decoded form or query) -> the answer's body.
Handler = Callable[[Account, dict[str, Any], dict[str, Any]], Any]


class Sandbox:
    """Everything one sandbox instance holds; reachable as `app.state.sandbox`."""

    def __init__(self, *, webhook_url: str | None, webhook_secret: str, api_key: str | None,
                 enabled_events: list[str] | None = None) -> None:
        self.faults = Faults()
        self.api_key = api_key
        self.base_url = "http://127.0.0.1"
        self.webhooks = WebhookDispatcher(self.faults, url=webhook_url, secret=webhook_secret,
                                          enabled_events=enabled_events)
        self.account = Account(self.faults, self.webhooks.submit, lambda: self.base_url)
        self.idempotency: dict[tuple[str, str], dict[str, Any]] = {}
        self.stats: dict[str, int] = {"requests": 0, "idempotent_replays": 0, "injected_errors": 0}
        self.requests: list[dict[str, Any]] = []   # every API request: method, path, status

    def reset(self) -> None:
        w = self.webhooks
        self.__init__(webhook_url=w.url, webhook_secret=w.secret, api_key=self.api_key,
                      enabled_events=w.enabled_events)


def create_app(*, webhook_url: str | None = None, webhook_secret: str = "whsec_settlepay_sandbox",
               api_key: str | None = None, enabled_events: list[str] | None = None) -> Starlette:
    """`api_key=None` accepts any `sk_test_...` key; a value requires exactly that key.
    `enabled_events`: the event types sent to the webhook URL (default every type, "*")."""
    sandbox = Sandbox(webhook_url=webhook_url, webhook_secret=webhook_secret, api_key=api_key,
                      enabled_events=enabled_events)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await app.state.sandbox.webhooks.close()

    app = Starlette(routes=_routes(), lifespan=lifespan)
    app.state.sandbox = sandbox
    return app


# --- the Stripe API -----------------------------------------------------------------------

def stripe_endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Auth, faults, idempotency and error formatting around one Stripe API handler."""

    async def endpoint(request: Request) -> Response:
        sb: Sandbox = request.app.state.sandbox
        sb.base_url = f"{request.url.scheme}://{request.url.netloc}"
        sb.stats["requests"] += 1
        request_id = new_id("req_")
        headers = {"Request-Id": request_id, "Stripe-Version": "2024-06-20"}
        logged = {"method": request.method, "path": request.url.path, "status": None,
                  "idempotency_key": request.headers.get("Idempotency-Key"), "at": time.time()}
        sb.requests.append(logged)
        try:
            key = _authenticate(sb, request)
            body = (await request.body()).decode("utf-8")
            faults = sb.faults
            targeted = faults.applies_to(request.method, request.url.path)
            if targeted and faults.latency_ms:
                await asyncio.sleep(faults.latency_ms / 1000)
            inject = targeted and faults.take_error()
            if inject and faults.error_phase == "before":
                sb.stats["injected_errors"] += 1
                raise _injected(faults)
            params = forms.decode(body if request.method == "POST" else request.url.query)
            idem_key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
            status, payload, replayed = _run_idempotent(sb, key, idem_key, request, params, handler,
                                                        request_id)
            if replayed:
                headers["Idempotent-Replayed"] = "true"
                headers["Original-Request"] = payload[1]
                payload = payload[0]
            elif idem_key:
                headers["Original-Request"] = request_id
            if targeted and faults.response_delay_ms:
                await asyncio.sleep(faults.response_delay_ms / 1000)
            if inject:  # "after": the work is done and stored, the answer is lost
                sb.stats["injected_errors"] += 1
                raise _injected(faults)
            if idem_key:
                headers["Idempotency-Key"] = idem_key
            logged["status"] = status
            return JSONResponse(payload, status_code=status, headers=headers)
        except StripeApiError as error:
            logged["status"] = error.status
            body = error.to_json()
            body["error"]["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
            return JSONResponse(body, status_code=error.status, headers=headers)

    return endpoint


def _authenticate(sb: Sandbox, request: Request) -> str:
    auth = request.headers.get("Authorization", "")
    scheme, _, key = auth.partition(" ")
    if scheme.lower() == "basic":
        import base64
        key = base64.b64decode(key).decode("utf-8", "replace").split(":")[0]
    if not key.startswith("sk_test_") or (sb.api_key is not None and key != sb.api_key):
        shown = (key[:8] + "*" * 4 + key[-4:]) if key else ""
        raise StripeApiError(401, "invalid_request_error", f"Invalid API Key provided: {shown}")
    return key


def _injected(faults: Faults) -> StripeApiError:
    return rate_limited() if faults.error_status == 429 else api_error(faults.error_status)


def _run_idempotent(sb: Sandbox, api_key: str, idem_key: str | None, request: Request,
                    params: dict[str, Any], handler: Handler,
                    request_id: str) -> tuple[int, Any, bool]:
    """Run the handler once per (api key, Idempotency-Key); returns (status, body, replayed)."""
    if not idem_key:
        return (*_call(sb, handler, request, params, request_id, None), False)
    fingerprint = hashlib.sha256(json.dumps([request.method, request.url.path, params],
                                            sort_keys=True).encode()).hexdigest()
    slot = sb.idempotency.get((api_key, idem_key))
    if slot is not None:
        if slot["fingerprint"] != fingerprint:
            raise idempotency_mismatch(idem_key)
        if slot.get("in_flight"):
            raise idempotency_in_use(idem_key)
        sb.stats["idempotent_replays"] += 1
        return slot["status"], (slot["body"], slot["request_id"]), True
    sb.idempotency[(api_key, idem_key)] = {"fingerprint": fingerprint, "in_flight": True}
    try:
        status, body = _call(sb, handler, request, params, request_id, idem_key)
    except StripeApiError as error:
        if error.status >= 500:  # Stripe does not store server errors: the key may be retried
            del sb.idempotency[(api_key, idem_key)]
        else:
            sb.idempotency[(api_key, idem_key)] = {"fingerprint": fingerprint,
                                                   "status": error.status,
                                                   "body": error.to_json(),
                                                   "request_id": request_id}
        raise
    sb.idempotency[(api_key, idem_key)] = {"fingerprint": fingerprint, "status": status,
                                           "body": body,
                                           "request_id": request_id}
    return status, body, False


def _call(sb: Sandbox, handler: Handler, request: Request, params: dict[str, Any],
          request_id: str, idem_key: str | None) -> tuple[int, Any]:
    # Handlers are synchronous: a change and its events happen with no await in between.
    sb.account.request_context = {"request_id": request_id, "idempotency_key": idem_key}
    try:
        return 200, handler(sb.account, request.path_params, params)
    finally:
        sb.account.request_context = {}


def _list(url: str, rows: list[dict], params: dict[str, Any],
          filters: tuple[str, ...] = ()) -> dict:
    """A Stripe list: newest first, `limit` (1-100, default 10), cursors `starting_after` /
    `ending_before`, `created` (an exact time or gt/gte/lt/lte) and equality `filters` on the
    object's fields (e.g. payment_intent, charge, status); `has_more` as Stripe answers it, so
    the SDK's auto-pagination walks every page."""
    for name in filters:
        if params.get(name) not in (None, ""):
            rows = [r for r in rows if r.get(name) == params[name]]
    rows = [r for r in rows if _created_matches(r["created"], params.get("created"))]
    rows = sorted(rows, key=lambda r: (r["created"], r["id"]), reverse=True)
    limit = forms.integer(params, "limit", minimum=1) or 10
    if limit > 100:
        raise invalid("This value must be less than or equal to 100.", param="limit")
    after, before = params.get("starting_after"), params.get("ending_before")
    if after and before:
        raise invalid("You may only specify one of these parameters: ending_before, "
                      "starting_after.", param="starting_after")
    ids = [r["id"] for r in rows]
    for cursor, name in ((after, "starting_after"), (before, "ending_before")):
        if cursor and cursor not in ids:
            raise invalid(f"No such object: '{cursor}'", code="resource_missing", param=name)
    if after:
        rows = rows[ids.index(after) + 1:]
    elif before:
        rows = rows[:ids.index(before)][-limit:]
        return {"object": "list", "url": url, "has_more": ids.index(before) > limit,
                "data": [public(r) for r in rows]}
    return {"object": "list", "url": url, "has_more": len(rows) > limit,
            "data": [public(r) for r in rows[:limit]]}


def _created_matches(created: int, bound: Any) -> bool:
    if bound in (None, "", {}):
        return True
    if not isinstance(bound, dict):
        return created == forms.integer({"created": bound}, "created")
    checks = {"gt": created.__gt__, "gte": created.__ge__, "lt": created.__lt__,
              "lte": created.__le__}
    unknown = set(bound) - set(checks)
    if unknown:
        raise invalid(f"Received unknown parameter: created[{sorted(unknown)[0]}]",
                      param="created")
    return all(checks[op](forms.integer(bound, op)) for op in bound)


_PAGING = ("limit", "starting_after", "ending_before", "created")


def _paging(q: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in q.items() if k in _PAGING}


def _routes() -> list[Route]:
    def post(path: str, fn: Handler) -> Route:
        return Route(path, stripe_endpoint(fn), methods=["POST"])

    def get(path: str, fn: Handler) -> Route:
        return Route(path, stripe_endpoint(fn), methods=["GET"])

    return [
        post("/v1/payment_methods", lambda a, p, q: public(a.create_payment_method(q))),
        get("/v1/payment_methods/{id}",
            lambda a, p, q: public(a.resolve_payment_method(p["id"], "id"))),
        post("/v1/payment_intents", lambda a, p, q: public(a.create_payment_intent(q))),
        get("/v1/payment_intents", lambda a, p, q: _list(
            "/v1/payment_intents", list(a.payment_intents.values()), q, ("customer",))),
        get("/v1/payment_intents/{id}", lambda a, p, q: public(a.get_payment_intent(p["id"]))),
        post("/v1/payment_intents/{id}/confirm", lambda a, p,
             q: public(a.confirm_payment_intent(p["id"], q))),
        post("/v1/payment_intents/{id}/cancel", lambda a, p,
             q: public(a.cancel_payment_intent(p["id"], q))),
        get("/v1/charges", lambda a, p, q: _list("/v1/charges", list(a.charges.values()), q,
                                                 ("payment_intent", "customer"))),
        get("/v1/charges/{id}", lambda a, p, q: public(a.charges[p["id"]]) if p["id"] in a.charges
            else _raise(invalid(f"No such charge: '{p['id']}'", code="resource_missing",
                                status=404))),
        post("/v1/refunds", lambda a, p, q: public(a.create_refund(q))),
        get("/v1/refunds", lambda a, p, q: _list("/v1/refunds", list(a.refunds.values()), q,
                                                 ("payment_intent", "charge"))),
        get("/v1/refunds/{id}", lambda a, p, q: public(a.get_refund(p["id"]))),
        post("/v1/payouts", lambda a, p, q: public(a.create_payout(q))),
        get("/v1/payouts", lambda a, p, q: _list("/v1/payouts", list(a.payouts.values()), q,
                                                 ("status", "destination"))),
        get("/v1/payouts/{id}", lambda a, p, q: public(a.get_payout(p["id"]))),
        get("/v1/disputes", lambda a, p, q: _list("/v1/disputes", list(a.disputes.values()), q,
                                                  ("charge", "payment_intent"))),
        get("/v1/disputes/{id}", lambda a, p, q: public(a.get_dispute(p["id"]))),
        get("/v1/balance_transactions", lambda a, p, q: _list(
            "/v1/balance_transactions", a.list_balance_transactions(
                {k: v for k, v in q.items() if k != "created"}), _paging(q))),
        get("/v1/events", lambda a, p, q: _list("/v1/events", [
            e for e in a.events.values() if q.get("type") in (None, e["type"])], _paging(q))),
        get("/v1/events/{id}", lambda a, p, q: a.events[p["id"]] if p["id"] in a.events
            else _raise(invalid(f"No such event: '{p['id']}'", code="resource_missing",
                                status=404))),
        # --- test controls -------------------------------------------------------------------
        Route("/_sandbox/faults", _faults, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/config", _config, methods=["GET", "POST"]),
        Route("/_sandbox/reset", _reset, methods=["POST"]),
        Route("/_sandbox/stats", _stats, methods=["GET"]),
        Route("/_sandbox/requests", _requests, methods=["GET"]),
        Route("/_sandbox/payment_intents", _payment_intents, methods=["GET"]),
        Route("/_sandbox/payment_intents/{id}/authenticate", _authenticate_3ds, methods=["POST"]),
        Route("/_sandbox/3ds/{id}", _three_d_secure_page, methods=["GET"]),
        Route("/_sandbox/payouts/{id}/settle", _settle_payout, methods=["POST"]),
        Route("/_sandbox/charges/{id}/dispute", _open_dispute, methods=["POST"]),
        Route("/_sandbox/webhooks", _webhook_log, methods=["GET"]),
        Route("/_sandbox/webhooks/withheld/release", _release_withheld, methods=["POST"]),
        Route("/_sandbox/webhooks/idle", _webhooks_idle, methods=["POST"]),
        Route("/_sandbox/events/{id}/resend", _resend, methods=["POST"]),
    ]


def _raise(error: Exception) -> NoReturn:
    raise error


# --- test controls ------------------------------------------------------------------------

async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw:
        return {}
    if request.headers.get("content-type", "").startswith("application/json"):
        return json.loads(raw)
    return forms.decode(raw.decode("utf-8"))


def _sb(request: Request) -> Sandbox:
    return request.app.state.sandbox


async def _faults(request: Request) -> Response:
    sb = _sb(request)
    if request.method == "DELETE":
        sb.faults.__init__()  # type: ignore[misc]
    elif request.method == "POST":
        try:
            sb.faults.update(await _body(request))
        except ValueError as error:
            return JSONResponse({"error": str(error)}, status_code=400)
    return JSONResponse(sb.faults.as_dict())


async def _config(request: Request) -> Response:
    sb = _sb(request)
    if request.method == "POST":
        body = await _body(request)
        if "webhook_url" in body:
            sb.webhooks.url = body["webhook_url"] or None
        if "webhook_secret" in body:
            sb.webhooks.secret = body["webhook_secret"]
        if "enabled_events" in body:
            sb.webhooks.enabled_events = list(body["enabled_events"] or ["*"])
        if "payout_settle_seconds" in body:
            sb.account.payout_settle_seconds = float(body["payout_settle_seconds"])
        if "fee_override" in body:
            fee = body["fee_override"]
            sb.account.fee_override = None if fee in (None, "") else int(fee)
    return JSONResponse({"webhook_url": sb.webhooks.url, "fee_override": sb.account.fee_override,
                         "enabled_events": sb.webhooks.enabled_events,
                         "payout_settle_seconds": sb.account.payout_settle_seconds})


async def _reset(request: Request) -> Response:
    _sb(request).reset()
    return JSONResponse({"reset": True})


async def _stats(request: Request) -> Response:
    sb = _sb(request)
    a = sb.account
    return JSONResponse({**sb.stats, "payment_intents": len(a.payment_intents),
                         "charges": len(a.charges),
                         "refunds": len(a.refunds), "payouts": len(a.payouts),
                         "events": len(a.events),
                         "webhook_attempts": len(sb.webhooks.log),
                         "webhooks_withheld": len(sb.webhooks.withheld)})


async def _requests(request: Request) -> Response:
    """The API requests served, optionally only those whose path starts with ?path=..."""
    prefix = request.query_params.get("path", "")
    return JSONResponse({"data": [r for r in _sb(request).requests
                                  if r["path"].startswith(prefix)]})


async def _payment_intents(request: Request) -> Response:
    """All payment intents, optionally those whose metadata[key] = value (?key=...&value=...)."""
    key, value = request.query_params.get("key"), request.query_params.get("value")
    rows = [public(pi) for pi in _sb(request).account.payment_intents.values()
            if key is None or pi["metadata"].get(key) == value]
    return JSONResponse({"data": rows})


async def _authenticate_3ds(request: Request) -> Response:
    body = await _body(request)
    outcome = body.get("outcome", "succeed")
    if outcome not in ("succeed", "fail"):
        return JSONResponse({"error": "outcome must be succeed or fail"}, status_code=400)
    try:
        pi = _sb(request).account.authenticate(request.path_params["id"], outcome == "succeed")
    except StripeApiError as error:
        return JSONResponse(error.to_json(), status_code=error.status)
    return JSONResponse(public(pi))


async def _three_d_secure_page(request: Request) -> Response:
    pi_id = request.path_params["id"]
    pi = _sb(request).account.payment_intents.get(pi_id)
    if pi is None or request.query_params.get("client_secret") != pi["client_secret"]:
        return HTMLResponse("<h1>Unknown payment</h1>", status_code=404)
    action = f"/_sandbox/payment_intents/{pi_id}/authenticate"
    return HTMLResponse(
        f"<h1>3-D Secure test page</h1><p>{pi['amount']} {pi['currency'].upper()}</p>"
        f"<form method=post action='{action}'><button name=outcome value=succeed>Complete</button>"
        f"<button name=outcome value=fail>Fail</button></form>")


async def _settle_payout(request: Request) -> Response:
    body = await _body(request)
    try:
        payout = _sb(request).account.settle_payout(request.path_params["id"],
                                                    body.get("outcome", "paid") == "paid")
    except StripeApiError as error:
        return JSONResponse(error.to_json(), status_code=error.status)
    return JSONResponse(public(payout))


async def _open_dispute(request: Request) -> Response:
    body = await _body(request)
    try:
        dispute = _sb(request).account.open_dispute(request.path_params["id"],
                                                    body.get("reason", "fraudulent"))
    except StripeApiError as error:
        return JSONResponse(error.to_json(), status_code=error.status)
    return JSONResponse(public(dispute))


async def _webhook_log(request: Request) -> Response:
    sb = _sb(request)
    return JSONResponse({"attempts": sb.webhooks.log,
                         "withheld": [{"id": e["id"],
                                       "type": e["type"]} for e in sb.webhooks.withheld]})


async def _release_withheld(request: Request) -> Response:
    return JSONResponse({"released": _sb(request).webhooks.release_withheld()})


async def _webhooks_idle(request: Request) -> Response:
    await _sb(request).webhooks.idle()
    return JSONResponse({"idle": True})


async def _resend(request: Request) -> Response:
    sb = _sb(request)
    event = sb.account.events.get(request.path_params["id"])
    if event is None:
        return JSONResponse({"error": "no such event"}, status_code=404)
    sb.webhooks.resend(event)
    return JSONResponse({"resent": event["id"]})



