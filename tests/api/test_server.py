"""`settlepay api` with SETTLEPAY_API_PROCESSES=2 (api/server.py): two processes answer on one
port, and they share the Idempotency-Key records (PostgreSQL), so a retry answered by the other
process gets the first answer back, never a second effect.

Which process answers is forced, not hoped for: the other one is stopped (SIGSTOP), so the
listening socket's connections can only be accepted by the running one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from tests.support.api import player_body
from tests.support.supervised import stopped, supervised_api

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_processes(api_settings) -> Iterator[tuple[str, list[int]]]:
    with supervised_api(api_settings, SETTLEPAY_TELEMETRY_ENABLED="false") as (url, _, workers):
        yield url, workers


def test_the_api_runs_as_two_processes_under_one_supervisor(two_processes):
    _, workers = two_processes
    assert len(workers) == 2


def test_a_retry_answered_by_the_other_process_replays_the_first_answer(two_processes, keys,
                                                                         engine):
    url, (first, second) = two_processes
    headers = {**keys.operator.headers, "Idempotency-Key": uuid.uuid4().hex}
    body = player_body(partner_id=keys.partner_a.partner_id)
    with stopped(second):   # only `first` can accept
        created = httpx.post(f"{url}/v1/players", json=body, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    assert "idempotent-replayed" not in created.headers
    with stopped(first):    # only `second` can accept
        again = httpx.post(f"{url}/v1/players", json=body, headers=headers, timeout=30)
        reused = httpx.post(f"{url}/v1/players", json={**body, "first_name": "Grace"},
                            headers=headers, timeout=30)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.content == created.content
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT count(*) FROM players WHERE external_ref = :ref"),
                            {"ref": body["external_ref"]}).scalar()
    assert rows == 1
