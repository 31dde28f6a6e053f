"""API keys: stored hashed, 401 without a valid key, 403 without the scope, tenant isolation."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from api.scopes import ALL_SCOPES, PARTNER_DEFAULT, Scope
from store.api_keys import authenticate, create_api_key, ensure_api_key, revoke
from tests.api.conftest import assert_problem, make_key, player_body


async def test_no_key_is_401_with_a_challenge(client):
    response = await client.get("/v1/players/ply_x")
    assert_problem(response, 401, "api_key_missing")
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert_problem(await client.post("/v1/players", json=player_body()), 401, "api_key_missing")


@pytest.mark.parametrize("header", [{"Authorization": "Bearer sp_not_a_real_key_0000000000000000000000"},
                                    {"Authorization": "Bearer short"},
                                    {"X-Api-Key": "sp_not_a_real_key_0000000000000000000000"},
                                    {"Authorization": "Basic dXNlcjpwYXNz"}])
async def test_unknown_key_is_401(client, header):
    response = await client.get("/v1/players/ply_x", headers=header)
    assert response.status_code == 401
    assert response.json()["code"] in {"api_key_invalid", "api_key_missing"}


async def test_right_prefix_wrong_secret_is_401(client, keys):
    forged = keys.partner_a.plaintext[:-4] + ("AAAA" if not keys.partner_a.plaintext.endswith("AAAA") else "BBBB")
    assert_problem(await client.get("/v1/players/ply_x", headers={"Authorization": f"Bearer {forged}"}),
                   401, "api_key_invalid")


async def test_x_api_key_header_is_accepted(client, keys):
    made = await client.post("/v1/players", json=player_body(), headers={"X-Api-Key": keys.partner_a.plaintext})
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
    mine = (await client.post("/v1/players", json=player_body(), headers=keys.partner_a.headers)).json()
    assert (await client.get(f"/v1/players/{mine['id']}", headers=keys.partner_a.headers)).status_code == 200
    assert (await client.get(f"/v1/players/{mine['id']}", headers=keys.read_only.headers)).status_code == 200
    # Another partner's player looks exactly like one that does not exist.
    theirs = await client.get(f"/v1/players/{mine['id']}", headers=keys.partner_b.headers)
    absent = await client.get("/v1/players/ply_000000000000000000000000", headers=keys.partner_b.headers)
    assert_problem(theirs, 404, "player_not_found")
    assert_problem(absent, 404, "player_not_found")
    assert theirs.json()["title"] == absent.json()["title"]
    operator = await client.get(f"/v1/players/{mine['id']}", headers=keys.operator.headers)
    assert operator.status_code == 200 and operator.json()["id"] == mine["id"]


async def test_revoked_key_is_401(client, engine):
    key = make_key(engine, "partner", "partner-revoked")
    assert (await client.post("/v1/players", json=player_body(), headers=key.headers)).status_code == 201
    with engine.begin() as conn:
        assert revoke(conn, key.id, actor="operator:test")
    assert_problem(await client.get("/v1/players/ply_x", headers=key.headers), 401, "api_key_invalid")
    assert_problem(await client.post("/v1/players", json=player_body(), headers=key.headers | {"Idempotency-Key": "k1"}),
                   401, "api_key_invalid")


def test_keys_are_stored_hashed_and_found_by_prefix(engine):
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, "partner", "partner-hash", None, "hash test")
        row = conn.execute(text("SELECT * FROM api_keys WHERE id = :id"), {"id": key_id}).mappings().one()
        assert bytes(row["key_hash"]) == hashlib.sha256(plaintext.encode()).digest()
        assert plaintext.startswith(row["prefix"]) and len(plaintext) - len(row["prefix"]) >= 43  # 256 secret bits
        assert not any(plaintext in str(value) for value in row.values())
        assert set(row["scopes"]) == PARTNER_DEFAULT
        found = authenticate(conn, plaintext)
        assert found is not None and found.id == key_id and found.partner_id == "partner-hash"
        assert authenticate(conn, plaintext + "x") is None
        logged = conn.execute(text("SELECT record FROM audit_log WHERE record::jsonb->>'subject_id' = :id"),
                              {"id": key_id}).scalars().all()
        assert len(logged) == 1 and plaintext not in logged[0] and '"api_key.created"' in logged[0]


def test_ensure_api_key_is_idempotent_and_guards_its_prefix(engine):
    plaintext = "sp_dev_operator_testensurekey_" + "0" * 12
    with engine.begin() as conn:
        first = ensure_api_key(conn, plaintext, "operator", None, None, "dev")
        again = ensure_api_key(conn, plaintext, "operator", None, None, "dev")
        assert first == again
        assert conn.execute(text("SELECT count(*) FROM api_keys WHERE prefix = :p"),
                            {"p": plaintext[:16]}).scalar_one() == 1
        assert set(authenticate(conn, plaintext).scopes) == ALL_SCOPES
        with pytest.raises(ValueError, match="prefix"):
            ensure_api_key(conn, plaintext[:-1] + "1", "operator", None, None, "dev")


@pytest.mark.parametrize("role, partner, scopes", [("admin", None, None), ("partner", None, None),
                                                    ("operator", "p1", None),
                                                    ("partner", "p1", ["players:read", "root"])])
def test_bad_key_definitions_are_refused(engine, role, partner, scopes):
    with engine.begin() as conn, pytest.raises(ValueError):
        create_api_key(conn, role, partner, scopes, "bad")


def test_short_plaintext_is_refused(engine):
    with engine.begin() as conn, pytest.raises(ValueError):
        ensure_api_key(conn, "sp_short", "operator", None, [Scope.PLAYERS_READ], "short")
