"""Concurrent duplicates over real HTTP: one effect, every answer the replay or a 409."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text

from api.app import create_app
from tests.support.api import player_body
from tests.support.servers import serve_asgi

DUPLICATES = 60


async def test_concurrent_identical_posts_create_one_player(api_settings, engine, keys):
    body = player_body()
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    app = create_app(api_settings, engine=engine)
    with serve_asgi(app) as base_url:
        limits = httpx.Limits(max_connections=DUPLICATES, max_keepalive_connections=DUPLICATES)
        async with httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30) as http:
            start = asyncio.Event()

            async def post() -> httpx.Response:
                await start.wait()
                return await http.post("/v1/players", json=body, headers=headers)

            tasks = [asyncio.create_task(post()) for _ in range(DUPLICATES)]
            start.set()
            answers = await asyncio.gather(*tasks)
            settled = await http.post("/v1/players", json=body, headers=headers)

    with engine.connect() as conn:
        made = conn.execute(text("SELECT id FROM players WHERE external_ref = :r"),
                            {"r": body["external_ref"]}).scalars().all()
        events = conn.execute(text("SELECT count(*) FROM outbox_events WHERE aggregate_id = :id"),
                              {"id": made[0]}).scalar_one()
    assert len(made) == 1 and events == 1

    statuses = [a.status_code for a in answers]
    assert set(statuses) <= {201, 409}, statuses
    created = [a for a in answers if a.status_code == 201]
    originals = [a for a in created if "idempotent-replayed" not in a.headers]
    assert len(originals) == 1                      # the route ran once ...
    assert all(a.content == originals[0].content for a in created)   # ... and the rest replay it
    assert all(a.json()["code"] == "idempotency_key_in_use"
               for a in answers if a.status_code == 409)
    assert originals[0].json()["id"] == made[0]
    assert settled.status_code == 201 and settled.headers["idempotent-replayed"] == "true"
    assert settled.content == originals[0].content
