"""A settled market reaches partners as one summary each; per-bet events only by subscription.

Bets are placed and the market settled (then resettled) through the real commands, as the
settlement workflow runs them; the dispatcher delivers what partners asked for."""

from __future__ import annotations

import uuid

from tests.support.settlement import funded_player, place, post_result, run_market, uid
from tests.support.webhooks import body_of, make_endpoint, new_partner
from webhooks.dispatcher import Dispatcher


async def test_a_settled_market_is_a_summary_per_partner_and_per_bet_events_by_subscription(
        engine, settings, wh_settings, receiver):
    market = uid("mkt")
    a, b = new_partner(), new_partner()
    hooks = {name: uuid.uuid4().hex[:12] for name in ("a_all", "a_bets", "b_all")}
    make_endpoint(engine, wh_settings, a, receiver.hook(hooks["a_all"]), event_types=["*"])
    make_endpoint(engine, wh_settings, a, receiver.hook(hooks["a_bets"]),
                  event_types=["bet.settled", "bet.resettled"])
    make_endpoint(engine, wh_settings, b, receiver.hook(hooks["b_all"]), event_types=["*"])
    player_a, player_b = funded_player(engine, 10_000, partner_id=a), \
        funded_player(engine, 10_000, partner_id=b)
    bets_a = [place(engine, settings, player_a, 100, [(market, "home", "2.0")])
              for _ in range(3)]
    place(engine, settings, player_b, 500, [(market, "away", "3.0")])
    async with Dispatcher(engine, wh_settings) as dispatcher:
        await dispatcher.drain()                          # bet.placed: nobody subscribed
        assert receiver.deliveries(hooks["a_bets"]) == []
        post_result(engine, settings, market, 1, {"home": {"result": "won"},
                                                  "away": {"result": "lost"}})
        run_market(engine, settings, market, 1)
        await dispatcher.drain()
        post_result(engine, settings, market, 2, {"home": {"result": "lost"},
                                                  "away": {"result": "won"}})
        run_market(engine, settings, market, 2)
        await dispatcher.drain()

    def types(hook: str) -> list[str]:
        return sorted(body_of(d)["type"] for d in receiver.deliveries(hooks[hook]))

    def summaries(hook: str) -> list[dict]:
        return [body_of(d)["data"] for d in receiver.deliveries(hooks[hook])
                if body_of(d)["type"].startswith("market.")]

    assert "bet.settled" not in types("a_all") and "bet.placed" not in types("a_all")
    assert [t for t in types("a_all") if t.startswith("market.")] == [
        "market.resettled", "market.settled"]
    assert types("a_bets") == ["bet.resettled"] * 3 + ["bet.settled"] * 3
    assert {body_of(d)["data"]["bet_id"] for d in receiver.deliveries(hooks["a_bets"])} == \
        {bet.split("/", 1)[1] for bet in bets_a}
    first_a = next(s for s in summaries("a_all") if s["version"] == 1)
    assert first_a["bets"] == {"total": 3, "open": 0, "settled": 3}
    assert set(first_a["totals"]) == {"GBP"} and first_a["totals"]["GBP"]["stake"] == 300
    first_b = next(s for s in summaries("b_all") if s["version"] == 1)
    assert first_b["bets"] == {"total": 1, "open": 0, "settled": 1}     # B's figures only
    assert first_b["totals"]["GBP"]["stake"] == 500
    assert not [t for t in types("b_all") if t.startswith("bet.")]
