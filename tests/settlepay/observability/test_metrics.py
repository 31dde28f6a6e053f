"""Business metrics recorded by commands count a state change once: when its transaction
commits, never when it rolls back, and once however often the transaction is retried
(settlepay/observability/metrics.py `on_commit`), on the real database."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, Counter
from sqlalchemy import Connection, Engine, text

from settlepay.db import run_in_transaction, transaction
from settlepay.observability import metrics


def _counter() -> Counter:
    return Counter("on_commit_probe", "a probe", ["outcome"], registry=CollectorRegistry())


def _value(counter: Counter, outcome: str) -> float:
    return counter.labels(outcome)._value.get()


def test_a_metric_recorded_in_a_transaction_counts_when_it_commits(engine: Engine) -> None:
    counter = _counter()
    with transaction(engine) as conn:
        metrics.on_commit(conn, lambda: metrics.count(counter, "succeeded"))
        conn.execute(text("SELECT 1"))
        assert _value(counter, "succeeded") == 0     # not before the commit
    assert _value(counter, "succeeded") == 1


def test_a_metric_recorded_in_a_transaction_that_rolls_back_never_counts(
        engine: Engine) -> None:
    counter = _counter()
    with pytest.raises(RuntimeError), transaction(engine) as conn:
        metrics.on_commit(conn, lambda: metrics.count(counter, "failed"))
        raise RuntimeError("the command refused after writing")
    assert _value(counter, "failed") == 0
    # The same connection object committing later work does not count the rolled-back change.
    with engine.connect() as conn:
        with conn.begin():
            metrics.on_commit(conn, lambda: metrics.count(counter, "failed"))
            conn.rollback()
        with conn.begin():
            conn.execute(text("SELECT 1"))
    assert _value(counter, "failed") == 0


def test_a_transaction_retried_after_a_serialization_failure_counts_once(
        engine: Engine) -> None:
    counter = _counter()
    attempts: list[int] = []

    def work(conn: Connection) -> None:
        attempts.append(1)
        metrics.on_commit(conn, lambda: metrics.count(counter, "review"))
        if len(attempts) == 1:
            conn.execute(text("DO $$ BEGIN RAISE EXCEPTION 'try again' "
                              "USING ERRCODE = '40001'; END $$"))

    run_in_transaction(engine, work)
    assert len(attempts) == 2
    assert _value(counter, "review") == 1


def test_a_metric_that_fails_to_record_does_not_stop_the_commit(engine: Engine) -> None:
    def broken() -> None:
        raise ValueError("a broken metric")

    with transaction(engine) as conn:
        metrics.on_commit(conn, broken)
        committed = conn.execute(text("SELECT txid_current()")).scalar()
    with engine.connect() as conn:
        status = conn.execute(text("SELECT txid_status(:t)"), {"t": committed}).scalar()
    assert status == "committed"
