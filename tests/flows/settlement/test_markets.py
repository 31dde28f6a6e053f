"""Who may change a market and who sees what of it (issue 9 item 8), and a market closed for
betting after a rollback until an operator reopens it (item 2b): over real HTTP on the shared
stack, with a real settlement worker."""

from __future__ import annotations

import secrets
import uuid

import httpx

from commands import api_keys
from domain import api_versions
from domain.scopes import ALL_SCOPES
from settlepay.db import transaction
from store import api_keys as api_key_rows
from tests.support.factories import audit_actions, events, ledger_violations, wait_until
from tests.support.settlement import cash, funded_player, uid, verify_differences


def partner_key(engine, partner_id: str) -> dict[str, str]:
    with transaction(engine) as conn:
        _, key = api_keys.create_api_key(conn, "partner", partner_id, None, "markets test")
    return {"Authorization": f"Bearer {key}"}


def partner_key_with_every_scope(engine, partner_id: str) -> dict[str, str]:
    """A partner key holding every scope, results:write and operator:review included, written
    as a key could have been made before partner keys were refused operator scopes."""
    plaintext = "sp_" + secrets.token_urlsafe(40)
    with transaction(engine) as conn:
        assert api_key_rows.insert(conn, key_id=f"key_{uuid.uuid4().hex[:20]}",
                                   plaintext=plaintext, role="partner", partner_id=partner_id,
                                   scopes=frozenset(ALL_SCOPES), name="every scope",
                                   api_version=api_versions.current())
    return {"Authorization": f"Bearer {plaintext}"}


def operator_key(engine) -> dict[str, str]:
    with transaction(engine) as conn:
        _, key = api_keys.create_api_key(conn, "operator", None, None, "markets test operator")
    return {"Authorization": f"Bearer {key}"}


def bet(player: str, market: str, stake: int = 1_000, odds: str = "2.00") -> dict:
    return {"id": uid("bet"), "player_id": player, "stake": stake, "currency": "GBP",
            "bet_type": "single",
            "legs": [{"market_id": market, "selection_id": "home", "odds": odds}]}


async def wait_for_state(http: httpx.AsyncClient, headers: dict[str, str], market: str,
                         version: int, state: str) -> dict:
    async def reached() -> dict | None:
        view = (await http.get(f"/v1/markets/{market}/settlement", headers=headers)).json()
        return view if (view.get("state"), view.get("version")) == (state, version) else None

    return await wait_until(reached, timeout=30)


async def test_a_partner_key_with_every_scope_cannot_post_results_roll_back_or_reopen(
        stack, http, engine, settings, market, settlement_worker):
    partner = f"partner-{uuid.uuid4().hex[:8]}"
    mighty = partner_key_with_every_scope(engine, partner)
    ops = operator_key(engine)
    player = funded_player(engine, 1_000, partner_id=partner)
    placed = await http.post("/v1/bets", json=bet(player, market), headers=mighty)
    assert placed.status_code == 201

    result = {"version": 1, "selections": {"home": {"result": "won"}}}
    refused = await http.post(f"/v1/markets/{market}/results", json=result, headers=mighty)
    assert refused.status_code == 403 and refused.json()["code"] == "operator_only"
    assert "market.result_received" not in audit_actions(engine, market)

    assert (await http.post(f"/v1/markets/{market}/results", json=result,
                            headers=ops)).status_code == 202
    await wait_for_state(http, ops, market, 1, "settled")
    for path, body in (("rollback", {"version": 1}), ("reopen", None)):
        answer = await http.post(f"/v1/markets/{market}/{path}", json=body, headers=mighty)
        assert answer.status_code == 403 and answer.json()["code"] == "operator_only", path
    assert cash(engine, player) == 2_000                      # still settled, paid once
    assert ledger_violations(engine) == []
    assert verify_differences(engine, settings, market) == []


