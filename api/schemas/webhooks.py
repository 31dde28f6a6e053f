"""Request and response bodies of /v1/webhook_endpoints and /v1/events.

The resources are built by `commands.webhooks` (`endpoint_resource`, `event_resource`,
`attempt_resource`), the same builders the CLI prints. A secret appears only in the answers
that exist to hand it over: creation, GET .../secret and rotation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from api.schemas.text import Exact, ExactFields, not_blank

PARTNER_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
EventTypeFilter = str


class WebhookEndpointCreate(ExactFields):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: str = Field(min_length=1, max_length=2048, pattern=not_blank(),
                     description="http(s) URL; it must not resolve to a private address.")
    description: str = Field("", max_length=500)
    event_types: list[EventTypeFilter] = Field(
        default_factory=lambda: ["*"], min_length=1, max_length=64,
        description="Filters: `*` (every event but per-bet ones), `deposit.*`, or an exact "
                    "type. Per-bet events (`bet.settled`, ...) only when named (`bet.*`).")
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    partner_id: Exact | None = Field(None, min_length=1, max_length=64, pattern=PARTNER_PATTERN,
                                     description="Required for operator keys; partner keys may "
                                                 "omit it (it must be their own partner).")


class WebhookEndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    # Omitted: unchanged. Only rate_limit_per_minute takes null; the others are not nullable
    # (the default None only means "not sent"), so the OpenAPI description refuses null too.
    url: str = Field(None, min_length=1, max_length=2048, pattern=not_blank())
    description: str = Field(None, max_length=500)
    event_types: list[EventTypeFilter] = Field(None, min_length=1, max_length=64)
    rate_limit_per_minute: StrictInt | None = Field(None, ge=1, le=1_000_000,
                                                    description="null removes the limit")
    disabled: StrictBool = Field(None, description="true stops deliveries (pending ones "
                                                   "fail); false resumes them")


class WebhookEndpoint(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    partner_id: str
    url: str
    description: str
    event_types: list[str]
    rate_limit_per_minute: int | None
    status: Literal["enabled", "disabled", "deleted"]
    disabled_reason: Literal["manual", "gone", "failing"] | None
    failing_since: datetime | None
    last_success_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then, deliveries are signed with the previous secret too.")
    created_at: datetime
    updated_at: datetime


class WebhookEndpointWithSecret(WebhookEndpoint):
    secret: str = Field(description="`whsec_` + base64: verify the `webhook-signature` with it.")


class WebhookEndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookEndpoint]


class WebhookEndpointDeleted(BaseModel):
    object: Literal["webhook_endpoint"] = "webhook_endpoint"
    id: str
    deleted: Literal[True] = True


class WebhookSecret(BaseModel):
    object: Literal["webhook_secret"] = "webhook_secret"
    endpoint_id: str
    secret: str


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_seconds: int | None = Field(None, ge=0, description="How long deliveries also carry "
                                                              "the old secret's signature "
                                                              "(default 24 h, at most 7 days).")


class WebhookTestSent(BaseModel):
    object: Literal["webhook_test"] = "webhook_test"
    endpoint_id: str
    event_type: Literal["webhook.test"] = "webhook.test"


class Event(BaseModel):
    object: Literal["event"] = "event"
    id: str
    type: str
    partner_id: str
    timestamp: datetime = Field(description="When the change happened (the body's timestamp).")
    data: dict[str, Any]
    created_at: datetime


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[Event]
    has_more: bool
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page.")


class WebhookAttempt(BaseModel):
    object: Literal["webhook_attempt"] = "webhook_attempt"
    id: int
    event_id: str
    endpoint_id: str
    message_id: int
    trigger: Literal["scheduled", "manual", "recover"]
    attempt_number: int
    status: Literal["succeeded", "failed"]
    response_status_code: int | None = Field(description="null: no HTTP answer (timeout, "
                                                         "connection refused, address refused)")
    response_body: str = Field(description="The first 20 kB of the answer.")
    error: str | None
    duration_ms: int
    attempted_at: datetime
    next_attempt_at: datetime | None = Field(description="When the event is tried again "
                                                         "(null: not rescheduled).")


class WebhookAttemptList(BaseModel):
    object: Literal["list"] = "list"
    data: list[WebhookAttempt]
    has_more: bool
    next_cursor: str | None


class ResendRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint_id: str = Field(min_length=1, max_length=64)


class ResendQueued(BaseModel):
    object: Literal["webhook_resend"] = "webhook_resend"
    event_id: str
    endpoint_id: str
    trigger: Literal["manual"] = "manual"


class RecoverRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: AwareDatetime = Field(description="Resend what failed since then (at most 14 days).")


class RecoverQueued(BaseModel):
    object: Literal["webhook_recovery"] = "webhook_recovery"
    endpoint_id: str
    since: datetime
    messages: int = Field(description="Events queued for one more attempt each.")
