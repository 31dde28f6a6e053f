"""`settlepay webhooks endpoints | attempts | resend | recover` against the test database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from settlepay import cli
from settlepay.config import get_settings
from tests.support.webhooks import attempts_of, emit, make_endpoint, new_partner, partner_events
from webhooks.dispatcher import Dispatcher


@pytest.fixture
def configured(database_url, monkeypatch):
    monkeypatch.setenv("SETTLEPAY_DATABASE_URL", database_url)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


async def test_the_cli_lists_endpoints_shows_attempts_resends_and_recovers(
        configured, engine, wh_settings, receiver, capsys):
    partner, hook = new_partner(), uuid.uuid4().hex[:12]
    endpoint, _ = make_endpoint(engine, wh_settings, partner, receiver.hook(hook))
    receiver.configure(hook, status=500)
    emit(engine, partner)
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()
        [event] = partner_events(engine, partner)

        assert cli.main(["webhooks", "endpoints", "--partner", partner]) == 0
        out = capsys.readouterr().out
        assert endpoint["id"] in out and "enabled" in out and receiver.hook(hook) in out

        assert cli.main(["webhooks", "attempts", "--endpoint", endpoint["id"]]) == 0
        out = capsys.readouterr().out
        assert event["id"] in out and "scheduled" in out and "HTTP 500" in out

        receiver.configure(hook, status=200)
        assert cli.main(["webhooks", "resend", event["id"], endpoint["id"]]) == 0
        assert "queued" in capsys.readouterr().out
        await dispatcher.drain()
        assert attempts_of(engine, endpoint["id"])[-1]["trigger"] == "manual"

        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        assert cli.main(["webhooks", "recover", endpoint["id"], since]) == 0
        assert "queued: 0 failed event(s)" in capsys.readouterr().out   # still retrying

    assert cli.main(["webhooks", "attempts", "--event", event["id"]]) == 0
    assert "manual" in capsys.readouterr().out
    assert cli.main(["webhooks", "resend", "evt_missing", endpoint["id"]]) == 1
    assert "not found: event evt_missing" in capsys.readouterr().err
    assert cli.main(["webhooks", "recover", endpoint["id"], "yesterday"]) == 2
    assert cli.main(["webhooks", "attempts"]) == 2
    too_far = (datetime.now(UTC) - timedelta(days=20)).isoformat()
    assert cli.main(["webhooks", "recover", endpoint["id"], too_far]) == 1
    assert "recover_since_too_far_back" in capsys.readouterr().err
