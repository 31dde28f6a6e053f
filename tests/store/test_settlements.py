"""store/settlements.py writes a batch's history rows and bet updates as JSON text a value at
a time: the text is what json.dumps gave for the rows as dicts (odd values included)."""

from __future__ import annotations

import json
from typing import Any

from domain.settlement.plan import (
    Account,
    BetStatus,
    BetUpdate,
    Funding,
    RecordKind,
    SettlementRecord,
    StoredBet,
)
from store import settlements as store


class _Captured:
    """A connection that keeps the parameters of its one statement."""

    params: dict[str, Any]

    def execute(self, statement: Any, params: dict[str, Any]) -> None:
        self.params = params


RESULTS = {"m\u00e9/s\"1": {"result": "won", "void_factor": "0", "dead_heat_factor": "1/3"}}


def test_history_rows_are_the_json_dumps_text_of_the_rows() -> None:
    records = [
        SettlementRecord("b\u20281", "p1", RecordKind.SETTLEMENT, 3, 2500, 2500, True, "won",
                         "bet:b1:v3", RESULTS),
        SettlementRecord("b2", "p2", RecordKind.RESETTLEMENT, 4, 0, 0, False, "lost", None,
                         RESULTS),
        SettlementRecord("b3", "p2", RecordKind.ROLLBACK, 2, 0, -10**18, True, "rolled_back",
                         "bet:b3:rollback:v2", {}),
    ]
    postings = {"bet:b1:v3": (41, 0), "bet:b3:rollback:v2": (42, 17)}
    conn = _Captured()
    store.insert_records(conn, "m1", records, postings)  # type: ignore[arg-type]
    expected = []
    for r in records:
        transaction_id, shortfall = postings.get(r.ledger_key or "", (None, 0))
        expected.append({"bet_id": r.bet_id, "kind": str(r.kind), "version": r.version,
                         "payout": r.payout, "delta": r.delta, "applied": r.applied,
                         "outcome": r.outcome, "ledger_key": r.ledger_key,
                         "results": r.results, "transaction_id": transaction_id,
                         "shortfall": shortfall})
    assert conn.params == {"m": "m1", "rows": json.dumps(expected)}


def test_bet_updates_are_the_json_dumps_text_of_the_rows() -> None:
    updates = [
        BetUpdate("b\u00e91", BetStatus.SETTLED, 2500, 2500, 3, "bet:b1:v3", paid_bonus=10),
        BetUpdate("b2", BetStatus.OPEN, 0, None, None, None, rollbacks=2),
        BetUpdate("b3", BetStatus.CANCELLED, 1000, 1000, 1, "bet:b3:cancel:7",
                  needs_review='ledger refused "x"', returned_free_bet=5, cancellation_id=7),
    ]
    conn = _Captured()
    store.update_bets(conn, updates)  # type: ignore[arg-type]
    expected = [{"bet_id": u.bet_id, "status": str(u.status), "paid": u.paid,
                 "payout": u.payout, "version": u.version, "settlement_key": u.settlement_key,
                 "rollbacks": u.rollbacks, "needs_review": u.needs_review,
                 "settled": u.status in (BetStatus.SETTLED, BetStatus.CANCELLED),
                 "paid_bonus": u.paid_bonus, "returned_free_bet": u.returned_free_bet,
                 "cancellation_id": u.cancellation_id} for u in updates]
    assert conn.params == {"rows": json.dumps(expected)}


def test_a_bets_row_becomes_the_stored_bet_field_by_field() -> None:
    # stored_bet builds the StoredBet by position (a page is thousands of rows): every
    # column lands in its field
    row = ("bet_1", "ply_1", "partner_1", "EUR ", 1000, "each_way", "1/5", 3, "settled",
           2500, 2600, 2, "bet:bet_1:v2", 1, "free_bet", 400, 100, 7, 200, 40, "bon_1", True,
           9, [["m1", "s1", "5", "2"]], "extra column")
    assert store.stored_bet(row) == StoredBet(
        id="bet_1", player_id="ply_1", partner_id="partner_1", currency="EUR", stake=800,
        bet_type="each_way", place_fraction="1/5", place_count=3, status=BetStatus.SETTLED,
        paid=2500, payout=2600, version=2, settlement_key="bet:bet_1:v2",
        legs=(("m1", "s1", 5, 2),), rollbacks=1, funding=Funding.FREE_BET, stake_bonus=360,
        paid_bonus=100, returned_free_bet=7, bonus_target=Account.PLAYER_BONUS,
        bonus_id="bon_1", bonus_wagered=True, cancellation_id=9)
