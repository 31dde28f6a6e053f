"""Partner webhooks: every change of an endpoint or a delivery, with its audit record (and,
where partners must hear of it, its outbox event), in the caller's transaction.

    row, secret = create_endpoint(conn, settings, partner_id=..., spec=EndpointSpec(url=...),
                                  actor=principal.actor, operation_id=..., now=now)
    update_endpoint / delete_endpoint / rotate_secret / send_test      (the API, the CLI)
    resend / recover                                                   (manual deliveries)
    record_deliveries(conn, owner, delivered, ...)                     (the dispatcher)

The resource builders (`endpoint_resource`, `event_resource`, `attempt_resource`) are the one
shape the API answers with and the outbox payloads carry. A signing secret is never in an audit
record, an event or a log; it is sealed at rest (webhooks/signing.py).
Must never: open its own transaction, send a webhook, or decide who may see an endpoint (the
caller passes the rows it found for its principal).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
import outbox
from settlepay.config import Settings
from settlepay.observability import metrics
from store import webhooks as store
from webhooks import filters, signing
from webhooks.schedule import After, MessageStatus, Outcome, Trigger
from webhooks.ssrf import Guard, Refused
from workflows.contracts.refusal import Refusal

ROTATION_GRACE_DEFAULT = timedelta(hours=24)
ROTATION_GRACE_MAX = timedelta(days=7)
RECOVER_WINDOW_MAX = timedelta(days=14)
RESPONSE_BODY_MAX = 20 * 1024          # characters of a response kept with its attempt
SYSTEM_ACTOR = "system:webhooks"


class WebhookRefusal(StrEnum):
    ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    EVENT_NOT_FOUND = "event_not_found"
    URL_REFUSED = "webhook_url_refused"            # malformed, or a private address
    EVENT_TYPES_INVALID = "event_types_invalid"
    ENDPOINT_DISABLED = "webhook_endpoint_disabled"
    GRACE_TOO_LONG = "rotation_grace_too_long"
    RECOVER_TOO_FAR_BACK = "recover_since_too_far_back"


class WebhookRefused(Exception):
    def __init__(self, code: WebhookRefusal, reason: str) -> None:
        self.refusal = Refusal(str(code), reason)
        super().__init__(reason)


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    DELETED = "deleted"


class DisabledReason(StrEnum):
    MANUAL = "manual"       # PATCH {"disabled": true}
    GONE = "gone"           # the endpoint answered 410
    FAILING = "failing"     # no success for webhooks_disable_after_failing_seconds


@dataclass(frozen=True)
class EndpointSpec:
    url: str
    description: str = ""
    event_types: tuple[str, ...] = filters.DEFAULT_FILTERS
    rate_limit_per_minute: int | None = None


# --- resources --------------------------------------------------------------------------------

def endpoint_resource(row: RowMapping) -> dict[str, Any]:
    """The endpoint as the API shows it (never its secret)."""
    return {
        "object": "webhook_endpoint", "id": row["id"], "partner_id": row["partner_id"],
        "url": row["url"], "description": row["description"],
        "event_types": list(row["event_types"]),
        "rate_limit_per_minute": row["rate_limit_per_minute"], "status": row["status"],
        "disabled_reason": row["disabled_reason"], "failing_since": row["failing_since"],
        "last_success_at": row["last_success_at"],
        "previous_secret_expires_at": row["previous_secret_expires_at"],
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def event_resource(row: RowMapping) -> dict[str, Any]:
    return {"object": "event", "id": row["id"], "type": row["event_type"],
            "partner_id": row["partner_id"], "timestamp": row["occurred_at"],
            "data": row["payload"], "created_at": row["created_at"]}


def attempt_resource(row: RowMapping) -> dict[str, Any]:
    return {"object": "webhook_attempt", "id": row["id"], "event_id": row["event_id"],
            "endpoint_id": row["endpoint_id"], "message_id": row["message_id"],
            "trigger": row["trigger"], "attempt_number": row["attempt_number"],
            "status": row["status"], "response_status_code": row["response_status_code"],
            "response_body": row["response_body"], "error": row["error"],
            "duration_ms": row["duration_ms"], "attempted_at": row["started_at"],
            "next_attempt_at": row["next_attempt_at"]}


def _record(row: RowMapping) -> dict[str, Any]:
    """The endpoint as its audit record keeps it: JSON values, no secret."""
    resource = endpoint_resource(row)
    return {key: value.isoformat() if isinstance(value, datetime) else value
            for key, value in resource.items() if key != "object"}


# --- endpoints --------------------------------------------------------------------------------

def check_url(settings: Settings, url: str) -> None:
    """What can be refused at registration: the URL's form, a private IP literal. The guard
    decides again at every connection, on what the name resolves to then."""
    try:
        Guard(settings.webhooks_allowed_networks).check_literal(url)
    except Refused as refused:
        raise WebhookRefused(WebhookRefusal.URL_REFUSED, refused.reason) from refused


def check_event_types(event_types: Sequence[str]) -> None:
    bad = filters.invalid_filters(event_types)
    if not event_types or len(event_types) > filters.FILTERS_MAX or bad:
        raise WebhookRefused(WebhookRefusal.EVENT_TYPES_INVALID,
                             f"event_types takes 1 to {filters.FILTERS_MAX} filters, each `*`, "
                             f"`prefix.*` or an event type; not {bad or list(event_types)}.")


def create_endpoint(conn: Connection, settings: Settings, *, partner_id: str, spec: EndpointSpec,
                    actor: str, operation_id: str | None,
                    now: datetime) -> tuple[RowMapping, str]:
    """The new endpoint and its signing secret (the same ones again when this operation ran
    before)."""
    check_url(settings, spec.url)
    check_event_types(spec.event_types)
    endpoint_id = "ep_" + (operation_id or uuid.uuid4().hex)[:24]
    secret = signing.new_secret()
    row = store.insert_endpoint(
        conn, endpoint_id=endpoint_id, partner_id=partner_id, url=spec.url,
        description=spec.description, event_types=spec.event_types,
        rate_limit_per_minute=spec.rate_limit_per_minute,
        secret_sealed=signing.seal(secret, settings.webhooks_secret_encryption_key), now=now)
    if row is None:
        earlier = store.get_endpoint(conn, endpoint_id, partner_id=partner_id, deleted=True)
        if earlier is None:
            raise RuntimeError(f"endpoint id {endpoint_id} is taken by another partner")
        return earlier, endpoint_secret(settings, earlier)
    audit.record(conn, actor=actor, action="webhook_endpoint.created",
                 subject_type="webhook_endpoint", subject_id=endpoint_id, before=None,
                 after=_record(row))
    return row, secret


def endpoint_secret(settings: Settings, row: RowMapping) -> str:
    return signing.unseal(row["secret_sealed"], settings.webhooks_secret_encryption_key)


def update_endpoint(conn: Connection, settings: Settings, row: RowMapping, *,
                    changes: dict[str, Any], actor: str, now: datetime) -> RowMapping:
    """Change url / description / event_types / rate_limit_per_minute, and `disabled`
    (True: stop delivering, pending messages fail; False: deliver again, failures forgotten)."""
    columns: dict[str, Any] = {}
    if "url" in changes:
        check_url(settings, changes["url"])
        columns["url"] = changes["url"]
    if "event_types" in changes:
        check_event_types(changes["event_types"])
        columns["event_types"] = tuple(changes["event_types"])
    for name in ("description", "rate_limit_per_minute"):
        if name in changes:
            columns[name] = changes[name]
    disabled = changes.get("disabled")
    if disabled is True and row["status"] == EndpointStatus.ENABLED:
        columns.update(status=str(EndpointStatus.DISABLED),
                       disabled_reason=str(DisabledReason.MANUAL))
    elif disabled is False and row["status"] == EndpointStatus.DISABLED:
        columns.update(status=str(EndpointStatus.ENABLED), disabled_reason=None,
                       failing_since=None, throttled_until=None)
    if not columns:
        return row
    updated = store.update_endpoint(conn, row["id"], columns, now)
    if columns.get("status") == EndpointStatus.DISABLED:
        store.fail_pending(conn, row["id"], now)
    action = ("webhook_endpoint.disabled" if columns.get("status") == EndpointStatus.DISABLED
              else "webhook_endpoint.enabled" if columns.get("status") == EndpointStatus.ENABLED
              else "webhook_endpoint.updated")
    audit.record(conn, actor=actor, action=action, subject_type="webhook_endpoint",
                 subject_id=row["id"], before=_record(row), after=_record(updated))
    return updated


def delete_endpoint(conn: Connection, row: RowMapping, *, actor: str, now: datetime) -> None:
    """The endpoint stops receiving; its events and attempts stay readable."""
    updated = store.update_endpoint(conn, row["id"], {"status": str(EndpointStatus.DELETED),
                                                      "disabled_reason": None}, now)
    store.fail_pending(conn, row["id"], now)
    audit.record(conn, actor=actor, action="webhook_endpoint.deleted",
                 subject_type="webhook_endpoint", subject_id=row["id"], before=_record(row),
                 after=_record(updated))


def rotate_secret(conn: Connection, settings: Settings, row: RowMapping, *,
                  grace: timedelta | None, actor: str,
                  now: datetime) -> tuple[RowMapping, str]:
    """A new secret; deliveries carry the old one's signature too until `grace` has passed."""
    grace = ROTATION_GRACE_DEFAULT if grace is None else grace
    if grace > ROTATION_GRACE_MAX or grace < timedelta(0):
        raise WebhookRefused(WebhookRefusal.GRACE_TOO_LONG,
                             f"grace_seconds is 0 to {int(ROTATION_GRACE_MAX.total_seconds())}"
                             " (7 days).")
    secret = signing.new_secret()
    keep_old = grace > timedelta(0)
    updated = store.update_endpoint(conn, row["id"], {
        "secret_sealed": signing.seal(secret, settings.webhooks_secret_encryption_key),
        "previous_secret_sealed": row["secret_sealed"] if keep_old else None,
        "previous_secret_expires_at": now + grace if keep_old else None}, now)
    audit.record(conn, actor=actor, action="webhook_endpoint.secret_rotated",
                 subject_type="webhook_endpoint", subject_id=row["id"], before=None,
                 after={"grace_seconds": int(grace.total_seconds()),
                        "previous_secret_expires_at": (now + grace).isoformat()
                        if keep_old else None})
    return updated, secret


