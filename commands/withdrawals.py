"""Withdrawal commands: every state change of a withdrawal, with its audit record, its outbox
event and, where money moves, its ledger posting, in the caller's transaction.

    create            the row (API), refused when the payout destination is not the player's
    check / hold      the compliance gates and funds; the two-phase hold (refused unless the
                      hold is pending afterwards: a rerun never treats a voided hold as held)
    challenged / record_second_factor_attempt / record        the workflow's steps
    check_debt        open debt again, just before the payout (issue 9, item 7)
    plan_payouts      the closed-loop plan, under the player's lock (item 9)
    leg_sending / record_leg      a leg about to go to the gateway (refused unless the hold is
                      pending and the withdrawal paying: item 4); its gateway answer, audited
    complete / release            post the hold and clear it, or post what was paid and return
                      the rest (unsent legs cancelled; with settle_debt, the returned cash repays
                      the player's debt in that currency first)
    add_payout_destination        a bank account the player's payouts may go to (item 11)

`payload(row, ...)` is the one builder of the withdrawal resource: the API's response schema
and every outbox payload. Refusals are raised as `WithdrawalRefused` (a `Refusal` inside) or
returned as a `Refusal`, as each function says.
Must never: open its own transaction, call the gateway or the notification provider, or start
a workflow.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
import ledger
import outbox
from commands import promotions, second_factor
from compliance import gates
from compliance.debt import debt_gate
from ledger import AccountRef, Leg, ResultCode, Transfer
from settlepay.config import Settings
from store import players
from store import withdrawals as store
from workflows.contracts.refusal import Refusal
from workflows.contracts.withdrawal import (
    FINAL_EVENT,
    Event,
    LegMethod,
    LegState,
    PayoutLeg,
    Release,
    SecondFactorAttempt,
    SecondFactorMethod,
    Step,
    WithdrawalRefusal,
    WithdrawalRequest,
    WithdrawalState,
    workflow_id,
)

HOLD_PENDING = "pending"


class WithdrawalRefused(Exception):
    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.refusal = Refusal(str(code), reason)


# --- shapes -------------------------------------------------------------------------------------

def as_record(row: RowMapping) -> dict[str, Any]:
    """The row as plain JSON values (audit before / after)."""
    return {key: (value.isoformat() if hasattr(value, "isoformat") else value)
            for key, value in row.items()}


def payload(row: RowMapping, step_rows: list[RowMapping] | None = None,
            payout_rows: list[RowMapping] | None = None) -> dict[str, Any]:
    """The withdrawal as API clients and outbox consumers see it."""
    body: dict[str, Any] = {
        "id": row["id"], "object": "withdrawal", "state": row["state"],
        "player_id": row["player_id"], "amount": row["amount"], "currency": row["currency"],
        "paid_amount": row["paid_amount"], "reason_code": row["reason_code"],
        "reason": row["reason"], "second_factor": row["second_factor"],
        "attempts_left": row["attempts_left"],
        "created_at": row["created_at"].isoformat(), "updated_at": row["updated_at"].isoformat(),
    }
    if step_rows is not None:
        body["steps"] = [{"step": s["step"], "outcome": s["outcome"], "detail": s["detail"],
                          "at": s["created_at"].isoformat()} for s in step_rows]
    if payout_rows is not None:
        body["payouts"] = [{"n": p["n"], "method": p["method"], "amount": p["amount"],
                            "currency": p["currency"], "deposit_id": p["deposit_id"],
                            "state": p["state"], "gateway_ref": p["gateway_ref"],
                            "failure": p["failure"]} for p in payout_rows]
    return body


def view(conn: Connection, withdrawal_id: str, *,
         partner_id: str | None = None) -> dict[str, Any] | None:
    """The withdrawal with its steps and legs (None: not found, or another partner's)."""
    row = store.get(conn, withdrawal_id, partner_id=partner_id)
    if row is None:
        return None
    return payload(row, store.steps(conn, withdrawal_id), store.payouts(conn, withdrawal_id))


def _workflow_actor(withdrawal_id: str) -> str:
    return f"workflow:{workflow_id(withdrawal_id)}"


# --- creation -----------------------------------------------------------------------------------

def create(conn: Connection, *, withdrawal_id: str, player: RowMapping, amount: int,
           currency: str, payout_destination: str | None,
           actor: str) -> tuple[RowMapping, bool]:
    """The withdrawal row in `checking` with its audit record and `withdrawal.created`:
    (row, True), or (the existing row, False) for a retried request. Raises WithdrawalRefused
    when `payout_destination` is not one recorded for the player."""
    if payout_destination is not None and \
            not store.has_destination(conn, player["id"], payout_destination):
        raise WithdrawalRefused(WithdrawalRefusal.PAYOUT_DESTINATION_UNKNOWN,
                                f"{payout_destination!r} is not a payout destination recorded "
                                f"for player {player['id']}.")
    row, created = store.insert(conn, withdrawal_id=withdrawal_id, player_id=player["id"],
                                partner_id=player["partner_id"], amount=amount,
                                currency=currency)
    if created:
        store.add_step(conn, withdrawal_id, "requested", "accepted", {"actor": actor})
        audit.record(conn, actor=actor, action="withdrawal.created", subject_type="withdrawal",
                     subject_id=withdrawal_id, before=None, after=as_record(row))
        outbox.emit(conn, event_type=Event.CREATED, aggregate_type="withdrawal",
                    aggregate_id=withdrawal_id, payload=payload(row),
                    player_id=row["player_id"], partner_id=row["partner_id"])
    return row, created


def add_payout_destination(conn: Connection, player: RowMapping, destination: str, *,
                           actor: str) -> tuple[RowMapping, bool]:
    """Record a bank account the player's payouts may go to: (row, created)."""
    row = store.add_destination(conn, player["id"], destination, actor)
    if row is None:
        existing = [d for d in store.destinations(conn, player["id"])
                    if d["destination"] == destination]
        return existing[0], False
    after = {"player_id": player["id"], "destination": destination}
    audit.record(conn, actor=actor, action="player.payout_destination_added",
                 subject_type="player", subject_id=player["id"], before=None, after=after)
    outbox.emit(conn, event_type="player.payout_destination_added", aggregate_type="player",
                aggregate_id=player["id"], payload=after, player_id=player["id"],
                partner_id=player["partner_id"])
    return row, True


# --- transitions --------------------------------------------------------------------------------

def transition(conn: Connection, withdrawal_id: str, *, actor: str, state: WithdrawalState,
               step: str, outcome: str, detail: dict[str, Any] | None = None,
               event: str | None = None, **fields: Any) -> bool:
    """Move an unfinished withdrawal, append its step, audit it (`withdrawal.<step>.<outcome>`)
    and emit `event`. False (nothing written) when the withdrawal is already finished."""
    changed = store.transition(conn, withdrawal_id, state=state, step=step, outcome=outcome,
                               detail=detail, **fields)
    if changed is None:
        return False
    before, after = changed
    audit.record(conn, actor=actor, action=f"withdrawal.{step}.{outcome}",
                 subject_type="withdrawal", subject_id=withdrawal_id,
                 before=as_record(before), after=as_record(after))
    if event:
        outbox.emit(conn, event_type=str(event), aggregate_type="withdrawal",
                    aggregate_id=withdrawal_id, payload=payload(after),
                    player_id=after["player_id"], partner_id=after["partner_id"])
    return True


def record(conn: Connection, step: Step) -> bool:
    """A state change the workflow decided (no money moves)."""
    return transition(conn, step.withdrawal_id, actor=step.actor or _workflow_actor(
        step.withdrawal_id), state=step.state, step=step.step, outcome=step.outcome,
        detail=step.detail, event=step.event)


# --- 1. checks and the hold ---------------------------------------------------------------------

def check(conn: Connection, settings: Settings, req: WithdrawalRequest) -> Refusal | None:
    """KYC verified, geolocation valid, not excluded, no open debt (the compliance gates), and
    enough available cash. None when every check passed."""
    decision = gates.check(conn, settings, gates.GateRequest(
        req.player_id, gates.Operation.WITHDRAWAL, req.amount, req.currency, req.ip_address))
    if not decision.allowed:
        return Refusal(decision.code, decision.reason)
    cash = ledger.balance(conn, AccountRef.player_cash(req.player_id, req.currency))
    if cash.available < req.amount:
        return Refusal(WithdrawalRefusal.INSUFFICIENT_FUNDS,
                       f"available cash is {cash.available} {req.currency} minor units, "
                       f"{req.amount} requested")
    # A withdrawal before a bonus's wagering requirement is met forfeits it (as configured).
    promotions.forfeit_on_withdrawal(conn, settings, req.player_id, req.currency,
                                     req.withdrawal_id)
    store.add_step(conn, req.withdrawal_id, "checks", "passed")
    return None


def hold(conn: Connection, req: WithdrawalRequest) -> Refusal | None:
    """Player cash -> pending withdrawal, as a pending (two-phase) transfer. Refused when the
    cash is no longer there, and when the hold is not pending afterwards: a second run of a
    closed withdrawal replays the first run's `ok` of a hold that was voided since."""
    result = ledger.hold(conn, req.key("hold"),
                         AccountRef.player_cash(req.player_id, req.currency),
                         AccountRef.pending_withdrawal(req.player_id, req.currency),
                         req.amount, reference=req.withdrawal_id)
    if result.code is ResultCode.INSUFFICIENT_FUNDS:
        return Refusal(WithdrawalRefusal.INSUFFICIENT_FUNDS,
                       "the player's available cash no longer covers the withdrawal")
    if result.code is not ResultCode.OK:
        return Refusal(str(result.code), f"hold refused: {result.code}")
    state = ledger.hold_state(conn, req.key("hold"))
    if state != HOLD_PENDING:
        return Refusal(WithdrawalRefusal.HOLD_NOT_PENDING,
                       f"the withdrawal's hold is already {state}: it was closed before")
    transition(conn, req.withdrawal_id, actor=_workflow_actor(req.withdrawal_id),
               state=WithdrawalState.HELD, step="hold", outcome="held",
               detail={"ledger_transaction_id": result.transaction_id})
    return None


# --- 2. the second factor -----------------------------------------------------------------------

def challenged(conn: Connection, req: WithdrawalRequest, method: SecondFactorMethod,
               sent_to: str | None) -> None:
    transition(conn, req.withdrawal_id, actor=_workflow_actor(req.withdrawal_id),
               state=WithdrawalState.AWAITING_SECOND_FACTOR, step="second_factor",
               outcome="challenged", detail={"method": method, "sent_to": sent_to},
               second_factor=method, attempts_left=req.second_factor_max_attempts)


def verify_second_factor(conn: Connection, settings: Settings,
                         attempt: SecondFactorAttempt) -> bool:
    """Check the code (a TOTP code is used up) and record the attempt with its audit record."""
    if attempt.method is SecondFactorMethod.TOTP:
        ok = second_factor.verify_totp(conn, settings, attempt.player_id, attempt.code)
    else:
        ok = second_factor.one_time_code_matches(settings.otp_code_secret,
                                                 attempt.withdrawal_id, attempt.code)
    if ok:
        store.add_step(conn, attempt.withdrawal_id, "second_factor", "verified")
    else:
        store.set_attempts_left(conn, attempt.withdrawal_id, attempt.attempts_left_if_wrong)
        store.add_step(conn, attempt.withdrawal_id, "second_factor", "wrong_code",
                       {"attempts_left": attempt.attempts_left_if_wrong})
    audit.record(conn, actor=_workflow_actor(attempt.withdrawal_id),
                 action="withdrawal.second_factor." + ("verified" if ok else "wrong_code"),
                 subject_type="withdrawal", subject_id=attempt.withdrawal_id, before=None,
                 after={"attempts_left": None if ok else attempt.attempts_left_if_wrong})
    return ok


# --- 3. before the payout -----------------------------------------------------------------------

def check_debt(conn: Connection, settings: Settings, req: WithdrawalRequest) -> Refusal | None:
    """The open-debt gate again, just before the payout: a clawback while the cash was held
    (during the second factor or the approval) must not be paid out."""
    decision = gates.check(conn, settings, gates.GateRequest(
        req.player_id, gates.Operation.WITHDRAWAL, req.amount, req.currency),
        gates=(debt_gate,))
    return None if decision.allowed else Refusal(decision.code, decision.reason)


def plan_payouts(conn: Connection, req: WithdrawalRequest) -> list[RowMapping]:
    """Refund the player's deposits (newest first, up to what each has left to refund), pay the
    rest out. Planned under the player's row lock, so two withdrawals of one player plan one
    after the other and never both refund the same money; written once (a retry reads it)."""
    players.get(conn, req.player_id, for_update=True)
    store.get(conn, req.withdrawal_id, for_update=True)
    existing = store.payouts(conn, req.withdrawal_id)
    if existing:
        return existing
    legs: list[dict[str, Any]] = []
    remaining = req.amount
    for deposit in store.refundable_deposits(conn, req.player_id, req.currency,
                                             req.gateway_provider):
        if remaining == 0:
            break
        amount = min(remaining, int(deposit["refundable"]))
        if amount <= 0:
            continue
        n = len(legs) + 1
        legs.append({"withdrawal_id": req.withdrawal_id, "n": n, "method": LegMethod.REFUND,
                     "deposit_id": deposit["deposit_id"], "payment_ref": deposit["payment_ref"],
                     "amount": amount, "currency": req.currency,
                     "idempotency_key": req.key(f"refund:{n}")})
        remaining -= amount
    if remaining > 0:
        legs.append({"withdrawal_id": req.withdrawal_id, "n": len(legs) + 1,
                     "method": LegMethod.PAYOUT, "deposit_id": None, "payment_ref": None,
                     "amount": remaining, "currency": req.currency,
                     "idempotency_key": req.key("payout")})
    store.insert_payouts(conn, legs)
    plan = [{k: leg[k] for k in ("n", "method", "amount", "deposit_id")} for leg in legs]
    store.add_step(conn, req.withdrawal_id, "payout", "planned", {"legs": plan})
    audit.record(conn, actor=_workflow_actor(req.withdrawal_id), action="withdrawal.payout.planned",
                 subject_type="withdrawal", subject_id=req.withdrawal_id, before=None,
                 after={"legs": plan})
    return store.payouts(conn, req.withdrawal_id)


# --- 4. the legs at the gateway -----------------------------------------------------------------

def leg_sending(conn: Connection, leg: PayoutLeg) -> RowMapping:
    """The leg row, its first send time recorded, as it goes to the gateway. Raises
    WithdrawalRefused unless the withdrawal is paying and its hold is still pending: no later
    step may pay out cash whose hold was voided (or a withdrawal that is finished)."""
    row = store.get(conn, leg.withdrawal_id, for_update=True)
    if row is None or row["state"] not in (WithdrawalState.PAYING, WithdrawalState.PAYOUT_REVIEW):
        state = None if row is None else row["state"]
        raise WithdrawalRefused(WithdrawalRefusal.HOLD_NOT_PENDING,
                                f"the withdrawal is {state}: nothing may be paid out")
    hold_state = ledger.hold_state(conn, f"{workflow_id(leg.withdrawal_id)}:hold")
    if hold_state != HOLD_PENDING:
        raise WithdrawalRefused(WithdrawalRefusal.HOLD_NOT_PENDING,
                                f"the withdrawal's hold is {hold_state}: nothing may be paid out")
    sending = store.mark_sending(conn, leg.withdrawal_id, leg.n)
    if sending is None:
        raise LookupError(f"withdrawal {leg.withdrawal_id} has no leg {leg.n}")
    return sending


def record_leg(conn: Connection, leg: PayoutLeg, state: LegState, gateway_ref: str | None,
               failure: str | None, *, actor: str | None = None) -> None:
    """A leg's final gateway answer (confirmed or failed), with its step and audit record."""
    if not store.mark_payout(conn, leg.withdrawal_id, leg.n, state=state,
                             gateway_ref=gateway_ref, failure=failure):
        return   # recorded before (a retried activity)
    detail = {"n": leg.n, "amount": leg.amount, "gateway_ref": gateway_ref, "failure": failure}
    outcome = f"{leg.method}_{state}"
    store.add_step(conn, leg.withdrawal_id, "payout", outcome, detail)
    audit.record(conn, actor=actor or _workflow_actor(leg.withdrawal_id),
                 action=f"withdrawal.payout.{outcome}", subject_type="withdrawal",
                 subject_id=leg.withdrawal_id, before=None,
                 after={**detail, "method": leg.method, "state": state})


# --- 5. post the hold, or release it ------------------------------------------------------------

def complete(conn: Connection, req: WithdrawalRequest) -> None:
    """The gateway confirmed every leg: post the hold, then move the money from pending
    withdrawal to the gateway's clearing account. Raises WithdrawalRefused when the hold was
    voided (never retried: a voided hold is not cash to post)."""
    posted = ledger.post_hold(conn, req.key("post"), req.key("hold"))
    if posted.code is ResultCode.HOLD_ALREADY_VOIDED:
        raise WithdrawalRefused(WithdrawalRefusal.HOLD_NOT_PENDING,
                                "the withdrawal's hold was voided: it cannot be posted")
    if posted.code not in (ResultCode.OK, ResultCode.HOLD_ALREADY_POSTED):
        raise RuntimeError(f"posting the hold of {req.withdrawal_id} failed: {posted.code}")
    _clear(conn, req.key("clear"), req.withdrawal_id, req.player_id, req.currency, req.amount,
           req.gateway_provider)
    transition(conn, req.withdrawal_id, actor=_workflow_actor(req.withdrawal_id),
               state=WithdrawalState.PAID, step="completed", outcome="paid",
               detail={"ledger_transaction_id": posted.transaction_id},
               event=Event.PAID, paid_amount=req.amount)


def release(conn: Connection, rel: Release) -> None:
    """Void the hold (nothing paid), or post what the gateway paid and return the rest; legs
    never sent are cancelled (their deposits' refundable amounts come back); with
    `rel.settle_debt` the returned cash repays the player's debt in its currency first."""
    row = store.get(conn, rel.withdrawal_id, for_update=True)
    if row is None:
        raise LookupError(f"no withdrawal {rel.withdrawal_id}")
    if WithdrawalState(row["state"]).final:
        return   # released before (a retried activity), or a second run of a closed one
    key = workflow_id(rel.withdrawal_id)
    detail: dict[str, Any] = {}
    if rel.held and rel.paid_amount == 0:
        result = ledger.void_hold(conn, f"{key}:void", f"{key}:hold")
        if result.code not in (ResultCode.OK, ResultCode.HOLD_ALREADY_VOIDED):
            raise RuntimeError(f"voiding the hold of {rel.withdrawal_id} failed: {result.code}")
        detail["voided_transaction_id"] = result.transaction_id
    elif rel.held:
        result = ledger.post_hold(conn, f"{key}:post", f"{key}:hold", amount=rel.paid_amount)
        if result.code not in (ResultCode.OK, ResultCode.HOLD_ALREADY_POSTED):
            raise RuntimeError(f"posting the hold of {rel.withdrawal_id} failed: {result.code}")
        _clear(conn, f"{key}:clear", rel.withdrawal_id, row["player_id"], row["currency"],
               rel.paid_amount, rel.gateway_provider)
        detail["posted_amount"] = rel.paid_amount
    cancelled = store.cancel_planned_payouts(conn, rel.withdrawal_id, "not sent: " + rel.reason)
    if cancelled:
        detail["cancelled_legs"] = cancelled
    if rel.settle_debt:
        settled = _settle_debt(conn, f"{key}:settle_debt", rel.withdrawal_id, row["player_id"],
                               row["currency"])
        if settled:
            detail["debt_settled"] = settled
    transition(conn, rel.withdrawal_id, actor=rel.actor, state=rel.state, step="finished",
               outcome=rel.state, detail=detail, event=FINAL_EVENT[rel.state],
               reason_code=rel.reason_code, reason=rel.reason, paid_amount=rel.paid_amount)


def _settle_debt(conn: Connection, key: str, withdrawal_id: str, player_id: str,
                 currency: str) -> int:
    """Repay the player's debt in `currency` from their available cash (what the voided hold
    gave back), under the player's lock; returns the amount repaid."""
    players.get(conn, player_id, for_update=True)
    debt = -ledger.balance(conn, AccountRef.player_debt(player_id, currency)).posted
    cash = ledger.balance(conn, AccountRef.player_cash(player_id, currency)).available
    amount = min(debt, cash)
    if amount <= 0:
        return 0
    result = ledger.post(conn, Transfer(
        key=key, kind="debt_repayment", reference=withdrawal_id,
        legs=(Leg(AccountRef.player_cash(player_id, currency), -amount),
              Leg(AccountRef.player_debt(player_id, currency), amount))))
    if not result.ok:
        raise RuntimeError(f"repaying the debt from withdrawal {withdrawal_id}: {result.code}")
    return amount


def _clear(conn: Connection, key: str, withdrawal_id: str, player_id: str, currency: str,
           amount: int, provider: str) -> None:
    result = ledger.post(conn, Transfer(
        key=key, kind="withdrawal", reference=withdrawal_id,
        legs=(Leg(AccountRef.pending_withdrawal(player_id, currency), -amount),
              Leg(AccountRef.gateway_clearing(provider, currency), amount))))
    if not result.ok:
        raise RuntimeError(f"clearing withdrawal {withdrawal_id} failed: {result.code}")
