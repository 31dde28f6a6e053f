"""A verdict whose webhook never came (lost past the provider's retries): the KYC workflow
reads the check back from the provider each `verdict_poll_seconds` and decides the case as the
webhook would have; a webhook arriving after the polled verdict changes nothing."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus

from settlepay import task_queues
from store import kyc as store
from tests.support.factories import audit_actions, events, make_player, wait_until
from tests.support.kyc import (
    FINAL,
    audit_chain_problems,
    checks_of,
    deliveries_of,
    kyc_of,
    provider_answers,
    submit,
    wait_kyc,
    webhooks_lost,
)
from tests.support.stack import Stack
from workflows.contracts.kyc import (
    WORKFLOW,
    KycDocument,
    KycRequest,
    KycResult,
    Query,
    Signal,
    workflow_id,
)


async def test_a_verdict_whose_webhook_never_came_verifies_the_player_by_polling(
        stack: Stack, time_skipping_env):
    """Production timings (a day's deadline, a poll each 15 minutes), skipped by the test
    server; the provider decided GREEN at once and never delivered the webhook."""
    client = time_skipping_env.client
    player = make_player(stack.engine)
    request = KycRequest(player.id, "system:test", document_timeout_seconds=86_400,
                         verdict_poll_seconds=900, index_search_attributes=False)
    with webhooks_lost(stack):
        async with stack.worker(client):
            handle = await client.start_workflow(
                WORKFLOW, request, id=workflow_id(player.id), task_queue=task_queues.MAIN,
                start_signal=Signal.SUBMIT_DOCUMENT,
                start_signal_args=[KycDocument("passport", "P1234567", "US")],
                result_type=KycResult)
            result = await handle.result()
            assert await handle.query(Query.STATE) == "verified"
    assert (result.state, result.reason_code) == ("verified", None)
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    [check] = checks_of(stack, player)
    assert check["status"] == "completed" and check["result"] == "GREEN"
    assert [a.get("error") for a in deliveries_of(stack, check["id"])] == [
        "no webhook_url configured"]
    with stack.engine.connect() as conn:
        case = store.get(conn, player.id)
        history = store.history(conn, player.id)
    assert case["state"] == "verified" and case["provider_check_id"] == check["id"]
    assert [(h["state"], h["step"]) for h in history] == [
        ("pending", "opened"), ("documents", "document"), ("verified", "document")]
    assert history[-1]["detail"]["verdict_by"] == "poll"
    assert history[-1]["detail"]["check_id"] == check["id"]
    assert events(stack.engine, player.id) == ["kyc.verified"]
    assert "kyc.verified" in audit_actions(stack.engine, player.id)
    assert audit_chain_problems(stack.engine) == []


async def test_a_webhook_after_the_polled_verdict_changes_nothing(stack: Stack, worker, http):
    """RED RETRY found by polling; the provider's late webhook for the same document, GREEN,
    reaches the running case and is a duplicate: the case still asks for another document,
    which decides it."""
    player = make_player(stack.engine)
    with webhooks_lost(stack):
        await stack.client.start_workflow(
            WORKFLOW, KycRequest(player.id, "system:test", document_timeout_seconds=60.0,
                                 verdict_poll_seconds=0.5),
            id=workflow_id(player.id), task_queue=task_queues.MAIN,
            start_signal=Signal.SUBMIT_DOCUMENT,
            start_signal_args=[KycDocument("passport", "RED-RETRY-1", "US")],
            result_type=KycResult)
        kyc = await wait_kyc(http, player, ("resubmission_required", *FINAL))
    assert kyc["status"] == "resubmission_required"
    assert kyc["history"][-1]["detail"]["verdict_by"] == "poll"
    [first] = checks_of(stack, player)

    [late] = provider_answers(stack, first["id"], "GREEN")
    assert late["status"] == 200
    assert late["response"] == {"received": True, "outcome": "signalled"}
    handle = stack.client.get_workflow_handle(workflow_id(player.id))

    async def signal_taken() -> bool:
        # The late webhook's signal, then a workflow task completed after it (it was handled).
        seen = False
        async for event in handle.fetch_history_events():
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED and \
                    event.workflow_execution_signaled_event_attributes.signal_name == \
                    Signal.DOCUMENT_RESULT:
                seen = True
            elif seen and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
                return True
        return False
    await wait_until(signal_taken)
    assert await handle.query(Query.STATE) == "resubmission_required"
    assert (await kyc_of(http, player))["status"] == "resubmission_required"
    assert events(stack.engine, player.id) == ["kyc.resubmission_required"]

    assert (await submit(http, player, "RED-FINAL-2")).status_code == 202
    kyc = await wait_kyc(http, player, FINAL)
    assert (kyc["status"], kyc["reason_code"]) == ("rejected", "document_rejected")
    assert [(h["state"], h["step"]) for h in kyc["history"]] == [
        ("pending", "opened"), ("documents", "document"),
        ("resubmission_required", "document"), ("documents", "document"),
        ("rejected", "document")]
    assert events(stack.engine, player.id) == ["kyc.resubmission_required", "kyc.rejected"]
    assert "kyc.verified" not in audit_actions(stack.engine, player.id)
    assert audit_chain_problems(stack.engine) == []
