"""Authentication at the API edge: 401 without a valid key, 403 without the scope, tenant
isolation. (How keys are made and stored: tests/commands/test_api_keys.py.)"""

from __future__ import annotations

import pytest
from sqlalchemy import text

from commands.api_keys import revoke
from tests.support.api import assert_problem, make_key, player_body


async def test_no_key_is_401_with_a_challenge(client):
    response = await client.get("/v1/players/ply_x")
    assert_problem(response, 401, "api_key_missing")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await client.post("/v1/players", json=player_body()), 401, "api_key_missing")


@pytest.mark.parametrize("header",
                         [{"Authorization": "Bearer sp_not_a_real_key_0000000000000000000000"},
                                    {"Authorization": "Bearer short"},
                                    {"X-Api-Key": "sp_not_a_real_key_0000000000000000000000"},
                                    {"Authorization": "Basic dXNlcjpwYXNz"}])
async def test_unknown_key_is_401(client, header):
    response = await client.get("/v1/players/ply_x", headers=header)
    assert response.status_code == 401
    assert response.json()["code"] in {"api_key_invalid", "api_key_missing"}


async def test_right_prefix_wrong_secret_is_401(client, keys):
    tail = "AAAA" if not keys.partner_a.plaintext.endswith("AAAA") else "BBBB"
    forged = keys.partner_a.plaintext[:-4] + tail
    assert_problem(await client.get("/v1/players/ply_x",
                                    headers={"Authorization": f"Bearer {forged}"}),
                   401, "api_key_invalid")


async def test_x_api_key_header_is_accepted(client, keys):
    made = await client.post("/v1/players", json=player_body(),
                             headers={"X-Api-Key": keys.partner_a.plaintext})
    assert made.status_code == 201


async def test_missing_scope_is_403_and_writes_nothing(client, keys, engine):
    with engine.connect() as conn:
        before = conn.execute(text("SELECT count(*) FROM players")).scalar_one()
    response = await client.post("/v1/players", json=player_body(), headers=keys.read_only.headers)
    problem = assert_problem(response, 403, "insufficient_scope")
    assert "players:write" in problem["detail"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM players")).scalar_one() == before


async def test_partner_sees_only_its_own_players(client, keys):
    mine = (await client.post("/v1/players", json=player_body(),
                              headers=keys.partner_a.headers)).json()
    assert (await client.get(f"/v1/players/{mine['id']}",
                             headers=keys.partner_a.headers)).status_code == 200
    assert (await client.get(f"/v1/players/{mine['id']}",
                             headers=keys.read_only.headers)).status_code == 200
    # Another partner's player looks exactly like one that does not exist.
    theirs = await client.get(f"/v1/players/{mine['id']}", headers=keys.partner_b.headers)
    absent = await client.get("/v1/players/ply_000000000000000000000000",
                              headers=keys.partner_b.headers)
    assert_problem(theirs, 404, "player_not_found")
    assert_problem(absent, 404, "player_not_found")
    assert theirs.json()["title"] == absent.json()["title"]
    operator = await client.get(f"/v1/players/{mine['id']}", headers=keys.operator.headers)
    assert operator.status_code == 200 and operator.json()["id"] == mine["id"]


async def test_revoked_key_is_401(client, engine):
    key = make_key(engine, "partner", "partner-revoked")
    assert (await client.post("/v1/players", json=player_body(),
                              headers=key.headers)).status_code == 201
    with engine.begin() as conn:
        assert revoke(conn, key.id, actor="operator:test")
    assert_problem(await client.get("/v1/players/ply_x", headers=key.headers), 401,
                   "api_key_invalid")
    assert_problem(await client.post("/v1/players", json=player_body(),
                                     headers=key.headers | {"Idempotency-Key": "k1"}),
                   401, "api_key_invalid")
