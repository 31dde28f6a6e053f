"""POST /v1/players/{id}/geolocation: the check's decision, bad input, tenant isolation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import pytest_asyncio

from tests.support.api import geo_client, make_key
from tests.support.compliance import NJ_RESIDENTIAL_IP, VPN_IP, insert_player

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
    latest = datetime.now(UTC) + timedelta(minutes=20)
    assert before + timedelta(minutes=20) <= valid_until <= latest

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


async def test_geolocation_for_unknown_or_foreign_player_is_404(client, partner, engine,
                                                                make_player):
    problem(await client.post("/v1/players/ply_nobody/geolocation", headers=partner,
                              json={**PRINCETON,
                                    "ip_address": NJ_RESIDENTIAL_IP}), 404, "player_not_found")
    other = bearer(engine, "partner", "partner-elsewhere")
    problem(await client.post(f"/v1/players/{make_player()}/geolocation", headers=other,
                              json={**PRINCETON,
                                    "ip_address": NJ_RESIDENTIAL_IP}), 404, "player_not_found")
