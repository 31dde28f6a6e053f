"""The one ordered list of gates and `check`: the first refusal wins, in the order listed."""

from __future__ import annotations

from compliance import gates
from compliance.core import currency_supported, deposit_amount_within_bounds, player_active
from compliance.debt import debt_gate
from compliance.gates import GateRequest, Operation
from compliance.geolocation import geolocation_gate
from compliance.kyc import kyc_gate
from compliance.limits import deposit_limit_gate, exclusion_gate
from tests.support.compliance import NOW
from workflows.contracts.refusal import Refusal


def test_every_gate_is_listed_once_in_one_explicit_order():
    assert gates.GATES == (player_active, currency_supported, deposit_amount_within_bounds,
                           exclusion_gate, geolocation_gate, deposit_limit_gate, kyc_gate,
                           debt_gate)


def test_the_first_refusal_wins_and_later_gates_do_not_run(engine, settings):
    ran: list[str] = []

    def passes(conn, settings, req, now):
        ran.append("passes")
        return None

    def refuses(conn, settings, req, now):
        ran.append("refuses")
        return Refusal("first_no", "the first refusal")

    def never(conn, settings, req, now):
        ran.append("never")
        return Refusal("second_no", "never reached")

    req = GateRequest("ply_nobody", Operation.BET, 100, "USD")
    with engine.connect() as conn:
        decision = gates.check(conn, settings, req, now=NOW, gates=[passes, refuses, never])
        allowed = gates.check(conn, settings, req, now=NOW, gates=[passes])
    assert ran == ["passes", "refuses", "passes"]
    assert (decision.allowed, decision.code, decision.reason) == (False, "first_no",
                                                                 "the first refusal")
    assert decision.refusal == Refusal("first_no", "the first refusal")
    assert (allowed.allowed, allowed.code, allowed.refusal) == (True, "allowed", None)


def test_an_unknown_player_is_refused_by_the_first_gate(engine, settings):
    with engine.connect() as conn:
        decision = gates.check(conn, settings, GateRequest("ply_nobody", Operation.DEPOSIT,
                                                           5_000, "USD"))
    assert (decision.allowed, decision.code) == (False, "player_not_found")
