"""Security findings: a signed KYC webhook whose document reference names a run id Temporal
cannot parse (not a UUID) was answered with a 500 ("Invalid RunId"). Such a reference is not a
document of ours: it is acknowledged as `unknown_reference`, like any other, and the player's
case is untouched. A signed verdict whose fields are not ones the provider sends (a result
outside GREEN | RED, a reference that is not text) is a 400, not a 500."""

from __future__ import annotations

import json
import uuid

import httpx

from adapters.kyc import sign_webhook
from tests.support.factories import Player, events, ledger_violations, make_player
from tests.support.kyc import audit_chain_problems, kyc_of, submit, wait_kyc
from tests.support.stack import Stack
from workflows.contracts.kyc import workflow_id


async def deliver(stack: Stack, http: httpx.AsyncClient, reference: object,
                  **fields: object) -> httpx.Response:
    """The provider's verdict (GREEN unless `fields` say otherwise) for `reference`, properly
    signed."""
    body = json.dumps({"type": "check.completed", "data": {
        "check_id": f"chk_{uuid.uuid4().hex[:12]}", "reference": reference,
        "result": "GREEN", **fields}}).encode()
    headers = sign_webhook(stack.settings.kyc_webhook_secret, f"msg_{uuid.uuid4().hex}", body)
    return await http.post("/v1/webhooks/kyc", content=body, headers=headers)


async def waiting_case(stack: Stack, http: httpx.AsyncClient) -> Player:
    """A player whose case waits for the provider's verdict on its first document."""
    player = make_player(stack.engine)
    assert (await submit(http, player, "SILENT-1")).status_code == 202
    await wait_kyc(http, player, ("documents",))
    return player


async def test_a_signed_verdict_naming_a_run_id_that_is_not_a_uuid_is_an_unknown_reference(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = await waiting_case(stack, http)
    case = workflow_id(player.id)
    for run_id in ("not-a-uuid", "1234", "00000000-0000-0000-0000-00000000000g",
                   "x" * 300, "%00", uuid.uuid4().hex + "-extra"):
        answer = await deliver(stack, http, f"{case}:{run_id}:doc:1")
        assert answer.status_code == 200, (run_id, answer.status_code, answer.text)
        assert answer.json() == {"received": True, "outcome": "unknown_reference"}, run_id

    # A workflow id longer than Temporal's limit, with or without a run id: acknowledged (the
    # server finds no such workflow, or refuses the id: either way nothing is delivered).
    for reference in (f"kyc-{'p' * 2_000}:doc:1", f"kyc-{'p' * 2_000}:{uuid.uuid4()}:doc:1"):
        answer = await deliver(stack, http, reference)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outcome"] in ("unknown_reference", "workflow_closed")

    # A well-formed run id of no run of ours: that run is closed (nothing to do), as before.
    stranger = await deliver(stack, http, f"{case}:{uuid.uuid4()}:doc:1")
    assert stranger.status_code == 200, stranger.text
    assert stranger.json()["outcome"] == "workflow_closed"

    # None of it reached the case, which still waits for its own document's verdict.
    assert (await kyc_of(http, player))["status"] == "documents"
    assert events(stack.engine, player.id) == []
    run_id = (await stack.client.get_workflow_handle(case).describe()).run_id
    assert (await deliver(stack, http, f"{case}:{run_id}:doc:1")).json()["outcome"] == \
        "signalled"
    assert (await wait_kyc(http, player, ("verified",)))["status"] == "verified"
    assert ledger_violations(stack.engine) == []
    assert audit_chain_problems(stack.engine) == []


async def test_a_signed_verdict_with_fields_the_provider_never_sends_is_a_400(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = await waiting_case(stack, http)
    case = workflow_id(player.id)
    run_id = (await stack.client.get_workflow_handle(case).describe()).run_id
    reference = f"{case}:{run_id}:doc:1"
    for bad in ({"result": "PURPLE"}, {"result": "RED", "next": "MAYBE"}, {"result": 5},
                {"check_id": 7}, {"reason": ["forged"]}, {"result": "RED", "next": ["FINAL"]}):
        answer = await deliver(stack, http, reference, **bad)
        assert answer.status_code == 400, (bad, answer.status_code, answer.text)
        assert answer.json()["code"] == "webhook_payload_invalid", bad
    for not_text in (42, ["kyc-x:doc:1"], None):
        answer = await deliver(stack, http, not_text)
        assert answer.status_code == 400, (not_text, answer.status_code, answer.text)
    assert (await kyc_of(http, player))["status"] == "documents"
    assert (await deliver(stack, http, reference)).json()["outcome"] == "signalled"
    assert (await wait_kyc(http, player, ("verified",)))["status"] == "verified"
    assert events(stack.engine, player.id) == ["kyc.verified"]
    assert ledger_violations(stack.engine) == []
