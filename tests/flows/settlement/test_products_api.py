"""Sportsbook products over real HTTP on the shared stack, with a real settlement worker
(issue 15): cash-out and its refusals, free bets paying winnings only, bonus funds with
wagering and conversion, a withdrawal forfeiting a bonus, a deposit-match offer, market
cancellation and its rollback. After each: ledger check, audit verify and settlement verify
are clean."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from tests.support.deposits import post_deposit, wait_for_status
from tests.support.factories import Player, fund, make_player, mark_kyc_verified, wait_until
from tests.support.products import all_clean, balances
from tests.support.withdrawals import start, wait_state

USD = "USD"


def bet(player: Player, market: str, stake: int, odds: str, selection: str = "home",
        **extra: object) -> dict:
    return {"id": f"bet_{uuid.uuid4().hex[:10]}", "player_id": player.id, "stake": stake,
            "currency": USD, "bet_type": "single",
            "legs": [{"market_id": market, "selection_id": selection, "odds": odds}], **extra}


def quote(value: int, seconds: float = 30, **extra: object) -> dict:
    expiry = datetime.now(UTC) + timedelta(seconds=seconds)
    return {"quote_id": f"q_{uuid.uuid4().hex[:8]}", "value": value,
            "expires_at": expiry.isoformat(), **extra}


async def settle(http: httpx.AsyncClient, player: Player, market: str, version: int,
                 selections: dict[str, dict]) -> None:
    """Post a result (operator) and wait for the settlement workflow to finish it."""
    posted = await http.post(f"/v1/markets/{market}/results", headers=player.operator,
                             json={"version": version, "selections": selections})
    assert posted.status_code == 202, posted.text

    async def settled() -> bool:
        view = (await http.get(f"/v1/markets/{market}/settlement",
                               headers=player.operator)).json()
        return (view.get("state"), view.get("version")) == ("settled", version)

    await wait_until(settled, timeout=30)


async def test_a_cash_out_over_the_api_is_final_through_results_and_corrections(
        stack, http, market, settlement_worker):
    player = make_player(stack.engine)
    fund(stack.engine, player, 1_000)
    placed = await http.post("/v1/bets", headers=player.headers,
                             json=bet(player, market, 1_000, "3.00"))
    assert placed.status_code == 201, placed.text
    bet_id = placed.json()["id"]
    expired = await http.post(f"/v1/bets/{bet_id}/cash_out", headers=player.headers,
                              json=quote(1_800, seconds=-1))
    assert expired.status_code == 409 and expired.json()["code"] == "cash_out_quote_expired"
    body = quote(1_800)
    first = await http.post(f"/v1/bets/{bet_id}/cash_out", headers=player.headers, json=body)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "cashed_out" and first.json()["cashed_out_value"] == 1_800
    again = await http.post(f"/v1/bets/{bet_id}/cash_out", headers=player.headers, json=body)
    assert again.status_code == 200 and again.json() == first.json()
    other = await http.post(f"/v1/bets/{bet_id}/cash_out", headers=player.headers,
                            json=quote(100))
    assert other.status_code == 409 and other.json()["code"] == "bet_cashed_out"

    await settle(http, player, market, 1, {"home": {"result": "won"}})
    await settle(http, player, market, 2, {"home": {"result": "lost"}})
    shown = (await http.get(f"/v1/bets/{bet_id}", headers=player.headers)).json()
    assert shown["status"] == "cashed_out" and shown["paid"] == 0
    assert [s["kind"] for s in shown["settlements"]] == ["cash_out"]
    assert shown["cash_outs"][0]["ledger_key"].endswith(":cashout")
    assert balances(stack.engine, player.id, USD)["cash"] == 1_800

    reversal = {"reason": "palpable error"}
    partner = await http.post(f"/v1/bets/{bet_id}/cash_out/reversal", headers=player.headers,
                              json=reversal)
    assert partner.status_code == 403
    switched_off = await http.post(f"/v1/bets/{bet_id}/cash_out/reversal",
                                   headers=player.operator, json=reversal,
                                   params={"partner_id": player.partner_id})
    assert switched_off.status_code == 403
    assert switched_off.json()["code"] == "cash_out_reversal_disabled"
    all_clean(stack.engine, stack.settings, market)


async def test_a_free_bet_over_the_api_pays_winnings_only(stack, http, market,
                                                          settlement_worker):
    player = make_player(stack.engine)
    grant = {"id": f"fb_{uuid.uuid4().hex[:8]}", "player_id": player.id, "amount": 2_500,
             "currency": USD, "reason": "welcome offer"}
    by_partner = await http.post("/v1/free_bets", headers=player.headers, json=grant)
    assert by_partner.status_code == 403                   # the house's money: operators only
    granted = await http.post("/v1/free_bets", headers=player.operator, json=grant)
    assert granted.status_code == 201, granted.text
    assert (await http.post("/v1/free_bets", headers=player.operator,
                            json=grant)).status_code == 200
    short = await http.post("/v1/bets", headers=player.headers,
                            json=bet(player, market, 3_000, "+100", funding="free_bet"))
    assert short.status_code == 402 and short.json()["code"] == "insufficient_free_bet"
    placed = await http.post("/v1/bets", headers=player.headers,
                             json=bet(player, market, 2_500, "+100", funding="free_bet"))
    assert placed.status_code == 201 and placed.json()["funding"] == "free_bet"
    other = f"{market}_b"
    granted = await http.post("/v1/free_bets", headers=player.operator,
                              json={**grant, "id": f"fb_{uuid.uuid4().hex[:8]}", "amount": 700})
    assert granted.status_code == 201
    voided = await http.post("/v1/bets", headers=player.headers,
                             json=bet(player, other, 700, "3.00", funding="free_bet"))
    assert voided.status_code == 201

    await settle(http, player, market, 1, {"home": {"result": "won"}})
    await settle(http, player, other, 1, {"home": {"result": "lost", "void_factor": "1",
                                                   "void_reason": 5}})
    # $25 free bet at +100 returns $25, not $50; the void one gives the free bet back.
    assert balances(stack.engine, player.id, USD) | {
        "cash": 2_500, "free_bet": 700, "free_in_play": 0} == (
        balances(stack.engine, player.id, USD))
    shown = (await http.get(f"/v1/bets/{placed.json()['id']}", headers=player.headers)).json()
    assert (shown["status"], shown["paid"]) == ("settled", 2_500)
    held = (await http.get(f"/v1/players/{player.id}/promotions", headers=player.headers))
    assert held.json()["balances"] == [{"currency": USD, "free_bet": 700, "free_bets_in_play": 0,
                                        "bonus": 0, "active_bonus_id": None}]
    stranger = make_player(stack.engine)
    assert (await http.get(f"/v1/players/{player.id}/promotions",
                           headers=stranger.headers)).status_code == 404
    void = (await http.get(f"/v1/bets/{voided.json()['id']}", headers=player.headers)).json()
    assert (void["paid"], void["returned_free_bet"]) == (0, 700)
    assert void["settlements"][-1]["results"][f"{other}/home"]["void_reason"] == "5"
    all_clean(stack.engine, stack.settings, market, other)


async def test_bonus_funds_over_the_api_wager_convert_and_stay_with_their_partner(
        stack, http, market, settlement_worker):
    player = make_player(stack.engine)
    fund(stack.engine, player, 200)
    credit = {"id": f"bonus_{uuid.uuid4().hex[:8]}", "player_id": player.id, "amount": 800,
              "currency": USD, "wagering_multiplier": 1, "min_odds": "1.50"}
    created = await http.post("/v1/bonuses", headers=player.operator, json=credit)
    assert created.status_code == 201, created.text
    assert created.json()["wagering_requirement"] == 800
    again = await http.post("/v1/bonuses", headers=player.operator,
                            json={**credit, "id": f"bonus_{uuid.uuid4().hex[:8]}"})
    assert again.status_code == 409 and again.json()["code"] == "bonus_active"

    placed = await http.post("/v1/bets", headers=player.headers,
                             json=bet(player, market, 1_000, "2.00"))
    assert placed.status_code == 201 and placed.json()["stake_bonus"] == 800   # cash first
    await settle(http, player, market, 1, {"home": {"result": "won"}})
    shown = await http.get(f"/v1/bonuses/{credit['id']}", headers=player.headers)
    assert shown.status_code == 200, shown.text
    assert (shown.json()["status"], shown.json()["wagered"]) == ("converted", 1_000)
    assert shown.json()["converted_amount"] == 1_600         # its share of the 2,000 return
    assert balances(stack.engine, player.id, USD) | {"cash": 2_000, "bonus": 0} == (
        balances(stack.engine, player.id, USD))
    stranger = make_player(stack.engine)
    hidden = await http.get(f"/v1/bonuses/{credit['id']}", headers=stranger.headers)
    assert hidden.status_code == 404

    offer = {"percent": 50, "max_amount": 5_000, "wagering_multiplier": 10,
             "min_odds": "1.50", "valid_days": 30}
    assert (await http.put(f"/v1/promotions/deposit_match/{player.partner_id}",
                           headers=player.headers, json=offer)).status_code == 403
    set_offer = await http.put(f"/v1/promotions/deposit_match/{player.partner_id}",
                               headers=player.operator, json=offer)
    assert set_offer.status_code == 200 and set_offer.json()["min_odds"] == "3/2"
    read = await http.get(f"/v1/promotions/deposit_match/{player.partner_id}",
                          headers=player.headers)
    assert read.status_code == 200 and read.json()["percent"] == 50
    all_clean(stack.engine, stack.settings, market)


async def test_a_withdrawal_before_the_wagering_is_met_forfeits_the_bonus(stack, worker,
                                                                         http):
    player = make_player(stack.engine)
    mark_kyc_verified(stack.engine, player)
    fund(stack.engine, player, 3_000)
    bonus_id = f"bonus_{uuid.uuid4().hex[:8]}"
    created = await http.post("/v1/bonuses", headers=player.operator, json={
        "id": bonus_id, "player_id": player.id, "amount": 500, "currency": USD})
    assert created.status_code == 201, created.text
    withdrawal = await start(http, player, 1_000)
    await wait_state(http, player, withdrawal["id"], ("awaiting_2fa",))
    shown = (await http.get(f"/v1/bonuses/{bonus_id}", headers=player.headers)).json()
    assert (shown["status"], shown["forfeit_reason"], shown["forfeited_amount"]) == (
        "forfeited", "withdrawal", 500)
    assert balances(stack.engine, player.id, USD)["bonus"] == 0
    cancelled = await http.post(f"/v1/withdrawals/{withdrawal['id']}/cancel",
                                headers=player.headers)
    assert cancelled.status_code in (200, 202), cancelled.text
    all_clean(stack.engine, stack.settings)


async def test_a_cancelled_market_over_the_api_refunds_and_later_results_do_nothing(
        stack, http, market, settlement_worker):
    player = make_player(stack.engine)
    fund(stack.engine, player, 2_000)
    winner = await http.post("/v1/bets", headers=player.headers,
                             json=bet(player, market, 1_000, "3.00"))
    loser = await http.post("/v1/bets", headers=player.headers,
                            json=bet(player, market, 1_000, "3.00", selection="away"))
    assert {winner.status_code, loser.status_code} == {201}
    cancellation = {"id": "bc-1", "reason_code": 4, "reason": "match abandoned"}
    partner = await http.post(f"/v1/markets/{market}/cancellations", headers=player.headers,
                              json=cancellation)
    assert partner.status_code == 403
    done = await http.post(f"/v1/markets/{market}/cancellations", headers=player.operator,
                           json=cancellation)
    assert done.status_code == 201, done.text
    assert (done.json()["bets_cancelled"], done.json()["reason_code"]) == (2, "4")
    replay = await http.post(f"/v1/markets/{market}/cancellations", headers=player.operator,
                             json=cancellation)
    assert replay.status_code == 200 and replay.json()["replayed"] is True
    assert balances(stack.engine, player.id, USD)["cash"] == 2_000

    await settle(http, player, market, 1, {"home": {"result": "won"}, "away": {"result": "lost"}})
    view = (await http.get(f"/v1/markets/{market}/settlement", headers=player.operator)).json()
    assert view["bets_cancelled"] == 2
    assert balances(stack.engine, player.id, USD)["cash"] == 2_000     # nothing moved
    shown = (await http.get(f"/v1/bets/{winner.json()['id']}", headers=player.headers)).json()
    assert shown["status"] == "cancelled"
    assert shown["settlements"][-1]["results"]["reason_code"] == "4"

    rolled = await http.post(f"/v1/markets/{market}/cancellations/bc-1/rollback",
                             headers=player.operator)
    assert rolled.status_code == 200 and rolled.json()["status"] == "rolled_back"
    # Back to the bets and settled on the known result: 3,000 for the winner.
    assert balances(stack.engine, player.id, USD)["cash"] == 3_000
    missing = await http.post(f"/v1/markets/{market}/cancellations/nope/rollback",
                              headers=player.operator)
    assert missing.status_code == 404 and missing.json()["code"] == "cancellation_not_found"
    all_clean(stack.engine, stack.settings, market)


async def test_a_succeeded_deposit_gets_the_partners_deposit_match_once(stack, worker, http):
    player = make_player(stack.engine)
    offer = {"percent": 100, "max_amount": 1_000, "wagering_multiplier": 5,
             "min_odds": "2.00", "valid_days": 7}
    assert (await http.put(f"/v1/promotions/deposit_match/{player.partner_id}",
                           headers=player.operator, json=offer)).status_code == 200
    first = (await post_deposit(http, player, amount=2_500)).json()
    assert (await wait_for_status(http, player, first["id"]))["status"] == "succeeded"
    bonus = await http.get(f"/v1/bonuses/deposit-match:{first['id']}", headers=player.headers)
    assert bonus.status_code == 200, bonus.text
    assert (bonus.json()["amount"], bonus.json()["source"], bonus.json()["status"],
            bonus.json()["wagering_requirement"]) == (1_000, "deposit_match", "active", 5_000)
    second = (await post_deposit(http, player, amount=2_500)).json()
    assert (await wait_for_status(http, player, second["id"]))["status"] == "succeeded"
    again = await http.get(f"/v1/bonuses/deposit-match:{second['id']}", headers=player.headers)
    assert again.status_code == 404                             # once per player
    assert balances(stack.engine, player.id, USD) | {"cash": 5_000, "bonus": 1_000} == (
        balances(stack.engine, player.id, USD))
    all_clean(stack.engine, stack.settings)
