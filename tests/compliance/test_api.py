"""The HTTP endpoints of the gates: geolocation checks, limits, self-exclusion, time-outs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from api.app import create_app
from api.scopes import Scope
from store.api_keys import create_api_key
from tests.compliance.conftest import NJ_RESIDENTIAL_IP, VPN_IP
from tests.support.net import free_port

PRINCETON = {"latitude": 40.3487, "longitude": -74.6593}


def bearer(engine, role, partner_id, scopes=None) -> dict[str, str]:
    with engine.begin() as conn:
        _, plaintext = create_api_key(conn, role, partner_id, scopes, "compliance test")
    return {"Authorization": f"Bearer {plaintext}"}


@pytest.fixture(scope="module")
def partner(engine):
    return bearer(engine, "partner", "partner-compliance")


@pytest_asyncio.fixture
async def client(geo_settings, engine) -> AsyncIterator[httpx.AsyncClient]:
    settings = geo_settings.model_copy(update={"temporal_address": f"127.0.0.1:{free_port()}"})
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        yield http


def problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == code
    return response.json()


async def test_geolocation_check_returns_the_decision(client, partner, make_player):
    player = make_player()
    before = datetime.now(UTC)
    r = await client.post(f"/v1/players/{player}/geolocation", headers=partner,
                          json={**PRINCETON, "ip_address": NJ_RESIDENTIAL_IP})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["object"], body["allowed"], body["code"], body["jurisdiction"]) == \
        ("geolocation_check", True, "allowed", "US-NJ")
    valid_until = datetime.fromisoformat(body["valid_until"])
    assert before + timedelta(minutes=20) <= valid_until <= datetime.now(UTC) + timedelta(minutes=20)

    blocked = await client.post(f"/v1/players/{player}/geolocation", headers=partner,
                                json={**PRINCETON, "ip_address": VPN_IP})
    assert blocked.status_code == 201
    assert (blocked.json()["allowed"], blocked.json()["code"]) == (False, "anonymous_ip")
    assert "is_anonymous_vpn" in blocked.json()["reason"]


@pytest.mark.parametrize("body", [
    {**PRINCETON, "latitude": 91, "ip_address": NJ_RESIDENTIAL_IP},
    {**PRINCETON, "longitude": "east", "ip_address": NJ_RESIDENTIAL_IP},
    {**PRINCETON, "ip_address": "999.1.1.1"},
    {"latitude": 40.3, "ip_address": NJ_RESIDENTIAL_IP},
])
async def test_geolocation_bad_input_is_a_422_problem(client, partner, make_player, engine, body):
    player = make_player()
    problem(await client.post(f"/v1/players/{player}/geolocation", headers=partner, json=body),
            422, "validation_error")


async def test_geolocation_for_unknown_or_foreign_player_is_404(client, partner, engine, make_player):
    problem(await client.post("/v1/players/ply_nobody/geolocation", headers=partner,
                              json={**PRINCETON, "ip_address": NJ_RESIDENTIAL_IP}), 404, "player_not_found")
    other = bearer(engine, "partner", "partner-elsewhere")
    problem(await client.post(f"/v1/players/{make_player()}/geolocation", headers=other,
                              json={**PRINCETON, "ip_address": NJ_RESIDENTIAL_IP}), 404, "player_not_found")


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
    problem(await client.put(f"/v1/players/{make_player()}/limits", headers=partner, json=body), 422, code)


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
                              json={"duration_days": 365, "permanent": True}), 422, "validation_error")
    problem(await client.post(f"/v1/players/{player}/time-out", headers=partner,
                              json={"duration_hours": 2}), 422, "time_out_out_of_bounds")

    r = await client.post(f"/v1/players/{player}/time-out", headers=partner, json={"duration_hours": 72})
    assert r.status_code == 201, r.text
    assert r.json()["kind"] == "time_out" and r.json()["permanent"] is False
    r = await client.post(f"/v1/players/{player}/self-exclusion", headers=partner, json={"permanent": True})
    assert r.status_code == 201, r.text
    assert (r.json()["object"], r.json()["kind"], r.json()["ends_at"]) == ("exclusion", "self_exclusion", None)

    kinds = {e["kind"] for e in (await client.get(f"/v1/players/{player}/limits", headers=partner)).json()["exclusions"]}
    assert kinds == {"time_out", "self_exclusion"}
