"""Rate limits (api/rate_limits.py, store/rate_limits.py) on the real database: a token bucket
per key and per key and scope, 429 problem+json with Retry-After and RateLimit-* headers, one
bucket shared by every API process, last use recorded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from sqlalchemy import Engine, text

from api.app import create_app
from commands.api_keys import create_api_key
from settlepay.config import Settings
from tests.support.api import Key, assert_problem, player_body
from tests.support.factories import wait_until


def key_with(engine: Engine, limits: dict | None = None, scopes=None) -> Key:
    partner_id = f"partner-{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, "partner", partner_id, scopes, "limited",
                                           rate_limits=limits)
    return Key(key_id, plaintext, partner_id)


def per(requests: int, window_seconds: int) -> dict:
    return {"requests": requests, "window_seconds": window_seconds}


@asynccontextmanager
async def api(settings: Settings, engine: Engine, **changes) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update=changes), engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        yield client


async def test_a_key_gets_its_burst_then_429_with_retry_after_and_ratelimit_headers(
        api_settings, engine):
    key = key_with(engine, {"*": per(3, 60)})
    other = key_with(engine, {"*": per(3, 60)})
    async with api(api_settings, engine) as client:
        answers = [await client.get("/v1/players", headers=key.headers) for _ in range(4)]
        assert [a.status_code for a in answers[:3]] == [200] * 3
        assert [a.headers["ratelimit-remaining"] for a in answers[:3]] == ["2", "1", "0"]
        assert answers[0].headers["ratelimit-limit"] == "3"
        assert answers[0].headers["ratelimit-policy"] == "3;w=60"
        assert 0 < int(answers[0].headers["ratelimit-reset"]) <= 20
        body = assert_problem(answers[3], 429, "rate_limited")
        assert "3 requests per 60 s" in body["detail"]
        assert 1 <= int(answers[3].headers["retry-after"]) <= 20
        assert answers[3].headers["ratelimit-remaining"] == "0"
        # Another key has a bucket of its own.
        assert (await client.get("/v1/players", headers=other.headers)).status_code == 200


async def test_an_empty_bucket_refills_with_time(api_settings, engine):
    key = key_with(engine, {"*": per(2, 1)})
    async with api(api_settings, engine) as client:
        while (await client.get("/v1/players", headers=key.headers)).status_code == 200:
            pass

        async def served() -> bool:
            return (await client.get("/v1/players", headers=key.headers)).status_code == 200

        await wait_until(served, timeout=5, interval=0.05)


async def test_the_bucket_is_shared_by_every_api_process(api_settings, engine, settings):
    key = key_with(engine, {"*": per(4, 3600)})
    from settlepay.db import make_engine
    from tests.support.databases import sqlalchemy_url

    other_engine = make_engine(sqlalchemy_url(settings.database_url), pool_size=2,
                               settings=settings)
    try:
        async with api(api_settings, engine) as first, api(api_settings, other_engine) as second:
            statuses = []
            for client in (first, second, first, second, first, second):
                statuses.append((await client.get("/v1/players",
                                                  headers=key.headers)).status_code)
    finally:
        other_engine.dispose()
    assert statuses == [200, 200, 200, 200, 429, 429]


async def test_concurrent_requests_never_take_more_than_the_bucket_holds(api_settings, engine):
    key = key_with(engine, {"*": per(10, 3600)})
    async with api(api_settings, engine) as client:
        answers = await asyncio.gather(*(client.get("/v1/players", headers=key.headers)
                                         for _ in range(25)))
    assert sorted(a.status_code for a in answers) == [200] * 10 + [429] * 15


async def test_a_scope_limit_adds_a_bucket_for_the_requests_needing_that_scope(api_settings,
                                                                               engine):
    key = key_with(engine)
    tight = key_with(engine, {"players:read": per(1, 3600)})
    async with api(api_settings, engine,
                   rate_limit_scopes={"players:write": per(2, 3600)}) as client:
        created = [await client.post("/v1/players", json=player_body(), headers=key.headers)
                   for _ in range(3)]
        assert [c.status_code for c in created] == [201, 201, 429]
        body = assert_problem(created[2], 429, "rate_limited")
        assert "'players:write'" in body["detail"]
        assert created[2].headers["ratelimit-policy"] == "2;w=3600"
        # The key's other requests are not held back by the scope's bucket.
        assert (await client.get("/v1/players", headers=key.headers)).status_code == 200
        # A key's own limit for a scope.
        reads = [await client.get("/v1/players", headers=tight.headers) for _ in range(2)]
        assert [r.status_code for r in reads] == [200, 429]


async def test_a_refused_request_claims_no_idempotency_key_and_runs_nothing(api_settings,
                                                                            engine):
    key = key_with(engine, {"*": per(1, 3600)})
    headers = key.headers | {"Idempotency-Key": f"rl-{uuid.uuid4().hex}"}
    body = player_body()
    async with api(api_settings, engine) as client:
        assert (await client.get("/v1/players", headers=key.headers)).status_code == 200
        refused = await client.post("/v1/players", json=body, headers=headers)
    assert_problem(refused, 429, "rate_limited")
    with engine.connect() as conn:
        claims = conn.execute(text("SELECT count(*) FROM idempotency_records "
                                   "WHERE api_key_id = :id"), {"id": key.id}).scalar_one()
        made = conn.execute(text("SELECT count(*) FROM players WHERE external_ref = :ref"),
                            {"ref": body["external_ref"]}).scalar_one()
    assert (claims, made) == (0, 0)


async def test_requests_without_a_valid_key_take_no_token_and_get_no_headers(api_settings,
                                                                             engine):
    key = key_with(engine, {"*": per(1, 3600)})
    async with api(api_settings, engine) as client:
        wrong = key.plaintext[:-4] + "xxxx"
        for _ in range(3):
            answer = await client.get("/v1/players",
                                      headers={"Authorization": f"Bearer {wrong}"})
            assert_problem(answer, 401, "api_key_invalid")
            assert "ratelimit-limit" not in answer.headers
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/v1/players", headers=key.headers)).status_code == 200


async def test_the_off_backend_limits_nothing(api_settings, engine):
    key = key_with(engine, {"*": per(1, 3600)})
    async with api(api_settings, engine, rate_limit_backend="off") as client:
        answers = [await client.get("/v1/players", headers=key.headers) for _ in range(3)]
    assert [a.status_code for a in answers] == [200] * 3
    assert "ratelimit-limit" not in answers[0].headers


async def test_the_last_use_of_a_key_is_recorded(api_settings, engine):
    key = key_with(engine)
    with engine.connect() as conn:
        before = conn.execute(text("SELECT last_used_at FROM api_keys WHERE id = :id"),
                              {"id": key.id}).scalar_one()
    async with api(api_settings, engine) as client:
        await client.get("/v1/players", headers=key.headers)
        shown = (await client.get(f"/v1/api_keys/{key.id}", headers=key.headers)).json()
    assert before is None and shown["last_used_at"] is not None


# --- a key the process knows: one statement, and every change to its row seen at once ---------

async def _known(client: httpx.AsyncClient, key: Key) -> None:
    """Two requests: the first records the key's use, the second makes it known."""
    for _ in range(2):
        assert (await client.get("/v1/players", headers=key.headers)).status_code == 200


