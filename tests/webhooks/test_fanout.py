"""From outbox rows to partner events and messages (pure: the database facts are given)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from webhooks.fanout import Endpoint, Facts, OutboxRow, needs, plan

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def row(event_type: str, payload: dict | None = None, *, partner: str | None = None,
        player: str | None = None, aggregate: str = "agg", id: int = 1) -> OutboxRow:
    return OutboxRow(id, event_type, "x", aggregate, player, partner, payload or {}, AT)


def ids():
    counter = itertools.count(1)
    return lambda: f"evt_{next(counter)}"


A_ALL = Endpoint("ep_a_all", "A", ("*",))
A_DEPOSITS = Endpoint("ep_a_dep", "A", ("deposit.*",))
A_BETS = Endpoint("ep_a_bets", "A", ("bet.*",))
B_ALL = Endpoint("ep_b_all", "B", ("*",))


def test_a_partner_event_goes_to_the_matching_endpoints_of_that_partner_only():
    planned = plan([row("deposit.succeeded", {"id": "dep_1"}, partner="A")],
                   [A_ALL, A_DEPOSITS, A_BETS, B_ALL], Facts(), new_id=ids())
    assert [(e["partner_id"], e["event_type"], e["payload"]) for e in planned.events] == [
        ("A", "deposit.succeeded", {"id": "dep_1"})]
    assert planned.messages == [("evt_1", "ep_a_all", "A"), ("evt_1", "ep_a_dep", "A")]


def test_an_event_with_only_a_player_is_the_players_partners():
    rows = [row("kyc.verified", partner=None, player="ply_1")]
    assert needs(rows, [B_ALL]).player_ids == {"ply_1"}
    planned = plan(rows, [A_ALL, B_ALL], Facts(player_partners={"ply_1": "B"}), new_id=ids())
    assert [e["partner_id"] for e in planned.events] == ["B"]
    assert planned.messages == [("evt_1", "ep_b_all", "B")]


def test_an_event_of_no_partner_is_not_a_partner_event():
    planned = plan([row("market.result_received", {"market_id": "m1"})], [A_ALL], Facts())
    assert planned.events == [] and planned.messages == []


def test_a_partner_event_without_endpoints_is_still_listed_for_the_partner():
    planned = plan([row("player.created", partner="C")], [A_ALL], Facts(), new_id=ids())
    assert [e["partner_id"] for e in planned.events] == ["C"] and planned.messages == []


def test_settled_bet_batches_become_per_bet_events_only_for_subscribed_partners():
    batch = row("bets.settled", {"market_id": "m1", "version": 1, "bets": [
        {"bet_id": "A/b1", "player_id": "p1", "kind": "settlement", "version": 1,
         "payout": 300, "delta": 300, "applied": True},
        {"bet_id": "B/b2", "player_id": "p2", "kind": "settlement", "version": 1,
         "payout": 0, "delta": 0, "applied": True},
        {"bet_id": "A/b3", "player_id": "p3", "kind": "resettlement", "version": 2,
         "payout": 50, "delta": -250, "applied": True}]})
    endpoints = [A_ALL, A_BETS, B_ALL]
    assert needs([batch], endpoints).bet_ids == {"A/b1", "B/b2", "A/b3"}
    assert needs([batch], [A_ALL, B_ALL]).bet_ids == set()     # nobody asked: nothing looked up
    facts = Facts(bets={"A/b1": ("A", "b1"), "B/b2": ("B", "b2"), "A/b3": ("A", "b3")})
    planned = plan([batch], endpoints, facts, new_id=ids())
    assert [(e["partner_id"], e["event_type"], e["payload"]["bet_id"])
            for e in planned.events] == [("A", "bet.settled", "b1"), ("A", "bet.resettled", "b3")]
    assert planned.messages == [("evt_1", "ep_a_bets", "A"), ("evt_2", "ep_a_bets", "A")]
    assert planned.events[0]["payload"] == {
        "bet_id": "b1", "player_id": "p1", "market_id": "m1", "version": 1,
        "kind": "settlement", "payout": 300, "delta": 300, "applied": True}


def test_a_settled_market_is_one_summary_per_partner_with_that_partners_figures():
    summaries = {"A": {"bets": {"total": 2, "open": 0, "settled": 2},
                       "totals": {"USD": {"stake": 200, "paid": 300}}},
                 "B": {"bets": {"total": 1, "open": 0, "settled": 1},
                       "totals": {"EUR": {"stake": 100, "paid": 0}}}}
    first = row("market.settled", {"market_id": "m1", "version": 1}, aggregate="m1")
    again = row("market.settled", {"market_id": "m1", "version": 2}, aggregate="m1", id=2)
    rolled = row("market.rolled_back", {"market_id": "m1", "version": 2}, aggregate="m1", id=3)
    assert needs([first], []).market_ids == {"m1"}
    planned = plan([first, again, rolled], [A_ALL, B_ALL], Facts(markets={"m1": summaries}),
                   new_id=ids())
    assert [(e["partner_id"], e["event_type"]) for e in planned.events] == [
        ("A", "market.settled"), ("B", "market.settled"), ("A", "market.resettled"),
        ("B", "market.resettled"), ("A", "market.rolled_back"), ("B", "market.rolled_back")]
    assert planned.events[0]["payload"] == {
        "market_id": "m1", "version": 1, "bets": {"total": 2, "open": 0, "settled": 2},
        "totals": {"USD": {"stake": 200, "paid": 300}}, "links": {"bet": "/v1/bets/{bet_id}"}}
    assert len(planned.messages) == 6


def test_per_bet_events_of_a_partner_without_subscription_are_not_made():
    planned = plan([row("bet.placed", {"id": "b1"}, partner="A")], [A_ALL], Facts())
    assert planned.events == []
    planned = plan([row("bet.placed", {"id": "b1"}, partner="A")], [A_ALL, A_BETS], Facts(),
                   new_id=ids())
    assert planned.messages == [("evt_1", "ep_a_bets", "A")]


def test_operational_events_skip_the_endpoint_they_are_about():
    planned = plan([row("endpoint.disabled", {"endpoint_id": "ep_a_all"}, partner="A")],
                   [A_ALL, A_DEPOSITS, Endpoint("ep_a_ops", "A", ("endpoint.*",))], Facts(),
                   new_id=ids())
    assert planned.messages == [("evt_1", "ep_a_ops", "A")]


def test_a_test_event_goes_to_its_endpoint_only():
    planned = plan([row("webhook.test", {"endpoint_id": "ep_a_dep"}, partner="A",
                        aggregate="ep_a_dep")], [A_ALL, A_DEPOSITS], Facts(), new_id=ids())
    assert planned.messages == [("evt_1", "ep_a_dep", "A")]
    assert planned.events[0]["endpoint_id"] == "ep_a_dep"
