"""The HTTP API over real HTTP: POST /v1/bets (idempotent by bet id, clear problems), GET a bet
with its settlement history, POST results -> settlement workflow -> GET settlement, a
correction, and the rollback endpoint."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from api.app import create_app
from ledger import AccountRef
from settlepay.db import transaction
from store import api_keys
from tests.settlement.conftest import account, cash, ledger_violations, make_player, uid
from tests.support.servers import serve_asgi


@pytest.fixture(scope="module")
def keys(engine):
    with transaction(engine) as conn:
        _, partner = api_keys.create_api_key(conn, "partner", "partner_t", None, "bets test partner")
        _, other = api_keys.create_api_key(conn, "partner", "partner_other", None, "another partner")
        _, operator = api_keys.create_api_key(conn, "operator", None, None, "bets test operator")
    return {"partner": partner, "other": other, "operator": operator}


@pytest.fixture(scope="module")
def api(engine, settings, temporal_env):
    app = create_app(settings, engine=engine, temporal_client=temporal_env.client)
    with serve_asgi(app) as base_url:
        yield base_url


def client(api, key):
    return httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def bet_body(player, market, stake=1_000, odds="2.50", **extra):
    return {"id": uid("bet"), "player_id": player, "stake": stake, "currency": "GBP", "bet_type": "single",
            "legs": [{"market_id": market, "selection_id": "home", "odds": odds}], **extra}


async def test_place_bet_replay_conflict_and_problems(api, keys, engine, market):
    player = make_player(engine, 3_000)
    async with client(api, keys["partner"]) as http:
        body = bet_body(player, market)
        first = await http.post("/v1/bets", json=body)
        assert first.status_code == 201, first.text
        assert first.json()["status"] == "open" and first.json()["legs"][0]["price"] == "5/2"
        assert cash(engine, player) == 2_000 and account(engine, AccountRef.bets_in_play(player, "GBP")) == 1_000

        again = await http.post("/v1/bets", json=body)
        assert again.status_code == 200 and again.json()["id"] == body["id"]
        assert cash(engine, player) == 2_000                       # charged once

        conflict = await http.post("/v1/bets", json={**body, "stake": 999})
        assert conflict.status_code == 409 and conflict.json()["code"] == "bet_id_conflict"

        broke = bet_body(player, market, stake=5_000)
        short = await http.post("/v1/bets", json=broke)
        assert short.status_code == 402 and short.json()["code"] == "insufficient_funds"
        assert short.headers["content-type"].startswith("application/problem+json")
        replay = await http.post("/v1/bets", json=broke)         # the rejection is the answer for this id
        assert replay.status_code == 402 and replay.json()["code"] == "insufficient_funds"
        assert cash(engine, player) == 2_000

        for bad, code in [({"stake": 10.5}, "validation_error"), ({"stake": -1}, "validation_error"),
                          ({"legs": [{"market_id": market, "selection_id": "h", "odds": 2.5}]}, "validation_error"),
                          ({"legs": [{"market_id": market, "selection_id": "h", "odds": "0.90"}]}, "invalid_odds"),
                          ({"bet_type": "parlay"}, "invalid_bet"),
                          ({"bet_type": "each_way", "stake": 1_001,
                            "each_way": {"place_fraction": "1/5", "places": 3}}, "invalid_bet")]:
            response = await http.post("/v1/bets", json={**bet_body(player, market), **bad})
            assert response.status_code == 422, (bad, response.text)
            assert response.json()["code"] == code
        assert cash(engine, player) == 2_000                      # nothing half-written

        fetched = await http.get(f"/v1/bets/{body['id']}")
        assert fetched.status_code == 200 and fetched.json()["object"] == "bet"
        assert (await http.get("/v1/bets/nope")).status_code == 404
    async with client(api, keys["other"]) as other:
        assert (await other.get(f"/v1/bets/{body['id']}")).status_code == 404       # another partner's
        assert (await other.post("/v1/bets", json=bet_body(player, market))).status_code == 404


async def test_gate_denial_is_a_clear_problem(api, keys, engine, market):
    player = make_player(engine, 3_000)
    async with client(api, keys["partner"]) as http:
        moved = await http.post("/v1/bets", json=bet_body(player, market, ip_address="198.51.100.9"))
        assert moved.status_code == 403 and moved.json()["code"] == "ip_changed"
        assert (await http.post("/v1/bets", json=bet_body("ply_nobody", market))).status_code == 404
    assert cash(engine, player) == 3_000


async def wait_settled(http, market, version, state="settled"):
    for _ in range(200):
        view = (await http.get(f"/v1/markets/{market}/settlement")).json()
        if view.get("state") == state and view.get("version") == version:
            return view
        await asyncio.sleep(0.05)
    raise AssertionError(f"market {market} never reached {state} v{version}: {view}")


async def test_results_settle_resettle_and_roll_back_through_the_api(
        api, keys, engine, market, settlement_worker):
    player = make_player(engine, 5_000)
    async with client(api, keys["partner"]) as http:
        home = await http.post("/v1/bets", json=bet_body(player, market, odds="3/1"))
        away = bet_body(player, market, odds="+200")
        away["legs"][0]["selection_id"] = "away"
        away = await http.post("/v1/bets", json=away)
        ew = {**bet_body(player, market, stake=2_000, odds="10/1"), "bet_type": "each_way",
              "each_way": {"place_fraction": "1/5", "places": 3}}
        ew["legs"][0]["selection_id"] = "horse"
        ew = await http.post("/v1/bets", json=ew)
        assert {home.status_code, away.status_code, ew.status_code} == {201}
        assert (await http.post(f"/v1/markets/{market}/results",
                                json={"version": 1, "selections": {"home": {"result": "won"}}})).status_code == 403
    assert cash(engine, player) == 1_000

    async with client(api, keys["operator"]) as ops:
        first = await ops.post(f"/v1/markets/{market}/results", json={"version": 1, "selections": {
            "home": {"result": "won"}, "away": {"result": "lost"}, "horse": {"result": "lost", "position": 2}}})
        assert first.status_code == 202 and first.json()["workflow_id"] == f"settle-{market}-v1"
        view = await wait_settled(ops, market, 1)
        assert view["bets"] == {"total": 3, "open": 0, "settled": 3}
        # 4,000 (3/1) + 0 + place part 1,000 at 3.00 = 3,000
        assert cash(engine, player) == 1_000 + 4_000 + 3_000
        replay = await ops.post(f"/v1/markets/{market}/results", json={"version": 1, "selections": {
            "home": {"result": "won"}, "away": {"result": "lost"}, "horse": {"result": "lost", "position": 2}}})
        assert replay.status_code == 202 and replay.json()["replayed"] is True
        stale = await ops.post(f"/v1/markets/{market}/results", json={"version": 1, "selections": {
            "home": {"result": "lost"}}})
        assert stale.status_code == 409 and stale.json()["code"] == "result_version_conflict"
        floaty = await ops.post(f"/v1/markets/{market}/results", json={"version": 2, "selections": {
            "home": {"result": "won", "void_factor": 0.5}}})
        assert floaty.status_code == 422

        # Correction: the horse won (dead heat for first), home was a push.
        second = await ops.post(f"/v1/markets/{market}/results", json={"version": 2, "selections": {
            "home": {"result": "lost", "void_factor": "1"}, "away": {"result": "lost"},
            "horse": {"result": "won", "dead_heat_factor": "1/2", "position": 1, "tied": 2}}})
        assert second.status_code == 202
        await wait_settled(ops, market, 2)
        # home 1,000 back; horse: win half of 1,000 at 11.00 = 5,500 + place 1,000 at 3.00 = 3,000
        assert cash(engine, player) == 1_000 + 1_000 + 5_500 + 3_000

        bet = (await ops.get(f"/v1/bets/{home.json()['id']}")).json()
        assert [(s["kind"], s["version"], s["payout"]) for s in bet["settlements"]] == [
            ("settlement", 1, 4_000), ("resettlement", 2, 1_000)]

        rolled = await ops.post(f"/v1/markets/{market}/rollback", json={"version": 2})
        assert rolled.status_code == 202 and rolled.json()["workflow_id"] == f"rollback-{market}-v2"
        view = await wait_settled(ops, market, 2, state="rolled_back")
        assert view["bets"]["open"] == 3
        assert cash(engine, player) == 1_000 and account(engine, AccountRef.bets_in_play(player, "GBP")) == 4_000
        assert (await ops.post(f"/v1/markets/{market}/rollback", json={"version": 1})).status_code == 409
        assert (await ops.get("/v1/markets/unknown_market/settlement")).status_code == 404
    assert ledger_violations(engine) == []


async def test_the_same_bet_sent_many_times_at_once_is_taken_once(api, keys, engine, market):
    player = make_player(engine, 1_000)
    body = bet_body(player, market)
    async with client(api, keys["partner"]) as http:
        responses = await asyncio.gather(*(http.post("/v1/bets", json=body) for _ in range(8)))
    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert cash(engine, player) == 0 and account(engine, AccountRef.bets_in_play(player, "GBP")) == 1_000
