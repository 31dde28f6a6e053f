"""ledger/statement.py: a player's lines with running balances, pages both ways, balances at
any past moment, on a real PostgreSQL with every kind of movement a player's money makes."""

from __future__ import annotations

import uuid
from datetime import datetime

import ledger
from ledger import AccountRef, Leg, Transfer
from ledger.statement import Position, StatementQuery, balances_at, balances_of, iterate, lines
from tests.support.statements import (
    BIP,
    CASH,
    DEBT,
    HISTORY_BALANCES,
    HISTORY_LINES,
    PENDING,
    money_history,
)


def shape(line) -> tuple:
    return (line.kind, line.account.type, line.amount, line.balance, line.held_change, line.held)


def test_every_movement_is_a_line_with_its_running_balance_oldest_first(engine):
    player = f"stm-{uuid.uuid4().hex[:10]}"
    money_history(engine, player)
    with engine.connect() as conn:
        found = list(iterate(conn, f"player:{player}", batch=4))
    assert [shape(line) for line in found] == HISTORY_LINES


def test_lines_carry_references_and_the_transaction_a_resettlement_corrects(engine):
    player = f"stm-{uuid.uuid4().hex[:10]}"
    money_history(engine, player)
    with engine.connect() as conn:
        found = list(iterate(conn, f"player:{player}"))
        settled = next(line for line in found if line.kind == "settlement")
        corrected = [line for line in found if line.kind == "resettlement"]
        voided = next(line for line in found if line.kind == "hold_void")
        posted = next(line for line in found if line.kind == "hold_post")
    assert settled.ledger_key == f"{player}:settle" and settled.reference == "b1"
    assert {line.corrects_transaction_id for line in corrected} == {
        settled.position.transaction_id}
    assert voided.reference == "wd_1" and voided.hold_transaction_id is not None
    assert posted.reference == "wd_2"
    assert all(line.account.owner == f"player:{player}" for line in found)


def test_pages_newest_first_and_back_cover_every_line_once(engine):
    player = f"stm-{uuid.uuid4().hex[:10]}"
    money_history(engine, player)
    owner = f"player:{player}"
    with engine.connect() as conn:
        everything = list(iterate(conn, owner))
        newest_first, after = [], None
        while True:
            page = lines(conn, StatementQuery(owner=owner, limit=5, after=after))
            newest_first.extend(page)
            if len(page) < 5:
                break
            after = page[-1].position
        assert newest_first == everything[::-1]
        # Backwards from the oldest line: the newer ones, oldest first.
        back = lines(conn, StatementQuery(owner=owner, limit=100,
                                          before=everything[0].position))
        assert back == everything[1:]
        # A cursor in the middle of a transaction's lines splits it exactly there.
        middle = next(i for i, line in enumerate(everything) if line.kind == "bet_stake")
        page = lines(conn, StatementQuery(owner=owner, limit=3,
                                          after=everything[middle + 1].position))
        assert page == [everything[middle], *everything[:middle][::-1]][:3]


def test_balances_at_each_past_moment_match_the_running_balances(engine):
    player = f"stm-{uuid.uuid4().hex[:10]}"
    moments = money_history(engine, player)
    owner = f"player:{player}"
    with engine.connect() as conn:
        for moment, (cash, held, bip, pending, debt) in zip(moments, HISTORY_BALANCES, strict=True):
            found = {b.account.type: b for b in balances_at(conn, owner, moment)}
            assert found[CASH].posted == cash and found[CASH].held == held
            assert found.get(BIP) is None or found[BIP].posted == bip
            assert found.get(PENDING) is None or found[PENDING].posted == pending
            assert found.get(DEBT) is None or found[DEBT].posted == debt
        assert balances_at(conn, owner, datetime(2000, 1, 1).astimezone()) == []
        now = {b.account.type: b.posted for b in balances_of(conn, [owner])[owner]}
    assert now == {CASH: 2_000, BIP: 0, PENDING: 0, DEBT: 0}


def test_a_player_sees_only_their_own_accounts_and_a_currency_filter_narrows(engine):
    player, other = (f"stm-{uuid.uuid4().hex[:10]}" for _ in range(2))
    money_history(engine, player)
    with engine.begin() as conn:
        assert ledger.post(conn, Transfer(key=f"{player}:eur", kind="deposit", legs=(
            Leg(AccountRef.gateway_clearing("stripe", "EUR"), -900),
            Leg(AccountRef.player_cash(player, "EUR"), 900)))).ok
        assert ledger.post(conn, Transfer(key=f"{other}:usd", kind="deposit", legs=(
            Leg(AccountRef.gateway_clearing("stripe", "USD"), -100),
            Leg(AccountRef.player_cash(other, "USD"), 100)))).ok
    with engine.connect() as conn:
        eur = list(iterate(conn, f"player:{player}", currency="EUR"))
        usd = list(iterate(conn, f"player:{player}", currency="USD"))
        theirs = list(iterate(conn, f"player:{other}"))
    assert [(line.kind, line.amount, line.balance) for line in eur] == [("deposit", 900, 900)]
    assert len(usd) == 16
    assert [(line.kind, line.amount) for line in theirs] == [("deposit", 100)]
    assert Position(1, 2) < Position(2, 1)
