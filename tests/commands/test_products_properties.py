"""Property: cash-outs mixed at random with settlements, corrections and rollbacks end exactly
where the same cash-outs made first, then the last results settled directly, end. A cash-out
is final, so when it happened among the results must not matter; what settlement did before
it (a settlement later rolled back) must leave no trace. Two mirrored worlds (same players'
money, bonus funds and free bets; same bets, cash, bonus-funded and free): one walks the random
operations, the other gets the successful cash-outs and the last results only. After both:
ledger check, audit verify and settlement verify are clean. Real commands, real database."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from commands import bets as bet_commands
from tests.support.products import (
    all_clean,
    balances,
    cash_out,
    credit_bonus,
    grant_free_bet,
)
from tests.support.settlement import (
    bet_row,
    funded_player,
    place,
    post_result,
    roll_back,
    settle_inline,
    uid,
)
from workflows.contracts.settlement import Mode

SELECTIONS = ["s0", "s1", "s2"]
RESULTS = [
    {"result": "won"}, {"result": "lost"}, {"result": "lost", "void_factor": "1"},
    {"result": "won", "void_factor": "0.5"}, {"result": "won", "dead_heat_factor": "1/2"},
]
result_sets = st.fixed_dictionaries({s: st.sampled_from(RESULTS) for s in SELECTIONS})
bet_specs = st.lists(st.tuples(
    st.sampled_from(["cash", "bonus", "free_bet"]), st.sampled_from(SELECTIONS),
    st.sampled_from(["2.50", "10/1", "-110", "1.01"]), st.integers(1, 2_000)),
    min_size=1, max_size=6)
operations = st.lists(st.one_of(
    st.tuples(st.just("cash_out"), st.integers(0, 5), st.sampled_from([25, 50, 100]),
              st.sampled_from([0, 60, 150])),
    st.tuples(st.just("result"), result_sets),
    st.tuples(st.just("rollback"))), max_size=6)


def world(engine, settings, specs) -> tuple[str, list[str], list[str]]:
    """Players (one with bonus funds staked first, one with free bets) and their bets."""
    market = uid("mkt")
    bonus_player, free_player = funded_player(engine, 20_000), funded_player(engine, 20_000)
    credit_bonus(engine, bonus_player, 5_000, multiplier=1_000, min_odds=Fraction(1))
    grant_free_bet(engine, free_player, 12_000)
    placed = []
    for funding, selection, price, stake in specs:
        player = bonus_player if funding == "bonus" else free_player
        placed.append(place(engine, settings, player, stake, [(market, selection, price)],
                            funding="free_bet" if funding == "free_bet" else "cash"))
    return market, [bonus_player, free_player], placed


def state(engine, players: list[str], placed: list[str]) -> tuple[Any, ...]:
    fields = ("status", "paid", "paid_bonus", "returned_free_bet", "cashed_out_stake",
              "cashed_out_value")
    return ([balances(engine, p) for p in players],
            [tuple(bet_row(engine, b)[f] for f in fields) for b in placed])


@hyp_settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs=bet_specs, ops=operations, last=result_sets)
def test_cash_outs_among_settlements_corrections_and_rollbacks_end_as_cash_outs_first(
        engine, settings, specs, ops, last):
    bonus_first = settings.model_copy(update={"bonus_stake_order": "bonus_first"})
    walk, walk_players, walk_bets = world(engine, bonus_first, specs)
    made: list[tuple[int, int, int]] = []      # (bet, stake share, value) that went through
    version, current = 0, False
    for op in ops:
        if op[0] == "cash_out":
            _, index, share_pct, value_pct = op
            bet = walk_bets[index % len(walk_bets)]
            row = bet_row(engine, bet)
            remaining = row["stake"] - row["cashed_out_stake"]
            share = max(1, remaining * share_pct // 100)
            value = share * value_pct // 100
            try:
                cash_out(engine, settings, bet, value, stake=share)
            except bet_commands.BetRefused:
                continue
            made.append((index % len(walk_bets), share, value))
        elif op[0] == "result":
            version += 1
            post_result(engine, settings, walk, version, op[1])
            settle_inline(engine, settings, walk, version, batch_size=2, parts=2)
            current = True
        elif current:
            assert roll_back(engine, settings, walk, version)
            settle_inline(engine, settings, walk, version, Mode.ROLLBACK, batch_size=2, parts=2)
            current = False
    post_result(engine, settings, walk, version + 1, last)
    settle_inline(engine, settings, walk, version + 1, batch_size=2, parts=2)

    direct, direct_players, direct_bets = world(engine, bonus_first, specs)
    for index, share, value in made:
        cash_out(engine, settings, direct_bets[index], value, stake=share)
    post_result(engine, settings, direct, 1, last)
    settle_inline(engine, settings, direct, 1, batch_size=2, parts=2)

    assert state(engine, walk_players, walk_bets) == state(engine, direct_players, direct_bets)
    all_clean(engine, settings, walk, direct)
