"""The chaos report: a failed check's items are printed in full below the table, which cuts
its detail column (seed 1 failed with three operations, the table showed 150 characters)."""

from __future__ import annotations

from types import SimpleNamespace

from chaos.run import Check, failed_items, table, workload_check
from chaos.workload import Model

LONG = ("r7e1d839 withdrawal: Unanswered: KYC of ply_82647959336791c0f32427f4 not verified: "
        "{'status': 'documents', 'reason_code': None, 'reason': None, 'updated_at': "
        "'2026-12-06T02:22:34.7Z'}")


def test_every_failed_operation_is_listed_in_full_below_the_table():
    failures = [LONG, LONG.replace("ply_8264", "ply_448a"), LONG.replace("ply_8264", "ply_f154")]
    workload = SimpleNamespace(model=Model(operations={"player created": 3}, failures=failures),
                               rounds=7)
    check = workload_check(workload)   # type: ignore[arg-type]
    assert not check.passed and "3 failed" in check.detail
    shown = table("Checks", ("check", "result", "detail"),
                  [(check.name, "FAIL", check.detail)])
    assert failures[2] not in shown and "ply_f154" not in shown   # the table cuts it
    listed = failed_items([check, Check("ledger check", True, "fine", ("not shown",))])
    assert listed.splitlines() == [
        "every client operation answered as expected: FAIL, 3 in full:",
        *(f"  - {failure}" for failure in failures)]


def test_nothing_is_listed_when_every_check_passed():
    workload = SimpleNamespace(model=Model(operations={"player created": 3}), rounds=1)
    assert failed_items([workload_check(workload)]) == ""   # type: ignore[arg-type]
