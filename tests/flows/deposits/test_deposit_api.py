"""The /v1/deposits contract at the edge: bad input is a 4xx problem with nothing written,
tenants see only their own deposits, and a POST retried after a lost answer finds its deposit."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from commands.api_keys import create_api_key
from tests.support.deposits import (
    deposit_body,
    deposits_of,
    post_deposit,
    wait_for_status,
)
from tests.support.factories import Player, cash


async def test_idempotency_key_is_required(stack, player, http):
    answer = await http.post("/v1/deposits", json=deposit_body(player), headers=player.headers)
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] == "idempotency_key_required"
    assert deposits_of(stack.engine, player) == 0


async def test_bad_bodies_are_422_and_write_nothing(stack, player, http):
    for bad in ({"amount": 10.5}, {"amount": "1000"}, {"amount": 0}, {"amount": -5},
                {"currency": "usd"}, {"payment_method": "card_4242"}, {"surprise": True}):
        answer = await post_deposit(http, player, **{k: v for k, v in bad.items() if k != "surprise"}) \
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


async def test_post_retried_after_a_lost_answer_lands_on_the_same_deposit(stack, worker, player, http):
    """The API crashed after starting the deposit but before storing its answer: the client's
    retry runs the route again and must find the same deposit and the same workflow."""
    key = uuid.uuid4().hex
    first = (await post_deposit(http, player, key=key, amount=1_200)).json()
    with stack.engine.begin() as conn:  # forget the stored answer, as a crash before storing it would
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
        _, plaintext = create_api_key(conn, "partner", f"other-{uuid.uuid4().hex[:8]}", None, "other")
    return {"Authorization": f"Bearer {plaintext}"}