def send_test(conn: Connection, row: RowMapping, *, actor: str) -> int:
    """A `webhook.test` event for this endpoint only; the outbox event's id."""
    if row["status"] != EndpointStatus.ENABLED:
        raise WebhookRefused(WebhookRefusal.ENDPOINT_DISABLED,
                             f"Endpoint {row['id']} is disabled; enable it first.")
    audit.record(conn, actor=actor, action="webhook_endpoint.test_sent",
                 subject_type="webhook_endpoint", subject_id=row["id"], before=None, after=None)
    return outbox.emit(conn, event_type=filters.TEST, aggregate_type="webhook_endpoint",
                       aggregate_id=row["id"], partner_id=row["partner_id"],
                       payload={"endpoint_id": row["id"],
                                "message": "A test event from settlepay."})


def resend(conn: Connection, event: RowMapping, endpoint: RowMapping, *, actor: str,
           now: datetime) -> None:
    """One manual attempt of `event` to `endpoint` (not retried when it fails)."""
    if event["partner_id"] != endpoint["partner_id"]:
        raise WebhookRefused(WebhookRefusal.ENDPOINT_NOT_FOUND,
                             f"There is no webhook endpoint {endpoint['id']!r}.")
    if endpoint["status"] != EndpointStatus.ENABLED:
        raise WebhookRefused(WebhookRefusal.ENDPOINT_DISABLED,
                             f"Endpoint {endpoint['id']} is disabled; enable it first.")
    store.insert_messages(conn, [(event["id"], endpoint["id"], endpoint["partner_id"])],
                          str(Trigger.MANUAL), now)
    audit.record(conn, actor=actor, action="webhook_event.resent", subject_type="event",
                 subject_id=event["id"], before=None, after={"endpoint_id": endpoint["id"]})


