"""Role checks: the house's routes answer operator keys only.

A partner key holding every scope a partner key can be given (results:write included), and a
partner key row that holds every scope there is (operator:review too, as a forged or legacy
row would), call each operator-only route -- on the partner's OWN player, bet, bonus and
partner id, so nothing but the role can refuse them: 403 problem+json, and nothing the partner
owns changes (no rows, no audit record, no ledger movement). The table is checked against
the app: every /v1 route that requires `operator:review` or `results:write` is in it.
"""

from __future__ import annotations

import hashlib
import importlib
import pkgutil
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi.routing import APIRoute
from sqlalchemy import Engine, text

import api.routes
import ledger
from api.app import create_app
from domain.scopes import ALL_SCOPES, OPERATOR_ONLY
from tests.support.api import make_key
from tests.support.factories import Player, fund, make_player, mark_kyc_verified
from tests.support.stack import Stack

CURRENCY = "USD"


@dataclass
class House:
    player: Player
    bet: str
    market: str
    bonus: str
    keys: dict[str, dict[str, str]]      # "every grantable scope" / "every scope (forged)"


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


Request = Callable[[House], tuple[str, str, dict[str, Any] | None]]

OPERATOR_ROUTES: dict[str, Request] = {
    "POST /v1/free_bets": lambda h: ("POST", "/v1/free_bets", {
        "id": uid("fb"), "player_id": h.player.id, "amount": 500, "currency": CURRENCY,
        "reason": "self-granted"}),
    "POST /v1/bonuses": lambda h: ("POST", "/v1/bonuses", {
        "id": uid("bon"), "player_id": h.player.id, "amount": 500, "currency": CURRENCY}),
    "POST /v1/bonuses/{bonus_id}/forfeit": lambda h: (
        "POST", f"/v1/bonuses/{h.bonus}/forfeit", {"reason": "self-forfeited"}),
    "PUT /v1/promotions/deposit_match/{partner_id}": lambda h: (
        "PUT", f"/v1/promotions/deposit_match/{h.player.partner_id}", {
            "percent": 1000, "max_amount": 10**9, "wagering_multiplier": 0,
            "min_odds": "1.01", "valid_days": 3650}),
    "POST /v1/bets/{bet_id}/cash_out/reversal": lambda h: (
        "POST", f"/v1/bets/{h.bet}/cash_out/reversal", {"reason": "palpable error"}),
    "POST /v1/markets/{market_id}/results": lambda h: (
        "POST", f"/v1/markets/{h.market}/results",
        {"version": 1, "selections": {"home": {"result": "won"}}}),
    "POST /v1/markets/{market_id}/rollback": lambda h: (
        "POST", f"/v1/markets/{h.market}/rollback", {"version": 1}),
    "POST /v1/markets/{market_id}/reopen": lambda h: (
        "POST", f"/v1/markets/{h.market}/reopen", {}),
    "POST /v1/markets/{market_id}/cancellations": lambda h: (
        "POST", f"/v1/markets/{h.market}/cancellations",
        {"id": uid("cxl"), "reason_code": "1"}),
    "POST /v1/markets/{market_id}/cancellations/{cancellation_id}/rollback": lambda h: (
        "POST", f"/v1/markets/{h.market}/cancellations/{uid('cxl')}/rollback", None),
    "GET /v1/reconciliation/runs": lambda h: ("GET", "/v1/reconciliation/runs", None),
    "POST /v1/reconciliation/runs": lambda h: ("POST", "/v1/reconciliation/runs", {}),
    "GET /v1/reconciliation/runs/{run_id}": lambda h: (
        "GET", f"/v1/reconciliation/runs/{uid('rec')}", None),
    "GET /v1/reconciliation/breaks": lambda h: ("GET", "/v1/reconciliation/breaks", None),
    "POST /v1/reconciliation/breaks/{break_id}/resolve": lambda h: (
        "POST", "/v1/reconciliation/breaks/1/resolve",
        {"reason": "closed by a partner"}),
    "POST /v1/withdrawals/{withdrawal_id}/review": lambda h: (
        "POST", f"/v1/withdrawals/{uid('wd')}/review", {"decision": "approve"}),
    "POST /v1/kyc/{player_id}/review": lambda h: (
        "POST", f"/v1/kyc/{h.player.id}/review", {"decision": "approve"}),
    "POST /v1/deposits/{deposit_id}/review": lambda h: (
        "POST", f"/v1/deposits/{uid('dep')}/review", {"decision": "fail", "reason": "none"}),
}


def _dependency_names(route: APIRoute) -> set[str]:
    names: set[str] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        names.add(getattr(dependant.call, "__name__", ""))
        stack.extend(dependant.dependencies)
    return names


