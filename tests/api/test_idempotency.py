"""Idempotency-Key with Stripe's semantics: replay, reuse → 422, in progress → 409, required."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import timedelta
from typing import Annotated

import httpx
from fastapi import Depends
from sqlalchemy import text

from api.app import create_app
from api.idempotency import IdempotencyKey, fingerprint, required_idempotency_key
from store import idempotency as records
from tests.support.api import assert_problem, player_body

RequiredIdempotencyKey = Annotated[IdempotencyKey, Depends(required_idempotency_key)]


def players_named(engine, external_ref: str) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM players WHERE external_ref = :r"),
                            {"r": external_ref}).scalar_one()


async def test_same_key_same_body_replays_the_first_answer(client, keys, engine):
    body, headers = player_body(), keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/v1/players", json=body, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    # The same data with the keys in another order is the same request.
    reordered = json.dumps(dict(reversed(list(body.items())))).encode()
    for _ in range(2):
        again = await client.post("/v1/players", content=reordered,
                                  headers=headers | {"Content-Type": "application/json"})
        assert again.status_code == 201
        assert again.headers["idempotent-replayed"] == "true"
        assert again.content == first.content
        assert again.headers["location"] == first.headers["location"]
        assert again.headers["content-type"] == "application/json"
    assert players_named(engine, body["external_ref"]) == 1


async def test_same_key_different_request_is_422(client, keys, engine):
    body, headers = player_body(), keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    assert (await client.post("/v1/players", json=body, headers=headers)).status_code == 201
    other_body = await client.post("/v1/players", json=body | {"first_name": "Grace"},
                                   headers=headers)
    assert_problem(other_body, 422, "idempotency_key_reused")
    other_path = await client.post("/v1/players?expand=balances", json=body, headers=headers)
    assert_problem(other_path, 422, "idempotency_key_reused")
    assert players_named(engine, body["external_ref"]) == 1


async def test_keys_are_scoped_per_api_key(client, keys, engine):
    key = str(uuid.uuid4())
    a = await client.post("/v1/players", json=player_body(),
                          headers=keys.partner_a.headers | {"Idempotency-Key": key})
    b = await client.post("/v1/players", json=player_body(),
                          headers=keys.partner_b.headers | {"Idempotency-Key": key})
    assert a.status_code == b.status_code == 201
    assert "idempotent-replayed" not in b.headers
    assert a.json()["id"] != b.json()["id"] and b.json()["partner_id"] == keys.partner_b.partner_id


async def test_rejected_validation_is_not_kept(client, keys, engine):
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    bad = await client.post("/v1/players", json=player_body(first_name=""), headers=headers)
    assert_problem(bad, 422, "validation_error")
    fixed = await client.post("/v1/players", json=player_body(), headers=headers)
    assert fixed.status_code == 201 and "idempotent-replayed" not in fixed.headers
    # The same holds for validation a route does itself (an operator must name the partner).
    headers = keys.operator.headers | {"Idempotency-Key": str(uuid.uuid4())}
    assert_problem(await client.post("/v1/players", json=player_body(), headers=headers), 422,
                   "validation_error")
    named = await client.post("/v1/players",
                              json=player_body(partner_id=keys.partner_b.partner_id),
                              headers=headers)
    assert named.status_code == 201 and "idempotent-replayed" not in named.headers


async def test_forbidden_request_is_not_kept(client, keys, engine):
    key = str(uuid.uuid4())
    denied = await client.post("/v1/players", json=player_body(),
                               headers=keys.read_only.headers | {"Idempotency-Key": key})
    assert_problem(denied, 403, "insufficient_scope")
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT count(*) FROM idempotency_records WHERE idempotency_key = :k"),
            {"k": key}).scalar_one() == 0


async def test_conflicts_are_not_kept_but_final_answers_are(client, keys, engine):
    body = player_body()
    created = await client.post("/v1/players", json=body, headers=keys.partner_a.headers)
    assert created.status_code == 201
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    # A 409 (conflict) is transient by nature and not kept ...
    assert_problem(await client.post("/v1/players", json=body, headers=headers), 409,
                   "player_exists")
    with engine.connect() as conn:
        assert conn.execute(
            text("SELECT count(*) FROM idempotency_records WHERE idempotency_key = :k"),
            {"k": headers["Idempotency-Key"]}).scalar_one() == 0
    # ... an answer that will not change with time is kept, error or not.
    unknown = await client.post("/v1/players/ply_x", json={},
                                headers=headers | {"Idempotency-Key": "k-404"})
    assert unknown.status_code == 405  # (players have no POST sub-resource: method not allowed)
    replay = await client.post("/v1/players/ply_x", json={},
                               headers=headers | {"Idempotency-Key": "k-404"})
    assert replay.status_code == 405 and replay.headers["idempotent-replayed"] == "true"


def _money_app(api_settings, engine, calls: list, gate: asyncio.Event | None = None,
               fail_first=False):
    """The app plus a route that requires an Idempotency-Key, as deposits and withdrawals do."""
    app = create_app(api_settings, engine=engine)

    @app.post("/v1/test-moves", status_code=201)
    async def move(payload: dict, idem: RequiredIdempotencyKey):
        calls.append(idem.operation_id)
        if gate is not None:
            await gate.wait()
        if fail_first and len(calls) == 1:
            raise RuntimeError("transient failure")
        return {"operation_id": idem.operation_id, "calls": len(calls)}

    return app


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                             base_url="http://api.test")


async def test_required_key_missing_is_400(api_settings, engine, keys):
    calls: list = []
    async with _client(_money_app(api_settings, engine, calls)) as http:
        missing = await http.post("/v1/test-moves", json={"amount": 500},
                                  headers=keys.partner_a.headers)
        assert_problem(missing, 400, "idempotency_key_required")
        too_long = await http.post("/v1/test-moves", json={"amount": 500},
                                   headers=keys.partner_a.headers | {"Idempotency-Key": "x" * 256})
        assert_problem(too_long, 400, "idempotency_key_invalid")
        unauthenticated = await http.post("/v1/test-moves", json={"amount": 500})
        assert_problem(unauthenticated, 401, "api_key_missing")
        ok = await http.post("/v1/test-moves", json={"amount": 500},
                             headers=keys.partner_a.headers | {"Idempotency-Key": "move-1"})
        assert ok.status_code == 201
        assert ok.json()["operation_id"] == IdempotencyKey(keys.partner_a.id, "move-1").operation_id
    assert len(calls) == 1


async def test_failed_first_attempt_is_released_and_retried(api_settings, engine, keys):
    calls: list = []
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    async with _client(_money_app(api_settings, engine, calls, fail_first=True)) as http:
        assert_problem(await http.post("/v1/test-moves", json={"amount": 1}, headers=headers),
                       500, "internal_error")
        retried = await http.post("/v1/test-moves", json={"amount": 1}, headers=headers)
        assert retried.status_code == 201 and retried.json()["calls"] == 2
        replayed = await http.post("/v1/test-moves", json={"amount": 1}, headers=headers)
        assert replayed.headers["idempotent-replayed"] == "true" and replayed.json()["calls"] == 2
    assert len(calls) == 2


async def test_retry_with_a_different_body_after_a_failed_first_attempt_is_refused_as_reused(
        api_settings, engine, keys):
    calls: list = []
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    async with _client(_money_app(api_settings, engine, calls, fail_first=True)) as http:
        assert_problem(await http.post("/v1/test-moves", json={"amount": 1}, headers=headers),
                       500, "internal_error")
        # The failed attempt may have started its operation (a workflow, a deposit row) under
        # the key's operation id: another body under the same key must not become that operation.
        other = await http.post("/v1/test-moves", json={"amount": 1_000}, headers=headers)
        assert_problem(other, 422, "idempotency_key_reused")
        assert len(calls) == 1
        # The same body still runs again, once, and is then replayed.
        retried = await http.post("/v1/test-moves", json={"amount": 1}, headers=headers)
        assert retried.status_code == 201 and retried.json()["calls"] == 2
        replayed = await http.post("/v1/test-moves", json={"amount": 1}, headers=headers)
        assert replayed.headers["idempotent-replayed"] == "true" and replayed.json()["calls"] == 2
    assert len(calls) == 2


async def test_deposit_retried_with_another_amount_after_a_503_is_refused_as_reused(
        client, keys, engine):
    # Temporal is unreachable in these tests: the deposit answers 503 and its claim is released.
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    body = {"player_id": "ply_none", "amount": 500, "currency": "USD",
            "payment_method": "pm_card_visa"}
    assert_problem(await client.post("/v1/deposits", json=body, headers=headers), 503,
                   "temporal_unavailable")
    assert_problem(await client.post("/v1/deposits", json=body | {"amount": 70_000},
                                     headers=headers),
                   422, "idempotency_key_reused")
    # The same deposit may be retried: it runs again (and meets the same outage).
    assert_problem(await client.post("/v1/deposits", json=body, headers=headers), 503,
                   "temporal_unavailable")


async def test_prune_forgets_released_claims_of_failed_attempts_once_old(
        api_settings, engine, keys):
    calls: list = []
    key = str(uuid.uuid4())
    headers = keys.partner_a.headers | {"Idempotency-Key": key}
    async with _client(_money_app(api_settings, engine, calls, fail_first=True)) as http:
        failed = await http.post("/v1/test-moves", json={"amount": 1}, headers=headers)
        assert failed.status_code == 500
    with engine.begin() as conn:
        records.prune(conn, timedelta(hours=24))   # young: kept, it still binds the key
        conn.execute(text("UPDATE idempotency_records SET created_at = now() - interval '2 days' "
                          "WHERE idempotency_key = :k"), {"k": key})
        before = records.read(conn, keys.partner_a.id, key, 60.0)
        records.prune(conn, timedelta(hours=24))
        after = records.read(conn, keys.partner_a.id, key, 60.0)
    assert before is not None and not before.completed and after is None


async def test_duplicate_while_running_is_409_then_replays(api_settings, engine, keys):
    calls: list = []
    gate = asyncio.Event()
    headers = keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    async with _client(_money_app(api_settings, engine, calls, gate=gate)) as http:
        first = asyncio.create_task(http.post("/v1/test-moves", json={"amount": 7},
                                              headers=headers))
        while not calls:
            await asyncio.sleep(0.01)
        busy = await http.post("/v1/test-moves", json={"amount": 7}, headers=headers)
        assert_problem(busy, 409, "idempotency_key_in_use")
        assert busy.headers["retry-after"] == "1"
        # A different body is refused even while the first request runs.
        assert_problem(await http.post("/v1/test-moves", json={"amount": 8}, headers=headers),
                       422, "idempotency_key_reused")
        gate.set()
        assert (await first).status_code == 201
        after = await http.post("/v1/test-moves", json={"amount": 7}, headers=headers)
        assert after.status_code == 201 and after.headers["idempotent-replayed"] == "true"
    assert len(calls) == 1


async def test_stale_claim_of_a_dead_attempt_is_taken_over(api_settings, engine, keys):
    calls: list = []
    key, body = str(uuid.uuid4()), json.dumps({"amount": 9}).encode()
    request_hash = fingerprint("POST", "/v1/test-moves", b"", body)
    with engine.begin() as conn:   # an attempt that claimed the key, then its process died
        assert records.claim(conn, keys.partner_a.id, key, "POST", "/v1/test-moves",
                             request_hash, uuid.uuid4())
    headers = keys.partner_a.headers | {"Idempotency-Key": key, "Content-Type": "application/json"}
    async with _client(_money_app(api_settings, engine, calls)) as http:
        assert_problem(await http.post("/v1/test-moves", content=body, headers=headers), 409,
                       "idempotency_key_in_use")
        with engine.begin() as conn:
            conn.execute(text("UPDATE idempotency_records "
                              "SET locked_at = now() - interval '1 hour' "
                              "WHERE idempotency_key = :k"), {"k": key})
        taken = await http.post("/v1/test-moves", content=body, headers=headers)
        assert taken.status_code == 201 and "idempotent-replayed" not in taken.headers
    assert len(calls) == 1


async def test_prune_forgets_old_answers_only(client, keys, engine):
    done, running = str(uuid.uuid4()), str(uuid.uuid4())
    finished = await client.post("/v1/players", json=player_body(),
                                 headers=keys.partner_a.headers | {"Idempotency-Key": done})
    assert finished.status_code == 201
    with engine.begin() as conn:
        assert records.claim(conn, keys.partner_a.id, running, "POST", "/v1/players", b"h",
                             uuid.uuid4())
        conn.execute(text("UPDATE idempotency_records SET created_at = now() - interval '2 days' "
                          "WHERE idempotency_key IN (:a, :b)"), {"a": done, "b": running})
        records.prune(conn, timedelta(hours=24))
        left = conn.execute(text("SELECT idempotency_key FROM idempotency_records "
                                 "WHERE idempotency_key IN (:a, :b)"),
                            {"a": done, "b": running}).scalars().all()
    assert left == [running]


def _counting(engine) -> list[str]:
    """Every statement `engine` sends from now on (its psycopg cursors count them, whether
    SQLAlchemy runs them or the store runs them on the driver's connection).

    The counting cursor wraps whatever cursor class the connection has at each checkout: the
    process-wide tracing, once another test has set it up, gives a connection its own traced
    class at its first checkout (a Pool-class listener, which runs before this engine's own)."""
    from sqlalchemy import event

    sent: list[str] = []

    @event.listens_for(engine, "checkout")
    def count(dbapi_connection, _record, _proxy) -> None:
        factory = dbapi_connection.cursor_factory
        if getattr(factory, "counts_statements", False):
            return

        class Counting(factory):
            counts_statements = True

            def execute(self, query, params=None, **options):
                sent.append(" ".join(str(query).split()))
                return super().execute(query, params, **options)

        dbapi_connection.cursor_factory = Counting

    return sent


async def test_a_replay_reads_one_idempotency_record_and_nothing_else(api_settings, keys):
    from settlepay.db import make_engine

    engine = make_engine(api_settings.sqlalchemy_url, pool_size=2, settings=api_settings)
    sent = _counting(engine)
    app = create_app(api_settings, engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    body, headers = player_body(), keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            first = await http.post("/v1/players", json=body, headers=headers)
            assert first.status_code == 201
            sent.clear()
            again = await http.post("/v1/players", json=body, headers=headers)
    finally:
        engine.dispose()
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    # The rate limiter's two (the key, its token: api/rate_limits.py), then the replay's ONE
    # indexed lookup: the record by its primary key. No second read of the API key, no write.
    assert len(sent) == 3, sent
    assert "FROM api_keys" in sent[0] and "rate_limit_buckets" in sent[1]
    assert "FROM idempotency_records WHERE api_key_id =" in sent[2]
    assert "idempotency_key =" in sent[2] and "api_keys" not in sent[2]


async def test_a_replay_of_a_key_the_process_knows_is_one_statement(api_settings, keys):
    """Once the rate limiter knows the key (api/rate_limits.py), its take, the key's check and
    the record are one statement: the replay sends nothing else."""
    from settlepay.db import make_engine

    engine = make_engine(api_settings.sqlalchemy_url, pool_size=2, settings=api_settings)
    sent = _counting(engine)
    app = create_app(api_settings, engine=engine)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    body, headers = player_body(), keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            first = await http.post("/v1/players", json=body, headers=headers)
            assert first.status_code == 201
            for _ in range(2):   # (the key's last use recorded, then the key known)
                await http.post("/v1/players", json=body, headers=headers)
            sent.clear()
            again = await http.post("/v1/players", json=body, headers=headers)
            other = await http.post("/v1/players", json=player_body(), headers=headers)
    finally:
        engine.dispose()
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert "ratelimit-remaining" in again.headers
    assert len(sent) == 2, sent   # this replay's, then the next request's
    assert "FROM api_keys" in sent[0] and "rate_limit_buckets" in sent[0]
    assert "idempotency_records" in sent[0]
    # The same key for another body: still refused, from the record read with the take.
    assert_problem(other, 422, "idempotency_key_reused")


async def test_a_replay_with_no_key_authenticated_before_is_one_statement(api_settings, keys):
    from settlepay.db import make_engine

    settings = api_settings.model_copy(update={"rate_limit_backend": "off"})
    engine = make_engine(settings.sqlalchemy_url, pool_size=2, settings=settings)
    sent = _counting(engine)
    app = create_app(settings, engine=engine)
    app.state.rate_limits = None   # no limiter in front: the middleware authenticates itself
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    body, headers = player_body(), keys.partner_a.headers | {"Idempotency-Key": str(uuid.uuid4())}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
            first = await http.post("/v1/players", json=body, headers=headers)
            assert first.status_code == 201
            sent.clear()
            again = await http.post("/v1/players", json=body, headers=headers)
    finally:
        engine.dispose()
    assert again.headers["idempotent-replayed"] == "true" and again.content == first.content
    assert len(sent) == 1 and "FROM api_keys" in sent[0] and "idempotency_records" in sent[0]


async def test_a_failed_claim_is_released_and_a_failed_read_releases_nothing(
        api_settings, engine, keys, monkeypatch):
    """The record's read and the claim run in one hop to a thread (_find_or_claim): a read that
    fails claimed nothing and releases nothing; a claim that fails once its row is written is
    released, so the same request runs on its retry."""
    import api.idempotency as middleware

    released: list[str] = []
    real_release, real_find, real_claim = middleware._release, records.find, middleware._claim

    def release(db, api_key_id, key, token):
        released.append(key)
        real_release(db, api_key_id, key, token)

    def failing_find(*args):
        raise RuntimeError("the read failed")

    def failing_claim(*args):
        real_claim(*args)
        raise RuntimeError("the claim's answer was lost")

    monkeypatch.setattr(middleware, "_release", release)
    calls: list = []
    read_key, claim_key = str(uuid.uuid4()), str(uuid.uuid4())
    async with _client(_money_app(api_settings, engine, calls)) as http:
        monkeypatch.setattr(records, "find", failing_find)
        failed = await http.post("/v1/test-moves", json={"amount": 1},
                                 headers=keys.partner_a.headers | {"Idempotency-Key": read_key})
        assert_problem(failed, 500, "internal_error")
        assert released == [] and calls == []
        monkeypatch.setattr(records, "find", real_find)
        monkeypatch.setattr(middleware, "_claim", failing_claim)
        headers = keys.partner_a.headers | {"Idempotency-Key": claim_key}
        failed = await http.post("/v1/test-moves", json={"amount": 1}, headers=headers)
        assert_problem(failed, 500, "internal_error")
        assert released == [claim_key] and calls == []
        monkeypatch.setattr(middleware, "_claim", real_claim)
        retried = await http.post("/v1/test-moves", json={"amount": 1}, headers=headers)
        assert retried.status_code == 201 and retried.json()["calls"] == 1
