"""Self-excluded, timed-out and out-of-state players are blocked from deposits and bets, over
the real API: the refusal names its reason, no money moves, no payment reaches the gateway and
no bet is taken. (A self-excluded player may still withdraw: excluded from gambling, not
from their money.)"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.support.deposits import deposit_body, wait_for_status
from tests.support.factories import Player, fund, ledger_violations, make_player
from tests.support.stack import Stack
from tests.support.withdrawals import confirm, ready_player, start

CASH = 10_000
ALBANY_NY = {"latitude": 42.6526, "longitude": -73.7562, "ip_address": "8.8.8.8"}
TRENTON_NJ = {"latitude": 40.2171, "longitude": -74.7429, "ip_address": "8.8.8.8"}


async def self_excluded(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine)
    fund(stack.engine, player, CASH)
    answer = await http.post(f"/v1/players/{player.id}/self-exclusion", headers={
        **player.headers, "Idempotency-Key": uuid.uuid4().hex}, json={"duration_days": 365})
    assert answer.status_code == 201, answer.text
    return player


async def timed_out(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine)
    fund(stack.engine, player, CASH)
    answer = await http.post(f"/v1/players/{player.id}/time-out", headers={
        **player.headers, "Idempotency-Key": uuid.uuid4().hex}, json={"duration_hours": 24})
    assert answer.status_code == 201, answer.text
    return player


async def out_of_state(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine, located=False)
    fund(stack.engine, player, CASH)
    located = await http.post(f"/v1/players/{player.id}/geolocation", headers={
        **player.headers, "Idempotency-Key": uuid.uuid4().hex}, json=ALBANY_NY)
    assert located.status_code == 201, located.text
    assert located.json()["allowed"] is False, located.json()
    return player


async def never_located(stack: Stack, http: httpx.AsyncClient) -> Player:
    player = make_player(stack.engine, located=False)
    fund(stack.engine, player, CASH)
    return player


PLAYERS = {"self_excluded": (self_excluded, "self_excluded"),
           "timed_out": (timed_out, "timed_out"),
           "out_of_state": (out_of_state, "outside_licensed_jurisdiction"),
           "never_located": (never_located, "geolocation_required")}


def bet(player: Player) -> dict[str, Any]:
    return {"id": f"bet_{uuid.uuid4().hex[:10]}", "player_id": player.id, "stake": 1_000,
            "currency": "USD", "bet_type": "single",
            "legs": [{"market_id": f"mkt_{uuid.uuid4().hex[:8]}", "selection_id": "home",
                      "odds": "2.00"}]}


def untouched(stack: Stack, player: Player) -> None:
    with stack.engine.connect() as conn:
        # A refused bet is kept as `rejected` (its id replays the refusal); none is taken.
        bets = conn.execute(text(
            "SELECT count(*) FROM bets WHERE player_id = :p AND status <> 'rejected'"),
            {"p": player.id}).scalar_one()
        moved = conn.execute(text(
            "SELECT count(*) FROM ledger_transactions t"
            " JOIN ledger_entries e ON e.transaction_id = t.id"
            " JOIN ledger_accounts a ON a.id = e.account_id"
            " WHERE a.owner = :owner AND t.kind <> 'deposit'"),
            {"owner": f"player:{player.id}"}).scalar_one()
        cash = conn.execute(text(
            "SELECT coalesce(sum(b.posted), 0) FROM ledger_balances b"
            " JOIN ledger_accounts a ON a.id = b.account_id"
            " WHERE a.owner = :owner AND a.type = 'player_cash'"),
            {"owner": f"player:{player.id}"}).scalar_one()
    assert (bets, moved, cash) == (0, 0, CASH)
    assert ledger_violations(stack.engine) == []


@pytest.mark.parametrize("who", PLAYERS)
async def test_a_blocked_players_deposit_is_refused_before_the_gateway(
        who: str, stack: Stack, worker, http: httpx.AsyncClient) -> None:
    make, reason = PLAYERS[who]
    player = await make(stack, http)
    posted = await http.post("/v1/deposits", json=deposit_body(player, amount=2_000),
                             headers={**player.headers, "Idempotency-Key": uuid.uuid4().hex})
    if posted.status_code == 202:
        deposit = await wait_for_status(http, player, posted.json()["id"])
        assert (deposit["status"], deposit["failure_code"]) == ("failed", reason), deposit
        assert stack.payment_intents(deposit["id"]) == []
    else:
        assert posted.status_code in (403, 422), posted.text
        assert posted.json()["code"] == reason
    untouched(stack, player)


@pytest.mark.parametrize("who", PLAYERS)
async def test_a_blocked_players_bet_is_refused(
        who: str, stack: Stack, http: httpx.AsyncClient) -> None:
    make, reason = PLAYERS[who]
    player = await make(stack, http)
    answer = await http.post("/v1/bets", json=bet(player), headers=player.headers)
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == reason
    untouched(stack, player)


async def test_a_self_excluded_player_may_still_withdraw(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = ready_player(stack, cash=CASH)
    excluded = await http.post(f"/v1/players/{player.id}/self-exclusion", headers={
        **player.headers, "Idempotency-Key": uuid.uuid4().hex}, json={"permanent": True})
    assert excluded.status_code == 201, excluded.text
    withdrawal = await start(http, player, 2_000)
    assert (await confirm(stack, http, player, withdrawal["id"]))["state"] == "paid"
    assert ledger_violations(stack.engine) == []


async def test_a_player_back_in_the_licensed_state_may_bet_again(
        stack: Stack, http: httpx.AsyncClient) -> None:
    """The control of the out-of-state cells: the same player, located in New Jersey."""
    player = await out_of_state(stack, http)
    located = await http.post(f"/v1/players/{player.id}/geolocation", headers={
        **player.headers, "Idempotency-Key": uuid.uuid4().hex}, json=TRENTON_NJ)
    assert located.status_code == 201 and located.json()["allowed"], located.text
    answer = await http.post("/v1/bets", json=bet(player), headers=player.headers)
    assert answer.status_code == 201, answer.text
