"""Stripe's error objects, as the real API sends them (type, code, decline_code, param)."""

from __future__ import annotations

from typing import Any


class StripeApiError(Exception):
    def __init__(self, status: int, type_: str, message: str, *, code: str | None = None,
                 param: str | None = None, decline_code: str | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            self.body["code"] = code
            self.body["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
        if param:
            self.body["param"] = param
        if decline_code:
            self.body["decline_code"] = decline_code
        self.body.update(extra)

    def to_json(self) -> dict[str, Any]:
        return {"error": self.body}


def invalid(message: str, *, code: str | None = None, param: str | None = None, status: int = 400,
            **extra: Any) -> StripeApiError:
    return StripeApiError(status, "invalid_request_error", message, code=code, param=param, **extra)


def missing(kind: str, object_id: str, param: str = "id") -> StripeApiError:
    return invalid(f"No such {kind}: '{object_id}'", code="resource_missing", param=param,
                   status=404)


def api_error(status: int = 500) -> StripeApiError:
    return StripeApiError(status, "api_error",
                          "An unexpected error occurred (injected by the sandbox).")


def rate_limited() -> StripeApiError:
    return StripeApiError(429, "invalid_request_error",
                          "Too many requests hit the API too quickly.",
                          code="rate_limit")


def idempotency_in_use(key: str) -> StripeApiError:
    return StripeApiError(409, "idempotency_error",
                          "There is currently another in-progress request using this Idempotent "
                          f"Key ({key}). Please try again later.", code="idempotency_key_in_use")


def idempotency_mismatch(key: str) -> StripeApiError:
    return StripeApiError(400, "idempotency_error",
                          "Keys for idempotent requests can only be used with the same parameters "
                          f"they were first used with. Try using a key other than '{key}' if you "
                          "meant to execute a different request.")