async def test_a_revoked_key_is_refused_at_its_next_request(api_settings, engine):
    from commands.api_keys import revoke

    key = key_with(engine, {"*": per(100, 1)})
    async with api(api_settings, engine) as client:
        await _known(client, key)
        with engine.begin() as conn:
            assert revoke(conn, key.id, actor="test")
        answer = await client.get("/v1/players", headers=key.headers)
        assert_problem(answer, 401, "api_key_invalid")
        assert "ratelimit-limit" not in answer.headers   # no token taken for it
        with engine.connect() as conn:
            tokens = conn.execute(text("SELECT tokens FROM rate_limit_buckets WHERE bucket = :b"),
                                  {"b": key.id}).scalar_one()
        assert tokens == 98.0 or tokens > 98.0   # the two requests' tokens only (and refill)


async def test_an_expired_key_is_refused_at_its_next_request(api_settings, engine):
    from store import api_keys

    key = key_with(engine, {"*": per(100, 1)})
    async with api(api_settings, engine) as client:
        await _known(client, key)
        with engine.begin() as conn:
            assert api_keys.expire(conn, key.id, 0) is not None
        assert_problem(await client.get("/v1/players", headers=key.headers), 401,
                       "api_key_invalid")


async def test_a_changed_scope_or_limit_counts_from_the_next_request(api_settings, engine):
    key = key_with(engine, {"*": per(100, 1)})
    async with api(api_settings, engine) as client:
        await _known(client, key)
        with engine.begin() as conn:   # an operator takes a scope away
            conn.execute(text("""UPDATE api_keys SET scopes = array_remove(scopes, 'players:read')
                                 WHERE id = :id"""), {"id": key.id})
        refused = await client.get("/v1/players", headers=key.headers)
        assert_problem(refused, 403, "insufficient_scope")
        assert refused.headers["ratelimit-limit"] == "100"
        with engine.begin() as conn:   # and gives the key a limit of its own
            conn.execute(text("""UPDATE api_keys SET rate_limits = CAST(:l AS jsonb)
                                 WHERE id = :id"""),
                         {"l": '{"*": {"requests": 1, "window_seconds": 60}}', "id": key.id})
        first = await client.get("/v1/players", headers=key.headers)
        assert_problem(first, 403, "insufficient_scope")
        assert first.headers["ratelimit-limit"] == "1"
        assert first.headers["ratelimit-policy"] == "1;w=60"
        assert_problem(await client.get("/v1/players", headers=key.headers), 429, "rate_limited")


