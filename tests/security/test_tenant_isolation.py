"""Tenant isolation on every resource, over the real API (tests/support/stack.py).

Partner B owns a player with a deposit, a withdrawal waiting for its second factor, bets (one
market only B's players bet on, one both partners' do, one still open for a cash-out), bonus
funds and a deposit-match offer, an API key, a webhook endpoint and an event. Partner A's key
tries to read each of them (404, exactly as for an id that does not exist, or absent from A's
lists; a list cursor naming B's row is refused) and to act on each of them (404; 403 for the
house's routes: markets and their cancellations, free bets and bonuses, cash-out reversal,
reconciliation) -- and after every attempt B's rows, in every table that names a player or a
partner, and B's ledger balances are exactly as they were.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, text

import ledger
from tests.support import settlement
from tests.support.deposits import deposit_body, wait_for_status
from tests.support.factories import Player, fund, make_player, mark_kyc_verified
from tests.support.stack import Stack
from tests.support.webhooks import emit, make_endpoint, webhook_settings
from tests.support.withdrawals import start as start_withdrawal
from tests.support.withdrawals import wait_state
from webhooks.dispatcher import Dispatcher

CURRENCY = "USD"


@dataclass
class World:
    a: Player
    b: Player
    b_key_id: str
    b_deposit: str
    b_withdrawal: str
    b_bet: str
    b_market: str            # only B's players bet on it
    shared_market: str       # A's and B's players bet on it
    b_endpoint: str
    a_endpoint: str
    b_event: str
    b_open_bet: str          # B's bet on a market with no result yet (cash-out)
    b_bonus: str             # bonus funds an operator credited to B's player


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def bet(player: Player, market: str, stake: int = 500) -> dict[str, Any]:
    return {"id": uid("bet"), "player_id": player.id, "stake": stake, "currency": CURRENCY,
            "bet_type": "single",
            "legs": [{"market_id": market, "selection_id": "home", "odds": "2.00"}]}


def headers(player: Player) -> dict[str, str]:
    return {**player.headers, "Idempotency-Key": uuid.uuid4().hex}


@pytest_asyncio.fixture(scope="module")
async def world(stack: Stack) -> AsyncIterator[World]:
    engine = stack.engine
    a, b = make_player(engine, purpose="tenant A"), make_player(engine, purpose="tenant B")
    for player in (a, b):
        mark_kyc_verified(engine, player)
        fund(engine, player, 20_000, CURRENCY)
    b_market, shared = uid("mkt_b"), uid("mkt_shared")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30.0) as http, \
            stack.worker():
        posted = await http.post("/v1/deposits", json=deposit_body(b), headers=headers(b))
        assert posted.status_code == 202, posted.text
        deposit = await wait_for_status(http, b, posted.json()["id"])
        assert deposit["status"] == "succeeded", deposit
        withdrawal = await start_withdrawal(http, b, 1_000)
        await wait_state(http, b, withdrawal["id"], ("awaiting_2fa",))
        b_bet, b_open_bet = bet(b, b_market), bet(b, uid("mkt_open"))
        for body, player in ((b_bet, b), (bet(b, shared), b), (bet(a, shared), a),
                             (b_open_bet, b)):
            placed = await http.post("/v1/bets", json=body, headers=player.headers)
            assert placed.status_code == 201, placed.text
        for market in (b_market, shared):
            settlement.post_result(engine, stack.settings, market, 1,
                                   {"home": {"result": "lost"}})
            settlement.run_market(engine, stack.settings, market, 1)
        # Endpoints that want no deposit event, so B's event (ingested alone, as the dispatcher
        # would) schedules no delivery to the unreachable URLs.
        hooks = webhook_settings(stack.settings)
        b_endpoint, _ = make_endpoint(engine, hooks, b.partner_id, "http://127.0.0.1:9/b",
                                      event_types=("withdrawal.*",))
        a_endpoint, _ = make_endpoint(engine, hooks, a.partner_id, "http://127.0.0.1:9/a",
                                      event_types=("withdrawal.*",))
        outbox_id = emit(engine, b.partner_id, player_id=b.id)
        assert Dispatcher(engine, hooks)._ingest(only=[outbox_id]) == 1
        # Promotions: B's player holds bonus funds, B's partner a deposit-match offer.
        b_bonus = uid("bon")
        credited = await http.post("/v1/bonuses", headers=b.operator, json={
            "id": b_bonus, "player_id": b.id, "amount": 1_000, "currency": CURRENCY})
        offer = await http.put(f"/v1/promotions/deposit_match/{b.partner_id}",
                               headers=b.operator, json={
                                   "percent": 50, "max_amount": 10_000,
                                   "wagering_multiplier": 5, "min_odds": "1.50",
                                   "valid_days": 30})
        assert (credited.status_code, offer.status_code) == (201, 200), (credited.text,
                                                                         offer.text)
        events = await http.get("/v1/events", headers=b.headers)
        assert events.status_code == 200 and events.json()["data"], events.text
        with engine.connect() as conn:
            b_key_id = conn.execute(text("SELECT id FROM api_keys WHERE partner_id = :p"),
                                    {"p": b.partner_id}).scalar_one()
        yield World(a, b, b_key_id, deposit["id"], withdrawal["id"], b_bet["id"], b_market,
                    shared, b_endpoint["id"], a_endpoint["id"], events.json()["data"][0]["id"],
                    b_open_bet["id"], b_bonus)


def trail(engine: Engine, world: World) -> dict[str, str]:
    """A fingerprint of everything B owns: its rows in every table naming a player or a
    partner, and its ledger balances; and A's webhook messages and attempts (B's event resent
    to A's endpoint would be one). Any write shows as a changed fingerprint."""
    b = world.b
    fingerprint: dict[str, str] = {}
    with engine.connect() as conn:
        for table in ("webhook_messages", "webhook_attempts"):
            rows = conn.execute(text(
                f"SELECT t::text FROM {table} t WHERE partner_id = :p ORDER BY 1"),
                {"p": world.a.partner_id}).scalars().all()
            fingerprint[f"A's {table}"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        columns = conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name IN ('player_id', 'partner_id')"
            " ORDER BY 1, 2")).all()
        for table, column in columns:
            value = b.id if column == "player_id" else b.partner_id
            rows = conn.execute(text(
                f'SELECT t::text FROM "{table}" t WHERE {column} = :v ORDER BY 1'),
                {"v": value}).scalars().all()
            fingerprint[f"{table}.{column}"] = hashlib.sha256(
                "\n".join(rows).encode()).hexdigest()
        balances = ledger.balances(conn, f"player:{b.id}")
        audit = conn.execute(text(
            "SELECT count(*) FROM audit_log WHERE record LIKE :p OR record LIKE :q"),
            {"p": f"%{b.id}%", "q": f"%{b.partner_id}%"}).scalar_one()
    fingerprint["ledger"] = repr(sorted(map(repr, balances)))
    fingerprint["audit_log"] = str(audit)
    return fingerprint


