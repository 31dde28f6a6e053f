"""Secrets at rest: an API key is stored only as its SHA-256 (and its public prefix), whichever
way it was made -- the API, a roll, the CLI; TOTP secrets and webhook signing secrets only
sealed. Every table of the database (idempotency answers, audit records and outbox events
included) is searched for each secret the API or the CLI handed out."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, text

from api.app import create_app
from settlepay import cli
from settlepay.config import Settings, get_settings
from store.api_keys import PREFIX_LENGTH
from tests.support.api import make_key, player_body
from tests.support.net import free_port


@pytest_asyncio.fixture
async def api(fresh_engine: Engine, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app in process on a database of the test's own, so every table can be searched."""
    app = create_app(settings.model_copy(update={
        "database_url": fresh_engine.url.render_as_string(hide_password=False),
        "temporal_address": f"127.0.0.1:{free_port()}",
        "webhooks_allowed_networks": ["127.0.0.1/32"]}), engine=fresh_engine)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://api.test") as http:
        yield http


def tables_holding(engine: Engine, secret: str) -> list[str]:
    """Every table with a row whose text shows `secret`."""
    found = []
    with engine.connect() as conn:
        tables = conn.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
        for table in tables:
            if conn.execute(text(f'SELECT count(*) FROM "{table}" t'
                                 " WHERE strpos(t::text, :secret) > 0"),
                            {"secret": secret}).scalar_one():
                found.append(table)
    return found


def stored_only_hashed(engine: Engine, plaintext: str) -> None:
    with engine.connect() as conn:
        prefix, key_hash = conn.execute(text(
            "SELECT prefix, key_hash FROM api_keys WHERE prefix = :p"),
            {"p": plaintext[:PREFIX_LENGTH]}).one()
    assert bytes(key_hash) == hashlib.sha256(plaintext.encode()).digest()
    assert len(plaintext) > PREFIX_LENGTH + 32 and prefix == plaintext[:PREFIX_LENGTH]
    assert tables_holding(engine, plaintext[PREFIX_LENGTH:]) == []
    assert tables_holding(engine, plaintext) == []


def idem(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


async def test_a_key_made_through_the_api_is_stored_only_as_its_hash(
        fresh_engine: Engine, api: httpx.AsyncClient) -> None:
    operator = make_key(fresh_engine, "operator", None)
    made = await api.post("/v1/api_keys", headers={**operator.headers, **idem("k1")},
                          json={"name": "checkout", "partner_id": "partner-rest"})
    assert made.status_code == 201, made.text
    plaintext = made.json()["secret"]
    works = await api.get("/v1/players", headers={"Authorization": f"Bearer {plaintext}"})
    assert works.status_code == 200, works.text
    stored_only_hashed(fresh_engine, plaintext)
    stored_only_hashed(fresh_engine, operator.plaintext)


async def test_a_rolled_key_is_stored_only_as_its_hash(
        fresh_engine: Engine, api: httpx.AsyncClient) -> None:
    partner = make_key(fresh_engine, "partner", "partner-rest")
    rolled = await api.post(f"/v1/api_keys/{partner.id}/roll",
                            headers={**partner.headers, **idem("roll-1")}, json={})
    assert rolled.status_code == 201, rolled.text
    stored_only_hashed(fresh_engine, rolled.json()["secret"])
    stored_only_hashed(fresh_engine, partner.plaintext)


def test_a_key_made_by_the_cli_is_stored_only_as_its_hash(
        fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("SETTLEPAY_DATABASE_URL",
                       fresh_engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    try:
        assert cli.main(["api-keys", "create", "ops bootstrap"]) == 0
    finally:
        get_settings.cache_clear()
    plaintext = capsys.readouterr().out.strip()
    stored_only_hashed(fresh_engine, plaintext)


async def test_a_totp_secret_is_stored_only_sealed(
        fresh_engine: Engine, api: httpx.AsyncClient) -> None:
    partner = make_key(fresh_engine, "partner", "partner-rest")
    player = await api.post("/v1/players", headers={**partner.headers, **idem("p1")},
                            json=player_body())
    assert player.status_code == 201, player.text
    enrolled = await api.post(f"/v1/players/{player.json()['id']}/2fa/totp",
                              headers={**partner.headers, **idem("totp-1")}, json={})
    assert enrolled.status_code == 201, enrolled.text
    uri = enrolled.json()["provisioning_uri"]
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    assert len(secret) >= 16
    assert tables_holding(fresh_engine, secret) == []


async def test_a_webhook_signing_secret_is_stored_only_sealed(
        fresh_engine: Engine, api: httpx.AsyncClient) -> None:
    partner = make_key(fresh_engine, "partner", "partner-rest")
    made = await api.post("/v1/webhook_endpoints", headers={**partner.headers, **idem("ep-1")},
                          json={"url": "http://127.0.0.1:9/hook"})
    assert made.status_code == 201, made.text
    endpoint = made.json()
    rotated = await api.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
                             headers={**partner.headers, **idem("ep-rotate")}, json={})
    assert rotated.status_code in (200, 201), rotated.text
    shown = await api.get(f"/v1/webhook_endpoints/{endpoint['id']}/secret",
                          headers=partner.headers)
    secrets = {endpoint["secret"], rotated.json()["secret"], shown.json()["secret"]}
    assert len(secrets) == 2 and all(s.startswith("whsec_") for s in secrets)
    for secret in secrets:
        assert tables_holding(fresh_engine, secret.removeprefix("whsec_")) == []
