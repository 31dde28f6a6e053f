"""Placing bets over real HTTP (the shared stack): POST /v1/bets is idempotent by the partner's
bet id with clear problems, GET shows the bet; bet ids are per partner; a bet that could pay
more than the ledger can hold is refused at intake."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import Engine, text

import ledger
from commands import bets
from ledger import AccountRef
from settlepay.db import run_in_transaction
from tests.support import settlement
from tests.support.factories import (
    Player,
    cash,
    events,
    fund,
    ledger_violations,
    make_player,
)
from tests.support.stack import Stack

CURRENCY = "GBP"


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def bet_body(player: str, market: str, stake: int = 1_000, odds: str = "2.50",
             **extra: Any) -> dict[str, Any]:
    return {"id": uid("bet"), "player_id": player, "stake": stake, "currency": CURRENCY,
            "bet_type": "single",
            "legs": [{"market_id": market, "selection_id": "home", "odds": odds}], **extra}


def funded(engine: Engine, amount: int) -> Player:
    player = make_player(engine)
    fund(engine, player, amount, CURRENCY)
    return player


def in_play(engine: Engine, player: Player) -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, AccountRef.bets_in_play(player.id, CURRENCY)).posted


def bets_of(engine: Engine, player: Player) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM bets WHERE player_id = :p"),
                            {"p": player.id}).scalar_one()


async def test_place_bet_replay_conflict_and_problems(stack: Stack, http: httpx.AsyncClient):
    engine, market = stack.engine, uid("mkt")
    player = funded(engine, 3_000)
    headers = player.headers
    body = bet_body(player.id, market)
    first = await http.post("/v1/bets", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "open" and first.json()["legs"][0]["price"] == "5/2"
    assert cash(engine, player.id, CURRENCY) == 2_000 and in_play(engine, player) == 1_000

    again = await http.post("/v1/bets", json=body, headers=headers)
    assert again.status_code == 200 and again.json()["id"] == body["id"]
    assert cash(engine, player.id, CURRENCY) == 2_000                       # charged once

    conflict = await http.post("/v1/bets", json={**body, "stake": 999}, headers=headers)
    assert conflict.status_code == 409 and conflict.json()["code"] == "bet_id_conflict"

    broke = bet_body(player.id, market, stake=5_000)
    short = await http.post("/v1/bets", json=broke, headers=headers)
    assert short.status_code == 402 and short.json()["code"] == "insufficient_funds"
    assert short.headers["content-type"].startswith("application/problem+json")
    replay = await http.post("/v1/bets", json=broke, headers=headers)  # the rejection answers
    assert replay.status_code == 402 and replay.json()["code"] == "insufficient_funds"
    assert cash(engine, player.id, CURRENCY) == 2_000

    for bad, code in [
            ({"stake": 10.5}, "validation_error"), ({"stake": -1}, "validation_error"),
            ({"legs": [{"market_id": market, "selection_id": "h", "odds": 2.5}]},
             "validation_error"),
            ({"legs": [{"market_id": market, "selection_id": "h", "odds": "0.90"}]},
             "invalid_odds"),
            ({"bet_type": "parlay"}, "invalid_bet"),
            ({"bet_type": "each_way", "stake": 1_001,
              "each_way": {"place_fraction": "1/5", "places": 3}}, "invalid_bet")]:
        response = await http.post("/v1/bets", json={**bet_body(player.id, market), **bad},
                                   headers=headers)
        assert response.status_code == 422, (bad, response.text)
        assert response.json()["code"] == code
    assert cash(engine, player.id, CURRENCY) == 2_000                      # nothing half-written

    fetched = await http.get(f"/v1/bets/{body['id']}", headers=headers)
    assert fetched.status_code == 200 and fetched.json()["object"] == "bet"
    assert (await http.get("/v1/bets/nope", headers=headers)).status_code == 404
    other = make_player(engine)                                            # another partner
    assert (await http.get(f"/v1/bets/{body['id']}", headers=other.headers)).status_code == 404
    assert (await http.post("/v1/bets", json=bet_body(player.id, market),
                            headers=other.headers)).status_code == 404


async def test_gate_denial_is_a_clear_problem(stack: Stack, http: httpx.AsyncClient):
    engine, market = stack.engine, uid("mkt")
    player = funded(engine, 3_000)
    moved = await http.post("/v1/bets", json=bet_body(player.id, market,
                                                      ip_address="198.51.100.9"),
                            headers=player.headers)
    assert moved.status_code == 403 and moved.json()["code"] == "ip_changed"
    assert (await http.post("/v1/bets", json=bet_body("ply_nobody", market),
                            headers=player.headers)).status_code == 404
    assert cash(engine, player.id, CURRENCY) == 3_000


async def test_the_same_bet_sent_many_times_at_once_is_taken_once(stack: Stack,
                                                                  http: httpx.AsyncClient):
    engine = stack.engine
    player = funded(engine, 1_000)
    body = bet_body(player.id, uid("mkt"))
    responses = await asyncio.gather(*(http.post("/v1/bets", json=body, headers=player.headers)
                                       for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert cash(engine, player.id, CURRENCY) == 0 and in_play(engine, player) == 1_000


async def test_a_long_winning_parlay_that_could_overflow_the_ledger_is_refused_at_intake(
        stack: Stack, http: httpx.AsyncClient):
    """Issue 9, item 6: twenty legs at 1000.00 return 10^60 times the stake if all win, far
    beyond a bigint: settling it would fail for ever. It is refused at intake instead."""
    engine = stack.engine
    player = funded(engine, 1_000_000)
    legs = [{"market_id": uid("mkt"), "selection_id": "home", "odds": "1000"} for _ in range(20)]
    body = {**bet_body(player.id, "unused", stake=1_000_000), "bet_type": "parlay",
            "legs": legs}
    refused = await http.post("/v1/bets", json=body, headers=player.headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "payout_above_maximum"
    assert str(stack.settings.bet_payout_max_minor) in refused.json()["detail"]
    assert (await http.get(f"/v1/bets/{body['id']}", headers=player.headers)).status_code == 404
    assert cash(engine, player.id, CURRENCY) == 1_000_000 and bets_of(engine, player) == 0

    # A parlay whose full win stays within the maximum is taken as before.
    fine = {**body, "id": uid("bet"), "stake": 1_000,
            "legs": [{**leg, "odds": "10/1"} for leg in legs[:3]]}     # at most 1,331,000
    assert (await http.post("/v1/bets", json=fine, headers=player.headers)).status_code == 201
    assert ledger_violations(engine) == []


async def test_another_partner_can_use_a_bet_id_already_taken_without_learning_it_exists(
        stack: Stack, http: httpx.AsyncClient):
    """Issue 9, item 16: bet ids are per partner. Another partner's bet under the same id is
    another bet (no 409 that would tell it the id exists), each partner reads its own."""
    engine, market = stack.engine, uid("mkt")
    alice, bob = funded(engine, 3_000), funded(engine, 3_000)
    taken = bet_body(alice.id, market, stake=1_000)
    assert (await http.post("/v1/bets", json=taken, headers=alice.headers)).status_code == 201

    same_id = {**bet_body(bob.id, market, stake=700), "id": taken["id"]}
    bobs = await http.post("/v1/bets", json=same_id, headers=bob.headers)
    assert bobs.status_code == 201, bobs.text
    assert bobs.json()["stake"] == 700 and bobs.json()["partner_id"] == bob.partner_id

    mine = await http.get(f"/v1/bets/{taken['id']}", headers=alice.headers)
    theirs = await http.get(f"/v1/bets/{taken['id']}", headers=bob.headers)
    assert (mine.json()["stake"], mine.json()["player_id"]) == (1_000, alice.id)
    assert (theirs.json()["stake"], theirs.json()["player_id"]) == (700, bob.id)
    only_alice = bet_body(alice.id, market, stake=500)
    assert (await http.post("/v1/bets", json=only_alice, headers=alice.headers)).status_code == 201
    assert (await http.get(f"/v1/bets/{only_alice['id']}", headers=bob.headers)).status_code == 404

    # An operator sees every partner: the shared id needs the partner named.
    ambiguous = await http.get(f"/v1/bets/{taken['id']}", headers=alice.operator)
    assert ambiguous.status_code == 409 and ambiguous.json()["code"] == "bet_id_ambiguous"
    named = await http.get(f"/v1/bets/{taken['id']}", params={"partner_id": bob.partner_id},
                           headers=alice.operator)
    assert named.status_code == 200 and named.json()["stake"] == 700
    single = await http.get(f"/v1/bets/{only_alice['id']}", headers=alice.operator)
    assert single.status_code == 200 and single.json()["partner_id"] == alice.partner_id

    # The stakes are two postings under two keys; each bet has its own events.
    assert cash(engine, alice.id, CURRENCY) == 1_500 and cash(engine, bob.id, CURRENCY) == 2_300
    for player in (alice, bob):
        assert events(engine, f"{player.partner_id}/{taken['id']}") == ["bet.placed"]
    assert ledger_violations(engine) == []


async def test_bet_placed_and_rejected_events_name_the_partner(stack: Stack,
                                                              http: httpx.AsyncClient):
    """Issue 9, item 15: a partner's webhook consumer routes bet events by partner."""
    engine, market = stack.engine, uid("mkt")
    player = funded(engine, 1_000)
    taken, refused = bet_body(player.id, market), bet_body(player.id, market, stake=9_000)
    assert (await http.post("/v1/bets", json=taken, headers=player.headers)).status_code == 201
    assert (await http.post("/v1/bets", json=refused, headers=player.headers)).status_code == 402
    with engine.connect() as conn:
        rows = conn.execute(text("""
            SELECT event_type, partner_id, payload FROM outbox_events
             WHERE aggregate_type = 'bet' AND player_id = :p ORDER BY id"""),
            {"p": player.id}).mappings().all()
    assert [row["event_type"] for row in rows] == ["bet.placed", "bet.rejected"]
    for row, body in zip(rows, (taken, refused), strict=True):
        assert row["partner_id"] == row["payload"]["partner_id"] == player.partner_id
        assert row["payload"]["id"] == body["id"]


