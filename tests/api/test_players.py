"""Players: create (row + audit + outbox in one transaction) and read with balances."""

from __future__ import annotations

from sqlalchemy import text

import audit
import ledger
from ledger import AccountRef, Leg, Transfer
from tests.support.api import assert_problem, player_body


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


async def test_partner_creates_a_player_with_audit_and_outbox(client, keys, engine):
    body = player_body()
    response = await client.post("/v1/players", json=body, headers=keys.partner_a.headers)
    assert response.status_code == 201, response.text
    player = response.json()
    assert player["object"] == "player" and player["id"].startswith("ply_")
    assert player["partner_id"] == keys.partner_a.partner_id
    assert player["status"] == "active" and player["balances"] == []
    assert {k: player[k] for k in body} == body
    assert response.headers["location"] == f"/v1/players/{player['id']}"

    with engine.connect() as conn:
        row = conn.execute(text("""SELECT partner_id, first_name, external_ref FROM players
                                   WHERE id = :id"""), {"id": player["id"]}).one()
        assert tuple(row) == (keys.partner_a.partner_id, "Ada", body["external_ref"])
        records = conn.execute(text("""SELECT record::jsonb FROM audit_log
                                       WHERE record::jsonb->>'subject_id' = :id"""),
                               {"id": player["id"]}).scalars().all()
        assert len(records) == 1
        assert records[0]["action"] == "player.created"
        assert records[0]["actor"] == f"api_key:{keys.partner_a.id}"
        assert records[0]["before"] is None and records[0]["after"]["first_name"] == "Ada"
        events = conn.execute(text("SELECT event_type, partner_id, payload FROM outbox_events "
                                   "WHERE aggregate_type = 'player' AND aggregate_id = :id"),
                              {"id": player["id"]}).all()
        assert [(e.event_type, e.partner_id) for e in events] == [("player.created",
                                                                   keys.partner_a.partner_id)]
        assert "email" not in events[0].payload  # personal data stays out of partner events
        assert audit.verify(conn).ok


async def test_player_view_shows_balances_per_currency(client, keys, engine):
    created = await client.post("/v1/players", json=player_body(), headers=keys.partner_a.headers)
    pid = created.json()["id"]

    def clearing(cur: str) -> AccountRef:
        return AccountRef.gateway_clearing("stripe", cur)

    with engine.begin() as conn:
        for key, cur, amount in ((f"dep-{pid}-1", "USD", 10_000), (f"dep-{pid}-2", "EUR", 2_500)):
            result = ledger.post(conn, Transfer(key=key, kind="deposit", legs=(
                Leg(AccountRef.player_cash(pid, cur), amount), Leg(clearing(cur), -amount))))
            assert result.ok
        assert ledger.post(conn, Transfer(key=f"stake-{pid}", kind="bet_stake", legs=(
            Leg(AccountRef.player_cash(pid, "USD"), -3_000),
            Leg(AccountRef.bets_in_play(pid, "USD"), 3_000)))).ok
        assert ledger.hold(conn, f"wd-{pid}", AccountRef.player_cash(pid, "USD"),
                           AccountRef.pending_withdrawal(pid, "USD"), 1_000).ok
        # A clawback larger than the EUR cash: the rest becomes debt.
        claw = ledger.post(conn, Transfer(key=f"claw-{pid}", kind="resettlement", legs=(
            Leg(AccountRef.player_cash(pid, "EUR"), -4_000,
                shortfall_to=AccountRef.player_debt(pid, "EUR")),
            Leg(AccountRef.house_revenue("EUR"), 4_000))))
        assert claw.ok and claw.shortfall == 1_500

    response = await client.get(f"/v1/players/{pid}", headers=keys.partner_a.headers)
    assert response.status_code == 200, response.text
    assert response.json()["balances"] == [
        {"currency": "EUR", "cash": 0, "held": 0, "available": 0, "pending_withdrawal": 0,
         "bets_in_play": 0, "debt": 1_500},
        {"currency": "USD", "cash": 7_000, "held": 1_000, "available": 6_000,
         "pending_withdrawal": 0,
         "bets_in_play": 3_000, "debt": 0},
    ]


async def test_duplicate_external_ref_is_a_conflict_and_writes_nothing(client, keys, engine):
    body = player_body()
    assert (await client.post("/v1/players", json=body,
                              headers=keys.partner_a.headers)).status_code == 201
    audits = count(engine, "SELECT count(*) FROM audit_log")
    again = await client.post("/v1/players", json=body | {"first_name": "Other"},
                              headers=keys.partner_a.headers)
    assert_problem(again, 409, "player_exists")
    assert count(engine, "SELECT count(*) FROM players WHERE external_ref = :r",
                 r=body["external_ref"]) == 1
    assert count(engine, "SELECT count(*) FROM audit_log") == audits
    # Another partner may use the same external reference for its own player.
    other = await client.post("/v1/players", json=body, headers=keys.partner_b.headers)
    assert other.status_code == 201 and other.json()["partner_id"] == keys.partner_b.partner_id


async def test_operator_creates_for_a_named_partner_and_must_name_one(client, keys, engine):
    missing = await client.post("/v1/players", json=player_body(), headers=keys.operator.headers)
    problem = assert_problem(missing, 422, "validation_error")
    assert problem["errors"][0]["loc"] == ["body", "partner_id"]
    made = await client.post("/v1/players", json=player_body(partner_id=keys.partner_b.partner_id),
                             headers=keys.operator.headers)
    assert made.status_code == 201 and made.json()["partner_id"] == keys.partner_b.partner_id
    seen = await client.get(f"/v1/players/{made.json()['id']}", headers=keys.partner_b.headers)
    assert seen.status_code == 200


async def test_partner_cannot_create_for_another_partner(client, keys, engine):
    before = count(engine, "SELECT count(*) FROM players")
    response = await client.post("/v1/players",
                                 json=player_body(partner_id=keys.partner_b.partner_id),
                                 headers=keys.partner_a.headers)
    assert_problem(response, 403, "partner_mismatch")
    assert count(engine, "SELECT count(*) FROM players") == before


async def test_invalid_player_input_is_422_and_writes_nothing(client, keys, engine):
    before = count(engine, "SELECT count(*) FROM players")
    response = await client.post("/v1/players", headers=keys.partner_a.headers, json=player_body(
        first_name="", email="not-an-email", jurisdiction="New Jersey", date_of_birth="1990-13-45",
        nickname="unknown field"))
    problem = assert_problem(response, 422, "validation_error")
    fields = {tuple(error["loc"]) for error in problem["errors"]}
    assert fields == {("body", "first_name"), ("body", "email"), ("body", "jurisdiction"),
                      ("body", "date_of_birth"), ("body", "nickname")}
    assert all("input" not in error for error in problem["errors"])  # submitted values not echoed
    assert count(engine, "SELECT count(*) FROM players") == before


async def test_unknown_player_is_404(client, keys):
    assert_problem(await client.get("/v1/players/ply_nope", headers=keys.operator.headers),
                   404, "player_not_found")
