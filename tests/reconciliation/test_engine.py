"""Matching and classification on plain records (no database, no gateway)."""

from __future__ import annotations

from reconciliation.engine import reconcile
from reconciliation.model import (
    BreakClass,
    GatewayKind,
    GatewayRecord,
    LedgerKind,
    LedgerRecord,
    OurKind,
    OurRecord,
    Repair,
    Verdict,
    Window,
)

T0 = 1_700_000_000
WINDOW = Window(T0, T0 + 86_400)
AS_OF = T0 + 2 * 86_400


def payment(key: str | None, amount: int = 10_000, *, status: str = "succeeded", fee: int = 320,
            n: int = 1, at: int = T0 + 10) -> GatewayRecord:
    return GatewayRecord(GatewayKind.PAYMENT, f"pi_{key}_{n}", status, amount, "EUR", at, key,
                         payment_intent=f"pi_{key}_{n}", charge=f"ch_{key}_{n}", fee=fee)


def deposit(key: str, amount: int = 10_000, status: str = "succeeded",
            at: int = T0 + 5) -> OurRecord:
    return OurRecord(OurKind.DEPOSIT, key, status, amount, "EUR", at, gateway_ref=f"pi_{key}_1")


def credit(key: str, amount: int = 10_000) -> LedgerRecord:
    return LedgerRecord(LedgerKind.DEPOSIT_CREDIT, key, amount, "EUR", 1)


def fee(key: str, amount: int = 320, n: int = 1) -> LedgerRecord:
    return LedgerRecord(LedgerKind.FEE, f"ch_{key}_{n}", amount, "EUR", 2)


def clean(key: str) -> tuple[list, list, list]:
    return [payment(key)], [deposit(key)], [credit(key), fee(key)]


def run(gateway: list, ours: list, ledger: list, **kw):
    return reconcile(gateway, ours, ledger, window=WINDOW, as_of=kw.pop("as_of", AS_OF), **kw)


def only_break(outcome):
    assert len(outcome.breaks) == 1, outcome.breaks
    return outcome.breaks[0]


def test_a_charged_credited_and_fee_booked_deposit_is_reconciled_with_no_residual():
    outcome = run(*clean("d1"))
    assert (outcome.items, outcome.matched, outcome.matched_amount) == (1, 1, 10_000)
    assert outcome.verdict() is Verdict.RECONCILED and outcome.residual() == {}


def test_a_charge_whose_deposit_failed_is_charged_not_credited_and_safe_to_credit():
    found = only_break(run([payment("d1")], [deposit("d1", status="failed")], []))
    assert (found.cls, found.repair, found.delta) == (BreakClass.CHARGED_NOT_CREDITED,
                                                      Repair.CREDIT_DEPOSIT, 10_000)
    assert found.gateway[0]["id"] == "pi_d1_1" and found.ours[0]["status"] == "failed"
    assert found.ledger == []


def test_a_payment_that_succeeded_seconds_ago_is_pending_not_a_break():
    outcome = run([payment("d1", at=AS_OF - 5)], [deposit("d1", status="processing")], [])
    assert outcome.breaks == [] and outcome.pending == ["d1"]
    assert outcome.verdict() is Verdict.RECONCILED_WITH_PENDING


def test_matching_never_falls_back_to_amount_and_date():
    stranger = payment(None)   # same amount, same time, no key of ours
    outcome = run([stranger], [deposit("d1", status="succeeded")], [credit("d1")])
    assert sorted(b.cls for b in outcome.breaks) == [BreakClass.CREDITED_NOT_CHARGED,
                                                      BreakClass.UNCLASSIFIED]


def test_two_succeeded_payments_for_one_deposit_are_a_duplicate_effect():
    found = only_break(run([payment("d1"), payment("d1", n=2)], [deposit("d1")], [credit("d1")]))
    assert found.cls is BreakClass.DUPLICATE_EFFECT and found.delta == 10_000
    assert found.repair is None


def test_an_amount_mismatch_names_all_three_amounts():
    found = only_break(run([payment("d1", 9_000)], [deposit("d1")], [credit("d1")]))
    assert found.cls is BreakClass.AMOUNT_MISMATCH and "9000" in found.detail


def test_a_refund_nobody_of_ours_sent_is_a_status_mismatch_on_its_deposit():
    g, o, ledger = clean("d1")
    refund = GatewayRecord(GatewayKind.REFUND, "re_x", "succeeded", 10_000, "EUR", T0 + 20, None,
                           payment_intent="pi_d1_1")
    found = only_break(run(g + [refund], o, ledger))
    assert found.cls is BreakClass.STATUS_MISMATCH and found.delta == -10_000
    assert [e["id"] for e in found.gateway] == ["pi_d1_1", "re_x"]


def test_a_dispute_is_a_break_with_its_fee_in_the_residual():
    g, o, ledger = clean("d1")
    dispute = GatewayRecord(GatewayKind.DISPUTE, "dp_1", "needs_response", 10_000, "EUR",
                            T0 + 30, None, payment_intent="pi_d1_1", fee=1_500)
    outcome = run(g + [dispute], o, ledger)
    assert only_break(outcome).cls is BreakClass.DISPUTE
    assert outcome.residual() == {"EUR": -11_500}


