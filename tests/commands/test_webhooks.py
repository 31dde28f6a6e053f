"""commands/webhooks.py: endpoint changes with their audit records, in the caller's
transaction; secrets sealed at rest and never in an audit record."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from commands import webhooks as commands
from store import webhooks as store
from tests.support.factories import audit_actions
from tests.support.webhooks import emit, make_endpoint, new_partner, webhook_settings
from webhooks.dispatcher import Dispatcher


def audit_records(engine, subject_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(text("SELECT record FROM audit_log WHERE record LIKE :p "
                                      "ORDER BY seq"),
                                 {"p": f'%"subject_id":"{subject_id}"%'}).scalars())


def test_creating_an_endpoint_audits_it_and_seals_its_secret(engine, settings):
    wh = webhook_settings(settings)
    row, secret = make_endpoint(engine, wh, new_partner(), "https://hooks.partner.test/x")
    assert secret not in row["secret_sealed"]
    assert commands.endpoint_secret(wh, row) == secret
    assert audit_actions(engine, row["id"]) == ["webhook_endpoint.created"]
    assert all(secret not in record and row["secret_sealed"] not in record
               for record in audit_records(engine, row["id"]))


def test_the_same_operation_gives_back_the_same_endpoint_and_secret(engine, settings):
    wh, partner = webhook_settings(settings), new_partner()
    spec = commands.EndpointSpec(url="https://hooks.partner.test/y")

    def create():
        with engine.begin() as conn:
            return commands.create_endpoint(conn, wh, partner_id=partner, spec=spec,
                                            actor="test", operation_id=f"op-{partner}",
                                            now=datetime.now(UTC))

    (first, secret), (again, secret_again) = create(), create()
    assert first["id"] == again["id"] and secret == secret_again
    assert audit_actions(engine, first["id"]) == ["webhook_endpoint.created"]


def test_a_rotation_grace_is_at_most_seven_days_and_zero_drops_the_old_secret(engine, settings):
    wh = webhook_settings(settings)
    row, _ = make_endpoint(engine, wh, new_partner(), "https://hooks.partner.test/z")
    now = datetime.now(UTC)
    with engine.begin() as conn, pytest.raises(commands.WebhookRefused) as refused:
        commands.rotate_secret(conn, wh, row, grace=timedelta(days=7, seconds=1), actor="t",
                               now=now)
    assert refused.value.refusal.code == "rotation_grace_too_long"
    with engine.begin() as conn:
        rotated, _ = commands.rotate_secret(conn, wh, row, grace=timedelta(0), actor="t",
                                            now=now)
    assert rotated["previous_secret_sealed"] is None
    with engine.begin() as conn:
        rotated, _ = commands.rotate_secret(conn, wh, rotated, grace=None, actor="t", now=now)
    assert rotated["previous_secret_expires_at"] == now + timedelta(hours=24)
    record = json.loads(audit_records(engine, row["id"])[-1])
    assert record["action"] == "webhook_endpoint.secret_rotated"
    assert record["after"]["grace_seconds"] == 86_400


async def test_disabling_fails_pending_messages_and_enabling_forgets_the_failures(
        engine, settings):
    wh = webhook_settings(settings)
    partner = new_partner()
    row, _ = make_endpoint(engine, wh, partner, "https://hooks.partner.test/q")
    emit(engine, partner)
    async with Dispatcher(engine, wh) as dispatcher:
        await dispatcher.ingest()
    with engine.begin() as conn:
        conn.execute(text("UPDATE webhook_endpoints SET failing_since = now() WHERE id = :e"),
                     {"e": row["id"]})
        disabled = commands.update_endpoint(conn, wh, store.get_endpoint(conn, row["id"]),
                                            changes={"disabled": True}, actor="t",
                                            now=datetime.now(UTC))
        statuses = conn.execute(text("SELECT status FROM webhook_messages WHERE endpoint_id = :e"),
                                {"e": row["id"]}).scalars().all()
    assert (disabled["status"], disabled["disabled_reason"]) == ("disabled", "manual")
    assert statuses == ["failed"]
    with engine.begin() as conn:
        enabled = commands.update_endpoint(conn, wh, disabled, changes={"disabled": False},
                                           actor="t", now=datetime.now(UTC))
    assert (enabled["status"], enabled["failing_since"]) == ("enabled", None)
    assert audit_actions(engine, row["id"]) == ["webhook_endpoint.created",
                                                "webhook_endpoint.disabled",
                                                "webhook_endpoint.enabled"]


def test_a_resend_to_another_partners_endpoint_is_refused(engine, settings):
    wh = webhook_settings(settings)
    mine, _ = make_endpoint(engine, wh, new_partner(), "https://hooks.partner.test/a")
    theirs, _ = make_endpoint(engine, wh, new_partner(), "https://hooks.partner.test/b")
    event = {"id": "evt_x", "partner_id": mine["partner_id"]}
    with engine.begin() as conn, pytest.raises(commands.WebhookRefused) as refused:
        commands.resend(conn, event, theirs, actor="t", now=datetime.now(UTC))
    assert refused.value.refusal.code == "webhook_endpoint_not_found"
