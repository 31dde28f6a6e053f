"""api/housekeeping.py: stored Idempotency-Key answers pruned after their retention, on a
schedule of the API process, one process at a time."""

from __future__ import annotations

import uuid
from datetime import timedelta

from sqlalchemy import Engine, text

from api.app import create_app
from api.housekeeping import PRUNE_LOCK, prune_idempotency_once
from tests.support.api import Key, make_key
from tests.support.factories import wait_until


def record(engine: Engine, key: Key, age: timedelta, *, finished: bool,
           released: bool = False) -> str:
    """An idempotency record made `age` ago: finished (an answer kept), released, or held."""
    name = f"hk-{uuid.uuid4().hex}"
    with engine.begin() as conn:
        conn.execute(text("""
            INSERT INTO idempotency_records (api_key_id, idempotency_key, request_method,
                request_path, request_hash, claim_token, locked_at, response_status,
                response_headers, response_body, created_at, completed_at)
            VALUES (:key, :name, 'POST', '/v1/players', '\\x00', :token,
                    CASE WHEN :released THEN '-infinity'::timestamptz ELSE now() - :age END,
                    CASE WHEN :finished THEN 201 END,
                    CASE WHEN :finished THEN '[]'::jsonb END,
                    CASE WHEN :finished THEN '\\x7b7d'::bytea END,
                    now() - :age, CASE WHEN :finished THEN now() - :age END)"""),
            {"key": key.id, "name": name, "token": uuid.uuid4(), "age": age,
             "finished": finished, "released": released})
    return name


def kept(engine: Engine, names: list[str]) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(text("SELECT idempotency_key FROM idempotency_records "
                                     "WHERE idempotency_key = ANY(:names)"),
                                {"names": names}).scalars())


def test_answers_older_than_the_retention_go_and_held_claims_stay(engine):
    key = make_key(engine, "partner", f"partner-{uuid.uuid4().hex[:8]}")
    old_finished = record(engine, key, timedelta(hours=30), finished=True)
    old_released = record(engine, key, timedelta(hours=30), finished=False, released=True)
    old_held = record(engine, key, timedelta(hours=30), finished=False)
    young = record(engine, key, timedelta(hours=2), finished=True)
    pruned = prune_idempotency_once(engine, timedelta(hours=24))
    assert pruned is not None and pruned >= 2
    assert kept(engine, [old_finished, old_released, old_held, young]) == {old_held, young}


def test_only_one_process_prunes_at_a_time(engine):
    key = make_key(engine, "partner", f"partner-{uuid.uuid4().hex[:8]}")
    old = record(engine, key, timedelta(hours=30), finished=True)
    with engine.connect() as other:
        with other.begin():
            other.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PRUNE_LOCK})
            assert prune_idempotency_once(engine, timedelta(hours=24)) is None
            assert kept(engine, [old]) == {old}
    assert prune_idempotency_once(engine, timedelta(hours=24)) is not None
    assert kept(engine, [old]) == set()


async def test_the_api_process_prunes_on_its_schedule(api_settings, engine):
    key = make_key(engine, "partner", f"partner-{uuid.uuid4().hex[:8]}")
    app = create_app(api_settings.model_copy(update={
        "idempotency_retention_hours": 1.0, "idempotency_prune_interval_seconds": 0.05}),
        engine=engine)
    async with app.router.lifespan_context(app):
        first = record(engine, key, timedelta(hours=2), finished=True)
        await wait_until(lambda: not kept(engine, [first]), timeout=10)
        # ... and keeps doing it: a record that ages past the retention later goes too.
        later = record(engine, key, timedelta(minutes=61), finished=True)
        fresh = record(engine, key, timedelta(minutes=5), finished=True)
        await wait_until(lambda: not kept(engine, [later]), timeout=10)
        assert kept(engine, [fresh]) == {fresh}
