"""The HTTP API of the shared stack over real HTTP: POST /v1/bets (idempotent by bet id, clear
problems), GET a bet with its settlement history, POST results -> settlement workflow -> GET
settlement, a correction, and the rollback endpoint."""

from __future__ import annotations

import httpx
import pytest

from commands import api_keys
from ledger import AccountRef
from settlepay.db import transaction
from tests.support.factories import ledger_violations, wait_until
from tests.support.settlement import account, cash, funded_player, uid


@pytest.fixture(scope="module")
def keys(engine):
    with transaction(engine) as conn:
        _, partner = api_keys.create_api_key(conn, "partner", "partner_t", None, "bets partner")
        _, other = api_keys.create_api_key(conn, "partner", "partner_other", None, "another")
        _, operator = api_keys.create_api_key(conn, "operator", None, None, "bets operator")
    return {"partner": partner, "other": other, "operator": operator}


@pytest.fixture
def api(stack):
    return stack.api_url


def client(api, key):
    return httpx.AsyncClient(base_url=api, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def bet_body(player, market, stake=1_000, odds="2.50", **extra):
    return {"id": uid("bet"), "player_id": player, "stake": stake, "currency": "GBP",
            "bet_type": "single",
            "legs": [{"market_id": market, "selection_id": "home", "odds": odds}], **extra}


async def wait_settled(http, market, version, state="settled"):
    async def reached():
        view = (await http.get(f"/v1/markets/{market}/settlement")).json()
        return view if (view.get("state"), view.get("version")) == (state, version) else None

    return await wait_until(reached, timeout=30)


async def test_results_settle_resettle_and_roll_back_through_the_api(
        api, keys, engine, market, settlement_worker):
    player = funded_player(engine, 5_000)
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
        partner_result = await http.post(f"/v1/markets/{market}/results", json={
            "version": 1, "selections": {"home": {"result": "won"}}})
        assert partner_result.status_code == 403
    assert cash(engine, player) == 1_000

    async with client(api, keys["operator"]) as ops:
        v1 = {"version": 1, "selections": {"home": {"result": "won"}, "away": {"result": "lost"},
                                           "horse": {"result": "lost", "position": 2}}}
        first = await ops.post(f"/v1/markets/{market}/results", json=v1)
        assert first.status_code == 202 and first.json()["workflow_id"] == f"settle-{market}-v1"
        view = await wait_settled(ops, market, 1)
        assert view["bets"] == {"total": 3, "open": 0, "settled": 3}
        # 4,000 (3/1) + 0 + place part 1,000 at 3.00 = 3,000
        assert cash(engine, player) == 1_000 + 4_000 + 3_000
        replay = await ops.post(f"/v1/markets/{market}/results", json=v1)
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
        assert cash(engine, player) == 1_000
        assert account(engine, AccountRef.bets_in_play(player, "GBP")) == 4_000
        stale = await ops.post(f"/v1/markets/{market}/rollback", json={"version": 1})
        assert stale.status_code == 409
        assert (await ops.get("/v1/markets/unknown_market/settlement")).status_code == 404
    assert ledger_violations(engine) == []
