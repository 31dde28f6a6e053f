"""The rate limiter's `redis` backend (api/rate_limits.py RedisBuckets: RESP by hand, one Lua
script per take) against a real Redis server (tests/support/redis.py: the test's own, or a
running one under a private key prefix): the same buckets as the PostgreSQL backend, shared by
every API process, refilled by the server's clock."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import httpx
import pytest

from api.app import create_app
from api.rate_limits import RedisBuckets, RedisError
from commands.api_keys import create_api_key
from domain.rate_limits import RateLimit
from tests.support import redis as test_redis
from tests.support.api import Key, assert_problem
from tests.support.factories import wait_until
from tests.support.net import free_port
from tests.support.redis import RedisForTests, redis_for_tests


@pytest.fixture(scope="module")
def redis() -> Iterator[RedisForTests]:
    with redis_for_tests() as found:
        yield found


def key_with(engine, limits: dict) -> Key:
    partner_id = f"partner-{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, "partner", partner_id, None, "redis",
                                           rate_limits=limits)
    return Key(key_id, plaintext, partner_id)


async def test_redis_buckets_give_the_burst_refuse_then_refill(redis):
    buckets = RedisBuckets(redis.url, key_prefix=redis.key_prefix)
    bucket = f"test-{uuid.uuid4().hex}"
    try:
        taken = [await buckets.take(None, bucket, RateLimit(3, 1)) for _ in range(4)]
        assert [d.allowed for d in taken] == [True, True, True, False]
        assert [d.remaining for d in taken] == [2, 1, 0, 0]
        assert taken[3].retry_after_seconds == 1

        async def refilled() -> bool:
            return (await buckets.take(None, bucket, RateLimit(3, 1))).allowed

        await wait_until(refilled, timeout=5, interval=0.05)
        concurrent = f"test-{uuid.uuid4().hex}"
        answers = await asyncio.gather(*(buckets.take(None, concurrent, RateLimit(5, 3600))
                                         for _ in range(12)))
        assert sorted(d.allowed for d in answers) == [False] * 7 + [True] * 5
        with pytest.raises(RedisError, match="unknown command"):
            await buckets.command("NOSUCHCOMMAND")
        assert await buckets.command("PING") == "PONG"   # the connection is still good
    finally:
        await buckets.close()


async def test_the_api_limits_through_redis_shared_by_two_api_processes(api_settings, engine,
                                                                        redis):
    key = key_with(engine, {"*": {"requests": 3, "window_seconds": 3600}})
    settings = api_settings.model_copy(update={"rate_limit_backend": "redis",
                                               "rate_limit_redis_url": redis.url})
    first, second = create_app(settings, engine=engine), create_app(settings, engine=engine)
    for app in (first, second):     # the test's own keys (a shared server's are cleaned up)
        app.state.rate_limits.backend.key_prefix = redis.key_prefix
    statuses, last = [], None
    for app in (first, second, first, second):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            last = await client.get("/v1/players", headers=key.headers)
            statuses.append(last.status_code)
    for app in (first, second):
        await app.state.rate_limits.close()
    assert statuses == [200, 200, 200, 429]
    assert_problem(last, 429, "rate_limited")
    assert last.headers["ratelimit-policy"] == "3;w=3600"


def test_a_redis_url_must_say_redis():
    with pytest.raises(ValueError, match="redis://"):
        RedisBuckets("http://127.0.0.1:6379")
    parsed = RedisBuckets("redis://:s%40cret@example.test:6380/2")
    assert (parsed.host, parsed.port, parsed.password, parsed.db) == (
        "example.test", 6380, "s@cret", 2)


def test_without_redis_server_on_path_the_tests_use_the_running_server_and_clean_up(
        monkeypatch, tmp_path):
    monkeypatch.delenv(test_redis.ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))        # no redis-server to start
    with redis_for_tests() as found:
        assert found.shared and found.url == test_redis.MACHINE_URL
        asyncio.run(_take_twice(found))
        assert _keys(found) == 1
    assert _keys(found) == 0          # deleted when the block ended


def test_the_url_the_machine_names_is_used_instead_and_cleaned_up(monkeypatch):
    monkeypatch.setenv(test_redis.ENV, test_redis.MACHINE_URL)
    with redis_for_tests() as found:
        assert found.shared and found.key_prefix.startswith("settlepay-test:")
        asyncio.run(_take_twice(found))
        assert _keys(found) == 1
    assert _keys(found) == 0


def test_with_no_redis_at_all_the_tests_fail_saying_what_to_do(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(test_redis, "MACHINE_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.delenv(test_redis.ENV, raising=False)
    with pytest.raises(RuntimeError, match="install redis-server") as raised, \
            redis_for_tests():
        pass
    assert test_redis.ENV in str(raised.value)
    dead = f"redis://127.0.0.1:{free_port()}/0"
    monkeypatch.setenv(test_redis.ENV, dead)
    with pytest.raises(RuntimeError, match="answers PING") as raised, redis_for_tests():
        pass
    assert dead in str(raised.value)


async def _take_twice(redis: RedisForTests) -> None:
    buckets = RedisBuckets(redis.url, key_prefix=redis.key_prefix)
    try:
        for _ in range(2):
            assert (await buckets.take(None, "a-bucket", RateLimit(5, 3600))).allowed
    finally:
        await buckets.close()


def _keys(redis: RedisForTests) -> int:
    connection = test_redis.Connection(redis.url)
    try:
        return len(connection.call("KEYS", f"{redis.key_prefix}*"))
    finally:
        connection.close()