async def test_settlement_totals_show_a_partner_its_own_players_bets_only(
        stack, http, engine, settings, market, settlement_worker):
    partners = [f"partner-{uuid.uuid4().hex[:8]}" for _ in range(3)]
    keys = [partner_key(engine, p) for p in partners]
    ops = operator_key(engine)
    stakes = {partners[0]: [1_000, 2_000], partners[1]: [500]}
    for partner, key in zip(partners[:2], keys[:2], strict=True):
        player = funded_player(engine, 5_000, partner_id=partner)
        for stake in stakes[partner]:
            placed = await http.post("/v1/bets", json=bet(player, market, stake), headers=key)
            assert placed.status_code == 201, placed.text
    assert (await http.post(f"/v1/markets/{market}/results", headers=ops, json={
        "version": 1, "selections": {"home": {"result": "won"}}})).status_code == 202
    everyone = await wait_for_state(http, ops, market, 1, "settled")
    assert everyone["bets"] == {"total": 3, "open": 0, "settled": 3}
    assert everyone["totals"]["GBP"] == {"stake": 3_500, "paid": 7_000, "house": -3_500}

    first = (await http.get(f"/v1/markets/{market}/settlement", headers=keys[0])).json()
    assert first["bets"] == {"total": 2, "open": 0, "settled": 2}
    assert first["totals"]["GBP"] == {"stake": 3_000, "paid": 6_000, "house": -3_000}
    second = (await http.get(f"/v1/markets/{market}/settlement", headers=keys[1])).json()
    assert second["bets"] == {"total": 1, "open": 0, "settled": 1}
    assert second["totals"]["GBP"] == {"stake": 500, "paid": 1_000, "house": -500}
    stranger = await http.get(f"/v1/markets/{market}/settlement", headers=keys[2])
    assert stranger.status_code == 404 and stranger.json()["code"] == "market_not_found"
    assert ledger_violations(engine) == []
    assert verify_differences(engine, settings, market) == []


async def test_a_market_rolled_back_stays_closed_for_betting_until_an_operator_reopens_it(
        stack, http, engine, settings, market, settlement_worker):
    partner = f"partner-{uuid.uuid4().hex[:8]}"
    key = partner_key(engine, partner)
    ops = operator_key(engine)
    player = funded_player(engine, 3_000, partner_id=partner)
    assert (await http.post("/v1/bets", json=bet(player, market), headers=key)).status_code == 201
    unknown = await http.post(f"/v1/markets/{uid('mkt')}/reopen", headers=ops)
    assert unknown.status_code == 404 and unknown.json()["code"] == "market_not_found"

    assert (await http.post(f"/v1/markets/{market}/results", headers=ops, json={
        "version": 1, "selections": {"home": {"result": "won"}}})).status_code == 202
    await wait_for_state(http, ops, market, 1, "settled")
    settled = await http.post("/v1/bets", json=bet(player, market), headers=key)
    assert settled.status_code == 409 and settled.json()["code"] == "market_settled"
    early = await http.post(f"/v1/markets/{market}/reopen", headers=ops)
    assert early.status_code == 409 and early.json()["code"] == "market_has_result"

    assert (await http.post(f"/v1/markets/{market}/rollback", headers=ops,
                            json={"version": 1})).status_code == 202
    view = await wait_for_state(http, ops, market, 1, "rolled_back")
    assert view["betting"] == "closed"
    # The outcome is public now: no new bets, although the market has no current result.
    closed = await http.post("/v1/bets", json=bet(player, market), headers=key)
    assert closed.status_code == 409 and closed.json()["code"] == "market_closed"
    assert cash(engine, player) == 2_000                      # only the first stake is in play

    reopened = await http.post(f"/v1/markets/{market}/reopen", headers=ops)
    assert reopened.status_code == 200, reopened.text
    assert reopened.json() == {"object": "market_betting", "market_id": market,
                               "betting": "open", "replayed": False}
    again = await http.post(f"/v1/markets/{market}/reopen", headers=ops)
    assert again.status_code == 200 and again.json()["replayed"] is True
    assert audit_actions(engine, market).count("market.reopened") == 1
    assert events(engine, market).count("market.reopened") == 1

    taken = await http.post("/v1/bets", json=bet(player, market), headers=key)
    assert taken.status_code == 201, taken.text
    assert cash(engine, player) == 1_000
    assert ledger_violations(engine) == []
    assert verify_differences(engine, settings, market) == []
