"""The partner API end to end over real HTTP (the shared stack: uvicorn API, Temporal, worker,
Stripe and notification sandboxes): an operator makes a partner's key, the partner makes a
narrower key for its support desk and rolls its own, money moves (a card deposit, a bet, a
withdrawal with its second factor), and support reads the player's statement, its CSV export
and its past balances; every list stays within the partner. The ledger's invariants hold."""

from __future__ import annotations

import csv
import io
import uuid

from tests.support.factories import card_deposit, ledger_violations, make_player
from tests.support.withdrawals import confirm, ready_player, start


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_a_partner_manages_its_keys_and_reads_a_players_statement(stack, worker, http):
    player = ready_player(stack, cash=0)

    # The operator makes the partner's production key; the partner a read-only support key.
    made = await http.post("/v1/api_keys", headers=player.operator, json={
        "name": "acme production", "partner_id": player.partner_id})
    assert made.status_code == 201, made.text
    partner = bearer(made.json()["secret"])
    support_key = await http.post("/v1/api_keys", headers=partner, json={
        "name": "support desk", "scopes": ["players:read"]})
    assert support_key.status_code == 201, support_key.text
    support = bearer(support_key.json()["secret"])
    assert "ratelimit-remaining" in support_key.headers
    assert support_key.headers["settlepay-version"]

    # Money moves: a card deposit, a bet, a withdrawal refunded to the card.
    deposit_id = card_deposit(stack, player, 5_000)
    bet = await http.post("/v1/bets", headers=partner, json={
        "id": f"bet_{uuid.uuid4().hex[:10]}", "player_id": player.id, "stake": 1_000,
        "currency": "USD", "bet_type": "single",
        "legs": [{"market_id": f"mkt_{uuid.uuid4().hex[:8]}", "selection_id": "home",
                  "odds": "2.00"}]})
    assert bet.status_code == 201, bet.text
    withdrawal = await start(http, player, 2_500)
    done = await confirm(stack, http, player, withdrawal["id"])
    assert done["state"] == "paid", done

    # Support reads the statement, newest first, with running balances.
    url = f"/v1/players/{player.id}/transactions"
    page = await http.get(url, params={"limit": 100}, headers=support)
    assert page.status_code == 200, page.text
    lines = page.json()["data"][::-1]   # oldest first
    assert [(line["kind"], line["account"], line["amount"], line["balance"], line["held"])
            for line in lines] == [
        ("deposit", "cash", 5_000, 5_000, 0),
        ("bet_stake", "cash", -1_000, 4_000, 0),
        ("bet_stake", "bets_in_play", 1_000, 1_000, None),
        ("hold", "cash", 0, 4_000, 2_500),
        ("hold_post", "cash", -2_500, 1_500, 0),
        ("hold_post", "pending_withdrawal", 2_500, 2_500, None),
        ("withdrawal", "pending_withdrawal", -2_500, 0, None),
    ]
    assert lines[0]["reference"] == deposit_id
    assert lines[1]["reference"].endswith(bet.json()["id"])
    assert {line["reference"] for line in lines[3:]} == {withdrawal["id"]}
    two = await http.get(url, params={"limit": 2, "starting_after": page.json()["data"][1]["id"]},
                         headers=support)
    assert two.json()["data"] == page.json()["data"][2:4] and two.json()["has_more"] is True

    # The CSV export of the period and the balances between the bet and the withdrawal.
    period = {"created[gte]": lines[0]["created_at"], "created[lt]": "2999-01-01T00:00:00Z"}
    export = await http.get(f"{url}.csv", params=period, headers=support)
    assert export.status_code == 200, export.text
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert [row["id"] for row in rows] == [line["id"] for line in lines]
    then = await http.get(f"/v1/players/{player.id}/balances",
                          params={"at": lines[2]["created_at"]}, headers=support)
    [usd] = then.json()["balances"]
    assert (usd["cash"], usd["bets_in_play"], usd["held"]) == (4_000, 1_000, 0)
    now = await http.get(f"/v1/players/{player.id}", headers=support)
    assert now.json()["balances"][0]["cash"] == 1_500

    # Lists stay within the partner, and the support key stays read-only.
    listed = await http.get("/v1/players", headers=support)
    assert [p["id"] for p in listed.json()["data"]] == [player.id]
    stranger = make_player(stack.engine)
    assert (await http.get(f"/v1/players/{stranger.id}/transactions",
                           headers=support)).status_code == 404
    assert (await http.post("/v1/api_keys", json={"name": "x"},
                            headers=support)).status_code == 403
    keys = await http.get("/v1/api_keys", headers=partner)
    assert {k["name"] for k in keys.json()["data"]} >= {"acme production", "support desk"}
    assert all("secret" not in k for k in keys.json()["data"])

    # The partner rolls its production key with no overlap: the old one stops at once.
    rolled = await http.post(f"/v1/api_keys/{made.json()['id']}/roll",
                             json={"expires_in_seconds": 0}, headers=partner)
    assert rolled.status_code == 201, rolled.text
    assert (await http.get("/v1/players", headers=partner)).status_code == 401
    fresh = bearer(rolled.json()["secret"])
    assert (await http.get("/v1/players", headers=fresh)).status_code == 200
    assert ledger_violations(stack.engine) == []
