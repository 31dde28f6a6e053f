"""GroupPoster: transfers posted together keep their own outcomes."""

from __future__ import annotations

import threading

import pytest

import ledger
from ledger import AccountRef, IdempotencyConflict, InvalidTransfer, Leg, ResultCode, Transfer
from ledger.check import run as check
from ledger.group_commit import GroupPoster
from tests.support.ledger import deposit, house_pays, new_player, stake


def test_concurrent_posts_share_transactions_but_not_outcomes(fresh_engine):
    poster = GroupPoster(fresh_engine, max_wait=0.01)
    rich, poor = new_player(), new_player()
    with fresh_engine.begin() as conn:
        ledger.post(conn, deposit(rich, 10_000))
        ledger.post(conn, deposit(poor, 100, key=f"k-{poor}"))
    transfers = [house_pays(rich, 10, key=f"pay-{i}") for i in range(40)]
    transfers += [stake(poor, 1_000)]                          # short of funds: its own rejection
    transfers += [deposit(poor, 999, key=f"k-{poor}")]         # reused key: its own conflict
    outcomes: dict[str, object] = {}

    def submit(t: Transfer) -> None:
        try:
            outcomes[t.key] = poster.post(t)
        except IdempotencyConflict as error:
            outcomes[t.key] = error

    threads = [threading.Thread(target=submit, args=(t,)) for t in transfers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    poster.close()

    assert all(outcomes[f"pay-{i}"].code is ResultCode.OK for i in range(40))
    assert outcomes[transfers[-2].key].code is ResultCode.INSUFFICIENT_FUNDS
    assert isinstance(outcomes[f"k-{poor}"], IdempotencyConflict)
    with fresh_engine.begin() as conn:
        assert ledger.balance(conn, AccountRef.player_cash(rich, "USD")).posted == 10_400
        assert ledger.balance(conn, AccountRef.player_cash(poor, "USD")).posted == 100
        assert check(conn) == []


def test_malformed_transfer_fails_in_its_caller(fresh_engine):
    poster = GroupPoster(fresh_engine)
    with pytest.raises(InvalidTransfer):
        poster.post(Transfer("bad", "x", (Leg(AccountRef.house_revenue("USD"), 1),)))
    poster.close()
