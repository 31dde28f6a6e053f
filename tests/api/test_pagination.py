"""Cursor pagination (api/pagination.py, store/pagination.py), through GET /v1/players: newest
first, pages forward and back without repeats or gaps, filters, tenant isolation, errors."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from store import players
from tests.support.api import Key, assert_problem, make_key


def partner_key(engine: Engine) -> Key:
    return make_key(engine, "partner", f"partner-{uuid.uuid4().hex[:10]}", name="lists")


def seed(engine: Engine, partner_id: str, count: int, *, start: datetime | None = None,
         step: timedelta = timedelta(seconds=1), status: str = "active") -> list[str]:
    """`count` players of a partner, created `step` apart from `start`; ids oldest first."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    ids = []
    with engine.begin() as conn:
        for n in range(count):
            player_id = f"ply_list_{uuid.uuid4().hex[:12]}"
            players.insert(conn, player_id=player_id, partner_id=partner_id, external_ref=None,
                           first_name="Page", last_name=f"N{n}", email=None, date_of_birth=None,
                           jurisdiction="US-NJ")
            conn.execute(text("UPDATE players SET created_at = :at, status = :status "
                              "WHERE id = :id"),
                         {"at": start + n * step, "id": player_id, "status": status})
            ids.append(player_id)
    return ids


