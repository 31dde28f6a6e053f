"""api/body_limit.py: an oversized body is a 413 problem before anything reads it, however it
is sent; a body within the limit goes through unchanged."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from sqlalchemy import text

from api.app import create_app
from tests.support.api import assert_problem, player_body

LIMIT = 400


@pytest_asyncio.fixture
async def small(api_settings, engine) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(api_settings.model_copy(update={"api_max_body_bytes": LIMIT}),
                     engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


def claims(engine, key_id: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM idempotency_records "
                                 "WHERE api_key_id = :id"), {"id": key_id}).scalar_one()


async def test_a_body_over_the_limit_is_413_and_nothing_runs(small, keys, engine):
    body = player_body(last_name="x" * 90, first_name="y" * 90, email=None,
                       external_ref=f"big-{uuid.uuid4().hex}" + "z" * 100)
    key = keys.partner_b
    before = claims(engine, key.id)
    answer = await small.post("/v1/players", json=body,
                              headers=key.headers | {"Idempotency-Key": uuid.uuid4().hex})
    problem = assert_problem(answer, 413, "payload_too_large")
    assert str(LIMIT) in problem["detail"]
    assert claims(engine, key.id) == before
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM players WHERE external_ref = :r"),
                            {"r": body["external_ref"]}).scalar_one() == 0


async def test_a_chunked_body_is_cut_off_once_it_passes_the_limit(small, keys):
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"first_name": "'
        for _ in range(50):
            yield b"a" * 20
        yield b'"}'

    answer = await small.post("/v1/players", content=chunks(),
                              headers=keys.partner_a.headers | {"Content-Type":
                                                                "application/json"})
    assert_problem(answer, 413, "payload_too_large")


async def test_a_body_within_the_limit_goes_through(small, keys):
    body = player_body(email=None)
    answer = await small.post("/v1/players", json=body, headers=keys.partner_a.headers)
    assert answer.status_code == 201, answer.text
    assert answer.json()["external_ref"] == body["external_ref"]
    assert (await small.get("/v1/players", headers=keys.partner_a.headers)).status_code == 200
