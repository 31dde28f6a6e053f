"""Creating a player: row, audit record and outbox event together; one resource builder."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
from sqlalchemy import text

from commands.players import (
    PERSONAL_DATA,
    NewPlayer,
    PlayerExists,
    create_player,
    player_payload,
)


def details(**overrides) -> NewPlayer:
    fields = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
              "date_of_birth": date(1990, 12, 10), "jurisdiction": "US-NJ",
              "external_ref": f"ext-{uuid.uuid4().hex[:12]}"} | overrides
    return NewPlayer(**fields)


def test_the_event_carries_the_resource_without_personal_data(engine):
    partner = f"partner-{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        row = create_player(conn, details(), partner_id=partner, actor="api_key:test",
                            operation_id=None)
        resource = player_payload(conn, row)
        payload = conn.execute(text("""SELECT payload FROM outbox_events
                                       WHERE aggregate_id = :id
                                         AND event_type = 'player.created'"""),
                               {"id": row["id"]}).scalar_one()
    assert resource["object"] == "player" and resource["partner_id"] == partner
    assert resource["balances"] == [] and resource["kyc"]["status"] == "not_started"
    assert PERSONAL_DATA <= set(resource)
    assert payload == {k: v for k, v in resource.items() if k not in PERSONAL_DATA}


def test_the_same_operation_twice_finds_its_player_and_writes_once(engine):
    partner = f"partner-{uuid.uuid4().hex[:8]}"
    operation = uuid.uuid4().hex
    same = details()
    with engine.begin() as conn:
        first = create_player(conn, same, partner_id=partner, actor="api_key:test",
                              operation_id=operation)
    with engine.begin() as conn:
        again = create_player(conn, same, partner_id=partner, actor="api_key:test",
                              operation_id=operation)
        audits = conn.execute(text("""SELECT count(*) FROM audit_log
                                      WHERE record::jsonb->>'subject_id' = :id"""),
                              {"id": first["id"]}).scalar_one()
    assert again["id"] == first["id"] and audits == 1


def test_a_taken_external_ref_is_refused_and_writes_nothing(engine):
    partner = f"partner-{uuid.uuid4().hex[:8]}"
    taken = details()
    with engine.begin() as conn:
        create_player(conn, taken, partner_id=partner, actor="api_key:test", operation_id=None)
    with pytest.raises(PlayerExists) as refused, engine.begin() as conn:
        create_player(conn, details(external_ref=taken.external_ref, first_name="Other"),
                      partner_id=partner, actor="api_key:test", operation_id=None)
    assert refused.value.refusal.code == "player_exists"
    with engine.connect() as conn:
        count = conn.execute(text("""SELECT count(*) FROM players
                                     WHERE partner_id = :p AND external_ref = :r"""),
                             {"p": partner, "r": taken.external_ref}).scalar_one()
    assert count == 1
