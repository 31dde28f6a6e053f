"""SIGKILL of the dispatcher process in the middle of a delivery loses nothing.

The real `settlepay webhooks dispatch` runs as a subprocess. The receiver holds the first
delivery open; the process is killed while it waits for the answer (the attempt is never
recorded, the message stays `sending` under the dead process's lease). A second dispatcher's
sweeper sees that the dead process's session lock is gone and sends the event again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy import text

from tests.support.factories import wait_until
from tests.support.webhooks import emit, make_endpoint, new_partner

ROOT = Path(__file__).resolve().parents[3]


def start_dispatcher(database_url: str, log: Path) -> subprocess.Popen:
    env = {**os.environ, "SETTLEPAY_DATABASE_URL": database_url,
           "SETTLEPAY_WEBHOOKS_ALLOWED_NETWORKS": '["127.0.0.1/32"]',
           "SETTLEPAY_WEBHOOKS_POLL_SECONDS": "0.05", "SETTLEPAY_WEBHOOKS_TIMEOUT_SECONDS": "60"}
    return subprocess.Popen([sys.executable, "-m", "settlepay.cli", "webhooks", "dispatch"],
                            cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)


def message_states(engine, endpoint_id: str) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text(
            "SELECT status, attempts FROM webhook_messages WHERE endpoint_id = :e"),
            {"e": endpoint_id})]


async def test_a_dispatcher_killed_during_a_delivery_loses_nothing(
        engine, database_url, wh_settings, receiver, tmp_path):
    partner, hook = new_partner(), uuid.uuid4().hex[:12]
    endpoint, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    receiver.configure(hook, script=[{"latency_seconds": 120}], latency_seconds=0)
    emit(engine, partner, "withdrawal.paid", {"withdrawal": "wd_1"})

    first = start_dispatcher(database_url, tmp_path / "first.log")
    try:
        [held] = await wait_until(lambda: receiver.deliveries(hook), timeout=30)
        assert held["answered"] is None                      # the request is in flight
        assert message_states(engine, endpoint["id"]) == [("sending", 0)]
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    receiver.release()

    second = start_dispatcher(database_url, tmp_path / "second.log")
    try:
        await wait_until(lambda: message_states(engine, endpoint["id"]) == [("succeeded", 1)],
                         timeout=30)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0, (tmp_path / "second.log").read_text()[-3000:]
    deliveries = receiver.deliveries(hook)
    assert len(deliveries) == 2 and deliveries[0]["webhook_id"] == deliveries[1]["webhook_id"]
    assert deliveries[1]["answered"] == 200
    with engine.connect() as conn:
        attempts = conn.execute(text("""SELECT attempt_number, status FROM webhook_attempts
                                         WHERE endpoint_id = :e"""),
                                {"e": endpoint["id"]}).all()
    assert [tuple(a) for a in attempts] == [(1, "succeeded")]
