"""A partner runs its webhooks through the API: register an endpoint, receive its events
signed, read events and attempts, test, resend, disable, rotate, recover, delete.

The app runs in process (no Temporal needed), the dispatcher in the test's event loop, the
receiver sandbox on loopback; every delivery is verified with the reference library."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from tests.support.api import assert_problem, make_key, player_body
from tests.support.webhooks import body_of, emit, new_partner, verifies, verify
from webhooks.dispatcher import Dispatcher


def name() -> str:
    return uuid.uuid4().hex[:12]


async def test_a_partner_registers_an_endpoint_and_receives_its_events_signed(
        api, engine, wh_settings, receiver):
    partner, hook = new_partner(), name()
    key = make_key(engine, "partner", partner)
    created = await api.post("/v1/webhook_endpoints", headers=key.headers, json={
        "url": receiver.hook(hook), "description": "ours", "event_types": ["player.*"]})
    assert created.status_code == 201, created.text
    endpoint = created.json()
    secret = endpoint["secret"]
    assert secret.startswith("whsec_") and endpoint["partner_id"] == partner
    assert endpoint["status"] == "enabled" and endpoint["event_types"] == ["player.*"]
    receiver.configure(hook, secrets=[secret])
    player = await api.post("/v1/players", headers=key.headers, json=player_body())
    assert player.status_code == 201, player.text
    emit(engine, partner, "deposit.succeeded")          # not subscribed: never delivered

    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()
        [delivery] = receiver.deliveries(hook)
        body = verify(secret, delivery)
        assert body["type"] == "player.created" and body["data"]["id"] == player.json()["id"]
        assert "first_name" not in body["data"]            # no personal data in events

        events = (await api.get("/v1/events", headers=key.headers)).json()
        assert [e["type"] for e in events["data"]] == ["deposit.succeeded", "player.created"]
        event = events["data"][1]
        assert event["id"] == delivery["webhook_id"]
        assert (await api.get(f"/v1/events/{event['id']}", headers=key.headers)).json() == event
        [attempt] = (await api.get(f"/v1/events/{event['id']}/attempts",
                                   headers=key.headers)).json()["data"]
        assert (attempt["status"], attempt["response_status_code"], attempt["trigger"],
                attempt["response_body"], attempt["next_attempt_at"]) == (
            "succeeded", 200, "scheduled", "ok", None)
        assert attempt["duration_ms"] >= 0
        by_endpoint = (await api.get(f"/v1/webhook_endpoints/{endpoint['id']}/attempts",
                                     headers=key.headers)).json()["data"]
        assert by_endpoint == [attempt]
        again = await api.get(f"/v1/webhook_endpoints/{endpoint['id']}/secret",
                              headers=key.headers)
        assert again.json()["secret"] == secret

        assert (await api.post(f"/v1/webhook_endpoints/{endpoint['id']}/test",
                               headers=key.headers)).status_code == 202
        resent = await api.post(f"/v1/events/{event['id']}/resend", headers=key.headers,
                                json={"endpoint_id": endpoint["id"]})
        assert resent.status_code == 202, resent.text
        await dispatcher.drain()
        test, manual = sorted(receiver.deliveries(hook)[1:],
                              key=lambda d: body_of(d)["type"] != "webhook.test")
        assert body_of(test)["type"] == "webhook.test" and verify(secret, test)
        assert manual["webhook_id"] == event["id"] and verify(secret, manual)
        latest = (await api.get(f"/v1/events/{event['id']}/attempts",
                                headers=key.headers)).json()["data"][0]
        assert latest["trigger"] == "manual"

        rotated = await api.post(f"/v1/webhook_endpoints/{endpoint['id']}/rotate_secret",
                                 headers=key.headers, json={"grace_seconds": 3600})
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["secret"]
        assert new != secret and rotated.json()["previous_secret_expires_at"]
        await api.post("/v1/players", headers=key.headers, json=player_body())
        await dispatcher.drain()
        during = receiver.deliveries(hook)[-1]
        assert verifies(new, during, during["signatures"][0])
        assert verifies(secret, during, during["signatures"][1])


async def test_an_endpoint_is_disabled_enabled_recovered_and_deleted_through_the_api(
        api, engine, wh_settings, receiver):
    partner, hook = new_partner(), name()
    key = make_key(engine, "partner", partner)
    endpoint = (await api.post("/v1/webhook_endpoints", headers=key.headers,
                               json={"url": receiver.hook(hook)})).json()
    path = f"/v1/webhook_endpoints/{endpoint['id']}"
    receiver.configure(hook, status=500)
    emit(engine, partner)
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()                                     # fails, will retry

        disabled = await api.patch(path, headers=key.headers, json={"disabled": True})
        assert (disabled.json()["status"], disabled.json()["disabled_reason"]) == (
            "disabled", "manual")
        assert_problem(await api.post(path + "/test", headers=key.headers), 409,
                       "webhook_endpoint_disabled")
        enabled = await api.patch(path, headers=key.headers,
                                  json={"disabled": False, "description": "back"})
        assert (enabled.json()["status"], enabled.json()["description"]) == ("enabled", "back")

        receiver.configure(hook, status=204)
        too_far = datetime.now(UTC) - timedelta(days=15)
        assert_problem(await api.post(path + "/recover", headers=key.headers,
                                      json={"since": too_far.isoformat()}),
                       422, "recover_since_too_far_back")
        recovered = await api.post(path + "/recover", headers=key.headers, json={
            "since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()})
        assert recovered.status_code == 202 and recovered.json()["messages"] == 1
        await dispatcher.drain()
    attempts = (await api.get(path + "/attempts", headers=key.headers)).json()["data"]
    assert [(a["trigger"], a["response_status_code"]) for a in attempts] == [
        ("recover", 204), ("scheduled", 500)]

    assert_problem(await api.post(path + "/rotate_secret", headers=key.headers,
                                  json={"grace_seconds": 8 * 86_400}),
                   422, "rotation_grace_too_long")
    deleted = await api.delete(path, headers=key.headers)
    assert deleted.json() == {"object": "webhook_endpoint", "id": endpoint["id"],
                              "deleted": True}
    assert_problem(await api.get(path, headers=key.headers), 404, "webhook_endpoint_not_found")
    assert (await api.get(path + "/attempts", headers=key.headers)).status_code == 200
    listed = (await api.get("/v1/webhook_endpoints", headers=key.headers)).json()["data"]
    assert listed == []


async def test_bad_endpoints_are_refused_with_a_problem_and_nothing_is_written(api, engine):
    key = make_key(engine, "partner", new_partner())
    for url in ("http://10.0.0.1/hook", "ftp://partner.test/x", "http://u:p@partner.test/x",
                "http://169.254.169.254/latest"):
        assert_problem(await api.post("/v1/webhook_endpoints", headers=key.headers,
                                      json={"url": url}), 422, "webhook_url_refused")
    assert_problem(await api.post("/v1/webhook_endpoints", headers=key.headers, json={
        "url": "https://hooks.partner.test/x", "event_types": ["Deposit Succeeded"]}),
        422, "event_types_invalid")
    assert_problem(await api.post("/v1/webhook_endpoints", headers=key.headers, json={
        "url": "https://hooks.partner.test/x", "colour": "red"}), 422, "validation_error")
    assert_problem(await api.post("/v1/webhook_endpoints", headers=key.headers, json={
        "url": "https://hooks.partner.test/x", "rate_limit_per_minute": 0}),
        422, "validation_error")
    listed = (await api.get("/v1/webhook_endpoints", headers=key.headers)).json()["data"]
    assert listed == []
    operator = make_key(engine, "operator", None)
    assert_problem(await api.post("/v1/webhook_endpoints", headers=operator.headers,
                                  json={"url": "https://hooks.partner.test/x"}),
                   422, "validation_error")
    reader = make_key(engine, "partner", new_partner(), scopes=["players:read"])
    assert_problem(await api.get("/v1/webhook_endpoints", headers=reader.headers),
                   403, "insufficient_scope")
    assert_problem(await api.get("/v1/events"), 401, "api_key_missing")


async def test_events_are_listed_newest_first_a_page_at_a_time(api, engine, wh_settings):
    partner = new_partner()
    key = make_key(engine, "partner", partner)
    for n in range(5):
        emit(engine, partner, "deposit.succeeded", {"n": n})
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.ingest()
    seen, cursor = [], None
    while True:
        page = (await api.get("/v1/events", headers=key.headers,
                              params={"limit": 2, **({"cursor": cursor} if cursor else {})})
                ).json()
        seen += [e["data"]["n"] for e in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == [4, 3, 2, 1, 0]
    only = (await api.get("/v1/events", headers=key.headers,
                          params={"type": "kyc.verified"})).json()
    assert only["data"] == [] and not only["has_more"]
    assert_problem(await api.get("/v1/events", headers=key.headers,
                                 params={"cursor": "evt_nope"}), 422, "cursor_invalid")


async def test_a_retried_creation_gives_the_same_endpoint_and_the_secret_is_not_kept_in_clear(
        api, engine):
    from sqlalchemy import text

    key = make_key(engine, "partner", new_partner())
    headers = {**key.headers, "Idempotency-Key": f"create-{uuid.uuid4().hex}"}
    body = {"url": "https://hooks.partner.test/retried"}
    first = await api.post("/v1/webhook_endpoints", headers=headers, json=body)
    again = await api.post("/v1/webhook_endpoints", headers=headers, json=body)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["secret"] == first.json()["secret"]
    listed = (await api.get("/v1/webhook_endpoints", headers=key.headers)).json()["data"]
    assert len(listed) == 1
    with engine.connect() as conn:
        kept = conn.execute(text("""SELECT count(*) FROM idempotency_records
                                     WHERE idempotency_key = :k AND (response_body IS NOT NULL
                                        OR position(convert_to(:s, 'UTF8') IN
                                                    coalesce(response_body, '')) > 0)"""),
                            {"k": headers["Idempotency-Key"],
                             "s": first.json()["secret"]}).scalar_one()
    assert kept == 0
