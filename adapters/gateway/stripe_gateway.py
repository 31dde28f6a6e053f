"""The Stripe adapter: the ONLY module in settlepay that imports `stripe`.

It turns `PaymentGateway` calls into Stripe API calls through the official SDK
(`stripe.StripeClient`, base address configurable so it talks to the local sandbox, localstripe
or Stripe itself) and Stripe answers into the typed results of `adapters.gateway.interface`.

Rules it keeps:
  - the SDK never retries (`max_network_retries=0`): Temporal's retry policy owns retries, and
    the caller's idempotency key (workflow id + step) makes every retry safe;
  - every create sends the caller's idempotency key; it never invents one;
  - errors are sorted once, here: card errors -> GatewayDeclined, 4xx -> GatewayInvalidRequest,
    5xx / 409 / 429 / timeouts / connection errors -> GatewayUnavailable.
It must never touch the database or decide business rules.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import quote_plus

import requests
import stripe

from adapters.gateway.interface import (
    BalanceTransaction,
    BalanceTransactionPage,
    Dispute,
    GatewayDeclined,
    GatewayError,
    GatewayInvalidRequest,
    GatewayUnavailable,
    NextAction,
    PaymentError,
    PaymentIntent,
    Payout,
    Refund,
    WebhookEvent,
    WebhookSignatureInvalid,
)

T = TypeVar("T")


class StripeGateway:
    provider = "stripe"

    def __init__(self, *, api_key: str, api_base: str, webhook_secret: str | None = None,
                 timeout_seconds: float = 10.0) -> None:
        self._webhook_secret = webhook_secret
        api_base = api_base.rstrip("/")
        # requests (a dependency of the SDK) keeps one pooled session per thread: activities
        # run in a thread pool. (connect, read) timeouts: a dead host fails fast.
        http_client = _RequestsClient(timeout=(min(timeout_seconds, 3.0), timeout_seconds),
                                      proxy=_environment_proxies(api_base))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base},
            max_network_retries=0,
            http_client=http_client,
        )
        self._v1 = self._client.v1

    @classmethod
    def from_settings(cls, settings: Any) -> StripeGateway:
        return cls(api_key=settings.stripe_api_key, api_base=settings.stripe_api_base,
                   webhook_secret=settings.stripe_webhook_secret,
                   timeout_seconds=settings.stripe_timeout_seconds)

    # --- payment intents -----------------------------------------------------------------
    def create_payment_intent(self, *, amount: int, currency: str, payment_method: str,
                              idempotency_key: str, confirm: bool = True,
                              return_url: str | None = None, customer: str | None = None,
                              metadata: dict[str, str] | None = None,
                              description: str | None = None) -> PaymentIntent:
        _require_key(idempotency_key)
        params: dict[str, Any] = {
            "amount": _minor(amount), "currency": currency.lower(),
            "payment_method": payment_method, "payment_method_types": ["card"],
            "confirm": confirm,
        }
        if return_url:
            params["return_url"] = return_url
        if customer:
            params["customer"] = customer
        if metadata:
            params["metadata"] = metadata
        if description:
            params["description"] = description
        return _payment_intent(self._request("post", "/v1/payment_intents", params,
                                             idempotency_key))

    def confirm_payment_intent(self, intent_id: str, *, idempotency_key: str,
                               return_url: str | None = None) -> PaymentIntent:
        _require_key(idempotency_key)
        params: dict[str, Any] = {"return_url": return_url} if return_url else {}
        return _payment_intent(self._request(
            "post", f"/v1/payment_intents/{_path_id(intent_id)}/confirm", params,
            idempotency_key))

    def retrieve_payment_intent(self, intent_id: str) -> PaymentIntent:
        return _payment_intent(self._request("get",
                                             f"/v1/payment_intents/{_path_id(intent_id)}"))

    def cancel_payment_intent(self, intent_id: str, *, idempotency_key: str,
                              reason: str | None = None) -> PaymentIntent:
        _require_key(idempotency_key)
        params: dict[str, Any] = {"cancellation_reason": reason} if reason else {}
        return _payment_intent(self._request(
            "post", f"/v1/payment_intents/{_path_id(intent_id)}/cancel", params,
            idempotency_key))

    # --- refunds and payouts -------------------------------------------------------------
    def create_refund(self, *, payment_intent: str, idempotency_key: str, amount: int | None = None,
                      reason: str | None = None, metadata: dict[str, str] | None = None) -> Refund:
        _require_key(idempotency_key)
        params: dict[str, Any] = {"payment_intent": payment_intent}
        if amount is not None:
            params["amount"] = _minor(amount)
        if reason:
            params["reason"] = reason
        if metadata:
            params["metadata"] = metadata
        return _refund(self._request("post", "/v1/refunds", params, idempotency_key))

    def retrieve_refund(self, refund_id: str) -> Refund:
        return _refund(self._request("get", f"/v1/refunds/{_path_id(refund_id)}"))

    def create_payout(self, *, amount: int, currency: str, idempotency_key: str,
                      destination: str | None = None, description: str | None = None,
                      metadata: dict[str, str] | None = None) -> Payout:
        _require_key(idempotency_key)
        params: dict[str, Any] = {"amount": _minor(amount), "currency": currency.lower()}
        if destination:
            params["destination"] = destination
        if description:
            params["description"] = description
        if metadata:
            params["metadata"] = metadata
        return _payout(self._request("post", "/v1/payouts", params, idempotency_key))

    def retrieve_payout(self, payout_id: str) -> Payout:
        return _payout(self._request("get", f"/v1/payouts/{_path_id(payout_id)}"))

    # --- reconciliation ------------------------------------------------------------------
    def list_balance_transactions(self, *, created_gte: int | None = None,
                                  created_lt: int | None = None, limit: int = 100,
                                  starting_after: str | None = None,
                                  type: str | None = None) -> BalanceTransactionPage:
        params: dict[str, Any] = {"limit": limit}
        created: dict[str, int] = {}
        if created_gte is not None:
            created["gte"] = created_gte
        if created_lt is not None:
            created["lt"] = created_lt
        if created:
            params["created"] = created
        if starting_after:
            params["starting_after"] = starting_after
        if type:
            params["type"] = type
        page = self._call(lambda: self._v1.balance_transactions.list(params))
        data = page.to_dict()
        return BalanceTransactionPage(
            items=[_balance_transaction(item) for item in data.get("data", [])],
            has_more=bool(data.get("has_more")))

    def list_payment_intents(self, *, created_gte: int | None = None,
                             created_lt: int | None = None) -> Iterator[PaymentIntent]:
        for obj in self._walk(self._v1.payment_intents.list, created_gte, created_lt):
            yield _payment_intent(obj)

    def list_refunds(self, *, created_gte: int | None = None,
                     created_lt: int | None = None) -> Iterator[Refund]:
        for obj in self._walk(self._v1.refunds.list, created_gte, created_lt):
            yield _refund(obj)

    def list_payouts(self, *, created_gte: int | None = None,
                     created_lt: int | None = None) -> Iterator[Payout]:
        for obj in self._walk(self._v1.payouts.list, created_gte, created_lt):
            yield _payout(obj)

    def list_disputes(self, *, created_gte: int | None = None,
                      created_lt: int | None = None) -> Iterator[Dispute]:
        for obj in self._walk(self._v1.disputes.list, created_gte, created_lt):
            yield _dispute(obj)

    def iter_balance_transactions(self, *, created_gte: int | None = None,
                                  created_lt: int | None = None
                                  ) -> Iterator[BalanceTransaction]:
        for obj in self._walk(self._v1.balance_transactions.list, created_gte, created_lt):
            yield _balance_transaction(_plain(obj))

    def _walk(self, lister: Callable[[dict[str, Any]], Any], created_gte: int | None,
              created_lt: int | None) -> Iterator[Any]:
        """Every page of a list through the SDK's auto-pagination (`starting_after` the last
        id while `has_more`), 100 a page; each page's request goes through `_call`."""
        params: dict[str, Any] = {"limit": 100}
        created = {k: v for k, v in (("gte", created_gte), ("lt", created_lt)) if v is not None}
        if created:
            params["created"] = created
        pages = self._call(lambda: lister(params)).auto_paging_iter()
        while True:
            item = self._call(lambda: next(pages, None))
            if item is None:
                return
            yield item

    # --- webhooks ------------------------------------------------------------------------
    def verify_webhook(self, payload: bytes, signature_header: str | None,
                       tolerance_seconds: int = 300) -> WebhookEvent:
        if not self._webhook_secret:
            raise WebhookSignatureInvalid("no webhook secret configured")
        # stripe.Webhook.construct_event's two steps, the same checks in the same order: the
        # library's signature and tolerance check, then the JSON. The event is read as the
        # plain JSON it is rather than built into StripeObjects and dumped back to dicts
        # (to_dict): that round trip was most of the webhook's CPU in the API process.
        try:
            stripe.WebhookSignature.verify_header(payload, signature_header, self._webhook_secret,
                                                  tolerance_seconds)
            body = json.loads(payload)
            if body.get("object") == "v2.core.event":   # as construct_event refuses it
                raise ValueError(_THIN_EVENT)
        except stripe.SignatureVerificationError as error:
            raise WebhookSignatureInvalid(str(error.user_message or error)) from error
        except ValueError as error:  # not JSON, or not an event
            raise WebhookSignatureInvalid(f"malformed event: {error}") from error
        request = body.get("request")
        return WebhookEvent(id=body["id"], type=body["type"], created=int(body.get("created") or 0),
                            object=dict((body.get("data") or {}).get("object") or {}),
                            request_idempotency_key=(request or {}).get("idempotency_key")
                            if isinstance(request, dict) else None)

    # --- requests and error translation -------------------------------------------------
    def _request(self, method: str, path: str, params: dict[str, Any] | None = None,
                 idempotency_key: str | None = None) -> dict[str, Any]:
        """One call for one object (a PaymentIntent, refund or payout), answered as the JSON
        object the API sent.

        `StripeClient.raw_request` is the path the SDK's services take (the same form
        encoding, headers, requestor and error handling: a refusal raises the same
        `stripe.StripeError` as `payment_intents.create` would), without building a
        StripeObject from the answer, which `_plain` then dumped back to dicts: ~1.2 M of the
        ~4.6 M instructions of a PaymentIntent create's client side (callgrind). Lists keep the
        SDK's objects for their auto-pagination."""
        if params and not _RESERVED.isdisjoint(params):
            raise ValueError(f"parameters named like request options: "
                             f"{sorted(_RESERVED.intersection(params))}")
        options = {"idempotency_key": idempotency_key} if idempotency_key else {}
        response = self._call(lambda: self._client.raw_request(method, path, **(params or {}),
                                                               **options))
        data = response.data
        if not isinstance(data, dict):
            raise GatewayUnavailable(f"unreadable answer to {method.upper()} {path}",
                                     http_status=response.code)
        return data

    def _call(self, request: Callable[[], T]) -> T:
        try:
            return request()
        except stripe.CardError as error:
            body = _error_body(error)
            intent = body.get("payment_intent")
            raise GatewayDeclined(
                error.user_message or "card declined", code=error.code,
                decline_code=body.get("decline_code"),
                payment_intent=_payment_intent(intent) if isinstance(intent, dict) else None,
                http_status=error.http_status, request_id=error.request_id) from error
        except (stripe.APIConnectionError, stripe.RateLimitError) as error:
            raise GatewayUnavailable(str(error.user_message or error), code=error.code,
                                     http_status=error.http_status,
                                     request_id=error.request_id) from error
        except (stripe.InvalidRequestError, stripe.IdempotencyError,
                stripe.AuthenticationError, stripe.PermissionError) as error:
            body = _error_body(error)
            raise GatewayInvalidRequest(
                error.user_message or "invalid request",
                code=error.code or body.get("code") or body.get("type"),
                param=body.get("param"), http_status=error.http_status,
                request_id=error.request_id) from error
        # APIError: 5xx, 409 (a concurrent request under the same key), answers we cannot read
        except stripe.StripeError as error:
            raise GatewayUnavailable(str(error.user_message or error), code=error.code,
                                     http_status=error.http_status,
                                     request_id=error.request_id) from error


