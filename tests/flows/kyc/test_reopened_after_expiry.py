"""Issue 9 #3: a KYC case reopened after expiry completes. The new run sends its documents
under new references (new provider idempotency keys), so the provider makes a new check and
answers it; a late verdict for the earlier run's document is acknowledged and never reaches
the new run."""

from __future__ import annotations

from temporalio.api.enums.v1 import EventType

from settlepay import task_queues
from tests.support.factories import audit_actions, events, ledger_violations, make_player
from tests.support.kyc import (
    FINAL,
    audit_chain_problems,
    checks_of,
    provider_answers,
    submit,
    wait_kyc,
)
from tests.support.stack import Stack
from workflows.contracts.kyc import (
    WORKFLOW,
    KycDocument,
    KycRequest,
    KycResult,
    Signal,
    workflow_id,
)


async def test_a_case_reopened_after_expiry_gets_a_new_check_and_ignores_the_old_verdict(
        stack: Stack, worker, http):
    player = make_player(stack.engine)
    # The first run: the provider stays silent past a short deadline -> expired.
    first = await stack.client.start_workflow(
        WORKFLOW, KycRequest(player.id, "system:test", document_timeout_seconds=1.0),
        id=workflow_id(player.id), task_queue=task_queues.MAIN,
        start_signal=Signal.SUBMIT_DOCUMENT,
        start_signal_args=[KycDocument("passport", "SILENT-1", "US")], result_type=KycResult)
    expired = await first.result()
    assert (expired.state, expired.reason_code) == ("expired", "provider_timeout")
    [old_check] = checks_of(stack, player)

    # Reopened through the API: a new run, whose document is a new check at the provider.
    assert (await submit(http, player, "SILENT-2")).status_code == 202
    await wait_kyc(http, player, ("documents",))
    checks = checks_of(stack, player)
    assert len(checks) == 2, checks
    new_check = checks[1]
    assert new_check["id"] != old_check["id"]
    assert new_check["reference"] != old_check["reference"]
    assert new_check["idempotency_key"] == new_check["reference"]
    second = stack.client.get_workflow_handle(workflow_id(player.id))
    second_run = (await second.describe()).run_id
    assert second_run != first.result_run_id
    assert new_check["reference"] == f"kyc-{player.id}:{second_run}:doc:1"

    # The provider's late GREEN for the first run's document: acknowledged, not delivered.
    [late] = provider_answers(stack, old_check["id"], "GREEN")
    assert late["status"] == 200
    assert late["response"] == {"received": True, "outcome": "workflow_closed"}
    signals = [e.workflow_execution_signaled_event_attributes.signal_name
               async for e in second.fetch_history_events()
               if e.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED]
    assert Signal.DOCUMENT_RESULT not in signals

    # The new check's own verdict decides the new case.
    [answer] = provider_answers(stack, new_check["id"], "RED", "FINAL", "document_forged")
    assert answer["response"] == {"received": True, "outcome": "signalled"}
    kyc = await wait_kyc(http, player, FINAL)
    assert (kyc["status"], kyc["reason_code"]) == ("rejected", "document_rejected")
    assert kyc["history"][-1]["detail"]["check_id"] == new_check["id"]
    assert events(stack.engine, player.id) == ["kyc.expired", "kyc.rejected"]
    assert audit_actions(stack.engine, player.id).count("kyc.started") == 2
    assert ledger_violations(stack.engine) == []
    assert audit_chain_problems(stack.engine) == []
