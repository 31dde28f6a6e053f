"""commands.bets.place on the real database: what a bet writes (stake posting, rows, audit,
outbox) in the caller's transaction, its replay and conflict, and each refusal in order."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import Engine, text

import ledger
from commands import bets, settlement
from ledger import AccountRef
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from tests.support.factories import (
    Player,
    audit_actions,
    cash,
    events,
    fund,
    ledger_violations,
    make_player,
)
from workflows.contracts.settlement import SettlementRefusal

CURRENCY = "USD"


def request(player: Player, *, bet_id: str | None = None, stake: int = 1_000,
            legs: tuple[tuple[str, str, str], ...] | None = None, bet_type: str = "single",
            **extra: object) -> bets.BetRequest:
    return bets.BetRequest(
        bet_id=bet_id or f"bet_{uuid.uuid4().hex[:12]}", player_id=player.id, stake=stake,
        currency=CURRENCY, bet_type=bet_type,
        legs=tuple(bets.LegRequest(m, s, o)
                   for m, s, o in legs or ((f"mkt_{uuid.uuid4().hex[:8]}", "home", "2.50"),)),
        **extra)


def place(engine: Engine, settings: Settings, req: bets.BetRequest) -> bets.Placed:
    return run_in_transaction(engine, lambda conn: bets.place(conn, settings, req,
                                                              actor="system:test"))


def in_play(engine: Engine, player: Player) -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, AccountRef.bets_in_play(player.id, CURRENCY)).posted


def bet_rows(engine: Engine, player: Player) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM bets WHERE player_id = :p"),
                            {"p": player.id}).scalar_one()


def outbox_rows(engine: Engine, bet_id: str) -> list[dict]:
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(text(
            "SELECT event_type, partner_id, player_id, payload FROM outbox_events "
            "WHERE aggregate_id = :id ORDER BY id"), {"id": bet_id}).mappings()]


@pytest.fixture
def player(engine: Engine) -> Player:
    player = make_player(engine)
    fund(engine, player, 3_000, CURRENCY)
    return player


def test_a_bet_moves_its_stake_into_bets_in_play_with_its_audit_record_and_event(
        engine, settings, player):
    req = request(player, legs=(("mkt_cmd_a", "home", "10/1"),))
    placed = place(engine, settings, req)

    assert not placed.replayed and placed.refusal is None
    bet = placed.bet
    assert bet["id"] == f"{player.partner_id}/{req.bet_id}" == bets.internal_id(
        player.partner_id, req.bet_id)
    assert (bet["external_id"], bet["partner_id"], bet["status"]) == (
        req.bet_id, player.partner_id, "open")
    assert bet["legs"] == [{"leg_no": 1, "market_id": "mkt_cmd_a", "selection_id": "home",
                            "odds": "10/1", "odds_format": "fractional", "price": "11/1"}]
    assert cash(engine, player.id, CURRENCY) == 2_000 and in_play(engine, player) == 1_000
    with engine.connect() as conn:
        key = conn.execute(text(
            "SELECT idempotency_key FROM ledger_transactions WHERE reference = :r"),
            {"r": bet["id"]}).scalar_one()
    assert key == bets.stake_key(bet["id"]) == f"bet:{player.partner_id}/{req.bet_id}:stake"
    assert audit_actions(engine, bet["id"]) == ["bet.placed"]
    assert events(engine, bet["id"]) == ["bet.placed"]
    resource = bets.bet_resource(bet)
    assert resource["id"] == req.bet_id and resource["object"] == "bet"
    assert outbox_rows(engine, bet["id"])[0]["payload"] == json.loads(json.dumps(resource))
    assert ledger_violations(engine) == []


def test_the_same_bet_again_replays_the_first_answer_and_charges_once(engine, settings, player):
    req = request(player)
    first = place(engine, settings, req)
    again = place(engine, settings, req)
    assert again.replayed and again.bet == first.bet
    assert cash(engine, player.id, CURRENCY) == 2_000
    assert events(engine, first.bet["id"]) == ["bet.placed"]


def test_another_bet_under_a_used_id_is_a_conflict_and_writes_nothing(engine, settings, player):
    req = request(player)
    place(engine, settings, req)
    with pytest.raises(bets.BetRefused) as refused:
        place(engine, settings, request(player, bet_id=req.bet_id, stake=999))
    assert refused.value.refusal.code == bets.BetRefusal.BET_ID_CONFLICT
    assert cash(engine, player.id, CURRENCY) == 2_000 and bet_rows(engine, player) == 1


@pytest.mark.parametrize(("change", "code"), [
    ({"legs": (("m", "s", "0.90"),)}, bets.BetRefusal.INVALID_ODDS),
    ({"legs": (("m", "s", "2.5x"),)}, bets.BetRefusal.INVALID_ODDS),
    ({"bet_type": "parlay"}, bets.BetRefusal.INVALID_BET),
    ({"bet_type": "each_way", "stake": 1_001, "place_fraction": "1/5", "places": 3},
     bets.BetRefusal.INVALID_BET),
    ({"bet_type": "each_way", "place_fraction": "1/0", "places": 3},
     bets.BetRefusal.INVALID_PLACE_TERMS),
])
def test_a_bet_that_cannot_be_taken_as_sent_is_refused_and_nothing_is_written(
        engine, settings, player, change, code):
    with pytest.raises(bets.BetRefused) as refused:
        place(engine, settings, request(player, **change))
    assert refused.value.refusal.code == code
    assert cash(engine, player.id, CURRENCY) == 3_000 and bet_rows(engine, player) == 0


def test_a_bet_whose_legs_could_all_win_more_than_the_maximum_is_refused(engine, settings,
                                                                          player):
    small = settings.model_copy(update={"bet_payout_max_minor": 2_500})
    # 1,000 at 2.50 returns at most 2,500: taken; at 2.51 it could return 2,510: refused.
    assert place(engine, small, request(player, legs=(("m_max", "s", "2.50"),))).refusal is None
    with pytest.raises(bets.BetRefused) as refused:
        place(engine, small, request(player, legs=(("m_max", "s", "2.51"),)))
    assert refused.value.refusal.code == bets.BetRefusal.PAYOUT_ABOVE_MAXIMUM
    assert "2510" in refused.value.refusal.reason
    assert cash(engine, player.id, CURRENCY) == 2_000 and bet_rows(engine, player) == 1


def test_a_rejected_bet_is_kept_with_its_reason_and_replayed(engine, settings, player):
    req = request(player, stake=5_000)
    rejected = place(engine, settings, req)
    assert rejected.refusal is not None
    assert rejected.refusal.code == bets.BetRefusal.INSUFFICIENT_FUNDS
    assert rejected.bet["status"] == "rejected"
    fund(engine, player, 10_000, CURRENCY, tag="more")
    again = place(engine, settings, req)            # the rejection is the answer for this id
    assert again.replayed and again.refusal == rejected.refusal
    assert cash(engine, player.id, CURRENCY) == 13_000 and in_play(engine, player) == 0
    assert events(engine, rejected.bet["id"]) == ["bet.rejected"]
    assert audit_actions(engine, rejected.bet["id"]) == ["bet.rejected"]


def test_a_gate_refusal_is_kept_under_the_gates_own_code(engine, settings, player):
    rejected = place(engine, settings, request(player, ip_address="198.51.100.9"))
    assert rejected.refusal is not None and rejected.refusal.code == "ip_changed"
    assert cash(engine, player.id, CURRENCY) == 3_000


def test_a_bet_on_a_market_that_has_a_result_is_rejected(engine, settings, player):
    market = f"mkt_{uuid.uuid4().hex[:8]}"
    run_in_transaction(engine, lambda conn: settlement.record_result(
        conn, settings, market, 1, {"home": {"result": "won"}}, actor="system:test"))
    rejected = place(engine, settings, request(player, legs=((market, "home", "2.00"),)))
    assert rejected.refusal is not None
    assert rejected.refusal.code == SettlementRefusal.MARKET_SETTLED
    assert cash(engine, player.id, CURRENCY) == 3_000


def test_an_unknown_player_is_refused_before_anything_is_written(engine, settings, player):
    ghost = Player("ply_nobody_" + uuid.uuid4().hex[:8], player.partner_id, "", {}, {})
    with pytest.raises(bets.BetRefused) as refused:
        place(engine, settings, request(ghost))
    assert refused.value.refusal.code == "player_not_found"


def test_bet_events_carry_the_partner_of_the_bet(engine, settings, player):
    placed = place(engine, settings, request(player))
    rejected = place(engine, settings, request(player, stake=50_000))
    for bet, event in ((placed.bet, "bet.placed"), (rejected.bet, "bet.rejected")):
        [row] = outbox_rows(engine, bet["id"])
        assert row["event_type"] == event
        assert row["partner_id"] == row["payload"]["partner_id"] == player.partner_id
        assert row["player_id"] == player.id


def test_two_partners_may_use_the_same_bet_id_and_each_gets_their_own_bet(engine, settings,
                                                                          player):
    other = make_player(engine)
    fund(engine, other, 3_000, CURRENCY)
    mine = place(engine, settings, request(player, bet_id="bet_shared_cmd", stake=1_000))
    theirs = place(engine, settings, request(other, bet_id="bet_shared_cmd", stake=700))
    assert not theirs.replayed and theirs.refusal is None
    assert mine.bet["id"] != theirs.bet["id"]
    assert (mine.bet["stake"], theirs.bet["stake"]) == (1_000, 700)
    assert cash(engine, player.id, CURRENCY) == 2_000 and cash(engine, other.id, CURRENCY) == 2_300
    assert ledger_violations(engine) == []