Request = Callable[[World], tuple[str, str, dict[str, Any] | None]]

READS: dict[str, Request] = {
    "player": lambda w: ("GET", f"/v1/players/{w.b.id}", None),
    "player_balances": lambda w: ("GET", f"/v1/players/{w.b.id}/balances", None),
    "player_transactions": lambda w: ("GET", f"/v1/players/{w.b.id}/transactions", None),
    "player_transactions_csv": lambda w: (
        "GET", f"/v1/players/{w.b.id}/transactions.csv"
               "?created[gte]=2000-01-01T00:00:00Z&created[lt]=2100-01-01T00:00:00Z", None),
    "player_limits": lambda w: ("GET", f"/v1/players/{w.b.id}/limits", None),
    "player_payout_destinations": lambda w: (
        "GET", f"/v1/players/{w.b.id}/payout_destinations", None),
    "deposit": lambda w: ("GET", f"/v1/deposits/{w.b_deposit}", None),
    "withdrawal": lambda w: ("GET", f"/v1/withdrawals/{w.b_withdrawal}", None),
    "bet": lambda w: ("GET", f"/v1/bets/{w.b_bet}", None),
    "market_settlement": lambda w: ("GET", f"/v1/markets/{w.b_market}/settlement", None),
    "webhook_endpoint": lambda w: ("GET", f"/v1/webhook_endpoints/{w.b_endpoint}", None),
    "webhook_endpoint_secret": lambda w: (
        "GET", f"/v1/webhook_endpoints/{w.b_endpoint}/secret", None),
    "webhook_endpoint_attempts": lambda w: (
        "GET", f"/v1/webhook_endpoints/{w.b_endpoint}/attempts", None),
    "event": lambda w: ("GET", f"/v1/events/{w.b_event}", None),
    "event_attempts": lambda w: ("GET", f"/v1/events/{w.b_event}/attempts", None),
    "api_key": lambda w: ("GET", f"/v1/api_keys/{w.b_key_id}", None),
    "bonus": lambda w: ("GET", f"/v1/bonuses/{w.b_bonus}", None),
    "player_promotions": lambda w: ("GET", f"/v1/players/{w.b.id}/promotions", None),
    "deposit_match_offer": lambda w: (
        "GET", f"/v1/promotions/deposit_match/{w.b.partner_id}", None),
}

