"""Property: settling v1, then resettling v2 and v3, leaves the ledger exactly where settling
v3 directly does (policy `full`), for random bets, prices and results. Two mirrored worlds
(same players' money, same bets) on two markets: one walks v1 -> v2 -> v3, the other gets v3
only. Runs the same batch code the settlement activities run, on the real database."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st
from sqlalchemy import text

from ledger import AccountRef
from tests.support.factories import ledger_violations
from tests.support.settlement import (
    account,
    bet_row,
    cash,
    funded_player,
    place,
    post_result,
    settle_inline,
    uid,
)

SELECTIONS = ["s0", "s1", "s2"]
RESULTS = [
    {"result": "won"}, {"result": "lost"}, {"result": "lost", "void_factor": "1"},
    {"result": "won", "void_factor": "0.5"}, {"result": "lost", "void_factor": "0.5"},
    {"result": "won", "dead_heat_factor": "1/2"},
    {"result": "won", "dead_heat_factor": "1/3", "rule4": "0.15"},
]
result_sets = st.fixed_dictionaries({s: st.sampled_from(RESULTS) for s in SELECTIONS})
bet_specs = st.lists(st.tuples(
    st.sampled_from(["single", "parlay"]), st.sampled_from(SELECTIONS),
    st.sampled_from(["2.50", "10/1", "-110", "+150", "1.01", "7/4"]), st.integers(1, 5_000)),
    min_size=1, max_size=12)


def run(engine, settings, market, version, selections):
    post_result(engine, settings, market, version, selections)
    settle_inline(engine, settings, market, version, batch_size=2, parts=3)


def world(engine, settings, specs):
    """Players and bets for one world; returns (market, aux market, players, bets)."""
    market, aux = uid("mkt"), uid("aux")
    players = [funded_player(engine, 50_000) for _ in range(3)]
    bets = []
    for i, (kind, selection, price, stake) in enumerate(specs):
        legs = [(market, selection, price)] + ([(aux, "x", "2.00")] if kind == "parlay" else [])
        bets.append(place(engine, settings, players[i % 3], stake, legs, bet_type=kind))
    # The parlays' other leg: already resulted (won), so the main market decides them.
    run(engine, settings, aux, 1, {"x": {"result": "won"}})
    return market, players, bets


def house_effect(engine, bets):
    with engine.connect() as conn:
        return conn.execute(text("""
            SELECT coalesce(sum(e.amount), 0) FROM ledger_transactions t
              JOIN ledger_entries e ON e.transaction_id = t.id
              JOIN ledger_accounts a ON a.id = e.account_id
             WHERE t.reference = ANY(:bets) AND a.type = 'house_revenue'"""),
            {"bets": bets}).scalar()


@hyp_settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(specs=bet_specs, v1=result_sets, v2=result_sets, v3=result_sets)
def test_settle_then_resettle_twice_equals_settling_the_last_version(engine, settings, specs, v1,
                                                                     v2, v3):
    walk_market, walk_players, walk_bets = world(engine, settings, specs)
    for version, results in ((1, v1), (2, v2), (3, v3)):
        run(engine, settings, walk_market, version, results)
    direct_market, direct_players, direct_bets = world(engine, settings, specs)
    run(engine, settings, direct_market, 3, v3)

    for walked, direct in zip(walk_players, direct_players, strict=True):
        assert cash(engine, walked) == cash(engine, direct)
        assert account(engine, AccountRef.player_debt(walked, "GBP")) == account(
            engine, AccountRef.player_debt(direct, "GBP"))
        assert account(engine, AccountRef.bets_in_play(walked, "GBP")) == account(
            engine, AccountRef.bets_in_play(direct, "GBP")) == 0
    for walked, direct in zip(walk_bets, direct_bets, strict=True):
        assert bet_row(engine, walked)["paid"] == bet_row(engine, direct)["paid"]
    assert house_effect(engine, walk_bets) == house_effect(engine, direct_bets)
    assert ledger_violations(engine) == []
