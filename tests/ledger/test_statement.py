"""ledger/statement.py: a player's lines with running balances, pages both ways, balances at
any past moment, on a real PostgreSQL with every kind of movement a player's money makes."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Engine, text

import ledger
from ledger import AccountRef, Leg, Transfer
from ledger.statement import Position, StatementQuery, balances_at, balances_of, iterate, lines
from ledger.types import AccountType

CASH, BIP = AccountType.PLAYER_CASH, AccountType.BETS_IN_PLAY
PENDING, DEBT = AccountType.PLAYER_PENDING_WITHDRAWAL, AccountType.PLAYER_DEBT


def history(engine: Engine, player: str) -> list[datetime]:
    """Eleven steps, each its own database transaction; the moment after each one."""
    cash, bip = AccountRef.player_cash(player, "USD"), AccountRef.bets_in_play(player, "USD")
    pending = AccountRef.pending_withdrawal(player, "USD")
    debt = AccountRef.player_debt(player, "USD")
    house, gateway = AccountRef.house_revenue("USD"), AccountRef.gateway_clearing("stripe", "USD")

    def post(key: str, kind: str, *legs: Leg, reference: str | None = None,
             corrects: str | None = None) -> None:
        with engine.begin() as conn:
            assert ledger.post(conn, Transfer(key=f"{player}:{key}", kind=kind, legs=legs,
                                              reference=reference,
                                              corrects=corrects and f"{player}:{corrects}")).ok

    def with_conn(step) -> None:
        with engine.begin() as conn:
            assert step(conn).ok

    steps = [
        lambda: post("dep1", "deposit", Leg(gateway, -10_000), Leg(cash, 10_000),
                     reference="dep_1"),
        lambda: post("stake", "bet_stake", Leg(cash, -3_000), Leg(bip, 3_000), reference="b1"),
        lambda: post("settle", "settlement", Leg(bip, -3_000), Leg(cash, 7_500),
                     Leg(house, -4_500), reference="b1"),
        lambda: with_conn(lambda c: ledger.hold(c, f"{player}:w1:hold", cash, pending, 14_000,
                                                reference="wd_1")),
        lambda: with_conn(lambda c: ledger.void_hold(c, f"{player}:w1:void", f"{player}:w1:hold")),
        lambda: with_conn(lambda c: ledger.hold(c, f"{player}:w2:hold", cash, pending, 10_000,
                                                reference="wd_2")),
        lambda: with_conn(lambda c: ledger.post_hold(c, f"{player}:w2:post", f"{player}:w2:hold")),
        lambda: post("w2:clear", "withdrawal", Leg(pending, -10_000), Leg(gateway, 10_000),
                     reference="wd_2"),
        lambda: post("resettle", "resettlement",
                     Leg(cash, -7_500, shortfall_to=debt), Leg(house, 7_500),
                     reference="b1", corrects="settle"),
        lambda: post("dep2", "deposit", Leg(gateway, -5_000), Leg(cash, 5_000),
                     reference="dep_2"),
        lambda: post("repay", "debt_repayment", Leg(cash, -3_000), Leg(debt, 3_000),
                     reference="wd_3"),
    ]
    moments = []
    for step in steps:
        step()
        with engine.connect() as conn:
            moments.append(conn.execute(text("SELECT clock_timestamp()")).scalar_one())
    return moments


# (kind, account, amount, balance, held_change, held) of every line, oldest first.
EXPECTED = [
    ("deposit", CASH, 10_000, 10_000, 0, 0),
    ("bet_stake", CASH, -3_000, 7_000, 0, 0),
    ("bet_stake", BIP, 3_000, 3_000, 0, 0),
    ("settlement", CASH, 7_500, 14_500, 0, 0),
    ("settlement", BIP, -3_000, 0, 0, 0),
    ("hold", CASH, 0, 14_500, 14_000, 14_000),
    ("hold_void", CASH, 0, 14_500, -14_000, 0),
    ("hold", CASH, 0, 14_500, 10_000, 10_000),
    ("hold_post", CASH, -10_000, 4_500, -10_000, 0),
    ("hold_post", PENDING, 10_000, 10_000, 0, 0),
    ("withdrawal", PENDING, -10_000, 0, 0, 0),
    ("resettlement", CASH, -4_500, 0, 0, 0),
    ("resettlement", DEBT, -3_000, -3_000, 0, 0),
    ("deposit", CASH, 5_000, 5_000, 0, 0),
    ("debt_repayment", CASH, -3_000, 2_000, 0, 0),
    ("debt_repayment", DEBT, 3_000, 0, 0, 0),
]


def shape(line) -> tuple:
    return (line.kind, line.account.type, line.amount, line.balance, line.held_change, line.held)


def order_of(account: AccountType) -> int:
    """Accounts are created in the order the history first touches them."""
    return [CASH, BIP, PENDING, DEBT].index(account)


def test_every_movement_is_a_line_with_its_running_balance_oldest_first(engine):
    player = f"stm-{uuid.uuid4().hex[:10]}"
    history(engine, player)
    with engine.connect() as conn:
        found = list(iterate(conn, f"player:{player}", batch=4))
    # Within one transaction the lines go by account id: the order accounts were created.
    assert [shape(line) for line in found] == sorted_within_transactions(found, EXPECTED)
    assert len(found) == 16


def sorted_within_transactions(found, expected) -> list[tuple]:
    """EXPECTED, with the lines of one transaction in account-id order (as the ledger has it)."""
    groups: list[list[tuple]] = []
    for line, shape_ in zip(found, expected, strict=True):
        if groups and groups[-1][0][0] == line.position.transaction_id:
            groups[-1].append((line.position.transaction_id, shape_))
        else:
            groups.append([(line.position.transaction_id, shape_)])
    ordered = []
    for group in groups:
        ordered.extend(s for _, s in sorted(group, key=lambda g: order_of(g[1][1])))
    return ordered


def test_lines_carry_references_and_the_transaction_a_resettlement_corrects(engine):
    player = f"stm-{uuid.uuid4().hex[:10]}"
    history(engine, player)
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
    history(engine, player)
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
    moments = history(engine, player)
    owner = f"player:{player}"
    # After each step: (cash posted, held, bets in play, pending withdrawal, debt).
    expected = [(10_000, 0, 0, 0, 0), (7_000, 0, 3_000, 0, 0), (14_500, 0, 0, 0, 0),
                (14_500, 14_000, 0, 0, 0), (14_500, 0, 0, 0, 0), (14_500, 10_000, 0, 0, 0),
                (4_500, 0, 0, 10_000, 0), (4_500, 0, 0, 0, 0), (0, 0, 0, 0, -3_000),
                (5_000, 0, 0, 0, -3_000), (2_000, 0, 0, 0, 0)]
    with engine.connect() as conn:
        for moment, (cash, held, bip, pending, debt) in zip(moments, expected, strict=True):
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
    history(engine, player)
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