ACTS: dict[str, Request] = {
    "player_kyc": lambda w: ("POST", f"/v1/players/{w.b.id}/kyc", {
        "document": {"type": "passport", "number": "P7654321", "country": "US"}}),
    "player_geolocation": lambda w: ("POST", f"/v1/players/{w.b.id}/geolocation", {
        "latitude": 40.2171, "longitude": -74.7429, "ip_address": "8.8.8.8"}),
    "player_limits": lambda w: ("PUT", f"/v1/players/{w.b.id}/limits",
                                {"currency": CURRENCY, "day": 100}),
    "player_self_exclusion": lambda w: ("POST", f"/v1/players/{w.b.id}/self-exclusion",
                                        {"permanent": True}),
    "player_time_out": lambda w: ("POST", f"/v1/players/{w.b.id}/time-out",
                                  {"duration_hours": 24}),
    "player_totp_enrolment": lambda w: ("POST", f"/v1/players/{w.b.id}/2fa/totp", {}),
    "player_totp_confirm": lambda w: ("POST", f"/v1/players/{w.b.id}/2fa/totp/confirm",
                                      {"code": "123456"}),
    "player_payout_destination": lambda w: (
        "POST", f"/v1/players/{w.b.id}/payout_destinations", {"destination": "ba_tenant_a"}),
    "deposit_for_player": lambda w: ("POST", "/v1/deposits", deposit_body(w.b)),
    "withdrawal_for_player": lambda w: ("POST", "/v1/withdrawals", {
        "player_id": w.b.id, "amount": 500, "currency": CURRENCY}),
    "withdrawal_second_factor": lambda w: (
        "POST", f"/v1/withdrawals/{w.b_withdrawal}/2fa", {"code": "123456"}),
    "withdrawal_cancel": lambda w: ("POST", f"/v1/withdrawals/{w.b_withdrawal}/cancel", {}),
    "bet_for_player": lambda w: ("POST", "/v1/bets", bet(w.b, w.b_market)),
    "webhook_endpoint_update": lambda w: (
        "PATCH", f"/v1/webhook_endpoints/{w.b_endpoint}", {"url": "http://127.0.0.1:9/a"}),
    "webhook_endpoint_delete": lambda w: (
        "DELETE", f"/v1/webhook_endpoints/{w.b_endpoint}", None),
    "webhook_endpoint_rotate_secret": lambda w: (
        "POST", f"/v1/webhook_endpoints/{w.b_endpoint}/rotate_secret", {}),
    "webhook_endpoint_test": lambda w: (
        "POST", f"/v1/webhook_endpoints/{w.b_endpoint}/test", {}),
    "webhook_endpoint_recover": lambda w: (
        "POST", f"/v1/webhook_endpoints/{w.b_endpoint}/recover",
        {"since": (datetime.now(UTC) - timedelta(days=1)).isoformat()}),
    "event_resend_to_own_endpoint": lambda w: (
        "POST", f"/v1/events/{w.b_event}/resend", {"endpoint_id": w.a_endpoint}),
    "event_resend_to_its_endpoint": lambda w: (
        "POST", f"/v1/events/{w.b_event}/resend", {"endpoint_id": w.b_endpoint}),
    "api_key_revoke": lambda w: ("DELETE", f"/v1/api_keys/{w.b_key_id}", None),
    "api_key_roll": lambda w: ("POST", f"/v1/api_keys/{w.b_key_id}/roll", {}),
    "bet_cash_out": lambda w: ("POST", f"/v1/bets/{w.b_open_bet}/cash_out", {
        "quote_id": uid("quote"), "value": 400,
        "expires_at": (datetime.now(UTC) + timedelta(minutes=5)).isoformat()}),
}