def recover(conn: Connection, endpoint: RowMapping, *, since: datetime, actor: str,
            now: datetime) -> int:
    """Resend (once each) every event whose delivery to the endpoint failed since `since`
    (at most 14 days back); how many."""
    if since < now - RECOVER_WINDOW_MAX:
        raise WebhookRefused(WebhookRefusal.RECOVER_TOO_FAR_BACK,
                             "`since` may be at most 14 days back.")
    if endpoint["status"] != EndpointStatus.ENABLED:
        raise WebhookRefused(WebhookRefusal.ENDPOINT_DISABLED,
                             f"Endpoint {endpoint['id']} is disabled; enable it first.")
    count = store.recover_failed(conn, endpoint["id"], since, now)
    audit.record(conn, actor=actor, action="webhook_endpoint.recovered",
                 subject_type="webhook_endpoint", subject_id=endpoint["id"], before=None,
                 after={"since": since.isoformat(), "messages": count})
    return count


# --- deliveries (the dispatcher) ----------------------------------------------------------------

@dataclass(frozen=True)
class Delivered:
    """One finished HTTP attempt and what the retry policy made of it."""
    message_id: int
    event_id: str
    event_type: str
    endpoint_id: str
    partner_id: str
    trigger: Trigger
    attempt_number: int
    status_code: int | None
    response_body: str
    error: str | None
    duration_ms: int
    started_at: datetime
    finished_at: datetime
    after: After
    next_attempt_at: datetime | None = field(default=None)
    occurred_at: datetime | None = field(default=None)   # the event's commit (delivery lag)


_MESSAGE_STATUS = {Outcome.SUCCEEDED: MessageStatus.SUCCEEDED, Outcome.RETRY: MessageStatus.PENDING,
                   Outcome.EXHAUSTED: MessageStatus.FAILED, Outcome.FAILED: MessageStatus.FAILED}


