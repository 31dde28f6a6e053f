"""What the real deposit and withdrawal paths leave behind reconciles: a card deposit through
its workflow, then a withdrawal through the API refunding it and paying the rest out (and one
whose payout the bank refused), all three sides agreeing; the fees booked; ledger check clean."""

from __future__ import annotations

from tests.support import reconciliation as rec
from tests.support.deposits import deposit_row, start_deposit
from tests.support.factories import fund, ledger_violations, wait_until
from tests.support.stack import Stack
from tests.support.withdrawals import add_destination, confirm, ready_player, start


async def test_a_real_deposit_and_real_withdrawals_reconcile(stack: Stack, worker, http):
    start_at = await rec.next_second()
    player = ready_player(stack, cash=0)
    deposit_id = await start_deposit(stack, player, 3_000)
    await wait_until(lambda: deposit_row(stack.engine, deposit_id)["status"] == "succeeded")
    fund(stack.engine, player, 4_000, tag="winnings")
    await add_destination(http, player, "ba_good_account")
    paid = (await start(http, player, 4_000, payout_destination="ba_good_account"))["id"]
    done = await confirm(stack, http, player, paid)
    assert done["state"] == "paid"
    assert [p["method"] for p in done["payouts"]] == ["refund", "payout"]
    await add_destination(http, player, "ba_fail_account")
    failed = (await start(http, player, 1_000, payout_destination="ba_fail_account"))["id"]
    assert (await confirm(stack, http, player, failed))["state"] == "failed"
    result = await rec.run(stack, start_at)
    assert result.run["verdict"] == "reconciled", result.outcome.breaks
    assert (result.run["items"], result.run["matched"], result.run["fees_booked"]) == (3, 3, 1)
    assert result.run["residual"] == {}
    again = await rec.run(stack, start_at, end=result.outcome.window.end)
    assert (again.run["verdict"], again.run["fees_booked"]) == ("reconciled", 0)
    assert ledger_violations(stack.engine) == []