# The house's markets: a partner key is refused whatever market it names.
MARKET_ACTS: dict[str, Request] = {
    "market_results": lambda w: ("POST", f"/v1/markets/{w.b_market}/results", {
        "version": 2, "selections": {"home": {"result": "won"}}}),
    "market_rollback": lambda w: ("POST", f"/v1/markets/{w.b_market}/rollback",
                                  {"version": 1}),
    "market_reopen": lambda w: ("POST", f"/v1/markets/{w.b_market}/reopen", {}),
    "market_cancellation": lambda w: ("POST", f"/v1/markets/{w.b_market}/cancellations",
                                      {"id": uid("cxl"), "reason_code": "1"}),
    "market_cancellation_rollback": lambda w: (
        "POST", f"/v1/markets/{w.b_market}/cancellations/{uid('cxl')}/rollback", None),
}

# The house's other operator-only routes, aimed at B's resources: a partner key is refused
# (403) before anything of B's is looked at; the role matrix itself is
# tests/security/test_operator_only_routes.py.
HOUSE_ACTS: dict[str, Request] = {
    "free_bet_for_player": lambda w: ("POST", "/v1/free_bets", {
        "id": uid("fb"), "player_id": w.b.id, "amount": 500, "currency": CURRENCY,
        "reason": "tenant A"}),
    "bonus_for_player": lambda w: ("POST", "/v1/bonuses", {
        "id": uid("bon"), "player_id": w.b.id, "amount": 500, "currency": CURRENCY}),
    "bonus_forfeit": lambda w: ("POST", f"/v1/bonuses/{w.b_bonus}/forfeit",
                                {"reason": "tenant A"}),
    "deposit_match_set": lambda w: ("PUT", f"/v1/promotions/deposit_match/{w.b.partner_id}", {
        "percent": 1, "max_amount": 1, "wagering_multiplier": 0, "min_odds": "1.01",
        "valid_days": 1, "active": False}),
    "bet_cash_out_reversal": lambda w: ("POST", f"/v1/bets/{w.b_bet}/cash_out/reversal",
                                        {"reason": "tenant A"}),
    "reconciliation_runs": lambda w: ("GET", "/v1/reconciliation/runs", None),
    "reconciliation_run_start": lambda w: ("POST", "/v1/reconciliation/runs", {}),
    "reconciliation_breaks": lambda w: ("GET", "/v1/reconciliation/breaks", None),
    "reconciliation_break_resolve": lambda w: (
        "POST", "/v1/reconciliation/breaks/1/resolve", {"reason": "tenant A"}),
}

# Lists: (path, what B's item is called in it).
LISTS: dict[str, tuple[str, Callable[[World], str]]] = {
    "players": ("/v1/players", lambda w: w.b.id),
    "deposits": ("/v1/deposits", lambda w: w.b_deposit),
    "withdrawals": ("/v1/withdrawals", lambda w: w.b_withdrawal),
    "bets": ("/v1/bets", lambda w: w.b_bet),
    "markets": ("/v1/markets", lambda w: w.b_market),
    "webhook_endpoints": ("/v1/webhook_endpoints", lambda w: w.b_endpoint),
    "events": ("/v1/events", lambda w: w.b_event),
    "api_keys": ("/v1/api_keys", lambda w: w.b_key_id),
}


async def send(http: httpx.AsyncClient, player: Player, request: Request,
               world: World) -> httpx.Response:
    method, path, body = request(world)
    return await http.request(method, path, json=body, headers=headers(player))


@pytest.mark.parametrize("resource", READS)
async def test_partner_a_cannot_read_partner_bs(resource: str, world: World,
                                               http: httpx.AsyncClient) -> None:
    answer = await send(http, world.a, READS[resource], world)
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    owner = await send(http, world.b, READS[resource], world)
    assert owner.status_code == 200, owner.text      # it exists: B reads it


@pytest.mark.parametrize("action", ACTS)
async def test_partner_a_cannot_act_on_partner_bs(action: str, world: World, stack: Stack,
                                                 http: httpx.AsyncClient) -> None:
    before = trail(stack.engine, world)
    answer = await send(http, world.a, ACTS[action], world)
    assert answer.status_code == 404, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert trail(stack.engine, world) == before


@pytest.mark.parametrize("action", MARKET_ACTS)
async def test_a_partner_cannot_change_a_market_its_partner_b_bets_on(
        action: str, world: World, stack: Stack, http: httpx.AsyncClient) -> None:
    before = trail(stack.engine, world)
    answer = await send(http, world.a, MARKET_ACTS[action], world)
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert trail(stack.engine, world) == before