def test_the_table_names_every_operator_only_route(stack: Stack) -> None:
    served = create_app(stack.settings, engine=stack.engine).openapi()["paths"]
    house = {"require_operator_review", "require_results_write"}
    required = set()
    for module in pkgutil.iter_modules(api.routes.__path__):
        router = getattr(importlib.import_module(f"api.routes.{module.name}"), "router", None)
        for route in getattr(router, "routes", ()):
            if isinstance(route, APIRoute) and _dependency_names(route) & house:
                assert route.path in served        # a route of the app, as it serves it
                required |= {f"{method} {route.path}" for method in route.methods}
    assert required == set(OPERATOR_ROUTES)


def fingerprint(engine: Engine, player: Player) -> dict[str, str]:
    """The partner's rows in every table naming a player or a partner, its audit records, its
    ledger balances, and the reconciliation tables: any write shows."""
    prints: dict[str, str] = {}
    with engine.connect() as conn:
        columns = conn.execute(text(
            "SELECT table_name, column_name FROM information_schema.columns"
            " WHERE table_schema = 'public' AND column_name IN ('player_id', 'partner_id')"
            " AND table_name <> 'api_keys'"       # its last use moves with every request
            " ORDER BY 1, 2")).all()
        for table, column in columns:
            value = player.id if column == "player_id" else player.partner_id
            rows = conn.execute(text(
                f'SELECT t::text FROM "{table}" t WHERE {column} = :v ORDER BY 1'),
                {"v": value}).scalars().all()
            prints[f"{table}.{column}"] = hashlib.sha256("\n".join(rows).encode()).hexdigest()
        prints["audit_log"] = str(conn.execute(text(
            "SELECT count(*) FROM audit_log WHERE record LIKE :p OR record LIKE :q"),
            {"p": f"%{player.id}%", "q": f"%{player.partner_id}%"}).scalar_one())
        for table in ("reconciliation_runs", "reconciliation_breaks", "deposit_match_offers"):
            exists = conn.execute(text("SELECT to_regclass(:t) IS NOT NULL"),
                                  {"t": f"public.{table}"}).scalar_one()
            if exists:
                prints[table] = str(conn.execute(text(
                    f'SELECT md5(coalesce(string_agg(t::text, \'|\' ORDER BY t::text), \'\'))'
                    f' FROM "{table}" t')).scalar_one())
        prints["ledger"] = repr(sorted(map(repr, ledger.balances(conn, f"player:{player.id}"))))
    return prints


@pytest_asyncio.fixture(scope="module")
async def house(stack: Stack) -> AsyncIterator[House]:
    engine = stack.engine
    player = make_player(engine, purpose="role checks")
    mark_kyc_verified(engine, player)
    fund(engine, player, 20_000, CURRENCY)
    market = uid("mkt_role")
    bet = {"id": uid("bet"), "player_id": player.id, "stake": 500, "currency": CURRENCY,
           "bet_type": "single",
           "legs": [{"market_id": market, "selection_id": "home", "odds": "2.00"}]}
    bonus = uid("bon")
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30.0) as http:
        placed = await http.post("/v1/bets", json=bet, headers=player.headers)
        assert placed.status_code == 201, placed.text
        credited = await http.post("/v1/bonuses", headers=player.operator, json={
            "id": bonus, "player_id": player.id, "amount": 1_000, "currency": CURRENCY})
        assert credited.status_code == 201, credited.text
    grantable = make_key(engine, "partner", player.partner_id, ALL_SCOPES - OPERATOR_ONLY,
                         name="every grantable scope")
    forged = make_key(engine, "partner", player.partner_id, ALL_SCOPES - OPERATOR_ONLY,
                      name="every scope, forged")
    with engine.begin() as conn:     # what no API or CLI path makes: a partner key with them all
        conn.execute(text("UPDATE api_keys SET scopes = :s WHERE id = :id"),
                     {"s": sorted(ALL_SCOPES), "id": forged.id})
    yield House(player, bet["id"], market, bonus,
                {"every grantable scope": grantable.headers, "every scope": forged.headers})


@pytest.mark.parametrize("key", ["every grantable scope", "every scope"])
@pytest.mark.parametrize("route", OPERATOR_ROUTES)
async def test_a_partner_key_with_every_scope_cannot_call_an_operator_route(
        route: str, key: str, house: House, stack: Stack, http: httpx.AsyncClient) -> None:
    method, path, body = OPERATOR_ROUTES[route](house)
    before = fingerprint(stack.engine, house.player)
    answer = await http.request(method, path, json=body, headers={
        **house.keys[key], "Idempotency-Key": uuid.uuid4().hex})
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["code"] in {"insufficient_scope", "operator_only"}
    assert fingerprint(stack.engine, house.player) == before


async def test_the_operator_key_is_what_the_routes_wait_for(
        house: House, stack: Stack, http: httpx.AsyncClient) -> None:
    """The control: the same forfeit by an operator key goes through and shows in the print."""
    before = fingerprint(stack.engine, house.player)
    answer = await http.post(f"/v1/bonuses/{house.bonus}/forfeit", headers={
        **house.player.operator, "Idempotency-Key": uuid.uuid4().hex}, json={"reason": "test"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "forfeited"
    assert fingerprint(stack.engine, house.player) != before