# --- helpers ------------------------------------------------------------------------------

# stripe._webhook.build_v1_event's words for a thin event (v2) sent where a webhook body goes.
_THIN_EVENT = ("You passed a thin event notification to a method that expects a webhook body. "
               "Use the corresponding parse_event_notification* method instead.")

# raw_request takes these keyword arguments as the request's options (and `base`, `usage` as
# its own), not as API parameters: none of ours may be so named.
_RESERVED = frozenset({"api_key", "stripe_version", "stripe_account", "stripe_context",
                       "max_network_retries", "idempotency_key", "content_type", "headers",
                       "base", "usage"})


class _RequestsClient(stripe.RequestsClient):
    """The SDK's requests client, whose per-thread sessions do not read the process
    environment on every call.

    A requests Session that trusts the environment (requests' default) looks up proxies in it
    (every variable decoded, twice: `get_environ_proxies`) and a .netrc entry before each
    request: ~1.4 M of the ~6.0 M instructions of a PaymentIntent create's client side
    (callgrind). Here the environment's proxies for the API's address are read once, when the
    gateway is made (`_environment_proxies`), and given to the client as its proxy, which it
    passes with every request; no .netrc entry is used (the SDK sends the secret key in its
    own Authorization header, which a .netrc entry would have replaced). Certificate checks
    are unchanged: the SDK passes its own CA bundle, so the environment's was never read."""

    def request(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        self._own_session()
        return super().request(method, url, headers, post_data)

    def request_stream(self, method: str, url: str, headers: Any, post_data: Any = None) -> Any:
        self._own_session()
        return super().request_stream(method, url, headers, post_data)

    def _own_session(self) -> None:
        # The SDK makes this thread's session on its first request when none is set.
        if getattr(self._thread_local, "session", None) is None:
            session = requests.Session()
            session.trust_env = False
            self._thread_local.session = session


def _environment_proxies(api_base: str) -> dict[str, str] | None:
    """The proxies requests would take from the environment for the API's address (HTTP_PROXY,
    HTTPS_PROXY, ALL_PROXY, NO_PROXY ...), read now; None for none."""
    return requests.utils.get_environ_proxies(api_base) or None


def _path_id(object_id: str) -> str:
    """An id in a URL path, quoted as the SDK's services quote it (`sanitize_id`)."""
    return quote_plus(object_id)


def _require_key(key: str) -> None:
    if not key:
        raise ValueError("an idempotency key derived from the business operation is required")


def _minor(amount: int) -> int:
    # bool is an int subclass and floats creep in from JSON: refuse both loudly.
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError(f"amounts are integers in minor units, got {amount!r}")
    return amount


def _error_body(error: GatewayError | stripe.StripeError) -> dict[str, Any]:
    body = getattr(error, "json_body", None)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body["error"]
    return {}


def _plain(obj: Any) -> dict[str, Any]:
    if obj is None:
        return {}
    if isinstance(obj, dict):
        return obj
    return obj.to_dict()


def _id_of(value: Any) -> str | None:
    """Stripe returns a related object as its id, or expanded as an object (localstripe does)."""
    if value is None or isinstance(value, str):
        return value
    return _plain(value).get("id")


def _payment_intent(obj: Any) -> PaymentIntent:
    data = _plain(obj)
    next_action = None
    if data.get("next_action"):
        action = data["next_action"]
        redirect = action.get("redirect_to_url") or {}
        next_action = NextAction(type=action.get("type", "unknown"),
                                 redirect_url=redirect.get("url"),
                                 return_url=redirect.get("return_url"))
    error = None
    if data.get("last_payment_error"):
        raw = data["last_payment_error"]
        error = PaymentError(code=raw.get("code"), decline_code=raw.get("decline_code"),
                             message=raw.get("message"))
    return PaymentIntent(
        id=data["id"], status=data["status"], amount=int(data["amount"]),
        currency=str(data["currency"]).upper(), payment_method=_id_of(data.get("payment_method")),
        latest_charge=_id_of(data.get("latest_charge")), client_secret=data.get("client_secret"),
        next_action=next_action, last_payment_error=error,
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        created=data.get("created"))


def _refund(obj: Any) -> Refund:
    data = _plain(obj)
    return Refund(id=data["id"], status=data.get("status") or "succeeded",
                  amount=int(data["amount"]),
                  currency=str(data["currency"]).upper(),
                  payment_intent=_id_of(data.get("payment_intent")),
                  charge=_id_of(data.get("charge")),
                  failure_reason=data.get("failure_reason"),
                  metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
                  created=data.get("created"))


def _payout(obj: Any) -> Payout:
    data = _plain(obj)
    return Payout(id=data["id"], status=data["status"], amount=int(data["amount"]),
                  currency=str(data["currency"]).upper(),
                  destination=_id_of(data.get("destination")),
                  arrival_date=data.get("arrival_date"), failure_code=data.get("failure_code"),
                  failure_message=data.get("failure_message"),
                  metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
                  created=data.get("created"))


def _dispute(obj: Any) -> Dispute:
    data = _plain(obj)
    fee = sum(int(txn.get("fee") or 0) for txn in data.get("balance_transactions") or []
              if isinstance(txn, dict))
    return Dispute(id=data["id"], status=data["status"], amount=int(data["amount"]),
                   currency=str(data["currency"]).upper(), charge=_id_of(data.get("charge")),
                   payment_intent=_id_of(data.get("payment_intent")), reason=data.get("reason"),
                   created=int(data["created"]), fee=fee)


def _balance_transaction(data: dict[str, Any]) -> BalanceTransaction:
    amount = int(data["amount"])
    fee = int(data.get("fee") or 0)
    return BalanceTransaction(id=data["id"], type=data["type"], amount=amount, fee=fee,
                              net=int(data.get("net", amount - fee)),
                              currency=str(data["currency"]).upper(),
                              source=_id_of(data.get("source")),
                              created=int(data["created"]),
                              reporting_category=data.get("reporting_category"))
