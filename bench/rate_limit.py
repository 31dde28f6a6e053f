"""The rate limiter's cost per request.

    .venv/bin/python bench/rate_limit.py [--requests 3000] [--concurrency 16]

(a) the limiter's own database work on the request path, one request at a time: authenticating
    the key alone (what every request did before) beside authenticating it and taking its
    token (PostgreSQL backend: one more statement on the same connection); the Redis take;
(b) the whole API in process (ASGI, no sockets): GET /v1/players (an empty page) with the
    limiter off, on PostgreSQL and on Redis, one at a time and `--concurrency` at a time; the
    difference per request is the limiter's cost as a client sees it.
Every key gets a limit it never reaches, so all requests are served. The variants run in
interleaved rounds (`--rounds`) and each figure is the median of its rounds, so that load
drifting on a shared machine hits them alike. Runs on a temporary database it drops and on a
redis-server of its own (tests/support/redis.py), or reports that Redis is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import httpx

from api.app import create_app
from api.rate_limits import RateLimits, RedisBuckets
from commands.api_keys import create_api_key
from domain.rate_limits import RateLimit
from settlepay.config import Settings
from settlepay.db import make_engine
from store import api_keys
from tests.support.databases import sqlalchemy_url, temporary_database
from tests.support.net import free_port
from tests.support.redis import redis_server

NEVER_REACHED = {"*": {"requests": 1_000_000, "window_seconds": 1}}


def per_call_us(function, n: int) -> tuple[float, float]:
    """(mean, p99) microseconds of n sequential calls (after 100 warm-up calls)."""
    for _ in range(100):
        function()
    took = []
    for _ in range(n):
        start = time.perf_counter()
        function()
        took.append((time.perf_counter() - start) * 1e6)
    took.sort()
    return statistics.fmean(took), took[int(len(took) * 0.99) - 1]


async def async_per_call_us(function, n: int) -> tuple[float, float]:
    for _ in range(100):
        await function()
    took = []
    for _ in range(n):
        start = time.perf_counter()
        await function()
        took.append((time.perf_counter() - start) * 1e6)
    took.sort()
    return statistics.fmean(took), took[int(len(took) * 0.99) - 1]


async def api_figures(settings: Settings, engine, key: str, n: int,
                      concurrency: int) -> tuple[float, float]:
    """(mean µs per request one at a time, requests/s at `concurrency`)."""
    app = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {key}"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            async def one() -> None:
                answer = await client.get("/v1/players", headers=headers)
                assert answer.status_code == 200, answer.text

            mean, _ = await async_per_call_us(one, n)
            queue = iter(range(n))

            async def worker() -> None:
                for _ in queue:
                    await one()

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            rate = n / (time.perf_counter() - start)
    finally:
        await app.state.rate_limits.close()
    return mean, rate


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    n = args.requests

    with temporary_database("sp_bench_rate") as url:
        settings = Settings(database_url=url,
                            temporal_address=f"127.0.0.1:{free_port()}")  # no Temporal needed
        engine = make_engine(sqlalchemy_url(url), pool_size=args.concurrency + 4,
                             settings=settings)
        with engine.begin() as conn:
            _, key = create_api_key(conn, "partner", f"bench-{uuid.uuid4().hex[:8]}", None,
                                    "bench", rate_limits=NEVER_REACHED)
        limits = RateLimits(settings)
        auto = engine.execution_options(isolation_level="AUTOCOMMIT")

        def authenticate_only() -> None:
            with auto.connect() as conn:
                assert api_keys.authenticate(conn, key) is not None

        def authenticate_and_take() -> None:
            principal, decision = limits.authenticate(engine, key)
            assert principal is not None and decision is not None and decision.allowed

        print(f"(a) the limiter's database work, {n} requests one at a time, "
              f"{args.rounds} rounds")
        rounds: dict[str, list[tuple[float, float]]] = {"auth": [], "both": []}
        for _ in range(args.rounds):
            rounds["auth"].append(per_call_us(authenticate_only, n // args.rounds))
            rounds["both"].append(per_call_us(authenticate_and_take, n // args.rounds))
        auth_mean, auth_p99 = median_of(rounds["auth"])
        both_mean, both_p99 = median_of(rounds["both"])
        print(f"    authenticate the key:             mean {auth_mean:7.0f} µs, "
              f"p99 {auth_p99:7.0f} µs")
        print(f"    authenticate + take (PostgreSQL): mean {both_mean:7.0f} µs, "
              f"p99 {both_p99:7.0f} µs  -> the take costs {both_mean - auth_mean:.0f} µs")

        redis_url = None
        try:
            with redis_server() as redis_url:
                buckets = RedisBuckets(redis_url)
                bucket = f"bench-{uuid.uuid4().hex}"

                async def take() -> None:
                    assert (await buckets.take(engine, bucket, RateLimit(1_000_000, 1))).allowed

                redis_mean, redis_p99 = await async_per_call_us(take, n)
                await buckets.close()
                print(f"    take (Redis):                     mean {redis_mean:7.0f} µs, "
                      f"p99 {redis_p99:7.0f} µs")
                figures = await run_api(settings, engine, key, n, args.concurrency, redis_url,
                                        args.rounds)
        except RuntimeError as missing:
            print(f"    Redis: not measured ({missing})")
            figures = await run_api(settings, engine, key, n, args.concurrency, None,
                                    args.rounds)
        off_mean, off_rate = figures["off"]
        print(f"(b) GET /v1/players through the app, {n} requests; "
              f"concurrency {args.concurrency} for the throughput")
        for name, (mean, rate) in figures.items():
            extra = "" if name == "off" else (f"  -> +{mean - off_mean:.0f} µs per request "
                                              f"({mean / off_mean:.2f}x), throughput "
                                              f"{rate / off_rate:.2f}x")
            print(f"    limiter {name:<10} mean {mean:7.0f} µs, {rate:6.0f} req/s{extra}")
        engine.dispose()


def median_of(figures: list[tuple[float, float]]) -> tuple[float, float]:
    return (statistics.median(f[0] for f in figures), statistics.median(f[1] for f in figures))


async def run_api(settings: Settings, engine, key: str, n: int, concurrency: int,
                  redis_url: str | None, rounds: int) -> dict[str, tuple[float, float]]:
    backends = [("off", {}), ("postgres", {})]
    if redis_url:
        backends.append(("redis", {"rate_limit_redis_url": redis_url}))
    measured: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in backends}
    for _ in range(rounds):
        for name, extra in backends:
            chosen = settings.model_copy(update={"rate_limit_backend": name, **extra})
            measured[name].append(await api_figures(chosen, engine, key, n // rounds,
                                                    concurrency))
    return {name: median_of(figures) for name, figures in measured.items()}


if __name__ == "__main__":
    asyncio.run(main())
