"""/v1/api_keys (api/routes/api_keys.py): operators make partner keys, partners make keys with a
subset of their scopes, secrets shown once, lists tenant-scoped, revoke and roll audited."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import Engine, text

from domain.scopes import PARTNER_DEFAULT, Scope
from tests.support.api import Key, assert_problem, make_key


def partner(engine: Engine, scopes=None) -> Key:
    return make_key(engine, "partner", f"partner-{uuid.uuid4().hex[:10]}", scopes, name="keys")


def audit_of(engine: Engine, key_id: str) -> list[dict]:
    with engine.connect() as conn:
        return [json.loads(record) for record in conn.execute(text(
            "SELECT record FROM audit_log WHERE record::jsonb->>'subject_id' = :id ORDER BY seq"),
            {"id": key_id}).scalars()]


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_an_operator_makes_a_partner_key_whose_secret_is_shown_once(client, engine, keys):
    partner_id = f"partner-{uuid.uuid4().hex[:10]}"
    body = {"name": "checkout", "partner_id": partner_id, "scopes": ["players:read"],
            "rate_limits": {"*": {"requests": 7, "window_seconds": 2}}}
    made = await client.post("/v1/api_keys", json=body,
                             headers=keys.operator.headers | {"Idempotency-Key": "mk-1"})
    assert made.status_code == 201, made.text
    key = made.json()
    assert key["object"] == "api_key" and key["role"] == "partner"
    assert key["partner_id"] == partner_id and key["scopes"] == ["players:read"]
    assert key["status"] == "active" and key["secret"].startswith(key["prefix"])
    assert key["rate_limits"] == {"*": {"requests": 7, "window_seconds": 2}}
    assert key["created_by"] == f"api_key:{keys.operator.id}" and key["rolled_from"] is None
    assert made.headers["cache-control"] == "no-store"
    assert made.headers["location"] == f"/v1/api_keys/{key['id']}"

    # The key works, within its scopes.
    listed = await client.get("/v1/players", headers=bearer(key["secret"]))
    assert listed.status_code == 200 and listed.json()["data"] == []
    assert_problem(await client.post("/v1/players", json={}, headers=bearer(key["secret"])),
                   403, "insufficient_scope")
    # Never again: not in a read, not stored for a replay, not in the audit trail.
    shown = (await client.get(f"/v1/api_keys/{key['id']}", headers=keys.operator.headers)).json()
    assert "secret" not in shown and shown == {k: v for k, v in key.items() if k != "secret"} | {
        "last_used_at": shown["last_used_at"]}
    with engine.connect() as conn:
        kept = conn.execute(text("SELECT count(*) FROM idempotency_records "
                                 "WHERE idempotency_key = 'mk-1' AND api_key_id = :id"),
                            {"id": keys.operator.id}).scalar_one()
    assert kept == 0
    [created] = audit_of(engine, key["id"])
    assert created["action"] == "api_key.created"
    assert created["actor"] == f"api_key:{keys.operator.id}"
    assert key["secret"] not in json.dumps(created)


async def test_an_operator_makes_operator_keys_and_partner_keys_never_get_operator_scopes(
        client, keys):
    made = await client.post("/v1/api_keys", json={"name": "back office", "role": "operator",
                                                   "scopes": ["operator:review"]},
                             headers=keys.operator.headers)
    assert made.status_code == 201 and made.json()["role"] == "operator"
    assert made.json()["partner_id"] is None
    refused = await client.post("/v1/api_keys", json={"name": "x", "partner_id": "p-x",
                                                      "scopes": ["operator:review"]},
                                headers=keys.operator.headers)
    assert_problem(refused, 422, "api_key_invalid")
    no_partner = await client.post("/v1/api_keys", json={"name": "x", "role": "partner"},
                                   headers=keys.operator.headers)
    assert_problem(no_partner, 422, "api_key_invalid")
    unknown = await client.post("/v1/api_keys", json={"name": "x", "scopes": ["root"]},
                                headers=keys.operator.headers)
    assert_problem(unknown, 422, "validation_error")
    bad_limit = await client.post("/v1/api_keys", json={
        "name": "x", "partner_id": "p-x", "rate_limits": {"root": {"requests": 1,
                                                                   "window_seconds": 1}}},
        headers=keys.operator.headers)
    assert_problem(bad_limit, 422, "api_key_invalid")


async def test_a_partner_makes_keys_with_a_subset_of_its_own_scopes(client, engine):
    mine = partner(engine, [Scope.PLAYERS_READ, Scope.API_KEYS_READ, Scope.API_KEYS_WRITE])
    made = await client.post("/v1/api_keys", json={"name": "reader", "scopes": ["players:read"]},
                             headers=mine.headers)
    assert made.status_code == 201, made.text
    assert made.json()["partner_id"] == mine.partner_id and made.json()["role"] == "partner"
    default = await client.post("/v1/api_keys", json={"name": "same as me"}, headers=mine.headers)
    assert sorted(default.json()["scopes"]) == ["api_keys:read", "api_keys:write",
                                                "players:read"]

    more = await client.post("/v1/api_keys", json={"name": "x", "scopes": ["deposits:write"]},
                             headers=mine.headers)
    assert_problem(more, 403, "scope_not_held")
    other = await client.post("/v1/api_keys", json={"name": "x", "partner_id": "someone-else"},
                              headers=mine.headers)
    assert_problem(other, 403, "partner_mismatch")
    own = await client.post("/v1/api_keys", json={"name": "x", "partner_id": mine.partner_id},
                            headers=mine.headers)
    assert own.status_code == 201
    for body in ({"name": "x", "role": "operator"},
                 {"name": "x", "rate_limits": {"*": {"requests": 9, "window_seconds": 1}}}):
        assert_problem(await client.post("/v1/api_keys", json=body, headers=mine.headers), 403,
                       "operator_only")
    reader = partner(engine, [Scope.PLAYERS_READ])
    assert_problem(await client.post("/v1/api_keys", json={"name": "x"},
                                     headers=reader.headers), 403, "insufficient_scope")
    assert_problem(await client.get("/v1/api_keys", headers=reader.headers), 403,
                   "insufficient_scope")


async def test_key_lists_are_tenant_scoped_newest_first(client, engine, keys):
    a, b = partner(engine), partner(engine)
    made = []
    for n in range(3):
        answer = await client.post("/v1/api_keys", json={"name": f"a{n}"}, headers=a.headers)
        made.append(answer.json()["id"])
    theirs = (await client.post("/v1/api_keys", json={"name": "b"},
                                headers=b.headers)).json()["id"]

    page = (await client.get("/v1/api_keys", params={"limit": 2}, headers=a.headers)).json()
    assert [k["id"] for k in page["data"]] == made[::-1][:2] and page["has_more"]
    rest = (await client.get("/v1/api_keys", params={"starting_after": page["data"][-1]["id"]},
                             headers=a.headers)).json()
    assert [k["id"] for k in rest["data"]] == [made[0], a.id] and not rest["has_more"]
    assert all("secret" not in k for k in page["data"] + rest["data"])
    assert_problem(await client.get(f"/v1/api_keys/{theirs}", headers=a.headers), 404,
                   "api_key_not_found")
    assert_problem(await client.get(f"/v1/api_keys/{keys.operator.id}", headers=a.headers), 404,
                   "api_key_not_found")
    assert_problem(await client.get("/v1/api_keys", params={"starting_after": theirs},
                                    headers=a.headers), 400, "invalid_cursor")
    operator = (await client.get("/v1/api_keys", params={"partner": b.partner_id},
                                 headers=keys.operator.headers)).json()
    assert [k["id"] for k in operator["data"]] == [theirs, b.id]
    operators_only = (await client.get("/v1/api_keys", params={"role": "operator", "limit": 100},
                                       headers=keys.operator.headers)).json()
    assert {k["role"] for k in operators_only["data"]} == {"operator"}


async def test_revoking_stops_a_key_at_once_and_is_audited_once(client, engine):
    owner = partner(engine)
    made = (await client.post("/v1/api_keys", json={"name": "temp",
                                                    "scopes": ["players:read"]},
                              headers=owner.headers)).json()
    assert (await client.get("/v1/players", headers=bearer(made["secret"]))).status_code == 200
    revoked = await client.delete(f"/v1/api_keys/{made['id']}", headers=owner.headers)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert revoked.json()["revoked_at"] is not None
    assert_problem(await client.get("/v1/players", headers=bearer(made["secret"])), 401,
                   "api_key_invalid")
    again = await client.delete(f"/v1/api_keys/{made['id']}", headers=owner.headers)
    assert again.status_code == 200 and again.json() == revoked.json()
    assert [r["action"] for r in audit_of(engine, made["id"])] == ["api_key.created",
                                                                   "api_key.revoked"]
    # A narrower key of the same partner cannot revoke a broader one.
    narrow = partner(engine, [Scope.API_KEYS_WRITE])
    same_partner = make_key(engine, "partner", narrow.partner_id, None, name="broad")
    assert_problem(await client.delete(f"/v1/api_keys/{same_partner.id}",
                                       headers=narrow.headers), 403, "scope_not_held")
    other = partner(engine)
    assert_problem(await client.delete(f"/v1/api_keys/{other.id}", headers=owner.headers), 404,
                   "api_key_not_found")


async def test_rolling_makes_a_new_key_and_gives_the_old_one_an_expiry(client, engine, keys):
    owner = partner(engine)
    old = (await client.post("/v1/api_keys", json={"name": "rolling",
                                                   "scopes": ["players:read"]},
                             headers=owner.headers)).json()
    rolled = await client.post(f"/v1/api_keys/{old['id']}/roll",
                               json={"expires_in_seconds": 3600}, headers=owner.headers)
    assert rolled.status_code == 201, rolled.text
    new = rolled.json()
    assert new["rolled_from"] == old["id"] and new["secret"] != old["secret"]
    assert (new["name"], new["scopes"], new["partner_id"]) == (old["name"], old["scopes"],
                                                               old["partner_id"])
    for secret in (old["secret"], new["secret"]):   # both work during the overlap
        assert (await client.get("/v1/players", headers=bearer(secret))).status_code == 200
    shown = (await client.get(f"/v1/api_keys/{old['id']}", headers=owner.headers)).json()
    assert shown["status"] == "active" and shown["expires_at"] is not None
    rolled_record = audit_of(engine, old["id"])[-1]
    assert rolled_record["action"] == "api_key.rolled"
    assert rolled_record["after"]["replaced_by"] == new["id"]

    # Rolling the new one with no overlap: the new one stops at once, its successor works.
    now = await client.post(f"/v1/api_keys/{new['id']}/roll", json={"expires_in_seconds": 0},
                            headers=keys.operator.headers)
    assert now.status_code == 201
    assert_problem(await client.get("/v1/players", headers=bearer(new["secret"])), 401,
                   "api_key_invalid")
    # An expired key is refused on the Idempotency-Key path as well.
    replay_path = await client.post("/v1/players", json={},
                                    headers=bearer(new["secret"]) | {"Idempotency-Key": "x1"})
    assert_problem(replay_path, 401, "api_key_invalid")
    expired = (await client.get(f"/v1/api_keys/{new['id']}", headers=owner.headers)).json()
    assert expired["status"] == "expired"
    assert_problem(await client.post(f"/v1/api_keys/{new['id']}/roll", headers=owner.headers),
                   409, "api_key_not_live")
    too_long = await client.post(f"/v1/api_keys/{old['id']}/roll",
                                 json={"expires_in_seconds": 8 * 86_400}, headers=owner.headers)
    assert_problem(too_long, 422, "validation_error")


def test_partner_default_scopes_include_managing_their_own_keys():
    assert {Scope.API_KEYS_READ, Scope.API_KEYS_WRITE} <= PARTNER_DEFAULT
