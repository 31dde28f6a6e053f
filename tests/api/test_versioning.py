"""api/versioning.py: the API version in `Settlepay-Version`, the way Stripe-Version works."""

from __future__ import annotations

import uuid

from sqlalchemy import text

from api.versioning import CURRENT, VERSIONS
from tests.support.api import assert_problem, player_body


async def test_every_answer_names_its_version_the_current_one_without_a_header(client, keys):
    plain = await client.get("/v1/players", headers=keys.partner_a.headers)
    assert plain.headers["settlepay-version"] == CURRENT
    pinned = await client.get("/v1/players",
                              headers=keys.partner_a.headers | {"Settlepay-Version": VERSIONS[0]})
    assert pinned.status_code == 200 and pinned.headers["settlepay-version"] == VERSIONS[0]
    assert (await client.get("/healthz")).headers["settlepay-version"] == CURRENT
    problem = await client.get("/v1/players")
    assert problem.status_code == 401 and problem.headers["settlepay-version"] == CURRENT


async def test_an_unknown_version_is_refused_before_anything_runs(client, keys, engine):
    body = player_body()
    answer = await client.post("/v1/players", json=body, headers=keys.partner_a.headers | {
        "Settlepay-Version": "2019-01-01", "Idempotency-Key": uuid.uuid4().hex})
    problem = assert_problem(answer, 400, "api_version_unknown")
    assert problem["supported"] == list(VERSIONS) and "2019" not in problem["detail"]
    assert answer.headers["settlepay-version"] == CURRENT
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM players WHERE external_ref = :r"),
                            {"r": body["external_ref"]}).scalar_one() == 0


async def test_a_replayed_answer_names_the_version_too(client, keys):
    headers = keys.partner_a.headers | {"Idempotency-Key": uuid.uuid4().hex}
    body = player_body()
    first = await client.post("/v1/players", json=body, headers=headers)
    again = await client.post("/v1/players", json=body, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert first.headers["settlepay-version"] == again.headers["settlepay-version"] == CURRENT
    assert len(again.headers.get_list("settlepay-version")) == 1


def test_the_openapi_document_describes_413_and_429_on_the_routes(app):
    document = app.openapi()
    responses = document["paths"]["/v1/players"]["get"]["responses"]
    assert {"413", "429"} <= set(responses)
    assert "Settlepay-Version" in document["info"]["description"]