async def test_a_known_key_is_one_statement_and_its_use_is_still_recorded(api_settings, engine):
    from api.rate_limits import RateLimits
    from settlepay.db import make_engine
    from tests.api.test_idempotency import _counting

    counted = make_engine(api_settings.sqlalchemy_url, pool_size=2, settings=api_settings)
    sent = _counting(counted)
    key = key_with(engine, {"*": per(100, 3600)})
    app = create_app(api_settings, engine=counted)
    limits: RateLimits = app.state.rate_limits
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            await _known(client, key)
            sent.clear()
            answer = await client.get("/v1/players/pl_missing", headers=key.headers)
            assert_problem(answer, 404, "player_not_found")
            assert answer.headers["ratelimit-remaining"] == "97"
            assert len(sent) == 2, sent   # the take (with the key's check), the route's read
            assert "FROM api_keys" in sent[0] and "rate_limit_buckets" in sent[0]
            assert "api_keys" not in sent[1]
            # Its last use is due again (a minute later): recorded, then known again.
            limits._touched[key.id] = float("-inf")
            with engine.begin() as conn:
                conn.execute(text("UPDATE api_keys SET last_used_at = NULL WHERE id = :id"),
                             {"id": key.id})
            sent.clear()
            assert (await client.get("/v1/players", headers=key.headers)).status_code == 200
            with engine.connect() as conn:
                assert conn.execute(text("SELECT last_used_at FROM api_keys WHERE id = :id"),
                                    {"id": key.id}).scalar_one() is not None
            # (no known-key statement tried first: its last use was due)
            assert "FROM api_keys WHERE prefix" in sent[0] and "last_used_at" in sent[1]
            sent.clear()   # the next request authenticates it again (its row changed)
            assert (await client.get("/v1/players", headers=key.headers)).status_code == 200
            assert "FROM api_keys WHERE prefix" in sent[0], sent
            await _known(client, key)
            sent.clear()
            assert (await client.get("/v1/players", headers=key.headers)).status_code == 200
            assert "FROM api_keys" in sent[0] and "rate_limit_buckets" in sent[0]
            assert not any("api_keys" in statement for statement in sent[1:])
    finally:
        counted.dispose()