def test_a_missing_fee_is_safe_to_book_and_a_different_fee_is_for_an_operator():
    g, o, _ = clean("d1")
    missing = only_break(run(g, o, [credit("d1")]))
    assert (missing.cls, missing.repair, missing.delta) == (BreakClass.FEE_MISMATCH,
                                                            Repair.BOOK_FEE, -320)
    wrong = only_break(run(g, o, [credit("d1"), fee("d1", 300)]))
    assert (wrong.cls, wrong.repair, wrong.delta) == (BreakClass.FEE_MISMATCH, None, -20)


def test_a_pending_deposit_that_never_reached_the_gateway_is_orphaned_and_restartable():
    found = only_break(run([], [deposit("d1", status="pending")], []))
    assert (found.cls, found.repair) == (BreakClass.ORPHANED_PENDING_DEPOSIT,
                                         Repair.RESTART_DEPOSIT)


def test_a_credit_without_a_payment_is_credited_not_charged():
    found = only_break(run([payment("d1", status="requires_payment_method")], [deposit("d1")],
                           [credit("d1")]))
    assert found.cls is BreakClass.CREDITED_NOT_CHARGED and found.delta == -10_000


def leg(wid: str, n: int, amount: int, status: str = "confirmed",
        ref: str | None = None, at: int = T0 + 50) -> OurRecord:
    return OurRecord(OurKind.REFUND, f"{wid}:{n}", status, amount, "EUR", at,
                     gateway_ref=ref, parent=wid)


def withdrawal(wid: str, amount: int, state: str = "paid", at: int = T0 + 40) -> OurRecord:
    return OurRecord(OurKind.WITHDRAWAL, wid, state, amount, "EUR", at)


def gw_refund(wid: str, n: int, amount: int, rid: str, status: str = "succeeded") -> GatewayRecord:
    return GatewayRecord(GatewayKind.REFUND, rid, status, amount, "EUR", T0 + 60, f"{wid}:{n}",
                         payment_intent="pi_z")


def clear(wid: str, amount: int) -> LedgerRecord:
    return LedgerRecord(LedgerKind.WITHDRAWAL_CLEAR, wid, amount, "EUR", 3)


def test_a_paid_withdrawal_whose_legs_and_clearing_agree_is_matched():
    outcome = run([gw_refund("w1", 1, 500, "re_1")],
                  [withdrawal("w1", 500), leg("w1", 1, 500, ref="re_1")], [clear("w1", 500)])
    assert outcome.breaks == [] and outcome.matched == 1


def test_a_refund_sent_twice_is_a_duplicate_effect_of_its_leg():
    found = only_break(run([gw_refund("w1", 1, 500, "re_1"), gw_refund("w1", 1, 500, "re_2")],
                           [withdrawal("w1", 500), leg("w1", 1, 500, ref="re_1")],
                           [clear("w1", 500)]))
    assert (found.cls, found.key, found.delta) == (BreakClass.DUPLICATE_EFFECT, "w1:1", -500)


def test_a_confirmed_leg_with_nothing_at_the_gateway_is_a_payout_missing():
    found = only_break(run([], [withdrawal("w1", 500), leg("w1", 1, 500, ref="po_gone")],
                           [clear("w1", 500)]))
    assert (found.cls, found.delta) == (BreakClass.PAYOUT_MISSING, 500)


def test_a_withdrawal_open_past_the_hold_limit_is_a_stuck_hold():
    found = only_break(run([], [withdrawal("w1", 500, state="paying")], [],
                           hold_max_seconds=3_600))
    assert found.cls is BreakClass.HOLD_OPEN_TOO_LONG


def test_keys_outside_the_window_are_not_examined_and_a_rerun_gives_the_same_outcome():
    g, o, ledger = clean("d1")
    late = deposit("d2", status="pending", at=WINDOW.end + 1)
    first = run(g, o + [late], ledger)
    again = run(g, o + [late], ledger)
    assert first.items == again.items == 1
    assert (first.verdict(), first.residual(), first.counts()) == (
        again.verdict(), again.residual(), again.counts())


def test_repaired_breaks_no_longer_count_toward_the_verdict_or_residual():
    g, o, _ = clean("d1")
    outcome = run(g, o, [credit("d1")])
    assert outcome.verdict() is Verdict.BREAKS and outcome.residual() == {"EUR": -320}
    assert outcome.verdict({0}) is Verdict.RECONCILED and outcome.residual({0}) == {}


def test_a_leg_in_its_grace_period_is_pending_not_an_amount_mismatch():
    outcome = run([], [withdrawal("w1", 500), leg("w1", 1, 500, ref="po_1", at=AS_OF - 5)],
                  [clear("w1", 500)], grace_seconds=60)
    assert outcome.breaks == [] and outcome.pending == ["w1"]


def test_a_failed_attempt_carrying_a_key_we_do_not_know_moved_nothing_and_matches():
    outcome = run([payment("ghost", status="requires_payment_method")], [], [])
    assert outcome.breaks == [] and outcome.matched == 1
