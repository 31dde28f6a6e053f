"""The dispatcher's metrics (settlepay_webhook_attempts_total{status},
settlepay_webhook_delivery_lag_seconds) move with real deliveries to the receiver sandbox,
recorded by commands.webhooks.record_deliveries once its transaction commits.

`drain` delivers whatever is due in the whole database (earlier tests may leave retries due),
so each test compares the metrics with the attempt rows the drain wrote, not with constants."""

from __future__ import annotations

import uuid

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine, RowMapping, text

from settlepay.config import Settings
from settlepay.observability import metrics
from tests.support.webhooks import Receiver, attempts_of, emit, make_endpoint, new_partner
from webhooks.dispatcher import Dispatcher

ATTEMPTS = "settlepay_webhook_attempts_total"
LAG = "settlepay_webhook_delivery_lag_seconds"
STATUSES = ("succeeded", "retry", "exhausted", "failed")


def _sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def _snapshot() -> dict[str, float]:
    values = {status: _sample(ATTEMPTS, {"status": status}) for status in STATUSES}
    values.update(lag_count=_sample(f"{LAG}_count"), lag_sum=_sample(f"{LAG}_sum"))
    return values


def _moved(before: dict[str, float]) -> dict[str, float]:
    after = _snapshot()
    return {key: after[key] - before[key] for key in after}


def _last_attempt_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT coalesce(max(id), 0) FROM webhook_attempts"))
                   .scalar_one())


def _attempts_since(engine: Engine, last_id: int) -> list[RowMapping]:
    """The attempts written after `last_id`, each with its lag (event commit -> attempt end)."""
    with engine.connect() as conn:
        return list(conn.execute(text("""
            SELECT a.status, a.next_attempt_at,
                   extract(epoch FROM a.created_at - e.occurred_at)::float8 AS lag
              FROM webhook_attempts a JOIN webhook_events e ON e.id = a.event_id
             WHERE a.id > :last ORDER BY a.id"""), {"last": last_id}).mappings())


async def test_successful_deliveries_count_as_succeeded_attempts_with_their_delivery_lag(
        engine: Engine, wh_settings: Settings, receiver: Receiver) -> None:
    assert metrics.enabled()
    partner, hook = new_partner(), uuid.uuid4().hex[:12]
    endpoint, secret = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    receiver.configure(hook, secrets=[secret])
    before, last_id = _snapshot(), _last_attempt_id(engine)
    for n in range(3):
        emit(engine, partner, "deposit.succeeded", {"deposit": n})
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()
    assert len(receiver.deliveries(hook)) == 3
    assert [a["status"] for a in attempts_of(engine, endpoint["id"])] == ["succeeded"] * 3
    written = _attempts_since(engine, last_id)
    succeeded = [a for a in written if a["status"] == "succeeded"]
    moved = _moved(before)
    assert len(succeeded) >= 3
    assert moved["succeeded"] == moved["lag_count"] == len(succeeded)
    assert sum(moved[s] for s in STATUSES) == len(written)
    assert moved["lag_sum"] == pytest.approx(sum(a["lag"] for a in succeeded), abs=1e-3)
    assert all(a["lag"] >= 0 for a in succeeded)


async def test_a_failed_attempt_counts_under_retry_and_adds_no_delivery_lag(
        engine: Engine, wh_settings: Settings, receiver: Receiver) -> None:
    partner, hook = new_partner(), uuid.uuid4().hex[:12]
    endpoint, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    receiver.configure(hook, status=500, body="down")
    before, last_id = _snapshot(), _last_attempt_id(engine)
    emit(engine, partner, "deposit.failed")
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()
    [attempt] = attempts_of(engine, endpoint["id"])
    assert (attempt["status"], attempt["next_attempt_at"] is not None) == ("failed", True)
    written = _attempts_since(engine, last_id)
    retried = [a for a in written if a["status"] == "failed" and a["next_attempt_at"]]
    succeeded = [a for a in written if a["status"] == "succeeded"]
    moved = _moved(before)
    assert moved["retry"] == len(retried) >= 1
    assert moved["succeeded"] == moved["lag_count"] == len(succeeded)
    assert sum(moved[s] for s in STATUSES) == len(written)


async def test_telemetry_off_records_no_webhook_metric(
        engine: Engine, wh_settings: Settings, receiver: Receiver) -> None:
    partner, hook = new_partner(), uuid.uuid4().hex[:12]
    endpoint, secret = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    receiver.configure(hook, secrets=[secret])
    before = _snapshot()
    metrics.set_enabled(False)
    try:
        emit(engine, partner, "deposit.succeeded")
        async with Dispatcher(engine, wh_settings) as dispatcher:
            await dispatcher.drain()
    finally:
        metrics.set_enabled(True)
    assert [a["status"] for a in attempts_of(engine, endpoint["id"])] == ["succeeded"]
    assert set(_moved(before).values()) == {0.0}