@pytest.mark.parametrize("action", HOUSE_ACTS)
async def test_partner_a_cannot_use_the_houses_routes_on_partner_bs(
        action: str, world: World, stack: Stack, http: httpx.AsyncClient) -> None:
    before = trail(stack.engine, world)
    answer = await send(http, world.a, HOUSE_ACTS[action], world)
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert trail(stack.engine, world) == before


@pytest.mark.parametrize("listing", LISTS)
async def test_partner_bs_items_are_not_in_partner_as_list(
        listing: str, world: World, http: httpx.AsyncClient) -> None:
    path, item = LISTS[listing]
    seen: list[str] = []
    answer = await http.get(path, params={"limit": 100}, headers=world.a.headers)
    assert answer.status_code == 200, answer.text
    seen += [row["id"] for row in answer.json()["data"]]
    assert item(world) not in seen
    theirs = await http.get(path, params={"limit": 100}, headers=world.b.headers)
    assert item(world) in [row["id"] for row in theirs.json()["data"]]


@pytest.mark.parametrize("listing", ["players", "deposits", "withdrawals", "bets", "markets",
                                     "api_keys"])
async def test_partner_a_cannot_list_partner_b_by_naming_it(
        listing: str, world: World, http: httpx.AsyncClient) -> None:
    path, _ = LISTS[listing]
    answer = await http.get(path, params={"partner": world.b.partner_id},
                            headers=world.a.headers)
    assert answer.status_code == 403, answer.text
    assert answer.json()["code"] == "partner_mismatch"


@pytest.mark.parametrize("listing", ["webhook_endpoints", "events"])
async def test_naming_partner_b_in_a_webhook_list_still_lists_only_partner_as(
        listing: str, world: World, http: httpx.AsyncClient) -> None:
    path, item = LISTS[listing]
    for name in ("partner", "partner_id"):
        answer = await http.get(path, params={name: world.b.partner_id},
                                headers=world.a.headers)
        assert answer.status_code == 200, answer.text
        assert {row["partner_id"] for row in answer.json()["data"]} <= {world.a.partner_id}
        assert item(world) not in [row["id"] for row in answer.json()["data"]]


@pytest.mark.parametrize("listing, cursor, status, code", [
    ("players", "starting_after", 400, "invalid_cursor"),
    ("deposits", "starting_after", 400, "invalid_cursor"),
    ("withdrawals", "starting_after", 400, "invalid_cursor"),
    ("bets", "starting_after", 400, "invalid_cursor"),
    ("api_keys", "starting_after", 400, "invalid_cursor"),
    ("events", "cursor", 422, "cursor_invalid"),
])
async def test_a_list_cursor_naming_partner_bs_item_is_refused(
        listing: str, cursor: str, status: int, code: str, world: World,
        http: httpx.AsyncClient) -> None:
    path, item = LISTS[listing]
    answer = await http.get(path, params={cursor: item(world)}, headers=world.a.headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code


async def test_partner_a_sees_only_its_own_players_bets_on_a_shared_market(
        world: World, http: httpx.AsyncClient) -> None:
    path = f"/v1/markets/{world.shared_market}/settlement"
    mine = await http.get(path, headers=world.a.headers)
    every = await http.get(path, headers=world.a.operator)
    assert mine.status_code == every.status_code == 200, (mine.text, every.text)
    assert (mine.json()["bets"]["total"], every.json()["bets"]["total"]) == (1, 2)


async def test_partner_a_cannot_create_a_player_or_a_key_for_partner_b(
        world: World, stack: Stack, http: httpx.AsyncClient) -> None:
    before = trail(stack.engine, world)
    player = await http.post("/v1/players", headers=headers(world.a), json={
        "partner_id": world.b.partner_id, "first_name": "Mallory", "last_name": "Intruder",
        "jurisdiction": "US-NJ"})
    key = await http.post("/v1/api_keys", headers=headers(world.a), json={
        "name": "intruder", "partner_id": world.b.partner_id})
    assert (player.status_code, key.status_code) == (403, 403), (player.text, key.text)
    assert trail(stack.engine, world) == before


async def test_the_fingerprint_sees_a_change_partner_b_makes_itself(
        world: World, stack: Stack, http: httpx.AsyncClient) -> None:
    """The control of every 'nothing changed' above: the same request by B's own key shows."""
    before = trail(stack.engine, world)
    answer = await send(http, world.b, ACTS["player_limits"], world)
    assert answer.status_code == 200, answer.text
    assert trail(stack.engine, world) != before
