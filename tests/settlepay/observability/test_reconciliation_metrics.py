"""Reconciliation metrics (settlepay_reconciliation_items_total{result}: the match rate;
settlepay_reconciliation_breaks_total{class}) move when commands.reconciliation.record_run
records a complete run and its transaction commits, on the real database."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Engine

from commands import reconciliation as commands
from reconciliation.model import Break, BreakClass, Outcome, Window

NOW = int(time.time())
ITEMS = "settlepay_reconciliation_items_total"
BREAKS = "settlepay_reconciliation_breaks_total"
CLASSES = tuple(str(c) for c in BreakClass)


def _snapshot() -> dict[str, float]:
    values = {result: REGISTRY.get_sample_value(ITEMS, {"result": result}) or 0.0
              for result in ("matched", "unmatched")}
    values.update({cls: REGISTRY.get_sample_value(BREAKS, {"class": cls}) or 0.0
                   for cls in CLASSES})
    return values


def _moved(before: dict[str, float]) -> dict[str, float]:
    after = _snapshot()
    return {key: after[key] - before[key] for key in after if after[key] != before[key]}


def _run() -> dict[str, Any]:
    return {"id": f"recon_m_{uuid.uuid4().hex[:8]}", "provider": "stripe",
            "window_start": datetime.fromtimestamp(NOW - 60, UTC),
            "window_end": datetime.fromtimestamp(NOW, UTC),
            "as_of": datetime.fromtimestamp(NOW, UTC), "gateway_rows": 5}


def _outcome() -> Outcome:
    """5 items, 2 matched, 3 breaks: two payouts missing, a fee mismatch (repaired below)."""
    tag = uuid.uuid4().hex[:8]
    outcome = Outcome(window=Window(NOW - 60, NOW), as_of=NOW, items=5, matched=2)
    outcome.breaks += [
        Break(BreakClass.PAYOUT_MISSING, f"w-{tag}:1", "USD", 500, delta=500),
        Break(BreakClass.PAYOUT_MISSING, f"w-{tag}:2", "USD", 700, delta=700),
        Break(BreakClass.FEE_MISMATCH, f"dep-{tag}", "USD", 2_000, delta=88)]
    return outcome


def test_a_recorded_run_counts_its_items_matched_or_not_and_its_breaks_by_class(
        engine: Engine) -> None:
    before = _snapshot()
    with engine.begin() as conn:
        row = commands.record_run(conn, run=_run(), outcome=_outcome(),
                                  repaired={2: "fee booked"}, actor="tests")
        assert _moved(before) == {}                       # nothing before the commit
    assert (row["items"], row["matched"]) == (5, 3)        # the repaired break now matches
    assert _moved(before) == {"matched": 3, "unmatched": 2, "payout_missing": 2,
                              "fee_mismatch": 1}


def test_a_run_recorded_in_a_transaction_that_rolls_back_counts_nothing(
        engine: Engine) -> None:
    before = _snapshot()
    with pytest.raises(RuntimeError), engine.begin() as conn:
        commands.record_run(conn, run=_run(), outcome=_outcome(), repaired={}, actor="tests")
        raise RuntimeError("the run's transaction failed after recording")
    assert _moved(before) == {}


def test_an_incomplete_run_counts_no_item_and_no_break(engine: Engine) -> None:
    before = _snapshot()
    with engine.begin() as conn:
        row = commands.record_run(conn, run={**_run(), "error": "gateway down"},
                                  outcome=_outcome(), repaired={}, actor="tests")
    assert row["verdict"] == "incomplete"
    assert _moved(before) == {}
