"""api/versioning.py: the API version in `Settlepay-Version`, the way Stripe-Version works, and
each API key's pinned version (domain/api_versions.py, migration 0021)."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from alembic import command
from sqlalchemy import text

from api.versioning import CURRENT, HEADER, VERSIONS
from commands.api_keys import create_api_key
from domain import api_versions
from settlepay import migrate
from tests.support.api import Key, assert_problem, player_body
from tests.support.databases import sqlalchemy_url, temporary_database


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


# --- per-key version pinning (domain/api_versions.py, migration 0021) ----------------------

OLD = "2026-06-01"   # a version served alongside the current one in the tests below only


@pytest.fixture
def two_versions(monkeypatch) -> tuple[str, str]:
    monkeypatch.setattr(api_versions, "VERSIONS", (OLD, CURRENT))
    return OLD, CURRENT


def pinned_key(engine, api_version: str | None = None) -> Key:
    partner_id = f"partner-{uuid.uuid4().hex[:10]}"
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, "partner", partner_id, None, "pinned",
                                           api_version=api_version)
    return Key(key_id, plaintext, partner_id)


def stored_version(engine, key_id: str) -> str:
    with engine.connect() as conn:
        return conn.execute(text("SELECT api_version FROM api_keys WHERE id = :id"),
                            {"id": key_id}).scalar_one()


async def test_a_new_key_is_pinned_to_the_current_version_or_the_one_it_asks_for(
        client, keys, engine):
    made = await client.post("/v1/api_keys", json={"name": "default"},
                             headers=keys.partner_a.headers)
    assert made.status_code == 201, made.text
    assert made.json()["api_version"] == CURRENT == stored_version(engine, made.json()["id"])
    asked = await client.post("/v1/api_keys", json={"name": "asked", "api_version": CURRENT},
                              headers=keys.partner_a.headers)
    assert asked.status_code == 201 and asked.json()["api_version"] == CURRENT
    with engine.connect() as conn:
        created = json.loads(conn.execute(text(
            "SELECT record FROM audit_log WHERE record::jsonb->>'subject_id' = :id "
            "AND record::jsonb->>'action' = 'api_key.created'"),
            {"id": asked.json()["id"]}).scalar_one())
    assert created["after"]["api_version"] == CURRENT
    listed = await client.get(f"/v1/api_keys/{asked.json()['id']}",
                              headers=keys.partner_a.headers)
    assert listed.json()["api_version"] == CURRENT


async def test_a_key_cannot_be_pinned_to_a_version_that_is_not_served(client, keys):
    unknown = await client.post("/v1/api_keys", json={"name": "x", "api_version": "2019-01-01"},
                                headers=keys.partner_a.headers)
    assert "2019-01-01" not in assert_problem(unknown, 422, "api_key_invalid")["detail"]
    malformed = await client.post("/v1/api_keys", json={"name": "x", "api_version": "latest"},
                                  headers=keys.partner_a.headers)
    assert_problem(malformed, 422, "validation_error")


async def test_without_a_header_a_request_is_served_under_its_keys_pinned_version(
        client, engine, two_versions):
    old_key, current_key = pinned_key(engine, OLD), pinned_key(engine)
    assert stored_version(engine, old_key.id) == OLD
    assert stored_version(engine, current_key.id) == CURRENT
    for key, version in ((old_key, OLD), (current_key, CURRENT)):
        answer = await client.get("/v1/players", headers=key.headers)
        assert answer.status_code == 200, answer.text
        assert answer.headers.get_list("settlepay-version") == [version]
    # Refusals are served under the pin too: a scope the key lacks, an unknown player.
    refused = await client.get("/v1/reconciliation/runs", headers=old_key.headers)
    assert refused.status_code == 403 and refused.headers["settlepay-version"] == OLD
    missing = await client.get("/v1/players/nobody", headers=old_key.headers)
    assert missing.status_code == 404 and missing.headers["settlepay-version"] == OLD
    # A POST through the Idempotency-Key path.
    made = await client.post("/v1/players", json=player_body(), headers=old_key.headers | {
        "Idempotency-Key": uuid.uuid4().hex})
    assert made.status_code == 201 and made.headers["settlepay-version"] == OLD


async def test_the_header_overrides_the_pin_for_that_request_only(client, engine, two_versions):
    old_key = pinned_key(engine, OLD)
    newer = await client.get("/v1/players", headers=old_key.headers | {HEADER: CURRENT})
    assert newer.status_code == 200 and newer.headers["settlepay-version"] == CURRENT
    again = await client.get("/v1/players", headers=old_key.headers)
    assert again.headers["settlepay-version"] == OLD
    current_key = pinned_key(engine)
    older = await client.get("/v1/players", headers=current_key.headers | {HEADER: OLD})
    assert older.headers["settlepay-version"] == OLD
    refused = await client.get("/v1/players", headers=old_key.headers | {HEADER: "2026-13-99"})
    problem = assert_problem(refused, 400, "api_version_unknown")
    assert problem["supported"] == [OLD, CURRENT]
    assert stored_version(engine, old_key.id) == OLD          # a header never moves the pin


async def test_rolling_a_key_moves_it_to_a_new_version_or_keeps_its_own(
        client, engine, two_versions):
    old_key = pinned_key(engine, OLD)
    kept = await client.post(f"/v1/api_keys/{old_key.id}/roll", json={"expires_in_seconds": 60},
                             headers=old_key.headers)
    assert kept.status_code == 201, kept.text
    assert kept.json()["api_version"] == OLD
    moved = await client.post(f"/v1/api_keys/{kept.json()['id']}/roll",
                              json={"expires_in_seconds": 60, "api_version": CURRENT},
                              headers=old_key.headers)
    assert moved.status_code == 201 and moved.json()["api_version"] == CURRENT
    upgraded = await client.get("/v1/players", headers=bearer(moved.json()["secret"]))
    assert upgraded.headers["settlepay-version"] == CURRENT
    still_old = await client.get("/v1/players", headers=old_key.headers)   # until it expires
    assert still_old.status_code == 200 and still_old.headers["settlepay-version"] == OLD
    refused = await client.post(f"/v1/api_keys/{old_key.id}/roll",
                                json={"api_version": "2020-01-01"}, headers=old_key.headers)
    assert_problem(refused, 422, "api_key_invalid")


async def test_a_key_pinned_to_a_retired_version_is_served_under_the_next_one(
        client, engine, monkeypatch):
    monkeypatch.setattr(api_versions, "VERSIONS", ("2025-01-01", OLD, CURRENT))
    retired = pinned_key(engine, "2025-01-01")
    monkeypatch.setattr(api_versions, "VERSIONS", (OLD, CURRENT))
    answer = await client.get("/v1/players", headers=retired.headers)
    assert answer.status_code == 200 and answer.headers["settlepay-version"] == OLD
    monkeypatch.setattr(api_versions, "VERSIONS", (CURRENT,))
    answer = await client.get("/v1/players", headers=retired.headers)
    assert answer.headers["settlepay-version"] == CURRENT
    assert api_versions.for_pin(None) == CURRENT


def test_migration_0021_pins_existing_keys_and_downgrades():
    before, after = "0020_settlement_scale", "0021_api_versions"
    with temporary_database("sp_versions", revision=before) as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("""INSERT INTO api_keys (id, prefix, key_hash, role, partner_id, scopes,
                                                  name)
                            VALUES ('k_old', 'k_old', %s, 'partner', 'p1', '{}', 'old')""",
                         (b"\x00" * 32,))
        migrate.upgrade(sqlalchemy_url(url), after)
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT api_version FROM api_keys").fetchall() == [
                ("2026-12-01",)]
            with pytest.raises(psycopg.errors.CheckViolation):
                conn.execute("UPDATE api_keys SET api_version = 'latest'")
            with pytest.raises(psycopg.errors.NotNullViolation):
                conn.execute("UPDATE api_keys SET api_version = NULL")
        command.downgrade(migrate.alembic_config(sqlalchemy_url(url)), before)
        with psycopg.connect(url, autocommit=True) as conn:
            columns = conn.execute("""SELECT column_name FROM information_schema.columns
                                      WHERE table_name = 'api_keys'""").fetchall()
            assert ("api_version",) not in columns and ("name",) in columns
        migrate.upgrade(sqlalchemy_url(url), after)        # and up again


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# --- 2026-12-06: identifiers taken exactly as sent (domain.api_versions.EXACT_IDENTIFIERS) ----

async def test_padded_identifiers_are_refused_from_2026_12_06_and_stripped_before_it(
        client, engine):
    before = "2026-12-01"
    assert api_versions.EXACT_IDENTIFIERS == CURRENT and before in VERSIONS
    assert set(api_versions.CHANGES) == set(VERSIONS)
    old_key, current_key = pinned_key(engine, before), pinned_key(engine)

    def padded() -> dict[str, str]:
        return player_body(email="\tada@example.com ", jurisdiction=" US-NJ\n")

    def stored(external_ref: str) -> list[tuple[str, str]]:
        with engine.connect() as conn:
            return [tuple(row) for row in conn.execute(text(
                "SELECT email, jurisdiction FROM players WHERE external_ref = :r"),
                {"r": external_ref})]

    # The current version refuses them, as the schema says; nothing is written.
    body = padded()
    refused = await client.post("/v1/players", json=body, headers=current_key.headers)
    problem = assert_problem(refused, 422, "validation_error")
    assert {tuple(e["loc"])[-1] for e in problem["errors"]} == {"email", "jurisdiction"}
    assert stored(body["external_ref"]) == []
    # A key pinned to the version before it, or a request naming that version: stripped.
    for headers in (old_key.headers, current_key.headers | {"Settlepay-Version": before}):
        body = padded()
        made = await client.post("/v1/players", json=body, headers=headers)
        assert made.status_code == 201, made.text
        assert made.headers["settlepay-version"] == before
        assert made.json()["email"] == "ada@example.com"
        assert stored(body["external_ref"]) == [("ada@example.com", "US-NJ")]
    # Unpadded values are the same under both.
    body = player_body()
    made = await client.post("/v1/players", json=body, headers=current_key.headers)
    assert made.status_code == 201 and stored(body["external_ref"]) == [
        ("ada@example.com", "US-NJ")]
