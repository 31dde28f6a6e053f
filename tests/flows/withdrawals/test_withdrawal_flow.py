"""The withdrawal workflow end to end over the real API, Temporal dev server and sandboxes:
closed loop, second factor (one-time code and TOTP), brute force, concurrency, gateway failure,
operator approval, refusals. After every scenario the ledger's invariants hold."""

from __future__ import annotations

import asyncio
import time
import uuid
from urllib.parse import parse_qs, urlparse

import pyotp
from sqlalchemy import text
from temporalio.worker import Replayer

import ledger
from ledger import AccountRef, Leg, Transfer
from settlepay import codec
from settlepay.config import Settings
from tests.support.factories import (
    audit_actions,
    balance,
    card_deposit,
    events,
    fund,
    ledger_violations,
    make_player,
    wait_until,
)
from tests.support.stack import APPROVAL_THRESHOLD
from tests.support.withdrawals import (
    FINAL,
    add_destination,
    code_for,
    get,
    ready_player,
    start,
    submit,
    wait_state,
)
from workflows.withdrawal import WithdrawalWorkflow


async def test_closed_loop_refunds_deposits_first_then_pays_out_the_rest(stack, worker, http):
    player = ready_player(stack, cash=0)
    deposit_id = card_deposit(stack, player, 3_000)
    fund(stack.engine, player, 2_000, tag="winnings")   # cash 5,000: 3,000 deposited, 2,000 won

    created = await start(http, player, 4_000)
    withdrawal_id = created["id"]
    assert created["state"] == "checking"
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    assert balance(stack.engine, player) == {"cash": 5_000, "held": 4_000, "available": 1_000,
                                      "pending_withdrawal": 0, "pending_withdrawal_incoming": 4_000}

    answer = await submit(http, player, withdrawal_id, await code_for(stack, player, withdrawal_id))
    assert answer.status_code == 200, answer.text
    assert answer.json()["second_factor_verified"] is True

    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "paid" and done["paid_amount"] == 4_000
    assert [(p["method"], p["amount"], p["deposit_id"], p["state"]) for p in done["payouts"]] == [
        ("refund", 3_000, deposit_id, "confirmed"), ("payout", 1_000, None, "confirmed")]
    assert balance(stack.engine, player) == {"cash": 1_000, "held": 0, "available": 1_000,
                                      "pending_withdrawal": 0, "pending_withdrawal_incoming": 0}
    steps = [(s["step"], s["outcome"]) for s in done["steps"]]
    assert ("second_factor", "verified") in steps and steps[-1] == ("completed", "paid")
    assert events(stack.engine, withdrawal_id) == ["withdrawal.created", "withdrawal.paid"]
    assert "withdrawal.completed.paid" in audit_actions(stack.engine, withdrawal_id)
    with stack.engine.connect() as conn:
        keys = set(conn.execute(text("SELECT idempotency_key FROM ledger_transactions "
                                     "WHERE idempotency_key LIKE :k"),
                                {"k": f"withdrawal-{withdrawal_id}:%"}).scalars())
    assert {f"withdrawal-{withdrawal_id}:hold", f"withdrawal-{withdrawal_id}:post",
            f"withdrawal-{withdrawal_id}:clear"} <= keys
    assert ledger_violations(stack.engine) == []

    # The history replays deterministically against the current workflow code.
    history = await stack.client.get_workflow_handle(f"withdrawal-{withdrawal_id}").fetch_history()
    await Replayer(workflows=[WithdrawalWorkflow],
                   data_converter=codec.data_converter(Settings())).replay_workflow(history)

    # The same deposit is not refunded twice: a second withdrawal goes out as a payout.
    second = await start(http, player, 1_000)
    await wait_state(http, player, second["id"], ("awaiting_2fa",))
    code = await code_for(stack, player, second["id"])
    assert (await submit(http, player, second["id"], code)).status_code == 200
    done = await wait_state(http, player, second["id"], FINAL)
    assert [(p["method"], p["amount"]) for p in done["payouts"]] == [("payout", 1_000)]
    assert balance(stack.engine, player)["cash"] == 0
    assert ledger_violations(stack.engine) == []


