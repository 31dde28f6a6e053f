"""Property test: any sequence of postings, replays, holds and batches keeps the invariants
and leaves balances equal to a plain Python model of the same operations."""

from __future__ import annotations

from collections import defaultdict

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger
from ledger import AccountRef, Leg, ResultCode, Transfer
from ledger.check import run as check
from tests.support.ledger import new_player

PLAYERS = 3
amounts = st.integers(min_value=1, max_value=5_000)
operation = st.one_of(
    st.tuples(st.just("deposit"), st.integers(0, PLAYERS - 1), amounts),
    st.tuples(st.just("stake"), st.integers(0, PLAYERS - 1), amounts),
    st.tuples(st.just("payout"), st.integers(0, PLAYERS - 1), amounts),
    st.tuples(st.just("clawback"), st.integers(0, PLAYERS - 1), amounts),
    st.tuples(st.just("hold"), st.integers(0, PLAYERS - 1), amounts),
    st.tuples(st.just("resolve"), st.integers(0, 50), st.integers(0, 5_000)),
    st.tuples(st.just("replay"), st.integers(0, 50), st.just(0)),
    st.tuples(st.just("batch"), st.integers(0, PLAYERS - 1), amounts),
)


class Model:
    """What the ledger should hold, computed without a database."""

    def __init__(self) -> None:
        self.cash: dict[int, int] = defaultdict(int)
        self.debt: dict[int, int] = defaultdict(int)
        self.pending: dict[int, int] = defaultdict(int)   # held out of cash
        self.withdrawn: dict[int, int] = defaultdict(int)  # posted to pending-withdrawal
        self.holds: dict[str, tuple[int, int, str]] = {}   # key -> (player, amount, state)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(operation, min_size=1, max_size=25))
def test_random_operations_match_model_and_keep_invariants(engine, ops):
    players = [new_player() for _ in range(PLAYERS)]
    model = Model()
    done: list[tuple[Transfer, ResultCode]] = []
    hold_keys: list[str] = []

    def cash_ref(i):
        return AccountRef.player_cash(players[i], "USD")

    house = AccountRef.house_revenue("USD")

    with engine.begin() as conn:
        for n, (kind, who, amount) in enumerate(ops):
            key = f"{players[0]}-{n}"
            if kind == "deposit":
                t = Transfer(key, "deposit", (
                    Leg(AccountRef.gateway_clearing("stripe", "USD"), -amount),
                    Leg(cash_ref(who), amount)))
                assert ledger.post(conn, t).ok
                model.cash[who] += amount
                done.append((t, ResultCode.OK))
            elif kind in ("stake", "payout"):
                sign = -1 if kind == "stake" else 1
                t = Transfer(key, kind, (Leg(cash_ref(who), sign * amount),
                                         Leg(house, -sign * amount)))
                result = ledger.post(conn, t)
                enough = model.cash[who] - model.pending[who] >= amount
                if kind == "payout" or enough:
                    assert result.ok
                    model.cash[who] += sign * amount
                else:
                    assert result.code is ResultCode.INSUFFICIENT_FUNDS
                done.append((t, result.code))
            elif kind == "clawback":
                t = Transfer(key, "resettlement", (
                    Leg(cash_ref(who), -amount,
                        shortfall_to=AccountRef.player_debt(players[who], "USD")),
                    Leg(house, amount)))
                result = ledger.post(conn, t)
                covered = min(amount, max(model.cash[who] - model.pending[who], 0))
                assert result.ok and result.shortfall == amount - covered
                model.cash[who] -= covered
                model.debt[who] -= amount - covered
                done.append((t, ResultCode.OK))
            elif kind == "hold":
                result = ledger.hold(conn, key, cash_ref(who),
                                     AccountRef.pending_withdrawal(players[who], "USD"), amount)
                if model.cash[who] - model.pending[who] >= amount:
                    assert result.ok
                    model.pending[who] += amount
                    model.holds[key] = (who, amount, "pending")
                    hold_keys.append(key)
                else:
                    assert result.code is ResultCode.INSUFFICIENT_FUNDS
            elif kind == "resolve" and hold_keys:
                hold_key = hold_keys[who % len(hold_keys)]
                holder, held, state = model.holds[hold_key]
                post_amount = amount % (held + 2)  # sometimes more than held
                result = ledger.post_hold(conn, key, hold_key, post_amount)
                if state != "pending":
                    assert result.code is ResultCode.HOLD_ALREADY_POSTED
                elif post_amount > held:
                    assert result.code is ResultCode.HOLD_AMOUNT_EXCEEDED
                else:
                    assert result.ok
                    model.pending[holder] -= held
                    model.cash[holder] -= post_amount
                    model.withdrawn[holder] += post_amount
                    model.holds[hold_key] = (holder, held, "posted")
            elif kind == "replay" and done:
                t, code = done[who % len(done)]
                again = ledger.post(conn, t)
                assert again.replayed and again.code is code
            elif kind == "batch":
                batch = [Transfer(f"{key}-{j}", "settlement", (
                             Leg(house, -amount - j),
                             Leg(cash_ref((who + j) % PLAYERS), amount + j)))
                         for j in range(3)]
                assert all(r.ok for r in ledger.post_many(conn, batch))
                for j in range(3):
                    model.cash[(who + j) % PLAYERS] += amount + j

        for i, p in enumerate(players):
            assert ledger.balance(conn, cash_ref(i)).posted == model.cash[i]
            assert ledger.balance(conn, cash_ref(i)).pending_debits == model.pending[i]
            assert ledger.balance(conn, AccountRef.player_debt(p, "USD")).posted == model.debt[i]
            withdrawn = ledger.balance(conn, AccountRef.pending_withdrawal(p, "USD")).posted
            assert withdrawn == model.withdrawn[i]
        assert check(conn) == []
