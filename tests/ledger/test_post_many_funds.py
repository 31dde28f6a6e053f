"""ledger_post_many's funds check (migration 0027_ledger_post_many_funds): the walk of running
balances in item order runs only when an account's balance plus all of the batch's debits on
it is below zero; the decisions are the same as before. Each case is run at 0027 and, after a
downgrade, at 0026 (0001's function): the same results and balances."""

from __future__ import annotations

from collections.abc import Callable

import psycopg
import pytest
from sqlalchemy import Connection, Engine, create_engine

import ledger
from ledger import AccountRef, ResultCode
from ledger.check import run as check
from tests.support.databases import down_then_up, sqlalchemy_url, temporary_database
from tests.support.ledger import deposit, new_player, stake

OK, SHORT = ResultCode.OK, ResultCode.INSUFFICIENT_FUNDS


def _cash(conn: Connection, player: str) -> int:
    return ledger.balance(conn, AccountRef.player_cash(player, "USD")).posted


def credits_first_cover_debits_beyond_the_balance(conn: Connection) -> tuple:
    """Balance 100; +50, -120, -30 in that order: every running balance >= 0 (150, 30, 0),
    while 100 - 150 of debits is not: the walk runs and finds nothing short."""
    p = new_player()
    ledger.post(conn, deposit(p, 100))
    results = ledger.post_many(conn, [deposit(p, 50), stake(p, 120), stake(p, 30)])
    return [r.code for r in results], _cash(conn, p)


def a_debit_before_its_credit_is_short(conn: Connection) -> tuple:
    p = new_player()
    ledger.post(conn, deposit(p, 100))
    results = ledger.post_many(conn, [stake(p, 120), deposit(p, 50), stake(p, 30)])
    return [r.code for r in results], _cash(conn, p)


def replayed_items_do_not_count_again(conn: Connection) -> tuple:
    """Balance 100, a stake of 80 posted; the batch repeats it (a replay) and stakes the 20
    left: balance + debits = 20 - 100 < 0, but the replay is not posted again."""
    p = new_player()
    ledger.post(conn, deposit(p, 100))
    first = stake(p, 80, key=f"stake-{p}-1")
    ledger.post(conn, first)
    results = ledger.post_many(conn, [first, stake(p, 20)])
    return [(r.code, r.replayed) for r in results], _cash(conn, p)


def debits_within_the_balance(conn: Connection) -> tuple:
    """Balance 500: stakes of 200 and 300 need no walk."""
    p = new_player()
    ledger.post(conn, deposit(p, 500))
    results = ledger.post_many(conn, [stake(p, 200), stake(p, 300)])
    return [r.code for r in results], _cash(conn, p)


CASES: dict[Callable[[Connection], tuple], tuple] = {
    credits_first_cover_debits_beyond_the_balance: ([OK, OK, OK], 0),
    a_debit_before_its_credit_is_short: ([SHORT, OK, OK], 120),
    replayed_items_do_not_count_again: ([(OK, True), (OK, False)], 0),
    debits_within_the_balance: ([OK, OK], 0),
}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
def test_batch_funds_decisions(engine: Engine, case: Callable[[Connection], tuple]) -> None:
    with engine.begin() as conn:
        assert case(conn) == CASES[case]


def test_migration_0027_downgrades_to_the_old_function_with_the_same_decisions() -> None:
    before, after = "0026_ledger_reference_guard", "0027_ledger_post_many_funds"
    with temporary_database("sp_post_many_funds", revision=after) as url:
        for revision in down_then_up(url, before, after):
            with psycopg.connect(url) as conn:
                body, config = conn.execute(
                    "SELECT prosrc, proconfig FROM pg_proc"
                    " WHERE oid = 'ledger_post_many(jsonb, jsonb)'::regprocedure").fetchone()
            assert ("v_nn_debits" in body) is (revision == after)
            assert "jit=off" in config
            engine = create_engine(sqlalchemy_url(url))
            try:
                with engine.begin() as conn:
                    for case, expected in CASES.items():
                        assert case(conn) == expected, (revision, case.__name__)
                    assert check(conn) == []
            finally:
                engine.dispose()