async def test_three_wrong_codes_cancel_and_void_the_hold(stack, worker, http):
    player = ready_player(stack)
    withdrawal_id = (await start(http, player, 3_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    right = await code_for(stack, player, withdrawal_id)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    first = await submit(http, player, withdrawal_id, wrong)
    assert first.status_code == 422 and first.json()["code"] == "second_factor_invalid"
    assert first.json()["attempts_left"] == 2
    second = await submit(http, player, withdrawal_id, wrong)
    assert second.status_code == 422 and second.json()["attempts_left"] == 1
    third = await submit(http, player, withdrawal_id, wrong)
    assert third.status_code == 422 and third.json()["code"] == "second_factor_failed"
    assert third.json()["attempts_left"] == 0

    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "cancelled" and done["reason_code"] == "second_factor_failed"
    # Even the right code is refused now.
    late = await submit(http, player, withdrawal_id, right)
    assert late.status_code == 409, late.text
    assert balance(stack.engine, player) == {"cash": 5_000, "held": 0, "available": 5_000,
                                      "pending_withdrawal": 0, "pending_withdrawal_incoming": 0}
    assert [s["outcome"] for s in done["steps"] if s["step"] == "second_factor"] == [
        "challenged", "wrong_code", "wrong_code", "wrong_code"]
    assert events(stack.engine, withdrawal_id) == ["withdrawal.created", "withdrawal.cancelled"]
    assert ledger_violations(stack.engine) == []


async def test_malformed_code_is_a_validation_error_and_costs_no_attempt(stack, worker, http):
    player = ready_player(stack)
    withdrawal_id = (await start(http, player, 1_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    answer = await submit(http, player, withdrawal_id, "12ab")
    assert answer.status_code == 422 and answer.json()["code"] == "validation_error"
    assert (await get(http, player, withdrawal_id))["attempts_left"] == 3
    cancelled = await http.post(f"/v1/withdrawals/{withdrawal_id}/cancel",
                                headers=player.headers, json={})
    assert cancelled.status_code == 200 and cancelled.json()["state"] == "cancelled"
    assert balance(stack.engine, player)["available"] == 5_000
    assert ledger_violations(stack.engine) == []


async def test_two_concurrent_withdrawals_over_the_balance_one_fails_cleanly(stack, worker, http):
    player = ready_player(stack, cash=5_000)
    a, b = await asyncio.gather(start(http, player, 3_000), start(http, player, 3_000))
    states = sorted([(await wait_state(http, player, w["id"],
                                       ("awaiting_2fa", "rejected")))["state"]
                     for w in (a, b)])
    assert states == ["awaiting_2fa", "rejected"]
    rejected = [w for w in (a, b) if (await get(http, player, w["id"]))["state"] == "rejected"][0]
    held = a if rejected is b else b
    body = await get(http, player, rejected["id"])
    assert body["reason_code"] == "insufficient_funds"
    assert balance(stack.engine, player) == {"cash": 5_000, "held": 3_000, "available": 2_000,
                                      "pending_withdrawal": 0, "pending_withdrawal_incoming": 3_000}
    assert events(stack.engine, rejected["id"]) == ["withdrawal.created", "withdrawal.rejected"]

    # The player cancels the other one before its payout: the hold is voided.
    cancelled = await http.post(f"/v1/withdrawals/{held['id']}/cancel", headers=player.headers,
                                json={"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    assert balance(stack.engine, player)["available"] == 5_000
    again = await http.post(f"/v1/withdrawals/{held['id']}/cancel", headers=player.headers, json={})
    assert again.status_code == 409
    assert ledger_violations(stack.engine) == []


async def test_payout_failure_at_the_gateway_voids_the_hold(stack, worker, http):
    player = ready_player(stack, cash=4_000)                # no deposits: all of it is a payout
    await add_destination(http, player, "ba_fail_closed")
    withdrawal_id = (await start(http, player, 2_500, payout_destination="ba_fail_closed"))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    code = await code_for(stack, player, withdrawal_id)
    assert (await submit(http, player, withdrawal_id, code)).status_code == 200

    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "failed" and done["reason_code"] == "payout_failed"
    assert done["paid_amount"] == 0
    assert [(p["method"], p["state"]) for p in done["payouts"]] == [("payout", "failed")]
    assert balance(stack.engine, player) == {"cash": 4_000, "held": 0, "available": 4_000,
                                      "pending_withdrawal": 0, "pending_withdrawal_incoming": 0}
    assert events(stack.engine, withdrawal_id) == ["withdrawal.created", "withdrawal.failed"]
    assert ledger_violations(stack.engine) == []


async def test_large_withdrawal_waits_for_an_operator_found_by_search_attribute(stack, worker,
                                                                                  http):
    player = ready_player(stack, cash=APPROVAL_THRESHOLD + 10_000)
    withdrawal_id = (await start(http, player, APPROVAL_THRESHOLD + 1))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    code = await code_for(stack, player, withdrawal_id)
    assert (await submit(http, player, withdrawal_id, code)).status_code == 200
    await wait_state(http, player, withdrawal_id, ("awaiting_approval",))

    query = f'ReviewPending = "withdrawal_approval" AND PlayerId = "{player.id}"'
    async def listed():
        return [w.id async for w in stack.client.list_workflows(query)]
    assert await wait_until(listed) == [f"withdrawal-{withdrawal_id}"]

    # A partner key cannot approve; an operator can.
    forbidden = await http.post(f"/v1/withdrawals/{withdrawal_id}/review", headers=player.headers,
                                json={"decision": "approve"})
    assert forbidden.status_code == 403
    approved = await http.post(f"/v1/withdrawals/{withdrawal_id}/review", headers=player.operator,
                               json={"decision": "approve", "note": "source of funds checked"})
    assert approved.status_code == 202, approved.text
    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "paid"
    assert balance(stack.engine, player)["cash"] == 9_999
    assert "withdrawal.review.approve" in audit_actions(stack.engine, withdrawal_id)
    assert ledger_violations(stack.engine) == []


async def test_operator_rejection_voids_the_hold(stack, worker, http):
    player = ready_player(stack, cash=APPROVAL_THRESHOLD + 10_000)
    withdrawal_id = (await start(http, player, APPROVAL_THRESHOLD + 5_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    code = await code_for(stack, player, withdrawal_id)
    assert (await submit(http, player, withdrawal_id, code)).status_code == 200
    await wait_state(http, player, withdrawal_id, ("awaiting_approval",))
    rejected = await http.post(f"/v1/withdrawals/{withdrawal_id}/review", headers=player.operator,
                               json={"decision": "reject", "note": "source of funds unclear"})
    assert rejected.status_code == 202
    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "rejected" and done["reason_code"] == "rejected_by_operator"
    assert balance(stack.engine, player)["available"] == APPROVAL_THRESHOLD + 10_000
    assert ledger_violations(stack.engine) == []


async def test_totp_enrolled_player_confirms_with_the_authenticator(stack, worker, http):
    player = ready_player(stack, cash=2_000)
    enrolled = await http.post(f"/v1/players/{player.id}/2fa/totp", headers=player.headers)
    assert enrolled.status_code == 201, enrolled.text
    uri = enrolled.json()["provisioning_uri"]
    assert uri.startswith("otpauth://totp/")
    secret = parse_qs(urlparse(uri).query)["secret"][0]
    again = await http.post(f"/v1/players/{player.id}/2fa/totp", headers=player.headers)
    assert again.status_code == 409 and again.json()["code"] == "totp_already_enrolled"
    assert "otpauth" not in again.text and secret not in again.text
    # The enrolment is pending until a first code of the authenticator confirms it.
    authenticator, now = pyotp.TOTP(secret), time.time()
    confirmed = await http.post(f"/v1/players/{player.id}/2fa/totp/confirm",
                                headers=player.headers, json={"code": authenticator.at(now)})
    assert confirmed.status_code == 200, confirmed.text
    with stack.engine.connect() as conn:
        stored = conn.execute(text("SELECT secret_encrypted FROM totp_enrolments "
                                   "WHERE player_id = :p"),
                              {"p": player.id}).scalar_one()
    assert secret not in stored   # sealed at rest

    withdrawal_id = (await start(http, player, 1_500))["id"]
    body = await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    assert body["second_factor"] == "totp"
    assert stack.outbox(player.email) == []     # no code sent: the authenticator is the factor
    # A code is used once: the withdrawal takes the next time-step's code (within the drift
    # window), not the one that confirmed the enrolment.
    answer = await submit(http, player, withdrawal_id,
                          authenticator.at(now + authenticator.interval))
    assert answer.status_code == 200, answer.text
    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "paid" and balance(stack.engine, player)["cash"] == 500
    assert ledger_violations(stack.engine) == []


async def test_refusals_kyc_debt_funds_and_idempotent_post(stack, worker, http):
    # Not KYC-verified.
    unverified = make_player(stack.engine)
    fund(stack.engine, unverified, 1_000)
    body = await wait_state(http, unverified, (await start(http, unverified, 500))["id"], FINAL)
    assert (body["state"], body["reason_code"]) == ("rejected", "kyc_not_verified")

    # Open debt: a clawback left the player owing 300.
    debtor = ready_player(stack, cash=1_000)
    with stack.engine.begin() as conn:
        assert ledger.post(conn, Transfer(
            key=f"test-debt-{debtor.id}", kind="resettlement", reference="test-debt",
            legs=(Leg(AccountRef.player_debt(debtor.id, "USD"), -300),
                  Leg(AccountRef.house_revenue("USD"), 300)))).ok
    body = await wait_state(http, debtor, (await start(http, debtor, 500))["id"], FINAL)
    assert (body["state"], body["reason_code"]) == ("rejected", "open_debt")

    # More than the available cash.
    poor = ready_player(stack, cash=1_000)
    body = await wait_state(http, poor, (await start(http, poor, 1_001))["id"], FINAL)
    assert (body["state"], body["reason_code"]) == ("rejected", "insufficient_funds")
    assert balance(stack.engine, poor)["available"] == 1_000

    # No Idempotency-Key -> 400; the same key twice -> the same withdrawal.
    missing = await http.post("/v1/withdrawals", headers=poor.headers,
                              json={"player_id": poor.id, "amount": 100, "currency": "USD"})
    assert missing.status_code == 400 and missing.json()["code"] == "idempotency_key_required"
    headers = {**poor.headers, "Idempotency-Key": uuid.uuid4().hex}
    payload = {"player_id": poor.id, "amount": 100, "currency": "USD"}
    one = await http.post("/v1/withdrawals", headers=headers, json=payload)
    two = await http.post("/v1/withdrawals", headers=headers, json=payload)
    assert one.status_code == two.status_code == 202 and one.json()["id"] == two.json()["id"]
    float_amount = await http.post("/v1/withdrawals",
                                   headers={**poor.headers, "Idempotency-Key": "x1"},
                                   json={"player_id": poor.id, "amount": 10.5, "currency": "USD"})
    assert float_amount.status_code == 422
    await wait_state(http, poor, one.json()["id"], ("awaiting_2fa",))
    assert (await http.post(f"/v1/withdrawals/{one.json()['id']}/cancel",
                            headers=poor.headers)).status_code == 200
    assert ledger_violations(stack.engine) == []


async def test_self_excluded_player_can_still_withdraw(stack, worker, http):
    from datetime import UTC, datetime, timedelta

    from domain.limits import Exclusion, ExclusionKind
    from store import responsible_gaming

    player = ready_player(stack, cash=2_000)
    with stack.engine.begin() as conn:
        responsible_gaming.add_exclusion(conn, player.id, Exclusion(
            ExclusionKind.SELF_EXCLUSION, datetime.now(UTC) - timedelta(minutes=1), None),
            "system:test")
    withdrawal_id = (await start(http, player, 2_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    code = await code_for(stack, player, withdrawal_id)
    assert (await submit(http, player, withdrawal_id, code)).status_code == 200
    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert done["state"] == "paid" and balance(stack.engine, player)["cash"] == 0
    assert ledger_violations(stack.engine) == []
