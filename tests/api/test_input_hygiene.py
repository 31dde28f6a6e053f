"""The NUL character (U+0000), which PostgreSQL cannot store, is refused with a 422 on every
route, wherever it hides: a path parameter, a query parameter, a JSON string or object key at
any depth. The request never reaches its route: nothing is written, no Idempotency-Key is
claimed, so the client may fix the request and retry with the same key."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import text

from api.idempotency import IdempotencyKey
from api.nul_bytes import nul_location
from store import deposits
from tests.support.api import assert_problem, player_body


def nul_refused(response, loc: list[str]) -> None:
    body = assert_problem(response, 422, "validation_error")
    assert "NUL" in body["detail"]
    assert body["errors"] == [{"loc": loc, "message": "the NUL character (U+0000) is not allowed",
                               "type": "nul_character"}]


def idempotency_records(engine, key: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM idempotency_records "
                                 "WHERE idempotency_key = :k"), {"k": key}).scalar_one()


async def test_player_created_with_a_nul_in_its_name_is_422_and_nothing_is_written(
        client, keys, engine):
    key = str(uuid.uuid4())
    headers = keys.partner_a.headers | {"Idempotency-Key": key}
    body = player_body(first_name="Ada\u0000")
    refused = await client.post("/v1/players", json=body, headers=headers)
    nul_refused(refused, ["body", "first_name"])
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM players WHERE external_ref = :r"),
                            {"r": body["external_ref"]}).scalar_one() == 0
    assert idempotency_records(engine, key) == 0
    # Fixed, the same request with the same key runs (the refusal was not kept for replay).
    fixed = await client.post("/v1/players", json=body | {"first_name": "Ada"}, headers=headers)
    assert fixed.status_code == 201 and "idempotent-replayed" not in fixed.headers


async def test_nul_in_a_path_parameter_is_422_on_every_route_tried(client, keys):
    headers = keys.operator.headers
    for method, path in (("GET", "/v1/players/%00x"), ("GET", "/v1/deposits/dep_%00"),
                         ("GET", "/v1/withdrawals/wd%00"), ("GET", "/v1/bets/b%00"),
                         ("GET", "/v1/players/p%00/limits"),
                         ("GET", "/v1/markets/m%00/settlement"),
                         ("POST", "/v1/withdrawals/wd%00/cancel"),
                         ("POST", "/v1/players/p%00/self-exclusion")):
        response = await client.request(method, path, headers=headers,
                                        json={} if method == "POST" else None)
        nul_refused(response, ["path"])


async def test_nul_in_a_query_parameter_is_422(client, keys):
    nul_refused(await client.get("/v1/players/ply_x?expand=%00", headers=keys.partner_a.headers),
                ["query", "expand"])
    nul_refused(await client.get("/v1/players/ply_x", params={"q": "a\u0000b"},
                                 headers=keys.partner_a.headers), ["query", "q"])


async def test_deposit_with_a_nul_in_its_currency_or_player_is_422_and_starts_nothing(
        client, keys, engine):
    for field, value in (("currency", "US\u0000"), ("player_id", "ply_\u0000")):
        key = str(uuid.uuid4())
        body = {"player_id": "ply_x", "amount": 500, "currency": "USD",
                "payment_method": "pm_card_visa"} | {field: value}
        response = await client.post("/v1/deposits", json=body,
                                     headers=keys.partner_a.headers | {"Idempotency-Key": key})
        nul_refused(response, ["body", field])
        assert idempotency_records(engine, key) == 0
        deposit_id = deposits.deposit_id_for(IdempotencyKey(keys.partner_a.id, key).operation_id)
        with engine.connect() as conn:
            assert deposits.get(conn, deposit_id) is None


async def test_nul_in_a_nested_object_key_is_422(client, keys):
    body = {"version": 1,
            "selections": {"sel-1": {"result": "won"}, "sel\u0000": {"result": "lost"}}}
    response = await client.post("/v1/markets/m-nul/results", json=body,
                                 headers=keys.operator.headers)
    nul_refused(response, ["body", "selections", "sel\\u0000"])
    body = {"player_id": "ply_x", "amount": 1, "currency": "USD", "payment_method": "pm_card_visa",
            "metadata": [{"note": ["fine", "not\u0000fine"]}]}
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    response = await client.post("/v1/deposits", json=body, headers=headers)
    nul_refused(response, ["body", "metadata", "0", "note", "1"])


async def test_an_escaped_backslash_before_u0000_is_text_not_a_nul(client, keys):
    # JSON `"\\u0000"` is the six characters \u0000, which PostgreSQL stores happily.
    name = "Ada\\u0000"
    created = await client.post("/v1/players", json=player_body(first_name=name),
                                headers=keys.partner_a.headers)
    assert created.status_code == 201, created.text
    assert created.json()["first_name"] == name
    assert nul_location("/v1/players", b"q=%2500", json.dumps({"a": name}).encode()) is None
    # A NUL hidden in a UTF-16 JSON body is still found.
    assert nul_location("/v1/x", b"", json.dumps({"a": "\u0000"}).encode("utf-16")) == ["body", "a"]
