"""commands.reconciliation on the real database: each change with its audit record and outbox
event in the caller's transaction; fees and credits posted once under their own keys."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

import ledger
from commands import deposits as deposit_commands
from commands import reconciliation as commands
from ledger import AccountRef
from reconciliation.model import (
    Break,
    BreakClass,
    GatewayKind,
    GatewayRecord,
    Outcome,
    Repair,
    Window,
)
from store import reconciliation as store
from tests.support.factories import (
    Player,
    audit_actions,
    cash,
    events,
    ledger_violations,
    make_player,
)
from workflows.contracts.deposit import Failure, deposit_id_for

NOW = int(time.time())


def meta(run_id: str) -> dict:
    return {"id": run_id, "provider": "stripe", "window_start": datetime.fromtimestamp(NOW - 60,
                                                                                       UTC),
            "window_end": datetime.fromtimestamp(NOW, UTC),
            "as_of": datetime.fromtimestamp(NOW, UTC), "gateway_rows": 3}


def payment_break(deposit_id: str, cls: BreakClass, repair: Repair | None, *,
                  amount: int = 2_000, fee: int = 88) -> Break:
    charge = f"ch_{uuid.uuid4().hex[:10]}"
    payment = GatewayRecord(GatewayKind.PAYMENT, f"pi_{deposit_id[-8:]}", "succeeded", amount,
                            "USD", NOW - 30, deposit_id, payment_intent=f"pi_{deposit_id[-8:]}",
                            charge=charge, fee=fee)
    return Break(cls, deposit_id, "USD", amount, gateway=[payment.evidence()],
                 detail="test", delta=amount, repair=repair)


@pytest.fixture
def player(engine: Engine) -> Player:
    return make_player(engine)


def new_deposit(engine: Engine, player: Player, amount: int = 2_000) -> str:
    deposit_id = deposit_id_for(f"cmd-recon-{uuid.uuid4().hex}")
    with engine.begin() as conn:
        deposit_commands.create(conn, deposit_id=deposit_id,
                                player={"id": player.id, "partner_id": player.partner_id},
                                amount=amount, currency="USD", payment_method="pm_card_visa",
                                actor="api_key:tests")
    return deposit_id


def test_a_run_is_recorded_with_its_audit_record_and_event_and_one_open_break_per_key(engine):
    outcome = Outcome(window=Window(NOW - 60, NOW), as_of=NOW, items=2, matched=1)
    outcome.breaks.append(Break(BreakClass.PAYOUT_MISSING, "w-1:1", "USD", 500, delta=500,
                                ours=[{"partner_id": "p-1"}]))
    first_id, second_id = f"recon_t_{uuid.uuid4().hex[:8]}", f"recon_t_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        row = commands.record_run(conn, run=meta(first_id), outcome=outcome, repaired={},
                                  actor="tests")
    assert (row["verdict"], row["counts"], row["residual"]) == (
        "breaks", {"payout_missing": 1}, {"USD": 500})
    assert audit_actions(engine, first_id) == ["reconciliation.run.recorded"]
    assert events(engine, first_id) == ["reconciliation.run.completed"]
    with engine.begin() as conn:
        commands.record_run(conn, run=meta(second_id), outcome=outcome, repaired={},
                            actor="tests")
        open_ones = [b for b in store.list_breaks(conn, status="open", run_id=None, limit=1000)
                     if b["business_key"] == "w-1:1"]
    assert len(open_ones) == 1
    assert (open_ones[0]["run_id"], open_ones[0]["last_run_id"], open_ones[0]["partner_id"]) == (
        first_id, second_id, "p-1")


def test_a_run_without_an_outcome_is_incomplete(engine):
    run_id = f"recon_t_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        row = commands.record_run(conn, run={**meta(run_id), "error": "gateway down"},
                                  outcome=None, repaired={}, actor="tests")
    assert (row["verdict"], row["error"], row["items"]) == ("incomplete", "gateway down", 0)


def test_a_repaired_break_is_recorded_repaired_and_the_verdict_counts_it_done(engine):
    outcome = Outcome(window=Window(NOW - 60, NOW), as_of=NOW, items=1)
    outcome.breaks.append(payment_break("dep-x", BreakClass.FEE_MISMATCH, Repair.BOOK_FEE))
    run_id = f"recon_t_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        row = commands.record_run(conn, run=meta(run_id), outcome=outcome,
                                  repaired={0: "fee booked"}, actor="tests")
        [item] = store.list_breaks(conn, status=None, run_id=run_id, limit=10)
    assert (row["verdict"], row["repaired"], row["matched"], row["residual"]) == (
        "reconciled", 1, 1, {})
    assert (item["status"], item["resolution"]) == ("repaired", "fee booked")
    assert "reconciliation.break.repaired" in audit_actions(engine, str(item["id"]))


def test_a_fee_is_booked_once_under_its_charges_key(engine):
    item = payment_break("dep-fee", BreakClass.FEE_MISMATCH, Repair.BOOK_FEE, fee=88)
    with engine.connect() as conn:
        before = ledger.balance(conn, AccountRef.gateway_clearing("stripe", "USD")).posted
    with engine.begin() as conn:
        first = commands.book_fee(conn, item, provider="stripe", actor="tests")
    with engine.begin() as conn:
        again = commands.book_fee(conn, item, provider="stripe", actor="tests")
    assert first == again
    with engine.connect() as conn:
        after = ledger.balance(conn, AccountRef.gateway_clearing("stripe", "USD")).posted
    assert after - before == 88
    assert ledger_violations(engine) == []


def test_a_charged_deposit_that_failed_is_credited_through_its_own_path_once(engine, player):
    deposit_id = new_deposit(engine, player)
    with engine.begin() as conn:
        deposit_commands.fail(conn, Failure(deposit_id, "timeout", "no verdict", None))
    item = payment_break(deposit_id, BreakClass.CHARGED_NOT_CREDITED, Repair.CREDIT_DEPOSIT)
    with engine.begin() as conn:
        commands.credit_deposit(conn, item, actor="reconciliation:test")
    assert cash(engine, player.id) == 2_000
    with engine.begin() as conn, pytest.raises(commands.RepairRefused):
        commands.credit_deposit(conn, item, actor="reconciliation:test")
    assert cash(engine, player.id) == 2_000
    assert "deposit.succeeded" in audit_actions(engine, deposit_id)


def test_a_credit_for_a_different_amount_is_refused_for_an_operator(engine, player):
    deposit_id = new_deposit(engine, player, amount=2_500)
    item = payment_break(deposit_id, BreakClass.CHARGED_NOT_CREDITED, Repair.CREDIT_DEPOSIT)
    with engine.begin() as conn, pytest.raises(commands.RepairRefused):
        commands.credit_deposit(conn, item, actor="reconciliation:test")
    assert cash(engine, player.id) == 0


def test_an_operator_resolves_an_open_break_once_with_a_reason(engine):
    outcome = Outcome(window=Window(NOW - 60, NOW), as_of=NOW, items=1)
    key = f"w-{uuid.uuid4().hex[:6]}:1"
    outcome.breaks.append(Break(BreakClass.DUPLICATE_EFFECT, key, "USD", 100, delta=-100))
    run_id = f"recon_t_{uuid.uuid4().hex[:8]}"
    with engine.begin() as conn:
        commands.record_run(conn, run=meta(run_id), outcome=outcome, repaired={}, actor="tests")
        [item] = store.list_breaks(conn, status="open", run_id=run_id, limit=10)
        done = commands.resolve_break(conn, item["id"], reason="refund reversed at Stripe",
                                      actor="api_key:ops")
    assert (done["status"], done["resolved_by"]) == ("resolved", "api_key:ops")
    with engine.begin() as conn, pytest.raises(commands.BreakNotOpen):
        commands.resolve_break(conn, item["id"], reason="again", actor="api_key:ops")
    assert "reconciliation.break.resolved" in audit_actions(engine, str(item["id"]))
