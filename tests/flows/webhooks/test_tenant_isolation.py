"""Partner A never sees partner B's endpoints, events or attempts, and never receives them:
every way in answers 404, exactly as for something that does not exist. Operators see all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tests.support.api import assert_problem, make_key
from tests.support.webhooks import body_of, emit, new_partner
from webhooks.dispatcher import Dispatcher


async def test_partner_a_never_sees_or_receives_partner_bs_endpoints_events_or_attempts(
        api, engine, wh_settings, receiver):
    a, b = new_partner(), new_partner()
    key_a, key_b = make_key(engine, "partner", a), make_key(engine, "partner", b)
    hook_a, hook_b = uuid.uuid4().hex[:12], uuid.uuid4().hex[:12]
    ep_a = (await api.post("/v1/webhook_endpoints", headers=key_a.headers,
                           json={"url": receiver.hook(hook_a)})).json()
    ep_b = (await api.post("/v1/webhook_endpoints", headers=key_b.headers,
                           json={"url": receiver.hook(hook_b)})).json()
    emit(engine, a, "deposit.succeeded", {"who": "a"})
    emit(engine, b, "deposit.succeeded", {"who": "b"})
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()

    assert [body_of(d)["data"]["who"] for d in receiver.deliveries(hook_a)] == ["a"]
    assert [body_of(d)["data"]["who"] for d in receiver.deliveries(hook_b)] == ["b"]
    [event_a] = (await api.get("/v1/events", headers=key_a.headers)).json()["data"]
    [event_b] = (await api.get("/v1/events", headers=key_b.headers)).json()["data"]
    assert event_a["data"] == {"who": "a"} and event_b["data"] == {"who": "b"}

    listed = (await api.get("/v1/webhook_endpoints", headers=key_a.headers)).json()["data"]
    assert [e["id"] for e in listed] == [ep_a["id"]]
    other = f"/v1/webhook_endpoints/{ep_b['id']}"
    for method, path, body in (
            ("GET", other, None), ("PATCH", other, {"disabled": True}), ("DELETE", other, None),
            ("GET", other + "/secret", None), ("GET", other + "/attempts", None),
            ("POST", other + "/test", None), ("POST", other + "/rotate_secret", {}),
            ("POST", other + "/recover", {"since": datetime.now(UTC).isoformat()})):
        response = await api.request(method, path, headers=key_a.headers, json=body)
        assert_problem(response, 404, "webhook_endpoint_not_found")
    for path in (f"/v1/events/{event_b['id']}", f"/v1/events/{event_b['id']}/attempts"):
        assert_problem(await api.get(path, headers=key_a.headers), 404, "event_not_found")
    assert_problem(await api.post(f"/v1/events/{event_b['id']}/resend", headers=key_a.headers,
                                  json={"endpoint_id": ep_a["id"]}), 404, "event_not_found")
    assert_problem(await api.post(f"/v1/events/{event_a['id']}/resend", headers=key_a.headers,
                                  json={"endpoint_id": ep_b["id"]}),
                   404, "webhook_endpoint_not_found")
    assert_problem(await api.get("/v1/events", headers=key_a.headers,
                                 params={"cursor": event_b["id"]}), 422, "cursor_invalid")
    assert_problem(await api.post("/v1/webhook_endpoints", headers=key_a.headers,
                                  json={"url": receiver.hook(hook_a), "partner_id": b}),
                   403, "partner_mismatch")
    # B's endpoint was untouched by all of that.
    still = (await api.get(other, headers=key_b.headers)).json()
    assert still["status"] == "enabled" and still["updated_at"] == ep_b["updated_at"]
    assert len(receiver.deliveries(hook_b)) == 1

    operator = make_key(engine, "operator", None)
    ids = {e["id"] for e in (await api.get("/v1/webhook_endpoints",
                                           headers=operator.headers)).json()["data"]}
    assert {ep_a["id"], ep_b["id"]} <= ids
    assert (await api.get(f"/v1/events/{event_b['id']}/attempts",
                          headers=operator.headers)).json()["data"][0]["status"] == "succeeded"