def record_deliveries(conn: Connection, owner: int, delivered: Sequence[Delivered], *,
                      now: datetime, failing_window: timedelta) -> list[RowMapping]:
    """Write the attempts and the messages' next state; keep each endpoint's success / failure
    bookkeeping; disable endpoints that answered 410 or have failed for `failing_window`; emit
    `message.attempt.exhausted` and `endpoint.disabled`. The endpoints disabled."""
    if not delivered:
        return []
    store.insert_attempts(conn, [{
        "message_id": d.message_id, "event_id": d.event_id, "endpoint_id": d.endpoint_id,
        "partner_id": d.partner_id, "trigger": str(d.trigger),
        "attempt_number": d.attempt_number,
        "status": "succeeded" if d.after.outcome == Outcome.SUCCEEDED else "failed",
        "response_status_code": d.status_code,
        "response_body": d.response_body[:RESPONSE_BODY_MAX], "error": d.error,
        "duration_ms": d.duration_ms, "started_at": d.started_at,
        "next_attempt_at": d.next_attempt_at, "created_at": d.finished_at}
        for d in delivered])
    _count_attempts(conn, delivered)
    store.finish_messages(conn, owner, [{
        "id": d.message_id, "status": str(_MESSAGE_STATUS[d.after.outcome]),
        "attempts": d.attempt_number, "next_attempt_at": d.next_attempt_at}
        for d in delivered], now)

    latest: dict[str, Delivered] = {}
    for d in sorted(delivered, key=lambda d: d.finished_at):
        latest[d.endpoint_id] = d
    store.mark_success(conn, [e for e, d in latest.items()
                              if d.after.outcome == Outcome.SUCCEEDED], now)
    failing = [e for e, d in latest.items() if d.after.outcome != Outcome.SUCCEEDED]
    store.mark_failing(conn, failing, now)
    store.throttle(conn, {d.endpoint_id: d.finished_at + timedelta(seconds=d.after.throttle_seconds)
                          for d in delivered if d.after.throttle_seconds})

    for d in delivered:
        if d.after.outcome == Outcome.EXHAUSTED and d.event_type not in filters.OPERATIONAL_TYPES:
            _exhausted(conn, d)
    disabled = store.disable_if(conn, {d.endpoint_id for d in delivered if d.after.gone},
                                str(DisabledReason.GONE), now)
    disabled += store.disable_if(conn, failing, str(DisabledReason.FAILING), now,
                                 failing_before=now - failing_window)
    for row in disabled:
        _disabled(conn, row, now)
    return disabled


def _count_attempts(conn: Connection, delivered: Sequence[Delivered]) -> None:
    """settlepay_webhook_attempts_total{status} (what the retry policy made of the attempt:
    succeeded, retry, exhausted, failed) and, for each success, the time from the event's
    commit to its delivery; recorded once the transaction commits."""
    outcomes = [str(d.after.outcome) for d in delivered]
    lags = [(d.finished_at - d.occurred_at).total_seconds() for d in delivered
            if d.after.outcome == Outcome.SUCCEEDED and d.occurred_at is not None]

    def record() -> None:
        for outcome in outcomes:
            metrics.count(metrics.WEBHOOK_ATTEMPTS, outcome)
        for lag in lags:
            metrics.observe(metrics.WEBHOOK_DELIVERY_LAG_SECONDS, lag)
    metrics.on_commit(conn, record)


def _exhausted(conn: Connection, d: Delivered) -> None:
    payload = {"event_id": d.event_id, "event_type": d.event_type,
               "endpoint_id": d.endpoint_id, "attempts": d.attempt_number,
               "last_response_status_code": d.status_code, "last_error": d.error}
    audit.record(conn, actor=SYSTEM_ACTOR, action="webhook_message.exhausted",
                 subject_type="event", subject_id=d.event_id, before=None, after=payload)
    outbox.emit(conn, event_type=filters.MESSAGE_EXHAUSTED, aggregate_type="webhook_endpoint",
                aggregate_id=d.endpoint_id, partner_id=d.partner_id, payload=payload)


def _disabled(conn: Connection, row: RowMapping, now: datetime) -> None:
    store.fail_pending(conn, row["id"], now)
    record = _record(row)
    audit.record(conn, actor=SYSTEM_ACTOR, action="webhook_endpoint.disabled",
                 subject_type="webhook_endpoint", subject_id=row["id"],
                 before={"status": "enabled"}, after=record)
    outbox.emit(conn, event_type=filters.ENDPOINT_DISABLED, aggregate_type="webhook_endpoint",
                aggregate_id=row["id"], partner_id=row["partner_id"],
                payload={"endpoint_id": row["id"], "url": row["url"],
                         "reason": row["disabled_reason"],
                         "failing_since": record["failing_since"],
                         "disabled_at": now.isoformat()})