async def ids_of(client, key: Key, **params) -> tuple[list[str], bool]:
    response = await client.get("/v1/players", params=params, headers=key.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["url"] == "/v1/players"
    return [item["id"] for item in body["data"]], body["has_more"]


async def test_pages_go_newest_first_forward_and_back_without_repeats_or_gaps(client, engine):
    key = partner_key(engine)
    newest_first = seed(engine, key.partner_id, 7)[::-1]

    first, more = await ids_of(client, key, limit=3)
    assert (first, more) == (newest_first[:3], True)
    second, more = await ids_of(client, key, limit=3, starting_after=first[-1])
    assert (second, more) == (newest_first[3:6], True)
    third, more = await ids_of(client, key, limit=3, starting_after=second[-1])
    assert (third, more) == (newest_first[6:], False)
    # Back from the last page: the page before it, then the first (no more newer ones).
    back, more = await ids_of(client, key, limit=3, ending_before=third[0])
    assert (back, more) == (second, True)
    back, more = await ids_of(client, key, limit=3, ending_before=back[0])
    assert (back, more) == (first, False)
    everything, more = await ids_of(client, key, limit=100)
    assert (everything, more) == (newest_first, False)


async def test_rows_created_at_the_same_moment_are_ordered_by_id_and_never_repeat(client,
                                                                                   engine):
    key = partner_key(engine)
    same = sorted(seed(engine, key.partner_id, 5, step=timedelta(0)), reverse=True)
    seen, after = [], None
    while True:
        params = {"limit": 2} | ({"starting_after": after} if after else {})
        page, more = await ids_of(client, key, **params)
        seen += page
        if not more:
            break
        after = page[-1]
    assert seen == same


async def test_rows_added_between_pages_neither_repeat_nor_shift_the_next_page(client, engine):
    key = partner_key(engine)
    old = seed(engine, key.partner_id, 4)[::-1]
    first, _ = await ids_of(client, key, limit=2)
    newer = seed(engine, key.partner_id, 3, start=datetime(2026, 6, 1, tzinfo=UTC))
    second, more = await ids_of(client, key, limit=2, starting_after=first[-1])
    assert (first, second, more) == (old[:2], old[2:], False)
    fresh, _ = await ids_of(client, key, limit=10, ending_before=first[0])
    assert fresh == newer[::-1]


async def test_filters_by_status_created_range_and_external_ref(client, engine):
    key = partner_key(engine)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    active = seed(engine, key.partner_id, 4, start=start, step=timedelta(days=1))
    suspended = seed(engine, key.partner_id, 2, start=start + timedelta(hours=1),
                     step=timedelta(days=1), status="suspended")
    with engine.begin() as conn:
        conn.execute(text("UPDATE players SET external_ref = 'crm-42' WHERE id = :id"),
                     {"id": active[1]})

    assert (await ids_of(client, key, status="suspended"))[0] == suspended[::-1]
    assert (await ids_of(client, key, status="closed"))[0] == []
    window = {"created[gte]": (start + timedelta(days=1)).isoformat(),
              "created[lt]": (start + timedelta(days=3)).isoformat()}
    assert (await ids_of(client, key, **window))[0] == [active[2], suspended[1], active[1]]
    window = {"created[gt]": (start + timedelta(days=1)).isoformat(),
              "created[lte]": (start + timedelta(days=2)).isoformat()}
    assert (await ids_of(client, key, **window))[0] == [active[2], suspended[1]]
    # Without an offset a moment is UTC.
    naive = {"created[lt]": "2026-03-01T00:30:00"}
    assert (await ids_of(client, key, **naive))[0] == [active[0]]
    assert (await ids_of(client, key, external_ref="crm-42"))[0] == [active[1]]
    # A filter and a cursor together: the cursor may be any row the key sees.
    assert (await ids_of(client, key, status="active",
                         starting_after=suspended[1]))[0] == active[:2][::-1]


async def test_a_partner_lists_only_its_own_players(client, engine):
    a, b = partner_key(engine), partner_key(engine)
    mine, theirs = seed(engine, a.partner_id, 3), seed(engine, b.partner_id, 2)

    assert (await ids_of(client, a, limit=100))[0] == mine[::-1]
    assert (await ids_of(client, b, limit=100))[0] == theirs[::-1]
    # Another partner's player as a cursor is unknown, as an id that does not exist.
    for cursor in ("starting_after", "ending_before"):
        response = await client.get("/v1/players", params={cursor: theirs[0]}, headers=a.headers)
        assert_problem(response, 400, "invalid_cursor")
    response = await client.get("/v1/players", params={"starting_after": "ply_nope"},
                                headers=a.headers)
    assert_problem(response, 400, "invalid_cursor")
    response = await client.get("/v1/players", params={"partner": b.partner_id},
                                headers=a.headers)
    assert_problem(response, 403, "partner_mismatch")
    assert (await ids_of(client, a, partner=a.partner_id))[0] == mine[::-1]


async def test_an_operator_lists_every_partner_and_may_narrow_to_one(client, engine, keys):
    a, b = partner_key(engine), partner_key(engine)
    start = datetime(2030, 1, 1, tzinfo=UTC)   # newer than any other test's rows
    mine = seed(engine, a.partner_id, 2, start=start)
    theirs = seed(engine, b.partner_id, 2, start=start + timedelta(seconds=10))
    assert (await ids_of(client, keys.operator, partner=a.partner_id))[0] == mine[::-1]
    assert (await ids_of(client, keys.operator, limit=4,
                         **{"created[gte]": start.isoformat(),
                            "created[lt]": (start + timedelta(minutes=1)).isoformat()}))[0] == (
        theirs[::-1] + mine[::-1])
    # An operator's cursor may be any partner's row.
    page, _ = await ids_of(client, keys.operator, partner=a.partner_id,
                           starting_after=theirs[0])
    assert page == mine[::-1]


async def test_each_item_is_the_full_player_resource(client, engine, keys):
    key = partner_key(engine)
    created = await client.post("/v1/players", headers=key.headers, json={
        "first_name": "Ada", "last_name": "Lovelace", "jurisdiction": "US-NJ"})
    assert created.status_code == 201, created.text
    one = await client.get(f"/v1/players/{created.json()['id']}", headers=key.headers)
    listed = await client.get("/v1/players", headers=key.headers)
    assert listed.json()["data"] == [one.json()]


async def test_bad_list_requests_are_problems(client, engine):
    key = partner_key(engine)
    seed(engine, key.partner_id, 1)
    both = await client.get("/v1/players", params={"starting_after": "a", "ending_before": "b"},
                            headers=key.headers)
    assert_problem(both, 422, "validation_error")
    for limit in (0, 101, "x"):
        response = await client.get("/v1/players", params={"limit": limit}, headers=key.headers)
        assert_problem(response, 422, "validation_error")
    response = await client.get("/v1/players", params={"created[gte]": "yesterday"},
                                headers=key.headers)
    assert_problem(response, 422, "validation_error")
    response = await client.get("/v1/players", params={"status": "happy"}, headers=key.headers)
    assert_problem(response, 422, "validation_error")
    assert_problem(await client.get("/v1/players"), 401, "api_key_missing")
