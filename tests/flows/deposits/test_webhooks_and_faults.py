"""Deposits when the world misbehaves: webhooks early, twice, out of order or never; a worker
dying mid-deposit; a retry storm of one POST. Each ends with exactly one ledger credit."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from sqlalchemy import text
from temporalio.api.enums.v1 import EventType

from tests.support.deposits import ledger_credits, post_deposit, wait_for_status
from tests.support.factories import cash, ledger_violations
from tests.support.stack import STRIPE_KEY
from workflows.contracts.deposit import PAYMENT_EVENT_SIGNAL


async def eventually(check: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def stripe_events(stack, deposit_id: str) -> dict[str, list[str]]:
    with stack.engine.connect() as conn:
        rows = conn.execute(text("SELECT type, outcome FROM stripe_events WHERE deposit_id = :id"),
                            {"id": deposit_id}).all()
    out: dict[str, list[str]] = {}
    for type_, outcome in rows:
        out.setdefault(type_, []).append(outcome)
    return out


async def payment_event_signals(stack, deposit_id: str) -> int:
    """How many payment-event signals the deposit's run received (its history)."""
    with stack.engine.connect() as conn:
        workflow_id = conn.execute(text("SELECT workflow_id FROM deposits WHERE id = :id"),
                                   {"id": deposit_id}).scalar_one()
    history = stack.client.get_workflow_handle(workflow_id).fetch_history_events()
    return len([e async for e in history
                if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
                and e.workflow_execution_signaled_event_attributes.signal_name
                == PAYMENT_EVENT_SIGNAL])


def retrieves(stack, payment_intent: str) -> list[dict]:
    return [r for r in stack.gateway_requests(f"/v1/payment_intents/{payment_intent}")
            if r["method"] == "GET"]


def assert_credited_once(stack, player, deposit_id: str, amount: int) -> None:
    assert cash(stack.engine, player.id) == amount
    credits = ledger_credits(stack.engine, deposit_id)
    assert len(credits) == 1 and credits[0]["result"] == "ok"
    assert len(stack.payment_intents(deposit_id)) == 1


async def test_webhook_arrives_before_the_workflow_waits(stack, worker, player, http):
    # The payment settles 50 ms after confirmation, but the gateway's answer to the create call
    # takes 600 ms: the succeeded webhook is signalled while the create activity still runs.
    stack.faults(async_settle_ms=50, response_delay_ms=600, paths=["/v1/payment_intents"],
                 methods=["POST"])
    created = (await post_deposit(http, player, amount=1_500)).json()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded"
    pi = done["gateway"]["payment_intent"]
    assert stripe_events(stack, created["id"])["payment_intent.succeeded"] == ["signalled"]
    assert retrieves(stack, pi) == []          # no polling: the early signal was used
    assert_credited_once(stack, player, created["id"], 1_500)


async def test_duplicated_webhooks_are_processed_once(stack, worker, player, http):
    stack.faults(async_settle_ms=200, webhook_duplicate_rate=1.0)
    created = (await post_deposit(http, player, amount=1_600)).json()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded"
    pi = done["gateway"]["payment_intent"]
    events = {e["id"] for e in httpx_events(stack, pi, "payment_intent.succeeded")}
    assert len(events) == 1

    def delivered() -> int:
        return len([a for a in stack.webhook_attempts()
                    if a["event"] in events and a["status"] == 200])
    await eventually(lambda: delivered() == 2)                         # delivered twice...
    # ...stored once, with what was done with it: the two copies arrive together and race the
    # workflow's own polling (1 s after confirmation, here). Signalled if a copy's signal reached
    # the run (its history holds it: a copy finding the run closed afterwards never overwrites
    # that), else the run had completed by polling and the event was workflow_closed.
    signals = await payment_event_signals(stack, created["id"])
    assert signals <= 2
    stored = stripe_events(stack, created["id"])["payment_intent.succeeded"]
    if signals:
        assert stored == ["signalled"]
    else:
        assert stored == ["workflow_closed"] and len(retrieves(stack, pi)) >= 1
    assert_credited_once(stack, player, created["id"], 1_600)


async def test_reordered_webhooks(stack, worker, player, http):
    # Everything about the payment arrives newest first: succeeded before processing/created.
    stack.faults(async_settle_ms=100, webhook_reorder_window_ms=400)
    created = (await post_deposit(http, player, amount=1_700)).json()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded"
    wanted = {"payment_intent.succeeded", "payment_intent.processing", "payment_intent.created"}
    await eventually(lambda: wanted <= set(stripe_events(stack, created["id"])))
    assert_credited_once(stack, player, created["id"], 1_700)


