"""From domain events (outbox rows) to partner events and the messages that deliver them.

    need = needs(rows, endpoints)                         # what to look up in the database
    planned = plan(rows, endpoints, facts)                # Plan(events=[...], messages=[...])

Which partner an outbox row concerns: its `partner_id`, else its player's partner. Market rows
(`market.settled`, `market.rolled_back`) become one summary event per partner with bets on the
market (`market.resettled` for a version above 1); per-batch `bets.settled` /
`bets.rolled_back` rows become one event per bet, made only for partners with an endpoint
subscribed to that per-bet type. Rows that concern no partner (other market events, internal
ones) are not partner events. Pure: the database answers come in `Facts`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from webhooks import filters

MARKET_SUMMARIES = {"market.settled", "market.rolled_back"}
BET_BATCHES = {"bets.settled": "bet.settled", "bets.rolled_back": "bet.rolled_back"}


@dataclass(frozen=True)
class Endpoint:
    id: str
    partner_id: str
    event_types: tuple[str, ...]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_type: str
    aggregate_type: str
    aggregate_id: str
    player_id: str | None
    partner_id: str | None
    payload: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> OutboxRow:
        return cls(row["id"], row["event_type"], row["aggregate_type"], row["aggregate_id"],
                   row["player_id"], row["partner_id"], dict(row["payload"]), row["created_at"])


@dataclass(frozen=True)
class Needs:
    player_ids: set[str]
    bet_ids: set[str]
    market_ids: set[str]


@dataclass
class Facts:
    player_partners: dict[str, str] = field(default_factory=dict)
    bets: dict[str, tuple[str, str]] = field(default_factory=dict)       # id -> partner, ext id
    markets: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


@dataclass
class Plan:
    events: list[dict[str, Any]] = field(default_factory=list)
    messages: list[tuple[str, str, str]] = field(default_factory=list)  # event, endpoint, partner


def new_event_id() -> str:
    return "evt_" + uuid.uuid4().hex


def needs(rows: Iterable[OutboxRow], endpoints: Sequence[Endpoint]) -> Needs:
    per_bet = {e.partner_id for e in endpoints if filters.wants_per_bet(e.event_types)}
    player_ids, bet_ids, market_ids = set(), set(), set()
    for row in rows:
        if row.event_type in MARKET_SUMMARIES:
            market_ids.add(row.aggregate_id)
        elif row.event_type in BET_BATCHES:
            # A batch names its partner (settlement writes one per partner): look its bets up
            # only when that partner asked for per-bet events.
            if per_bet and (row.partner_id is None or row.partner_id in per_bet):
                bet_ids.update(str(item["bet_id"]) for item in row.payload.get("bets", []))
        elif row.partner_id is None and row.player_id is not None:
            player_ids.add(row.player_id)
    return Needs(player_ids, bet_ids, market_ids)


class _Builder:
    def __init__(self, endpoints: Sequence[Endpoint], new_id: Callable[[], str]) -> None:
        self.by_partner: dict[str, list[Endpoint]] = {}
        for endpoint in endpoints:
            self.by_partner.setdefault(endpoint.partner_id, []).append(endpoint)
        self.by_id = {endpoint.id: endpoint for endpoint in endpoints}
        self.new_id = new_id
        self.plan = Plan()

    def targets(self, partner_id: str, event_type: str,
                excluded: str | None = None) -> list[Endpoint]:
        return [e for e in self.by_partner.get(partner_id, ())
                if e.id != excluded and filters.matches(e.event_types, event_type)]

    def add(self, row: OutboxRow, partner_id: str, event_type: str, data: dict[str, Any],
            targets: Sequence[Endpoint], *, endpoint_id: str | None = None) -> None:
        event_id = self.new_id()
        self.plan.events.append({"id": event_id, "partner_id": partner_id,
                                 "event_type": event_type, "payload": data,
                                 "occurred_at": row.created_at, "outbox_id": row.id,
                                 "endpoint_id": endpoint_id})
        self.plan.messages.extend((event_id, e.id, partner_id) for e in targets)


def plan(rows: Iterable[OutboxRow], endpoints: Sequence[Endpoint], facts: Facts, *,
         new_id: Callable[[], str] = new_event_id) -> Plan:
    build = _Builder(endpoints, new_id)
    for row in rows:
        if row.event_type == filters.TEST:
            endpoint = build.by_id.get(row.aggregate_id)
            if row.partner_id is not None:
                build.add(row, row.partner_id, row.event_type, row.payload,
                          [endpoint] if endpoint is not None else [], endpoint_id=row.aggregate_id)
        elif row.event_type in MARKET_SUMMARIES:
            _market_summaries(build, row, facts)
        elif row.event_type in BET_BATCHES:
            _per_bet(build, row, facts)
        else:
            partner_id = row.partner_id or facts.player_partners.get(row.player_id or "")
            if partner_id is None:
                continue    # no partner's business (e.g. market.result_received)
            excluded = (row.payload.get("endpoint_id")
                        if row.event_type in filters.OPERATIONAL_TYPES else None)
            targets = build.targets(partner_id, row.event_type, excluded)
            if row.event_type in filters.PER_BET_TYPES and not targets:
                continue    # per-bet events exist by subscription only
            build.add(row, partner_id, row.event_type, row.payload, targets)
    return build.plan


def _market_summaries(build: _Builder, row: OutboxRow, facts: Facts) -> None:
    version = row.payload.get("version")
    if row.event_type == "market.rolled_back":
        event_type = "market.rolled_back"
    else:
        event_type = "market.resettled" if (version or 1) > 1 else "market.settled"
    for partner_id, summary in sorted(facts.markets.get(row.aggregate_id, {}).items()):
        data = {"market_id": row.aggregate_id, "version": version, "bets": summary["bets"],
                "totals": summary["totals"], "links": {"bet": "/v1/bets/{bet_id}"}}
        build.add(row, partner_id, event_type, data, build.targets(partner_id, event_type))


def _per_bet(build: _Builder, row: OutboxRow, facts: Facts) -> None:
    for item in row.payload.get("bets", []):
        bet = facts.bets.get(str(item.get("bet_id")))
        if bet is None:
            continue
        partner_id, external_id = bet
        if row.event_type == "bets.rolled_back":
            event_type = "bet.rolled_back"
        elif item.get("kind") == "resettlement":
            event_type = "bet.resettled"
        else:
            event_type = "bet.settled"
        targets = build.targets(partner_id, event_type)
        if not targets:
            continue
        data = {"bet_id": external_id, "player_id": item.get("player_id"),
                "market_id": row.payload.get("market_id"), "version": item.get("version"),
                "kind": item.get("kind"), "payout": item.get("payout"),
                "delta": item.get("delta"), "applied": item.get("applied")}
        build.add(row, partner_id, event_type, data, targets)
