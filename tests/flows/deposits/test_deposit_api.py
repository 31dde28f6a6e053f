"""The /v1/deposits contract at the edge: bad input is a 4xx problem with nothing written,
tenants see only their own deposits, and a POST retried after a lost answer finds its deposit."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from api.workflow_start import start_money_workflow
from commands.api_keys import create_api_key
from settlepay import search_attributes as sa
from tests.support.deposits import (
    deposit_body,
    deposits_of,
    ledger_credits,
    post_deposit,
    start_deposit,
    wait_for_status,
    workflow_runs,
)
from tests.support.factories import Player, cash, ledger_violations
from workflows.contracts.deposit import WORKFLOW, DepositRequest


async def test_idempotency_key_is_required(stack, player, http):
    answer = await http.post("/v1/deposits", json=deposit_body(player), headers=player.headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "idempotency_key_required"
    assert deposits_of(stack.engine, player) == 0


async def test_bad_bodies_are_422_and_write_nothing(stack, player, http):
    for bad in ({"amount": 10.5}, {"amount": "1000"}, {"amount": 0}, {"amount": -5},
                {"currency": "usd"}, {"payment_method": "card_4242"}, {"surprise": True}):
        answer = await post_deposit(http, player, **{k: v for k,
                                                     v in bad.items() if k != "surprise"}) \
            if "surprise" not in bad else await http.post(
                "/v1/deposits", json={**deposit_body(player), "surprise": True},
                headers={**player.headers, "Idempotency-Key": uuid.uuid4().hex})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.json()["code"] == "validation_error"
    assert deposits_of(stack.engine, player) == 0


async def test_unknown_and_foreign_players_and_deposits_are_404(stack, worker, player, http):
    ghost = Player("ply_ghost_" + uuid.uuid4().hex[:8], player.partner_id, player.email,
                   player.headers, player.operator)
    answer = await post_deposit(http, ghost)
    assert answer.status_code == 404 and answer.json()["code"] == "player_not_found"

    created = (await post_deposit(http, player, amount=700)).json()
    other = await http.get(f"/v1/deposits/{created['id']}",
                           headers=_other_partner_headers(stack))
    assert other.status_code == 404 and other.json()["code"] == "deposit_not_found"
    missing = await http.get("/v1/deposits/dep_nope", headers=player.headers)
    assert missing.status_code == 404
    no_key = await http.get(f"/v1/deposits/{created['id']}")
    assert no_key.status_code == 401
    await wait_for_status(http, player, created["id"])


async def test_same_key_different_body_is_refused(stack, worker, player, http):
    key = uuid.uuid4().hex
    first = await post_deposit(http, player, key=key, amount=900)
    assert first.status_code == 202
    second = await post_deposit(http, player, key=key, amount=901)
    assert second.status_code == 422 and second.json()["code"] == "idempotency_key_reused"
    await wait_for_status(http, player, first.json()["id"])
    assert cash(stack.engine, player.id) == 900 and deposits_of(stack.engine, player) == 1


async def test_post_retried_after_a_lost_answer_lands_on_the_same_deposit(
        stack, worker, player, http):
    """The API crashed after starting the deposit but before storing its answer: the client's
    retry runs the route again and must find the same deposit and the same workflow."""
    key = uuid.uuid4().hex
    first = (await post_deposit(http, player, key=key, amount=1_200)).json()
    # Forget the stored answer, as a crash before storing it would.
    with stack.engine.begin() as conn:
        conn.execute(text("DELETE FROM idempotency_records WHERE idempotency_key = :k"), {"k": key})
    again = await post_deposit(http, player, key=key, amount=1_200)
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    assert again.headers.get("idempotent-replayed") is None   # the route really ran twice
    done = await wait_for_status(http, player, first["id"])
    assert done["status"] == "succeeded"
    assert cash(stack.engine, player.id) == 1_200 and deposits_of(stack.engine, player) == 1
    assert len(stack.payment_intents(first["id"])) == 1


def _other_partner_headers(stack) -> dict[str, str]:
    with stack.engine.begin() as conn:
        _, plaintext = create_api_key(conn, "partner", f"other-{uuid.uuid4().hex[:8]}", None,
                                      "other")
    return {"Authorization": f"Bearer {plaintext}"}


async def _latest_run(stack, deposit_id: str) -> str:
    return (await stack.client.get_workflow_handle(f"deposit-{deposit_id}").describe()).run_id


async def test_a_post_retried_after_the_deposit_finished_gets_it_and_never_runs_it_again(
        stack, worker, player, http):
    """Issue 9, item 4: the POST answered 500 after a successful start (its stored answer is
    gone, its claim released) and the client retries after the workflow has closed: it gets the
    same deposit as it is, and the workflow never runs a second time."""
    key = uuid.uuid4().hex
    first = (await post_deposit(http, player, key=key, amount=1_300)).json()
    handle = stack.client.get_workflow_handle(f"deposit-{first['id']}")
    await handle.result()                                       # the first run has closed
    first_run = await _latest_run(stack, first["id"])
    with stack.engine.begin() as conn:   # the answer was never stored: a 500 releases the key
        conn.execute(text("DELETE FROM idempotency_records WHERE idempotency_key = :k"),
                      {"k": key})
    again = await post_deposit(http, player, key=key, amount=1_300)
    assert again.status_code == 202 and again.headers.get("idempotent-replayed") is None
    assert (again.json()["id"], again.json()["status"]) == (first["id"], "succeeded")
    assert await _latest_run(stack, first["id"]) == first_run   # no second run
    assert await workflow_runs(stack, first["id"]) == 1
    assert cash(stack.engine, player.id) == 1_300 and deposits_of(stack.engine, player) == 1
    assert [c["idempotency_key"] for c in ledger_credits(stack.engine, first["id"])] == [
        f"deposit-{first['id']}:credit"]
    assert ledger_violations(stack.engine) == []


async def test_the_start_helper_never_starts_a_closed_money_workflow_again(stack, worker,
                                                                           player):
    """Issue 9, item 4, at the shared start helper (deposits and withdrawals): a second start of
    a workflow id whose run has closed starts nothing."""
    deposit_id = await start_deposit(stack, player, 1_400)     # asserts the first start started
    handle = stack.client.get_workflow_handle(f"deposit-{deposit_id}")
    await handle.result()
    first_run = await _latest_run(stack, deposit_id)
    request = DepositRequest(deposit_id, player.id, player.partner_id, 1_400, "USD",
                             "pm_card_visa", "api_key:tests")
    started = await start_money_workflow(stack.client, WORKFLOW, request,
                                         workflow_id=f"deposit-{deposit_id}",
                                         state_key=sa.PAYMENT_STATE, state="PENDING")
    assert started is False
    assert await _latest_run(stack, deposit_id) == first_run
    assert cash(stack.engine, player.id) == 1_400
    assert len(ledger_credits(stack.engine, deposit_id)) == 1
    assert ledger_violations(stack.engine) == []