async def test_webhooks_never_sent_polling_finishes_the_deposit(stack, worker, player, http):
    stack.faults(async_settle_ms=200, webhook_drop_rate=1.0)
    created = (await post_deposit(http, player, amount=1_800)).json()
    done = await wait_for_status(http, player, created["id"])
    assert done["status"] == "succeeded"
    assert stripe_events(stack, created["id"]) == {}
    assert len(retrieves(stack, done["gateway"]["payment_intent"])) >= 1
    assert_credited_once(stack, player, created["id"], 1_800)
    # When the withheld events finally arrive, they are acknowledged: the workflow is done.
    import httpx
    httpx.post(f"{stack.stripe_url}/_sandbox/webhooks/withheld/release").raise_for_status()
    await eventually(lambda: "payment_intent.succeeded" in stripe_events(stack, created["id"]))
    assert stripe_events(stack, created["id"])["payment_intent.succeeded"] == ["workflow_closed"]
    assert_credited_once(stack, player, created["id"], 1_800)


async def test_payment_that_never_finishes_is_cancelled_at_the_timeout(stack, worker, player, http):
    # 3-D Secure the player never completes: after deposit_timeout_seconds (8 s here) the
    # workflow cancels the payment intent and the deposit fails as expired.
    created = (await post_deposit(http, player,
                                  payment_method="pm_card_authenticationRequired")).json()
    done = await wait_for_status(http, player, created["id"], timeout=20)
    assert (done["status"], done["failure_code"]) == ("failed", "expired")
    [intent] = stack.payment_intents(created["id"])
    assert intent["status"] == "canceled" and intent["cancellation_reason"] == "abandoned"
    assert cash(stack.engine, player.id) == 0 and ledger_credits(stack.engine, created["id"]) == []


async def test_worker_killed_mid_deposit_completes_once_on_a_new_worker(stack, player, http):
    stack.faults(async_settle_ms=1_500, webhook_drop_rate=1.0)   # slow payment, polling only
    async with stack.worker():                     # the worker goes away mid-deposit
        created = (await post_deposit(http, player, amount=1_900)).json()
        await wait_for_status(http, player, created["id"], ("processing",))

    await asyncio.sleep(2.0)                         # the payment settles while nobody runs
    with stack.engine.connect() as conn:             # nothing happened without a worker
        status = conn.execute(text("SELECT status FROM deposits WHERE id = :id"),
                              {"id": created["id"]}).scalar()
    assert status == "processing"

    async with stack.worker():
        done = await wait_for_status(http, player, created["id"], timeout=30)
    stack.faults()
    assert done["status"] == "succeeded"
    assert_credited_once(stack, player, created["id"], 1_900)


async def test_500_concurrent_identical_posts_make_one_deposit(stack, worker, player, http):
    # The storm tests idempotency, not the rate limiter (tests/api/test_rate_limits.py): the
    # partner's key gets a bucket as large as the storm, as an operator may grant one.
    with stack.engine.begin() as conn:
        conn.execute(text("""UPDATE api_keys SET rate_limits = CAST(:limits AS jsonb)
                               WHERE partner_id = :partner"""),
                     {"partner": player.partner_id,
                      "limits": '{"*": {"requests": 1000, "window_seconds": 1}}'})
    key = f"storm-{player.id}"
    answers = await asyncio.gather(*(post_deposit(http, player, key=key,
                                                  amount=2_000) for _ in range(500)))
    codes = [a.status_code for a in answers]
    assert set(codes) <= {202, 409}, set(codes)
    accepted = [a.json() for a in answers if a.status_code == 202]
    assert accepted and len({a["id"] for a in accepted}) == 1
    deposit_id = accepted[0]["id"]
    # Clients retry their 409s ("in progress"): they get the first answer back.
    retried = await post_deposit(http, player, key=key, amount=2_000)
    assert retried.status_code == 202 and retried.json()["id"] == deposit_id
    assert retried.headers.get("idempotent-replayed") == "true"

    done = await wait_for_status(http, player, deposit_id)
    assert done["status"] == "succeeded"
    assert_credited_once(stack, player, deposit_id, 2_000)
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM deposits WHERE player_id = :p"),
                            {"p": player.id}).scalar() == 1
    count = 0
    for _ in range(50):   # visibility is eventually consistent
        count = (await stack.client.count_workflows(f"PlayerId = '{player.id}'")).count
        if count:
            break
        await asyncio.sleep(0.1)
    assert count == 1
    assert ledger_violations(stack.engine) == []


def httpx_events(stack, payment_intent: str, type_: str) -> list[dict]:
    import httpx
    rows = httpx.get(f"{stack.stripe_url}/v1/events", params={"type": type_, "limit": 100},
                     headers={"Authorization": f"Bearer {STRIPE_KEY}"}).json()["data"]
    return [e for e in rows if e["data"]["object"]["id"] == payment_intent]
