"""The responsible-gaming endpoints: limits, self-exclusion, time-outs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from domain.scopes import Scope
from tests.support.api import geo_client, make_key
from tests.support.compliance import insert_player

PRINCETON = {"latitude": 40.3487, "longitude": -74.6593}


def bearer(engine, role, partner_id, scopes=None) -> dict[str, str]:
    return make_key(engine, role, partner_id, scopes, "compliance test").headers


@pytest.fixture(scope="module")
def partner(engine):
    return bearer(engine, "partner", "partner-compliance")


@pytest.fixture
def make_player(engine):
    return lambda jurisdiction="US-NJ": insert_player(engine, jurisdiction)


@pytest_asyncio.fixture
async def client(settings, engine, tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    async with geo_client(settings, engine, tmp_path) as http:
        yield http


def problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    return response.json()


async def test_limits_put_and_get(client, partner, make_player):
    player = make_player()
    r = await client.put(f"/v1/players/{player}/limits", headers=partner,
                         json={"currency": "USD", "day": 10_000, "month": 100_000})
    assert r.status_code == 200, r.text
    r = await client.put(f"/v1/players/{player}/limits", headers=partner,
                         json={"currency": "USD", "day": 50_000, "month": None})
    assert r.status_code == 200, r.text

    got = await client.get(f"/v1/players/{player}/limits", headers=partner)
    assert got.status_code == 200
    body = got.json()
    assert body["object"] == "responsible_gaming_limits" and body["exclusions"] == []
    rows = {row["period"]: row for row in body["currencies"][0]["limits"]}
    # Both were loosenings: the limits in force stay, each with a change pending for 24 h.
    assert rows["day"]["amount"] == 10_000 and rows["day"]["pending_change"]["amount"] == 50_000
    assert rows["month"]["amount"] == 100_000 and rows["month"]["pending_change"]["amount"] is None
    effective = datetime.fromisoformat(rows["day"]["pending_change"]["effective_at"])
    assert timedelta(hours=23, minutes=59) < effective - datetime.now(UTC) <= timedelta(hours=24)


@pytest.mark.parametrize("body, code", [
    ({"currency": "USD", "day": 10.5}, "validation_error"),
    ({"currency": "USD", "day": "100"}, "validation_error"),
    ({"currency": "USD", "day": 0}, "validation_error"),
    ({"currency": "USD"}, "validation_error"),
    ({"currency": "XXX", "day": 100}, "currency_not_supported"),
])
async def test_limits_bad_input_is_a_422_problem(client, partner, make_player, body, code):
    problem(await client.put(f"/v1/players/{make_player()}/limits", headers=partner, json=body),
            422, code)


async def test_limits_need_the_write_scope(client, engine, make_player):
    read_only = bearer(engine, "partner", "partner-compliance", [Scope.PLAYERS_READ])
    player = make_player()
    problem(await client.put(f"/v1/players/{player}/limits", headers=read_only,
                             json={"currency": "USD", "day": 100}), 403, "insufficient_scope")
    assert (await client.get(f"/v1/players/{player}/limits", headers=read_only)).status_code == 200


async def test_self_exclusion_and_time_out(client, partner, make_player):
    player = make_player()
    problem(await client.post(f"/v1/players/{player}/self-exclusion", headers=partner,
                              json={"duration_days": 30}), 422, "self_exclusion_too_short")
    problem(await client.post(f"/v1/players/{player}/self-exclusion", headers=partner,
                              json={"duration_days": 365,
                                    "permanent": True}), 422, "validation_error")
    problem(await client.post(f"/v1/players/{player}/time-out", headers=partner,
                              json={"duration_hours": 2}), 422, "time_out_out_of_bounds")

    r = await client.post(f"/v1/players/{player}/time-out", headers=partner,
                          json={"duration_hours": 72})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "time_out" and r.json()["permanent"] is False
    r = await client.post(f"/v1/players/{player}/self-exclusion", headers=partner,
                          json={"permanent": True})
    assert r.status_code == 201, r.text
    assert (r.json()["object"], r.json()["kind"], r.json()["ends_at"]) == ("exclusion",
                                                                           "self_exclusion", None)

    kinds = {e["kind"] for e in (await client.get(f"/v1/players/{player}/limits",
                                                  headers=partner)).json()["exclusions"]}
    assert kinds == {"time_out", "self_exclusion"}
