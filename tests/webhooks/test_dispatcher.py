"""The dispatcher against the real database and the receiver sandbox on loopback.

Driven step by step (`drain`, `sweep`) with a clock that moves only when told, so days of
retries take milliseconds and nothing waits on a timer it hopes has fired."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from commands import webhooks as commands
from settlepay.db import run_in_transaction
from store import webhooks as store
from tests.support.factories import audit_actions, wait_until
from tests.support.webhooks import (
    SCHEDULE,
    ManualClock,
    attempts_of,
    body_of,
    emit,
    endpoint_row,
    make_endpoint,
    new_partner,
    partner_events,
    verifies,
    verify,
    webhook_settings,
)
from webhooks.dispatcher import Dispatcher


def name() -> str:
    return uuid.uuid4().hex[:12]


async def test_every_delivery_is_signed_and_verifies_with_the_reference_library(
        engine, wh_settings, receiver):
    partner, hook = new_partner(), name()
    endpoint, secret = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    receiver.configure(hook, secrets=[secret])
    outbox_ids = [emit(engine, partner, "deposit.succeeded", {"deposit": n}) for n in range(3)]
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()
    deliveries = receiver.deliveries(hook)
    assert len(deliveries) == 3 and all(d["verified"] for d in deliveries)
    bodies = [verify(secret, d) for d in deliveries]
    assert sorted(b["data"]["deposit"] for b in bodies) == [0, 1, 2]
    assert {b["type"] for b in bodies} == {"deposit.succeeded"}
    events = partner_events(engine, partner)
    assert sorted(e["outbox_id"] for e in events) == outbox_ids
    assert {d["webhook_id"] for d in deliveries} == {e["id"] for e in events}
    assert [a["status"] for a in attempts_of(engine, endpoint["id"])] == ["succeeded"] * 3


async def test_a_failing_delivery_gets_one_plus_len_schedule_attempts_then_is_exhausted(
        engine, wh_settings, receiver):
    clock = ManualClock()
    partner, hook, ops_hook = new_partner(), name(), name()
    endpoint, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook),
                                event_types=["deposit.*"])
    make_endpoint(engine, wh_settings, partner, receiver.hook(ops_hook),
                  event_types=["message.*"])
    receiver.configure(hook, status=500, body="down for maintenance")
    emit(engine, partner, "deposit.failed")
    start = clock.now()
    async with Dispatcher(engine, wh_settings, clock=clock) as dispatcher:
        await dispatcher.drain()
        for made, wait in enumerate(SCHEDULE, start=1):
            clock.advance(wait - 0.5)
            await dispatcher.drain()
            assert len(attempts_of(engine, endpoint["id"])) == made      # not due yet
            clock.advance(0.5)
            await dispatcher.drain()
        clock.advance(86_400)
        await dispatcher.drain()
    attempts = attempts_of(engine, endpoint["id"])
    assert [a["attempt_number"] for a in attempts] == [1, 2, 3, 4] == \
        list(range(1, len(SCHEDULE) + 2))
    assert {a["status"] for a in attempts} == {"failed"}
    assert {a["response_status_code"] for a in attempts} == {500}
    assert attempts[0]["response_body"] == "down for maintenance"
    expected = [start + timedelta(seconds=s) for s in (10, 30, 60)]
    assert [a["next_attempt_at"] for a in attempts] == [*expected, None]
    deliveries = receiver.deliveries(hook)
    assert len(deliveries) == 4 and len({d["webhook_id"] for d in deliveries}) == 1
    [exhausted] = receiver.deliveries(ops_hook)
    body = body_of(exhausted)
    assert body["type"] == "message.attempt.exhausted"
    assert body["data"]["event_id"] == deliveries[0]["webhook_id"]
    assert body["data"]["attempts"] == 4 and body["data"]["endpoint_id"] == endpoint["id"]
    assert "webhook_message.exhausted" in audit_actions(engine, deliveries[0]["webhook_id"])
    assert endpoint_row(engine, endpoint["id"])["status"] == "enabled"


async def test_410_disables_the_endpoint_and_tells_the_partners_other_endpoints(
        engine, wh_settings, receiver):
    partner, hook, ops_hook = new_partner(), name(), name()
    endpoint, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook),
                                event_types=["deposit.*"])
    make_endpoint(engine, wh_settings, partner, receiver.hook(ops_hook),
                  event_types=["endpoint.*"])
    receiver.configure(hook, status=410)
    emit(engine, partner, "deposit.succeeded")
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()
        emit(engine, partner, "deposit.succeeded")
        await dispatcher.drain()
    row = endpoint_row(engine, endpoint["id"])
    assert (row["status"], row["disabled_reason"]) == ("disabled", "gone")
    assert len(receiver.deliveries(hook)) == 1          # nothing after the 410
    assert [a["next_attempt_at"] for a in attempts_of(engine, endpoint["id"])] == [None]
    [disabled] = receiver.deliveries(ops_hook)
    assert body_of(disabled)["type"] == "endpoint.disabled"
    assert body_of(disabled)["data"]["reason"] == "gone"
    assert "webhook_endpoint.disabled" in audit_actions(engine, endpoint["id"])


async def test_an_endpoint_failing_for_five_days_without_a_success_is_disabled(
        fresh_engine, wh_settings, receiver):
    engine, clock = fresh_engine, ManualClock()
    partner, hook, healing = new_partner(), name(), name()
    failing, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook),
                               event_types=["deposit.*"], now=clock.now())
    recovering, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(healing),
                                  event_types=["deposit.*"], now=clock.now())
    receiver.configure(hook, status=503)
    receiver.configure(healing, status=503)
    day = 86_400.0
    async with Dispatcher(engine, wh_settings, clock=clock) as dispatcher:
        emit(engine, partner)
        await dispatcher.drain()                      # both fail: failing since day 0
        first_failure = clock.now()
        clock.advance(3 * day)
        receiver.configure(healing, status=200)       # one success resets its window
        emit(engine, partner)
        await dispatcher.drain()
        receiver.configure(healing, status=503)
        clock.advance(2 * day - 1)
        emit(engine, partner)
        await dispatcher.drain()                      # 5 days minus a second: still enabled
        assert endpoint_row(engine, failing["id"])["status"] == "enabled"
        clock.advance(1)
        emit(engine, partner)
        await dispatcher.drain()
    row = endpoint_row(engine, failing["id"])
    assert (row["status"], row["disabled_reason"]) == ("disabled", "failing")
    assert row["failing_since"] == first_failure
    assert endpoint_row(engine, recovering["id"])["status"] == "enabled"
    disabled = [e for e in partner_events(engine, partner) if e["event_type"] ==
                "endpoint.disabled"]
    assert [e["payload"]["endpoint_id"] for e in disabled] == [failing["id"]]
    with engine.connect() as conn:
        pending = conn.execute(text("""SELECT count(*) FROM webhook_messages
                                        WHERE endpoint_id = :e AND status = 'pending'"""),
                               {"e": failing["id"]}).scalar_one()
    assert pending == 0


async def test_429_with_retry_after_pauses_the_endpoint_and_sets_the_next_attempt(
        engine, receiver, settings):
    clock = ManualClock()
    wh = webhook_settings(settings, webhooks_retry_after_max_seconds=60.0)
    partner, hook = new_partner(), name()
    endpoint, _ = make_endpoint(engine, wh, partner, receiver.hook(hook))
    receiver.configure(hook, script=[{"status": 429, "headers": {"Retry-After": "7"}},
                                     {"status": 502, "headers": {"Retry-After": "86400"}}])
    emit(engine, partner)
    async with Dispatcher(engine, wh, clock=clock) as dispatcher:
        await dispatcher.drain()
        throttled_at = clock.now()
        emit(engine, partner)
        await dispatcher.drain()            # the endpoint is paused: the new event waits
        assert len(receiver.deliveries(hook)) == 1
        clock.advance(7)
        await dispatcher.drain()            # one of the two gets 502 + a day: clamped to 60 s
        assert len(receiver.deliveries(hook)) == 2
        clock.advance(60)
        await dispatcher.drain()
    attempts = attempts_of(engine, endpoint["id"])
    assert [a["response_status_code"] for a in attempts] == [429, 502, 200, 200]
    assert attempts[0]["next_attempt_at"] == throttled_at + timedelta(seconds=7)
    assert attempts[1]["next_attempt_at"] == throttled_at + timedelta(seconds=67)


async def test_during_a_rotation_deliveries_carry_both_signatures_then_only_the_new(
        engine, wh_settings, receiver):
    # The reference verifier accepts timestamps within 5 minutes of the real clock.
    clock = ManualClock(datetime.now(UTC) - timedelta(minutes=2))
    partner, hook = new_partner(), name()
    endpoint, old = make_endpoint(engine, wh_settings, partner, receiver.hook(hook),
                                  now=clock.now())
    with engine.begin() as conn:
        row = store.get_endpoint(conn, endpoint["id"])
        _, new = commands.rotate_secret(conn, wh_settings, row, grace=timedelta(seconds=60),
                                        actor="test", now=clock.now())
    async with Dispatcher(engine, wh_settings, clock=clock) as dispatcher:
        emit(engine, partner)
        await dispatcher.drain()
        clock.advance(61)
        emit(engine, partner)
        await dispatcher.drain()
    during, after = receiver.deliveries(hook)
    assert len(during["signatures"]) == 2
    assert verifies(new, during, during["signatures"][0])
    assert verifies(old, during, during["signatures"][1])
    verify(new, during) and verify(old, during)
    assert len(after["signatures"]) == 1
    assert verify(new, after) and not verifies(old, after, after["signatures"][0])
    assert "webhook_endpoint.secret_rotated" in audit_actions(engine, endpoint["id"])


async def test_an_event_is_sent_only_once_its_change_committed(engine, wh_settings, receiver):
    partner, hook = new_partner(), name()
    make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    async with Dispatcher(engine, wh_settings) as dispatcher:
        with engine.connect() as conn:
            rolled_back = conn.begin()
            emit_in(conn, partner, "deposit.rolled_back_change")
            rolled_back.rollback()
            open_change = conn.begin()
            emit_in(conn, partner, "deposit.committed_later")
            await dispatcher.drain()                 # the second is not committed yet
            assert receiver.deliveries(hook) == []
            open_change.commit()
        await dispatcher.drain()
    assert [body_of(d)["type"] for d in receiver.deliveries(hook)] == ["deposit.committed_later"]


def emit_in(conn, partner: str, event_type: str) -> None:
    import outbox

    outbox.emit(conn, event_type=event_type, aggregate_type="test", aggregate_id=name(),
                payload={}, partner_id=partner)


async def test_two_dispatchers_running_together_deliver_each_message_once(
        engine, wh_settings, receiver):
    partner, hook = new_partner(), name()
    make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    for n in range(200):
        emit(engine, partner, payload={"n": n})
    stop = asyncio.Event()
    async with Dispatcher(engine, wh_settings) as one, Dispatcher(engine, wh_settings) as two:
        runs = [asyncio.create_task(one.run(stop)), asyncio.create_task(two.run(stop))]
        await wait_until(lambda: len(receiver.deliveries(hook)) >= 200, timeout=30)
        stop.set()
        await asyncio.gather(*runs)
    deliveries = receiver.deliveries(hook)
    assert len(deliveries) == 200 and len({d["webhook_id"] for d in deliveries}) == 200
    with engine.connect() as conn:
        owners = conn.execute(text("""SELECT count(DISTINCT a.id), count(*) FROM webhook_attempts a
                                       JOIN webhook_events e ON e.id = a.event_id
                                      WHERE e.partner_id = :p"""), {"p": partner}).one()
    assert tuple(owners) == (200, 200)


async def test_the_sweeper_redrives_what_a_dead_dispatcher_was_sending_and_only_that(
        engine, wh_settings, receiver):
    from store.webhooks import Lane

    partner, hook = new_partner(), name()
    make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    emit(engine, partner)
    async with Dispatcher(engine, wh_settings) as survivor:
        dead = Dispatcher(engine, wh_settings)
        await dead.__aenter__()
        await dead.ingest()
        claimed = await asyncio.to_thread(dead.claim, Lane.FIRST, 1000)
        assert partner in {job["partner_id"] for job in claimed}
        assert await survivor.sweep() == 0 or receiver.deliveries(hook) == []  # alive: kept
        assert receiver.deliveries(hook) == []
        dead._owner_conn.invalidate()        # the process is gone: its session lock with it
        dead._owner_conn = None
        await dead.sender.aclose()
        assert await survivor.sweep() >= 1
        await survivor.drain()
    assert len(receiver.deliveries(hook)) == 1


async def test_a_rate_limited_endpoint_gets_at_most_its_rate_per_minute(
        engine, wh_settings, receiver):
    clock = ManualClock()
    partner, hook = new_partner(), name()
    endpoint, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook),
                                rate_limit_per_minute=3)
    for n in range(5):
        emit(engine, partner, payload={"n": n})
    async with Dispatcher(engine, wh_settings, clock=clock) as dispatcher:
        await dispatcher.drain()
        assert len(receiver.deliveries(hook)) == 3
        clock.advance(59)
        await dispatcher.drain()
        assert len(receiver.deliveries(hook)) == 3
        clock.advance(1)
        await dispatcher.drain()
    assert len(receiver.deliveries(hook)) == 5
    assert {a["status"] for a in attempts_of(engine, endpoint["id"])} == {"succeeded"}


async def test_a_manual_resend_that_fails_is_not_rescheduled_and_recover_resends_failures(
        engine, wh_settings, receiver):
    clock = ManualClock()
    partner, hook = new_partner(), name()
    endpoint, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    receiver.configure(hook, status=500)
    emit(engine, partner)
    async with Dispatcher(engine, wh_settings, clock=clock) as dispatcher:
        for wait in [0, *SCHEDULE]:
            clock.advance(wait)
            await dispatcher.drain()                 # 4 scheduled attempts: exhausted
        [event] = [e for e in partner_events(engine, partner)
                   if e["event_type"] == "deposit.succeeded"]

        def resend(conn):
            commands.resend(conn, store.get_event(conn, event["id"]),
                            store.get_endpoint(conn, endpoint["id"]), actor="test",
                            now=clock.now())

        run_in_transaction(engine, resend)
        await dispatcher.drain()
        clock.advance(10_000)
        await dispatcher.drain()
        triggers = [(a["trigger"], a["next_attempt_at"]) for a in attempts_of(engine,
                                                                              endpoint["id"])]
        assert triggers[-1] == ("manual", None) and len(triggers) == 5

        receiver.configure(hook, status=200)

        def recover(conn):
            return commands.recover(conn, store.get_endpoint(conn, endpoint["id"]),
                                    since=clock.now() - timedelta(hours=4), actor="test",
                                    now=clock.now())

        assert run_in_transaction(engine, recover) == 1
        await dispatcher.drain()
        assert run_in_transaction(engine, recover) == 0       # it succeeded: nothing to do
    last = attempts_of(engine, endpoint["id"])[-1]
    assert (last["trigger"], last["status"]) == ("recover", "succeeded")
    assert len(receiver.deliveries(hook)) == 6
    assert audit_actions(engine, event["id"]).count("webhook_event.resent") == 1
    assert "webhook_endpoint.recovered" in audit_actions(engine, endpoint["id"])


async def test_first_attempts_never_wait_behind_retries(engine, settings, receiver):
    wh = webhook_settings(settings, webhooks_dispatcher_concurrency=2,
                          webhooks_retry_schedule_seconds=[0.05, 0.05],
                          webhooks_timeout_seconds=30.0)
    partner, slow, fast = new_partner(), name(), name()
    make_endpoint(engine, wh, partner, receiver.hook(slow), event_types=["deposit.*"])
    make_endpoint(engine, wh, partner, receiver.hook(fast), event_types=["kyc.*"])
    # The slow endpoint fails at once, then hangs on every retry: the retry lane fills up.
    fail_at_once = {"status": 500, "latency_seconds": 0}
    receiver.configure(slow, script=[fail_at_once, fail_at_once], latency_seconds=30)
    emit(engine, partner, "deposit.succeeded")
    emit(engine, partner, "deposit.succeeded")
    stop = asyncio.Event()
    async with Dispatcher(engine, wh) as dispatcher:
        run = asyncio.create_task(dispatcher.run(stop))
        try:
            await wait_until(lambda: len(receiver.deliveries(slow)) == 4, timeout=10)
            emit(engine, partner, "kyc.verified")
            await wait_until(lambda: receiver.deliveries(fast), timeout=5)
            hanging = [d for d in receiver.deliveries(slow) if d["answered"] is None]
            assert len(hanging) == 2          # both retry slots were still busy meanwhile
        finally:
            receiver.release()
            stop.set()
            await run


async def test_an_outbox_row_that_cannot_be_ingested_does_not_stop_the_others(
        fresh_engine, wh_settings, receiver):
    engine, partner, hook = fresh_engine, new_partner(), name()
    make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    make_endpoint(engine, wh_settings, partner, receiver.hook(name()), event_types=["bet.*"])
    # A settlement batch whose items are not objects: a shape the fan-out does not know.
    poison = emit(engine, partner, "bets.settled", {"market_id": "m", "bets": [1, 2]})
    emit(engine, partner, "deposit.succeeded", {"after": "the poison"})
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()
    assert [body_of(d)["data"] for d in receiver.deliveries(hook)] == [{"after": "the poison"}]
    with engine.connect() as conn:
        published = conn.execute(text("SELECT published_at FROM outbox_events WHERE id = :i"),
                                 {"i": poison}).scalar_one()
    assert published is None                 # left for an operator, not lost


async def test_a_dispatcher_that_lost_its_owner_lock_takes_a_new_owner_id(engine, wh_settings):
    async with Dispatcher(engine, wh_settings) as dispatcher:
        first = dispatcher.owner
        with engine.begin() as conn:     # the database dropped its session (a restart)
            conn.execute(text("""SELECT pg_terminate_backend(pid) FROM pg_locks
                                  WHERE locktype = 'advisory' AND objid = :o"""), {"o": first})
        await dispatcher.sweep()
        assert dispatcher.owner != first
        with engine.connect() as conn:
            assert store.holds_owner(conn, dispatcher.owner) is False   # held by its own session
            assert conn.execute(text("""SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'
                                         AND objid = :o"""), {"o": dispatcher.owner}).scalar() == 1