def test_two_partners_bets_under_one_id_settle_under_their_own_ledger_keys(engine, settings):
    """Issue 9, item 16: the settlement key `bet:<id>:v<version>` names the internal id, so
    two partners' bets with the same engine id are settled (and paid) separately."""
    market, shared = uid("mkt"), uid("bet")
    players = {partner: settlement.funded_player(engine, 2_000, partner_id=partner)
               for partner in (uid("partner"), uid("partner"))}
    for (partner, player), odds in zip(players.items(), ("2.00", "3.00"), strict=True):
        req = bets.BetRequest(bet_id=shared, player_id=player, stake=1_000, currency=CURRENCY,
                              bet_type="single", legs=(bets.LegRequest(market, "home", odds),))
        placed = run_in_transaction(engine, lambda c, req=req: bets.place(
            c, settings, req, actor="system:test"))
        assert placed.refusal is None and placed.bet["id"] == f"{partner}/{shared}"

    settlement.post_result(engine, settings, market, 1, {"home": {"result": "won"}})
    settlement.run_market(engine, settings, market, 1)

    cash_after = [settlement.cash(engine, player) for player in players.values()]
    assert cash_after == [1_000 + 2_000, 1_000 + 3_000]
    with engine.connect() as conn:
        keys = set(conn.execute(text(
            "SELECT ledger_key FROM bet_settlements WHERE market_id = :m"), {"m": market}
        ).scalars())
    assert len(keys) == 2 and all(any(key.startswith(f"bet:{partner}/{shared}:v")
                                      for key in keys) for partner in players)
    assert ledger_violations(engine) == []
    assert settlement.verify_differences(engine, settings, market) == []
