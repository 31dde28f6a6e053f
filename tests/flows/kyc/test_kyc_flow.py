"""The KYC workflow end to end: API -> workflow -> KYC sandbox -> signed webhook -> API ->
signal. Age check, sanctions screening with operator review, document verdicts (GREEN, RED
RETRY then GREEN, RED FINAL), the webhook's signature, and the player view."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime

from temporalio.worker import Replayer

from adapters.kyc import sign_webhook
from settlepay import codec
from settlepay.config import Settings
from tests.support.factories import audit_actions, events, make_player, wait_until
from tests.support.kyc import FINAL, kyc_of, submit, wait_kyc
from tests.support.stack import Stack
from workflows.contracts.kyc import workflow_id
from workflows.kyc import KycWorkflow


async def test_green_document_verifies_the_player(stack: Stack, worker, http):
    player = make_player(stack.engine)
    assert (await kyc_of(http, player))["status"] == "not_started"
    answer = await submit(http, player)
    assert answer.status_code == 202, answer.text
    kyc = await wait_kyc(http, player, FINAL)
    assert kyc["status"] == "verified" and kyc["verified_at"] is not None
    assert [(h["state"], h["step"]) for h in kyc["history"]] == [
        ("pending", "opened"), ("documents", "document"), ("verified", "document")]
    assert events(stack.engine, player.id) == ["kyc.verified"]
    assert {"kyc.started", "kyc.document_submitted", "kyc.verified"} <= set(
        audit_actions(stack.engine, player.id))
    again = await submit(http, player)
    assert again.status_code == 409 and again.json()["code"] == "kyc_already_verified"


async def test_under_age_for_the_jurisdiction_is_rejected(stack: Stack, worker, http):
    today = datetime.now(UTC).date()
    # 19 years old: adult in GB (18), too young in New Jersey (21).
    nineteen = (date(today.year - 19, 1, 1) if today >= date(today.year, 1, 2)
                else date(today.year - 20, 1, 1))
    nj = make_player(stack.engine, date_of_birth=nineteen, jurisdiction="US-NJ")
    gb = make_player(stack.engine, date_of_birth=nineteen, jurisdiction="GB")
    assert (await submit(http, nj)).status_code == 202
    assert (await submit(http, gb)).status_code == 202
    kyc = await wait_kyc(http, nj, FINAL)
    assert kyc["status"] == "rejected" and kyc["reason_code"] == "under_age"
    assert (await wait_kyc(http, gb, FINAL))["status"] == "verified"
    assert events(stack.engine, nj.id) == ["kyc.rejected"]


async def test_sanctions_hit_goes_to_review_and_an_operator_approves(stack: Stack, worker, http):
    # A near match of a listed name.
    player = make_player(stack.engine, first_name="Viktor", last_name="Aleksandrovich Blackwod")
    assert (await submit(http, player)).status_code == 202
    kyc = await wait_kyc(http, player, ("review",))
    review = [h for h in kyc["history"] if h["state"] == "review"][0]
    assert review["detail"]["sanctions_match"] == "Viktor Aleksandrovich Blackwood"
    assert review["detail"]["sanctions_score"] > stack.settings.sanctions_match_threshold

    # Findable in Temporal UI: the cases waiting for an operator.
    query = f'ReviewPending = "kyc_sanctions" AND PlayerId = "{player.id}"'

    async def listed():
        return [w.id async for w in stack.client.list_workflows(query)]
    assert await wait_until(listed) == [f"kyc-{player.id}"]

    partner_try = await http.post(f"/v1/kyc/{player.id}/review", headers=player.headers,
                                  json={"decision": "approve"})
    assert partner_try.status_code == 403
    decided = await http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                              json={"decision": "approve", "note": "different date of birth"})
    assert decided.status_code == 202, decided.text
    kyc = await wait_kyc(http, player, FINAL)
    assert kyc["status"] == "verified"
    assert events(stack.engine, player.id) == ["kyc.review_required", "kyc.verified"]
    assert "kyc.review.approve" in audit_actions(stack.engine, player.id)

    async def unlisted():
        return [w.id async for w in stack.client.list_workflows(query)] == []
    assert await wait_until(unlisted)
    late = await http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                           json={"decision": "reject"})
    assert late.status_code == 409
    history = await stack.client.get_workflow_handle(f"kyc-{player.id}").fetch_history()
    await Replayer(workflows=[KycWorkflow],
                   data_converter=codec.data_converter(Settings())).replay_workflow(history)


async def test_sanctions_hit_rejected_by_the_operator(stack: Stack, worker, http):
    player = make_player(stack.engine, first_name="Ivo Rastko", last_name="Vremenko")
    assert (await submit(http, player)).status_code == 202
    await wait_kyc(http, player, ("review",))
    decided = await http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                              json={"decision": "reject"})
    assert decided.status_code == 202
    kyc = await wait_kyc(http, player, FINAL)
    assert (kyc["status"], kyc["reason_code"]) == ("rejected", "sanctions_match")


async def test_red_retry_asks_for_another_document_then_green(stack: Stack, worker, http):
    player = make_player(stack.engine)
    assert (await submit(http, player, "RED-RETRY-1")).status_code == 202
    kyc = await wait_kyc(http, player, ("resubmission_required",))
    assert kyc["history"][-1]["detail"]["provider_reason"] == "document_unreadable"
    assert (await submit(http, player, "P7654321")).status_code == 202
    kyc = await wait_kyc(http, player, FINAL)
    assert kyc["status"] == "verified"
    attempts = [h["detail"]["attempt"] for h in kyc["history"]
                if h["step"] == "document" and h["state"] == "documents"]
    assert attempts == [1, 2]
    assert events(stack.engine, player.id) == ["kyc.resubmission_required", "kyc.verified"]


async def test_red_final_rejects(stack: Stack, worker, http):
    player = make_player(stack.engine)
    assert (await submit(http, player, "RED-FINAL-9")).status_code == 202
    kyc = await wait_kyc(http, player, FINAL)
    assert (kyc["status"], kyc["reason_code"]) == ("rejected", "document_rejected")
    again = await submit(http, player)
    assert again.status_code == 409 and again.json()["code"] == "kyc_rejected"


async def test_webhook_with_a_bad_signature_is_refused(stack: Stack, worker, http):
    player = make_player(stack.engine)
    assert (await submit(http, player, "SILENT-1")).status_code == 202
    await wait_kyc(http, player, ("documents",))
    handle = stack.client.get_workflow_handle(workflow_id(player.id))
    run_id = (await handle.describe()).run_id
    body = json.dumps({"type": "check.completed", "data": {
        "check_id": "chk_forged", "reference": f"kyc-{player.id}:{run_id}:doc:1",
        "result": "GREEN"}}).encode()
    forged = sign_webhook("whsec_" + "d3JvbmdzZWNyZXR3cm9uZ3NlY3JldA==",
                          f"msg_{uuid.uuid4().hex}", body)
    answer = await http.post("/v1/webhooks/kyc", content=body, headers=forged)
    assert answer.status_code == 400 and answer.json()["code"] == "webhook_signature_invalid"
    unsigned = await http.post("/v1/webhooks/kyc", content=body,
                               headers={"content-type": "application/json"})
    assert unsigned.status_code == 400
    assert (await kyc_of(http, player))["status"] == "documents"

    # The properly signed verdict is taken, once, however often it is delivered.
    signed = sign_webhook(stack.settings.kyc_webhook_secret, f"msg_{uuid.uuid4().hex}", body)
    for _ in range(2):
        answer = await http.post("/v1/webhooks/kyc", content=body, headers=signed)
        assert answer.status_code == 200, answer.text
    kyc = await wait_kyc(http, player, FINAL)
    assert kyc["status"] == "verified"
    assert events(stack.engine, player.id) == ["kyc.verified"]
    # A late delivery for a finished case is acknowledged, not an error. The database shows
    # the outcome a moment before the workflow closes: wait for the close itself.
    await handle.result()
    late = await http.post("/v1/webhooks/kyc", content=body, headers=sign_webhook(
        stack.settings.kyc_webhook_secret, f"msg_{uuid.uuid4().hex}", body))
    assert late.status_code == 200 and late.json()["outcome"] == "workflow_closed"


async def test_bad_input_is_a_4xx(stack: Stack, worker, http):
    player = make_player(stack.engine)
    bad = await http.post(f"/v1/players/{player.id}/kyc", headers=player.headers,
                          json={"document": {"type": "selfie", "number": "x", "country": "usa"}})
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    unknown = await http.post("/v1/players/ply_nobody/kyc", headers=player.headers, json={
        "document": {"type": "passport", "number": "P123", "country": "US"}})
    assert unknown.status_code == 404
    assert (await kyc_of(http, player))["status"] == "not_started"
