"""The resource lists on the shared pagination (api/pagination.py): GET /v1/withdrawals,
/v1/bets, /v1/markets and /v1/deposits, newest first, filtered by player, status and created
range, each tenant-scoped (a partner sees its own rows only, a cursor of another partner's row
is unknown)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, text

from store import bets as bet_store
from store import deposits as deposit_store
from store import players
from store import withdrawals as withdrawal_store
from tests.support.api import Key, assert_problem, make_key

START = datetime(2026, 2, 1, tzinfo=UTC)


@dataclass
class Partner:
    key: Key
    players: list[str]

    @property
    def headers(self) -> dict[str, str]:
        return self.key.headers


def partner(engine: Engine, players_count: int = 2) -> Partner:
    key = make_key(engine, "partner", f"partner-{uuid.uuid4().hex[:10]}", name="lists")
    ids = []
    with engine.begin() as conn:
        for _ in range(players_count):
            player_id = f"ply_l_{uuid.uuid4().hex[:12]}"
            players.insert(conn, player_id=player_id, partner_id=key.partner_id,
                           external_ref=None, first_name="L", last_name="S", email=None,
                           date_of_birth=None, jurisdiction="US-NJ")
            ids.append(player_id)
    return Partner(key, ids)


async def listed(client, path: str, headers: dict[str, str], **params) -> list[str]:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["object"] == "list" and body["url"] == path
    return [item["id"] for item in body["data"]]


# --- withdrawals ---------------------------------------------------------------------------------

def withdrawals(engine: Engine, owner: Partner, states: list[str]) -> list[str]:
    """One withdrawal per state, a minute apart from START, alternating players; ids oldest
    first."""
    ids = []
    with engine.begin() as conn:
        for n, state in enumerate(states):
            withdrawal_id = f"wd_l_{uuid.uuid4().hex[:12]}"
            withdrawal_store.insert(conn, withdrawal_id=withdrawal_id,
                                    player_id=owner.players[n % len(owner.players)],
                                    partner_id=owner.key.partner_id, amount=100 + n,
                                    currency="USD")
            conn.execute(text("UPDATE withdrawals SET state = :state, created_at = :at "
                              "WHERE id = :id"),
                         {"state": state, "at": START + timedelta(minutes=n),
                          "id": withdrawal_id})
            ids.append(withdrawal_id)
    return ids


async def test_withdrawals_list_pages_filters_and_stays_within_the_partner(client, engine, keys):
    mine, theirs = partner(engine), partner(engine)
    ids = withdrawals(engine, mine, ["paid", "cancelled", "paid", "awaiting_2fa", "paid"])
    other = withdrawals(engine, theirs, ["paid"])
    path = "/v1/withdrawals"

    assert await listed(client, path, mine.headers) == ids[::-1]
    first = await client.get(path, params={"limit": 2}, headers=mine.headers)
    assert [w["id"] for w in first.json()["data"]] == ids[::-1][:2]
    assert first.json()["has_more"] is True
    item = first.json()["data"][0]
    assert item["object"] == "withdrawal" and item["amount"] == 104
    assert "steps" not in item and "payouts" not in item
    assert await listed(client, path, mine.headers, limit=2,
                        starting_after=ids[3]) == [ids[2], ids[1]]
    assert await listed(client, path, mine.headers, state="paid") == [ids[4], ids[2], ids[0]]
    assert await listed(client, path, mine.headers, player=mine.players[1]) == [ids[3], ids[1]]
    assert await listed(client, path, mine.headers, **{
        "created[gte]": (START + timedelta(minutes=1)).isoformat(),
        "created[lt]": (START + timedelta(minutes=3)).isoformat()}) == [ids[2], ids[1]]
    assert await listed(client, path, mine.headers, player=theirs.players[0]) == []

    assert_problem(await client.get(path, params={"starting_after": other[0]},
                                    headers=mine.headers), 400, "invalid_cursor")
    assert_problem(await client.get(path, params={"state": "lost"}, headers=mine.headers),
                   422, "validation_error")
    assert_problem(await client.get(path, params={"partner": theirs.key.partner_id},
                                    headers=mine.headers), 403, "partner_mismatch")
    assert await listed(client, path, keys.operator.headers,
                        partner=theirs.key.partner_id) == other


# --- bets ------------------------------------------------------------------------------------

def bets(engine: Engine, owner: Partner, statuses: list[str], *, market: str | None = None,
         external_ids: list[str] | None = None) -> list[str]:
    """One bet per status, a minute apart from START, alternating players; the partner's bet
    ids (its own names), oldest first."""
    ids = []
    with engine.begin() as conn:
        for n, status in enumerate(statuses):
            external = (external_ids or [])[n] if external_ids else f"bet_{uuid.uuid4().hex[:10]}"
            internal = f"{owner.key.partner_id}/{external}"
            bet_store.insert(
                conn, bet_id=internal, partner_id=owner.key.partner_id, external_id=external,
                player_id=owner.players[n % len(owner.players)], currency="USD", stake=100,
                bet_type="single", place_fraction=None, place_count=None, status=status,
                reject_code="insufficient_funds" if status == "rejected" else None,
                reject_reason="test" if status == "rejected" else None, request_hash=b"x",
                legs=[bet_store.LegRow(market or f"mkt_{uuid.uuid4().hex[:8]}", "home", "2.0",
                                       "decimal", 2, 1)])
            conn.execute(text("UPDATE bets SET placed_at = :at WHERE id = :id"),
                         {"at": START + timedelta(minutes=n), "id": internal})
            ids.append(external)
    return ids


async def test_bets_list_pages_by_the_partners_own_bet_ids(client, engine, keys):
    mine, theirs = partner(engine), partner(engine)
    shared = f"bet_shared_{uuid.uuid4().hex[:8]}"
    ids = bets(engine, mine, ["open", "settled", "rejected", "open"],
               external_ids=[f"bet_{uuid.uuid4().hex[:8]}" for _ in range(3)] + [shared])
    other = bets(engine, theirs, ["open"], external_ids=[shared])
    path = "/v1/bets"

    page = await client.get(path, params={"limit": 2}, headers=mine.headers)
    assert [b["id"] for b in page.json()["data"]] == ids[::-1][:2]
    assert page.json()["data"][0]["object"] == "bet"
    assert page.json()["data"][0]["legs"][0]["selection_id"] == "home"
    # Each item is the bet resource, exactly as GET /v1/bets/{id} shows it.
    one = await client.get(f"/v1/bets/{ids[3]}", headers=mine.headers)
    assert page.json()["data"][0] == one.json()
    assert await listed(client, path, mine.headers, starting_after=ids[2]) == [ids[1], ids[0]]
    assert await listed(client, path, mine.headers, ending_before=ids[0],
                        limit=2) == [ids[2], ids[1]]
    assert await listed(client, path, mine.headers, status="open") == [ids[3], ids[0]]
    assert await listed(client, path, mine.headers, player=mine.players[1]) == [ids[3], ids[1]]
    assert await listed(client, path, mine.headers,
                        **{"created[lte]": (START + timedelta(minutes=1)).isoformat()}) == [
        ids[1], ids[0]]
    # The other partner's bet of the same id is never seen, nor usable as a cursor.
    assert await listed(client, path, theirs.headers) == other
    assert_problem(await client.get(path, params={"starting_after": "bet_not_mine"},
                                    headers=mine.headers), 400, "invalid_cursor")
    # An operator names the partner when two partners use the cursor's id.
    ambiguous = await client.get(path, params={"starting_after": shared},
                                 headers=keys.operator.headers)
    body = assert_problem(ambiguous, 400, "invalid_cursor")
    assert shared in body["detail"]
    assert await listed(client, path, keys.operator.headers, partner=mine.key.partner_id,
                        starting_after=shared) == ids[:3][::-1]


# --- markets ---------------------------------------------------------------------------------

def markets(engine: Engine, count: int, betting: list[str] | None = None) -> list[str]:
    """Markets with a result, a minute apart (far in the future: newer than any other test's);
    ids oldest first."""
    ids = []
    with engine.begin() as conn:
        for n in range(count):
            market_id = f"mkt_l_{uuid.uuid4().hex[:10]}"
            conn.execute(text("""INSERT INTO markets (market_id, betting, closed_at, created_at)
                                 VALUES (:m, :b, :at, :at)"""),
                         {"m": market_id, "b": (betting or ["closed"] * count)[n],
                          "at": datetime(2031, 1, 1, tzinfo=UTC) + timedelta(minutes=n)})
            ids.append(market_id)
    return ids


async def test_markets_list_shows_a_partner_the_markets_its_players_bet_on(client, engine,
                                                                           keys):
    mine, theirs = partner(engine), partner(engine)
    ids = markets(engine, 4, ["closed", "open", "closed", "closed"])
    for market in ids[:3]:
        bets(engine, mine, ["settled"], market=market)
    bets(engine, theirs, ["settled"], market=ids[3])
    path = "/v1/markets"

    page = await client.get(path, headers=mine.headers)
    assert [m["id"] for m in page.json()["data"]] == ids[:3][::-1]
    assert page.json()["data"][0] == {**page.json()["data"][0], "object": "market",
                                      "betting": "closed"}
    assert await listed(client, path, mine.headers, limit=1,
                        starting_after=ids[2]) == [ids[1]]
    assert await listed(client, path, mine.headers, betting="open") == [ids[1]]
    assert await listed(client, path, theirs.headers) == [ids[3]]
    assert_problem(await client.get(path, params={"starting_after": ids[3]},
                                    headers=mine.headers), 400, "invalid_cursor")
    window = {"created[gte]": "2031-01-01T00:00:00Z", "created[lt]": "2031-01-02T00:00:00Z"}
    assert await listed(client, path, keys.operator.headers, **window) == ids[::-1]
    assert await listed(client, path, keys.operator.headers, partner=theirs.key.partner_id,
                        **window) == [ids[3]]
    assert_problem(await client.get(path, params={"betting": "maybe"}, headers=mine.headers),
                   422, "validation_error")


# --- deposits --------------------------------------------------------------------------------

def deposits(engine: Engine, owner: Partner, failed: list[bool]) -> list[str]:
    """One deposit each, a minute apart from START, alternating players (pending, or failed);
    ids oldest first."""
    ids = []
    with engine.begin() as conn:
        for n, has_failed in enumerate(failed):
            deposit_id = f"dep_l_{uuid.uuid4().hex[:12]}"
            deposit_store.insert(conn, deposit_id=deposit_id,
                                 player_id=owner.players[n % len(owner.players)],
                                 partner_id=owner.key.partner_id, amount=500 + n,
                                 currency="USD", payment_method="pm_card_visa",
                                 created_by="test")
            conn.execute(text("""
                UPDATE deposits SET created_at = :at,
                       status = CASE WHEN :failed THEN 'failed' ELSE status END,
                       failed_at = CASE WHEN :failed THEN now() END,
                       failure_code = CASE WHEN :failed THEN 'card_declined' END
                 WHERE id = :id"""),
                {"at": START + timedelta(minutes=n), "failed": has_failed, "id": deposit_id})
            ids.append(deposit_id)
    return ids


async def test_deposits_list_pages_filters_and_stays_within_the_partner(client, engine, keys):
    mine, theirs = partner(engine), partner(engine)
    ids = deposits(engine, mine, [False, True, False, True])
    other = deposits(engine, theirs, [False])
    path = "/v1/deposits"

    page = await client.get(path, params={"limit": 3}, headers=mine.headers)
    assert [d["id"] for d in page.json()["data"]] == ids[::-1][:3]
    assert page.json()["has_more"] is True
    one = await client.get(f"/v1/deposits/{ids[3]}", headers=mine.headers)
    assert page.json()["data"][0] == one.json()
    assert await listed(client, path, mine.headers, starting_after=ids[1]) == [ids[0]]
    assert await listed(client, path, mine.headers, status="failed") == [ids[3], ids[1]]
    assert await listed(client, path, mine.headers, player=mine.players[0]) == [ids[2], ids[0]]
    assert await listed(client, path, mine.headers,
                        **{"created[gt]": START.isoformat()}) == ids[1:][::-1]
    assert_problem(await client.get(path, params={"ending_before": other[0]},
                                    headers=mine.headers), 400, "invalid_cursor")
    assert_problem(await client.get(path, params={"status": "lost"}, headers=mine.headers),
                   422, "validation_error")
    assert await listed(client, path, theirs.headers) == other
    assert await listed(client, path, keys.operator.headers,
                        partner=mine.key.partner_id) == ids[::-1]
