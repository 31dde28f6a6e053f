"""Issue 9 #15 (KYC): an operator's review writes an audit record only for a decision that took
effect. Two operators deciding the same case at once: one decision is taken and recorded, the
other is refused (409) and leaves nothing; a review of a case that waits for none is refused
and leaves nothing either."""

from __future__ import annotations

import asyncio

from tests.support.factories import audit_actions, events, ledger_violations, make_player
from tests.support.kyc import FINAL, audit_chain_problems, submit, wait_kyc
from tests.support.stack import Stack

DECISIONS = ("kyc.review.approve", "kyc.review.reject")


async def test_two_operators_deciding_one_review_at_once_record_only_the_decision_taken(
        stack: Stack, worker, http):
    player = make_player(stack.engine, first_name="Viktor", last_name="Aleksandrovich Blackwod")
    assert (await submit(http, player)).status_code == 202
    await wait_kyc(http, player, ("review",))
    approve, reject = await asyncio.gather(
        http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                  json={"decision": "approve", "note": "not the listed person"}),
        http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                  json={"decision": "reject"}))
    answers = sorted([approve, reject], key=lambda answer: answer.status_code)
    assert [a.status_code for a in answers] == [202, 409], [a.text for a in answers]
    assert answers[1].json()["code"] == "kyc_not_in_review"
    taken = "approve" if approve.status_code == 202 else "reject"

    kyc = await wait_kyc(http, player, FINAL)
    assert kyc["status"] == ("verified" if taken == "approve" else "rejected")
    recorded = [a for a in audit_actions(stack.engine, player.id) if a in DECISIONS]
    assert recorded == [f"kyc.review.{taken}"]
    assert [h["detail"]["decision"] for h in kyc["history"] if h["step"] == "review"] == [taken]
    expected = "kyc.verified" if taken == "approve" else "kyc.rejected"
    assert events(stack.engine, player.id) == ["kyc.review_required", expected]
    assert ledger_violations(stack.engine) == []
    assert audit_chain_problems(stack.engine) == []


async def test_a_review_of_a_case_waiting_for_none_is_refused_and_leaves_no_record(
        stack: Stack, worker, http):
    player = make_player(stack.engine)
    assert (await submit(http, player, "SILENT-7")).status_code == 202
    await wait_kyc(http, player, ("documents",))
    answer = await http.post(f"/v1/kyc/{player.id}/review", headers=player.operator,
                             json={"decision": "approve"})
    assert answer.status_code == 409 and answer.json()["code"] == "kyc_not_in_review"
    nobody = make_player(stack.engine)
    never = await http.post(f"/v1/kyc/{nobody.id}/review", headers=player.operator,
                            json={"decision": "reject"})
    assert never.status_code == 409 and never.json()["code"] == "kyc_not_in_review"
    assert not [a for a in audit_actions(stack.engine, player.id) if a in DECISIONS]
    assert not [a for a in audit_actions(stack.engine, nobody.id) if a in DECISIONS]
    assert (await wait_kyc(http, player, ("documents",)))["status"] == "documents"
