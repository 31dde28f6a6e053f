"""Time-skipping: a KYC provider that never answers -> the case expires (a day, skipped)."""

from __future__ import annotations

from temporalio.client import WorkflowExecutionStatus

from settlepay import task_queues
from store import kyc as store
from tests.support.factories import events, make_player
from tests.support.stack import Stack
from workflows.contracts.kyc import WORKFLOW, KycDocument, KycRequest, KycResult, workflow_id


async def test_no_provider_answer_within_the_timeout_expires_the_case(stack: Stack,
                                                                      time_skipping_env):
    client = time_skipping_env.client
    player = make_player(stack.engine)
    request = KycRequest(player_id=player.id, actor="system:test",
                         document_timeout_seconds=86_400, max_document_attempts=3,
                         index_search_attributes=False)
    async with stack.worker(client):
        handle = await client.start_workflow(
            WORKFLOW, request, id=workflow_id(player.id), task_queue=task_queues.MAIN,
            start_signal="submit_document",
            start_signal_args=[KycDocument("passport", "SILENT-42", "US")],
            result_type=KycResult)
        result = await handle.result()   # the test server skips the day the workflow waits
    assert (result.state, result.reason_code) == ("expired", "provider_timeout")
    assert (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED
    with stack.engine.connect() as conn:
        case = store.get(conn, player.id)
        steps = [(h["state"], h["step"]) for h in store.history(conn, player.id)]
    assert case["state"] == "expired" and case["provider_check_id"].startswith("chk_")
    assert steps == [("pending", "opened"), ("documents", "document"), ("expired", "document")]
    assert events(stack.engine, player.id) == ["kyc.expired"]
    # An expired case can start again (a new run of the same workflow id).
    with stack.engine.begin() as conn:
        before, after = store.open_case(conn, player.id)
    assert before["state"] == "expired" and after["state"] == "pending"
