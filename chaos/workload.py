"""The chaos run's clients: mixed traffic over the real /v1 API, and the model of what it did.

Rounds of player journeys run until the workload ends: each player is created, located, goes
through KYC, enrols a TOTP second factor (pyotp: enrol + confirm), subscribes its partner's
webhook endpoint to the receiver sandbox, deposits (a card that succeeds, one declined, one
behind 3-D Secure that it authenticates), bets (a single, a parlay, an each-way) on the round's
markets; the operator posts the results, a correction, and in every round one rollback followed
by a new result; then each player withdraws with its second factor.

Clients retry as real clients do: a connection error, a timeout, a 5xx, a 429 or a 409 of a
request in progress is sent again with the same Idempotency-Key, until it is answered. Every
answered success is written into the `Model`; the end checks compare it with the API, the
ledger and Temporal. The model computes what every balance must be by itself (exact fractions,
rounded down once, as the house rules say): it must never read an amount back from the API.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp

RETRY_STATUSES = {425, 429, 500, 502, 503, 504}
CALL_DEADLINE_SECONDS = 120.0
FINAL_DEPOSIT = ("succeeded", "failed")
FINAL_WITHDRAWAL = ("paid", "cancelled", "rejected", "failed")
PLACES = 3
PLACE_FRACTION = Fraction(1, 5)


def transient(answer: httpx.Response) -> bool:
    """Worth sending again with the same key: a 5xx, a 429, or a 409 of the same key still in
    progress (a 409 that refuses the operation is an answer)."""
    if answer.status_code == 409:
        try:
            return bool(answer.json().get("code") == "idempotency_key_in_use")
        except ValueError:
            return False
    return answer.status_code in RETRY_STATUSES


class Unanswered(Exception):
    """A request got no definitive answer before its deadline."""


@dataclass
class Bet:
    id: str
    player_id: str
    stake: int
    bet_type: str
    legs: list[tuple[str, str, Fraction]]    # market, selection, decimal price
    status: str = "open"


@dataclass
class PlayerModel:
    id: str
    partner_id: str
    headers: dict[str, str]
    totp: pyotp.TOTP | None = None
    deposits: dict[str, tuple[int, str]] = field(default_factory=dict)   # id -> amount, status
    bets: list[Bet] = field(default_factory=list)
    withdrawals: dict[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class Model:
    players: dict[str, PlayerModel] = field(default_factory=dict)
    # market -> selection -> (won, position); the last results posted and not rolled back.
    results: dict[str, dict[str, tuple[bool, int]]] = field(default_factory=dict)
    markets: set[str] = field(default_factory=set)
    partners: dict[str, dict[str, str]] = field(default_factory=dict)   # id -> key headers
    operations: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    retries: int = 0

    def count(self, what: str) -> None:
        self.operations[what] = self.operations.get(what, 0) + 1

    def payout(self, bet: Bet) -> int | None:
        """What `bet` returns under the results in force; None while a leg has none."""
        total = Fraction(1)
        if bet.bet_type == "each_way":
            market, selection, price = bet.legs[0]
            if selection not in self.results.get(market, {}):
                return None
            won, position = self.results[market][selection]
            part = Fraction(bet.stake, 2)
            place = 1 + (price - 1) * PLACE_FRACTION if position <= PLACES else Fraction(0)
            return int((part * (price if won else 0) + part * place) // 1)
        for market, selection, price in bet.legs:
            if selection not in self.results.get(market, {}):
                return None
            total *= price if self.results[market][selection][0] else 0
        return int((bet.stake * total) // 1)

    def expected_balance(self, player: PlayerModel) -> dict[str, int]:
        cash = sum(amount for amount, status in player.deposits.values()
                   if status == "succeeded")
        in_play = 0
        for bet in player.bets:
            if bet.status == "rejected":
                continue
            cash -= bet.stake
            paid = self.payout(bet)
            if paid is None:
                in_play += bet.stake
            else:
                cash += paid
        held = 0
        for amount, state in player.withdrawals.values():
            if state == "paid":
                cash -= amount
            elif state not in FINAL_WITHDRAWAL:
                held += amount
        return {"cash": cash, "bets_in_play": in_play, "held": held, "pending_withdrawal": 0,
                "debt": 0}


class Client:
    """One API caller: retries with the same Idempotency-Key until answered."""

    def __init__(self, base_url: str, model: Model) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10.0)
        self.model = model

    async def close(self) -> None:
        await self.http.aclose()

    async def call(self, method: str, path: str, headers: dict[str, str], *,
                   json: Any = None, params: dict[str, Any] | None = None,
                   idempotent: bool = True) -> httpx.Response:
        headers = dict(headers)
        if method == "POST" and idempotent:
            headers["Idempotency-Key"] = uuid.uuid4().hex
        deadline = time.monotonic() + CALL_DEADLINE_SECONDS
        pause = 0.2
        while True:
            try:
                answer = await self.http.request(method, path, headers=headers, json=json,
                                                 params=params)
                if not transient(answer):
                    return answer
                last = f"{answer.status_code} {answer.text[:200]}"
                if answer.headers.get("retry-after", "").isdigit():
                    pause = max(pause, float(answer.headers["retry-after"]))
            except httpx.TransportError as error:
                last = f"{type(error).__name__}: {error}"
            self.model.retries += 1
            if time.monotonic() > deadline:
                raise Unanswered(f"{method} {path}: {last}")
            await asyncio.sleep(pause)
            pause = min(pause * 1.5, 3.0)

    async def ok(self, method: str, path: str, headers: dict[str, str], expected: tuple[int, ...],
                 **kwargs: Any) -> dict[str, Any]:
        answer = await self.call(method, path, headers, **kwargs)
        if answer.status_code not in expected:
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text[:300]}")
        body: dict[str, Any] = answer.json()
        return body

    async def poll(self, path: str, headers: dict[str, str], key: str, final: tuple[str, ...],
                   timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            body = await self.ok("GET", path, headers, (200,))
            if body[key] in final or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.5)


class Workload:
    def __init__(self, *, api_url: str, stripe_url: str, receiver_url: str | None,
                 operator_key: str, seed: int, players_per_round: int = 3,
                 locate: Any = None) -> None:
        self.model = Model()
        self.client = Client(api_url, self.model)
        self.stripe = httpx.AsyncClient(base_url=stripe_url, timeout=10.0)
        self.receiver_url = receiver_url
        self.operator = {"Authorization": f"Bearer {operator_key}"}
        self.rng = random.Random(seed)
        self.players_per_round = players_per_round
        self.locate = locate   # (player_id) -> None: an allowed location on record
        self.rounds = 0

    async def close(self) -> None:
        await self.client.close()
        await self.stripe.aclose()

    async def run(self, until: float) -> None:
        """Rounds until the monotonic time `until` (a round started is finished)."""
        while time.monotonic() < until:
            self.rounds += 1
            try:
                await self.round(self.rounds)
            except Exception as error:   # recorded; the end checks judge what was left
                self.model.failures.append(f"round {self.rounds}: {type(error).__name__}: "
                                           f"{error}")

    # --- a round ---------------------------------------------------------------------------
    async def round(self, number: int) -> None:
        tag = f"r{number}{uuid.uuid4().hex[:6]}"
        markets = {"single": f"mkt_{tag}_a", "parlay": f"mkt_{tag}_b",
                   "each_way": f"mkt_{tag}_c"}
        self.model.markets.update(markets.values())
        partner = await self.partner(tag)
        players = await asyncio.gather(*[self.journey(partner, markets, f"{tag}p{i}")
                                         for i in range(self.players_per_round)],
                                       return_exceptions=True)
        for player in players:
            if isinstance(player, BaseException):
                self.model.failures.append(f"{tag} journey: {type(player).__name__}: {player}")
        await self.results(markets, number)
        ready = [p for p in players if isinstance(p, PlayerModel)]
        outcome = await asyncio.gather(*[self.withdraw(p) for p in ready],
                                       return_exceptions=True)
        for error in outcome:
            if isinstance(error, BaseException):
                self.model.failures.append(f"{tag} withdrawal: {type(error).__name__}: {error}")

    async def partner(self, tag: str) -> dict[str, str]:
        partner_id = f"partner-chaos-{tag}"
        made = await self.client.ok("POST", "/v1/api_keys", self.operator, (201,),
                                    json={"name": f"chaos {tag}", "partner_id": partner_id})
        headers = {"Authorization": f"Bearer {made['secret']}"}
        self.model.partners[partner_id] = headers
        if self.receiver_url:
            await self.client.ok("POST", "/v1/webhook_endpoints", headers, (201,), json={
                "url": f"{self.receiver_url}/hooks/{partner_id}", "event_types": ["*"]})
            self.model.count("webhook endpoint subscribed")
        return {"partner_id": partner_id, **headers}

    async def journey(self, partner: dict[str, str], markets: dict[str, str],
                      tag: str) -> PlayerModel:
        headers = {"Authorization": partner["Authorization"]}
        created = await self.client.ok("POST", "/v1/players", headers, (201,), json={
            "first_name": "Chaos", "last_name": tag, "email": f"{tag}@example.test",
            "date_of_birth": "1990-05-17", "jurisdiction": "US-NJ"})
        player = PlayerModel(created["id"], partner["partner_id"], headers)
        self.model.players[player.id] = player
        self.model.count("player created")
        if self.locate is not None:
            await asyncio.to_thread(self.locate, player.id)
        kyc = await self.client.ok("POST", f"/v1/players/{player.id}/kyc", headers, (202,),
                                   json={"document": {"type": "passport", "number": f"P{tag}",
                                                      "country": "US"}})
        self.model.count("kyc started")
        await self.enrol_second_factor(player)
        for method in ("pm_card_visa", "pm_card_chargeDeclined", "pm_card_threeDSecure2Required"):
            await self.deposit(player, method, self.rng.choice([5_000, 7_500, 10_000]))
        await self.bets(player, markets)
        del kyc
        return player

    async def enrol_second_factor(self, player: PlayerModel) -> None:
        enrolled = await self.client.ok("POST", f"/v1/players/{player.id}/second_factor/totp",
                                        player.headers, (201,))
        secret = parse_qs(urlparse(enrolled["provisioning_uri"]).query)["secret"][0]
        player.totp = pyotp.TOTP(secret)
        await self.client.ok("POST", f"/v1/players/{player.id}/second_factor/totp/confirm",
                             player.headers, (200,), json={"code": player.totp.now()})
        self.model.count("second factor enrolled")

    async def deposit(self, player: PlayerModel, method: str, amount: int) -> None:
        body = await self.client.ok("POST", "/v1/deposits", player.headers, (202,), json={
            "player_id": player.id, "amount": amount, "currency": "USD",
            "payment_method": method})
        deposit_id = body["id"]
        player.deposits[deposit_id] = (amount, body["status"])
        self.model.count(f"deposit {method}")
        final = FINAL_DEPOSIT
        body = await self.client.poll(f"/v1/deposits/{deposit_id}", player.headers, "status",
                                      (*final, "requires_action"), 120)
        if body["status"] == "requires_action":
            url = (body.get("next_action") or {}).get("redirect_url") or ""
            intent = urlparse(url).path.rsplit("/", 1)[-1]
            await self.authenticate(intent)
            self.model.count("3-D Secure authenticated")
            body = await self.client.poll(f"/v1/deposits/{deposit_id}", player.headers,
                                          "status", final, 180)
        player.deposits[deposit_id] = (amount, body["status"])

    async def authenticate(self, intent: str) -> None:
        deadline = time.monotonic() + CALL_DEADLINE_SECONDS
        while True:
            try:
                answer = await self.stripe.post(f"/_sandbox/payment_intents/{intent}/authenticate",
                                                json={"outcome": "succeed"})
                if answer.status_code < 500:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise Unanswered(f"3-D Secure of {intent}")
            await asyncio.sleep(0.5)

    async def bets(self, player: PlayerModel, markets: dict[str, str]) -> None:
        price = Fraction(self.rng.choice([150, 200, 250, 300]), 100)
        plans = [
            Bet(f"bet_{uuid.uuid4().hex[:12]}", player.id, 1_000, "single",
                [(markets["single"], self.rng.choice(["home", "away"]), price)]),
            Bet(f"bet_{uuid.uuid4().hex[:12]}", player.id, 500, "parlay",
                [(markets["single"], "home", Fraction(2)), (markets["parlay"], "home",
                                                            Fraction(3, 2))]),
            Bet(f"bet_{uuid.uuid4().hex[:12]}", player.id, 800, "each_way",
                [(markets["each_way"], self.rng.choice(["h1", "h2", "h3", "h4"]),
                  Fraction(6))]),
        ]
        for bet in plans:
            body: dict[str, Any] = {
                "id": bet.id, "player_id": player.id, "stake": bet.stake, "currency": "USD",
                "bet_type": bet.bet_type,
                "legs": [{"market_id": m, "selection_id": s, "odds": f"{float(p):.2f}"}
                         for m, s, p in bet.legs]}
            if bet.bet_type == "each_way":
                body["each_way"] = {"place_fraction": "1/5", "places": PLACES}
            answer = await self.client.ok("POST", "/v1/bets", player.headers, (201,), json=body)
            bet.status = answer["status"]
            player.bets.append(bet)
            self.model.count(f"bet {bet.bet_type}")

    async def results(self, markets: dict[str, str], number: int) -> None:
        """Results v1 for every market; a correction (v2) of the single's market; a rollback
        of the each-way market's v1 and a new result (v2) for it."""
        single, parlay, each_way = markets["single"], markets["parlay"], markets["each_way"]
        home = self.rng.random() < 0.5
        await self.post_result(single, 1, {"home": (home, 1 if home else 2),
                                           "away": (not home, 2 if home else 1)})
        await self.post_result(parlay, 1, {"home": (True, 1), "away": (False, 2)})
        order = ["h1", "h2", "h3", "h4"]
        self.rng.shuffle(order)
        await self.post_result(each_way, 1, {s: (i == 0, i + 1) for i, s in enumerate(order)})
        await self.settled(single, 1)
        await self.post_result(single, 2, {"home": (not home, 2 if not home else 1),
                                           "away": (home, 1 if not home else 2)})
        self.model.count("result corrected")
        await self.settled(each_way, 1)
        await self.client.ok("POST", f"/v1/markets/{each_way}/rollback", self.operator, (202,),
                             json={"version": 1})
        self.model.results.pop(each_way, None)
        self.model.count("market rolled back")
        await self.settled(each_way, 1, state="rolled_back")
        self.rng.shuffle(order)
        await self.post_result(each_way, 2, {s: (i == 0, i + 1) for i, s in enumerate(order)})
        for market, version in ((single, 2), (parlay, 1), (each_way, 2)):
            await self.settled(market, version)

    async def post_result(self, market: str, version: int,
                          selections: dict[str, tuple[bool, int]]) -> None:
        await self.client.ok("POST", f"/v1/markets/{market}/results", self.operator, (202,),
                             json={"version": version, "selections": {
                                 s: {"result": "won" if won else "lost", "position": position}
                                 for s, (won, position) in selections.items()}})
        self.model.results[market] = selections
        self.model.count("result posted")

    async def settled(self, market: str, version: int, state: str = "settled",
                      timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = await self.client.ok("GET", f"/v1/markets/{market}/settlement", self.operator,
                                        (200,))
            if body.get("state") == state and (body.get("version") or 0) >= version \
                    or state == "rolled_back" and body.get("state") == state:
                return
            await asyncio.sleep(0.5)
        raise Unanswered(f"market {market} not {state} at v{version}")

    async def withdraw(self, player: PlayerModel) -> None:
        succeeded = sum(a for a, s in player.deposits.values() if s == "succeeded")
        if succeeded < 2_000:
            return
        kyc_deadline = time.monotonic() + 120
        while True:   # the withdrawal gate wants a verified identity
            body = await self.client.ok("GET", f"/v1/players/{player.id}", player.headers, (200,))
            if (body.get("kyc") or {}).get("status") == "verified":
                break
            if time.monotonic() > kyc_deadline:
                raise Unanswered(f"KYC of {player.id} not verified: {body.get('kyc')}")
            await asyncio.sleep(1)
        amount = 1_000
        made = await self.client.ok("POST", "/v1/withdrawals", player.headers, (202,), json={
            "player_id": player.id, "amount": amount, "currency": "USD"})
        withdrawal_id = made["id"]
        player.withdrawals[withdrawal_id] = (amount, made["state"])
        self.model.count("withdrawal started")
        path = f"/v1/withdrawals/{withdrawal_id}"
        body = await self.client.poll(path, player.headers, "state",
                                      (*FINAL_WITHDRAWAL, "awaiting_2fa"), 120)
        tries = 0
        while body["state"] == "awaiting_2fa" and tries < 4:
            assert player.totp is not None
            tries += 1
            answer = await self.client.call("POST", f"{path}/second_factor", player.headers,
                                            json={"code": player.totp.now()})
            if answer.status_code == 200:
                self.model.count("second factor answered")
                break
            # A code is good once: the next one comes with the next 30 s step.
            await asyncio.sleep(31 - datetime.now(UTC).second % 30)
        body = await self.client.poll(path, player.headers, "state", FINAL_WITHDRAWAL, 180)
        player.withdrawals[withdrawal_id] = (amount, body["state"])


LOCATE_RETRY_SECONDS = 60.0


def located(database_url: str) -> Any:
    """Setup, not traffic: an allowed location check on record for a player (this machine has
    no GeoIP database that places a test address in New Jersey), as the tests' factory does."""
    from sqlalchemy import exc

    from settlepay.db import make_engine
    from store import geolocation

    engine = make_engine(database_url, pool_size=1)

    def locate(player_id: str) -> None:
        # PostgreSQL is SIGKILLed in the run: like every client, this setup write is retried
        # (same row id, so a commit whose answer was lost is found, not written twice).
        now = datetime.now(UTC)
        check = geolocation.GeolocationCheck(
            id=geolocation.new_id(), player_id=player_id, checked_at=now, latitude=40.2206,
            longitude=-74.7597, ip_address="203.0.113.7", provider="chaos",
            jurisdiction="US-NJ", distance_to_border_miles=20.0, ip_country="US",
            ip_subdivision="NJ", anonymous_flags=(), allowed=True, code="allowed",
            reason="inside US-NJ", valid_until=now + timedelta(hours=6))
        deadline = time.monotonic() + LOCATE_RETRY_SECONDS
        while True:
            try:
                with engine.begin() as conn:
                    if geolocation.get(conn, check.id) is None:
                        geolocation.insert(conn, check)
                return
            except exc.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    return locate
