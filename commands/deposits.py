"""Deposit commands: every state change of a deposit, with its audit record, its outbox event
and, where money moves, its ledger posting, in the caller's transaction.

    create              the pending row (API)
    gate                the compliance gates and the deposit-limit reservation, idempotent per
                        deposit (commands.limits.gate_deposit)
    record_payment      the gateway has the payment: processing, or 3-D Secure to do
    credit              gateway clearing -> player cash (ledger key `deposit-<id>:credit`) and
                        the row `succeeded`; with `after_close`, also for a deposit that failed
                        while the gateway says the payment succeeded (issue 9, item 5)
    fail                `failed`, no ledger effect, the limit reservation released
    review              no verdict in time: an operator looks at it (a success the gateway
                        already reported is credited instead)
    settle_after_close  a gateway verdict for a deposit whose workflow has closed: a success is
                        credited through `credit`, never dropped

`deposit_payload(row)` is the one builder of the deposit resource: the API's response schema
and every outbox payload. `payment_of` / `payment_from_event_object` translate the gateway's
answers and webhook snapshots into the contract's `Payment`.
Refusals are raised as `DepositRefused` (a `Refusal` inside).
Metrics: a deposit reaching `succeeded`, `failed` or `review` is counted when the caller's
transaction commits (settlepay_deposits_total{outcome}, settlepay_deposit_seconds{outcome}:
creation to outcome).
Must never: open its own transaction, call the gateway, or start a workflow.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, RowMapping

import audit
import ledger
import outbox
from adapters.gateway import PaymentIntent
from commands import promotions
from commands.limits import gate_deposit, release_deposit_amount
from compliance.request import GateRequest, Operation
from ledger import AccountRef, Leg, Transfer
from settlepay.config import Settings
from settlepay.observability import metrics
from store import deposits as store
from workflows.contracts.deposit import (
    Credit,
    DepositFailure,
    DepositRefusal,
    DepositRequest,
    DepositStatus,
    Failure,
    GatewayStatus,
    Payment,
    Review,
    workflow_id,
)
from workflows.contracts.refusal import Refusal


class DepositRefused(Exception):
    """A deposit command said no; `refusal` says why."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.code}: {refusal.reason}")
        self.refusal = refusal


class LateOutcome(StrEnum):
    """What `settle_after_close` did with a verdict for a closed deposit (the Stripe event's
    recorded outcome)."""

    NOTHING_TO_DO = "workflow_closed"            # already succeeded, or not a verdict
    CREDITED = "credited_after_close"
    FAILED = "failed_after_close"
    MISMATCH = "mismatch_after_close"            # another payment or amount: an operator looks


def credit_key(deposit_id: str) -> str:
    return f"{workflow_id(deposit_id)}:credit"


def _workflow_actor(deposit_id: str) -> str:
    return f"workflow:{workflow_id(deposit_id)}"


# --- the resource --------------------------------------------------------------------------

def deposit_payload(row: RowMapping) -> dict[str, Any]:
    """The deposit as API clients and outbox consumers see it (one shape for both)."""
    def ts(value: Any) -> str | None:
        return None if value is None else value.isoformat()

    return {
        "id": row["id"], "object": "deposit", "status": row["status"],
        "player_id": row["player_id"], "amount": row["amount"], "currency": row["currency"],
        "payment_method": row["payment_method"],
        "failure_code": row["failure_code"], "failure_reason": row["failure_reason"],
        "review_code": row["review_code"], "review_reason": row["review_reason"],
        "next_action": row["next_action"],
        "gateway": {"provider": row["gateway"], "payment_intent": row["gateway_payment_intent"],
                    "charge": row["gateway_charge"]},
        "ledger_transaction_id": row["ledger_transaction_id"],
        "created_at": ts(row["created_at"]), "updated_at": ts(row["updated_at"]),
        "succeeded_at": ts(row["succeeded_at"]), "failed_at": ts(row["failed_at"]),
    }


def _count_outcome(conn: Connection, row: RowMapping, outcome: DepositStatus) -> None:
    """The deposit reached `outcome`: counted with its time since creation (both database
    timestamps) once the transaction commits. A deposit credited after it failed or went to
    review counts again, under `succeeded`."""
    seconds = (row["updated_at"] - row["created_at"]).total_seconds()

    def record() -> None:
        metrics.count(metrics.DEPOSITS, str(outcome))
        metrics.observe(metrics.DEPOSIT_SECONDS, seconds, str(outcome))
    metrics.on_commit(conn, record)


def _announce(conn: Connection, row: RowMapping, event: str, *, actor: str,
              before: dict[str, Any] | None, after: dict[str, Any],
              emit: bool = True) -> None:
    audit.record(conn, actor=actor, action=f"deposit.{event}", subject_type="deposit",
                 subject_id=row["id"], before=before, after=after)
    if emit:
        outbox.emit(conn, event_type=f"deposit.{event}", aggregate_type="deposit",
                    aggregate_id=row["id"], payload=deposit_payload(row),
                    player_id=row["player_id"], partner_id=row["partner_id"])


# --- the gateway's words as the contract's -------------------------------------------------

def payment_of(intent: PaymentIntent) -> Payment:
    error = intent.last_payment_error
    next_action = None
    if intent.next_action is not None:
        next_action = {"type": intent.next_action.type,
                       "redirect_url": intent.next_action.redirect_url,
                       "return_url": intent.next_action.return_url}
    return Payment(payment_intent=intent.id, status=intent.status, charge=intent.latest_charge,
                   next_action=next_action,
                   failure_code=None if error is None else (
                       error.decline_code or error.code or "payment_failed"),
                   failure_reason=None if error is None else error.message)


def payment_from_event_object(obj: dict[str, Any]) -> Payment:
    """A payment from a `payment_intent.*` event snapshot."""
    error = obj.get("last_payment_error") or None
    charge = obj.get("latest_charge")
    if isinstance(charge, dict):
        charge = charge.get("id")
    return Payment(payment_intent=obj["id"], status=obj.get("status", "unknown"), charge=charge,
                   failure_code=None if not error else (
                       error.get("decline_code") or error.get("code") or "payment_failed"),
                   failure_reason=None if not error else error.get("message"))


# --- the commands ----------------------------------------------------------------------------

def create(conn: Connection, *, deposit_id: str, player: RowMapping, amount: int, currency: str,
           payment_method: str, actor: str) -> tuple[RowMapping, bool]:
    """The pending deposit of `player` (a row the caller may see); (row, created). The same id
    again returns the existing row and writes nothing."""
    row, created = store.insert(conn, deposit_id=deposit_id, player_id=player["id"],
                                partner_id=player["partner_id"], amount=amount,
                                currency=currency, payment_method=payment_method,
                                created_by=actor)
    if created:
        _announce(conn, row, "created", actor=actor, before=None, after=store.as_record(row))
    return row, created


def gate(conn: Connection, settings: Settings, req: DepositRequest) -> Refusal | None:
    """Every compliance gate, then the deposit-limit reservation; a retry gets the first answer."""
    decision = gate_deposit(conn, settings, GateRequest(
        player_id=req.player_id, operation=Operation.DEPOSIT, amount=req.amount,
        currency=req.currency, ip_address=req.ip_address, deposit_id=req.deposit_id),
        actor=req.workflow_actor)
    return decision.refusal


def record_payment(conn: Connection, req: DepositRequest, payment: Payment) -> bool:
    """The gateway has the payment and its verdict is due (processing, or 3-D Secure to do).
    False when already recorded, or the deposit is closed."""
    status = (DepositStatus.REQUIRES_ACTION if payment.status == GatewayStatus.REQUIRES_ACTION
              else DepositStatus.PROCESSING)
    before = store.get(conn, req.deposit_id, for_update=True)
    if before is None or DepositStatus(before["status"]).final or (
            before["status"] == status
            and before["gateway_payment_intent"] == payment.payment_intent):
        return False
    after = store.mark_payment(conn, req.deposit_id, status=status,
                               payment_intent=payment.payment_intent, charge=payment.charge,
                               next_action=payment.next_action)
    assert after is not None
    # Only 3-D Secure is news for the partner: they must send the player to the bank's page.
    _announce(conn, after, str(status), actor=req.workflow_actor,
              before={"status": before["status"]},
              after={"status": str(status), "gateway_payment_intent": payment.payment_intent},
              emit=status == DepositStatus.REQUIRES_ACTION)
    return True


def credit(conn: Connection, entry: Credit, *, actor: str | None = None,
           after_close: bool = False) -> int:
    """Gateway clearing -> player cash and the row `succeeded`: the ledger transaction id.

    The ledger key is the deposit's (`deposit-<id>:credit`) whoever credits, so the workflow and
    the webhook route crediting the same payment post it once. A deposit that already succeeded
    answers its transaction. A failed deposit is refused (`deposit_already_failed`) unless
    `after_close`: the gateway says the payment succeeded after the deposit failed.
    """
    actor = actor or _workflow_actor(entry.deposit_id)
    before = store.get(conn, entry.deposit_id, for_update=True)
    if before is None:
        raise DepositRefused(Refusal(DepositRefusal.DEPOSIT_NOT_FOUND,
                                     f"deposit {entry.deposit_id} not found"))
    if before["status"] == DepositStatus.SUCCEEDED:
        return before["ledger_transaction_id"]
    if before["status"] == DepositStatus.FAILED and not after_close:
        raise DepositRefused(Refusal(DepositRefusal.DEPOSIT_ALREADY_FAILED,
                                     "deposit already failed"))
    result = ledger.post(conn, Transfer(
        key=credit_key(entry.deposit_id), kind="deposit", reference=entry.deposit_id,
        legs=(Leg(AccountRef.gateway_clearing(before["gateway"], entry.currency),
                  -entry.amount),
              Leg(AccountRef.player_cash(entry.player_id, entry.currency), entry.amount)),
        metadata={"payment_intent": entry.payment_intent}))
    if not result.ok:
        raise DepositRefused(Refusal(str(result.code),
                                     f"ledger refused the deposit credit: {result.code}"))
    after = store.mark_succeeded(conn, entry.deposit_id, payment_intent=entry.payment_intent,
                                 charge=entry.charge, ledger_transaction_id=result.transaction_id,
                                 after_close=after_close)
    assert after is not None
    record: dict[str, Any] = {"status": "succeeded", "ledger_transaction_id": result.transaction_id,
                              "amount": entry.amount, "currency": entry.currency}
    if before["status"] in (DepositStatus.FAILED, DepositStatus.REVIEW):
        record["credited_after"] = before["status"]
    _announce(conn, after, "succeeded", actor=actor,
              before={"status": before["status"], "failure_code": before["failure_code"],
                      "review_code": before["review_code"]}, after=record)
    _count_outcome(conn, after, DepositStatus.SUCCEEDED)
    promotions.match_deposit(conn, after)    # the partner's deposit match, if it offers one
    return result.transaction_id


def fail(conn: Connection, failure: Failure, *, actor: str | None = None) -> bool:
    """`failed` with its reason, no ledger effect; the amount stops counting against the
    player's deposit limits. False when the deposit had already closed."""
    actor = actor or _workflow_actor(failure.deposit_id)
    before = store.get(conn, failure.deposit_id, for_update=True)
    if before is None or DepositStatus(before["status"]).final:
        return False
    after = store.mark_failed(conn, failure.deposit_id, code=failure.code, reason=failure.reason,
                              payment_intent=failure.payment_intent)
    assert after is not None
    release_deposit_amount(conn, failure.deposit_id, actor=actor)
    _announce(conn, after, "failed", actor=actor, before={"status": before["status"]},
              after={"status": "failed", "failure_code": failure.code,
                     "failure_reason": failure.reason})
    _count_outcome(conn, after, DepositStatus.FAILED)
    return True


def review(conn: Connection, request: Review, *, actor: str | None = None) -> DepositStatus:
    """No verdict in time: `review`, for an operator (the amount keeps counting against the
    limits: the payment may still succeed). A success the gateway already reported to us (an
    event recorded under this deposit, e.g. one answering our own create call whose answer we
    never got) is credited instead. Returns the deposit's status afterwards."""
    actor = actor or _workflow_actor(request.deposit_id)
    before = store.get(conn, request.deposit_id, for_update=True)
    if before is None:
        raise DepositRefused(Refusal(DepositRefusal.DEPOSIT_NOT_FOUND,
                                     f"deposit {request.deposit_id} not found"))
    status = DepositStatus(before["status"])
    if status.final or status == DepositStatus.REVIEW:
        return status
    reported = store.succeeded_event_object(conn, request.deposit_id)
    if reported is not None:
        payment = payment_from_event_object(reported)
        if _matches(before, payment, reported):
            credit(conn, _credit_of(before, payment), actor=actor)
            return DepositStatus.SUCCEEDED
    after = store.mark_review(conn, request.deposit_id, code=request.code, reason=request.reason,
                              payment_intent=request.payment_intent)
    assert after is not None
    _announce(conn, after, "review", actor=actor, before={"status": before["status"]},
              after={"status": "review", "review_code": str(request.code),
                     "review_reason": request.reason})
    _count_outcome(conn, after, DepositStatus.REVIEW)
    return DepositStatus.REVIEW


def close_review(conn: Connection, deposit_id: str, *, reason: str, actor: str) -> RowMapping:
    """An operator closes a deposit waiting in `review` as failed: the gateway gave no verdict
    and the operator found no money moved (a create that never reached the gateway, a payment
    left unconfirmed). No ledger effect; the amount stops counting against the limits.

    Money stays right if the operator was wrong: a success the gateway reports later is still
    credited through `settle_after_close` (webhook) or reconciliation (charged, not credited),
    under the deposit's own ledger key. Crediting on an operator's word is not offered: only
    the gateway's verdict credits. Refused (`deposit_not_in_review`) unless in review."""
    before = store.get(conn, deposit_id, for_update=True)
    if before is None:
        raise DepositRefused(Refusal(DepositRefusal.DEPOSIT_NOT_FOUND,
                                     f"There is no deposit {deposit_id!r}."))
    if before["status"] != DepositStatus.REVIEW:
        raise DepositRefused(Refusal(DepositRefusal.DEPOSIT_NOT_IN_REVIEW,
                                     f"The deposit is {before['status']}, not in review."))
    closed = fail(conn, Failure(deposit_id, DepositFailure.CLOSED_IN_REVIEW, reason,
                                before["gateway_payment_intent"]), actor=actor)
    assert closed
    after = store.get(conn, deposit_id)
    assert after is not None
    return after


def settle_after_close(conn: Connection, deposit_id: str, payment: Payment,
                       event_object: dict[str, Any], *, actor: str) -> LateOutcome:
    """The gateway's verdict for a deposit whose workflow has closed (failed, in review, or
    ended otherwise): a success is credited through `credit` with the deposit's own ledger key;
    a failure closes a deposit still open; anything that does not match the deposit (another
    payment intent, amount or currency) is left for an operator."""
    row = store.get(conn, deposit_id, for_update=True)
    if row is None or row["status"] == DepositStatus.SUCCEEDED or not payment.finished:
        return LateOutcome.NOTHING_TO_DO
    if not _matches(row, payment, event_object):
        return LateOutcome.MISMATCH
    if payment.succeeded:
        credit(conn, _credit_of(row, payment), actor=actor, after_close=True)
        return LateOutcome.CREDITED
    if fail(conn, Failure(deposit_id, payment.failure_code or "payment_failed",
                          payment.failure_reason or f"payment ended {payment.status}",
                          payment.payment_intent), actor=actor):
        return LateOutcome.FAILED
    return LateOutcome.NOTHING_TO_DO


def _matches(row: RowMapping, payment: Payment, event_object: dict[str, Any]) -> bool:
    recorded = row["gateway_payment_intent"]
    currency = str(event_object.get("currency", "")).upper()
    return ((recorded is None or recorded == payment.payment_intent)
            and event_object.get("amount") == row["amount"] and currency == row["currency"])


def _credit_of(row: RowMapping, payment: Payment) -> Credit:
    return Credit(deposit_id=row["id"], player_id=row["player_id"], amount=row["amount"],
                  currency=row["currency"], payment_intent=payment.payment_intent,
                  charge=payment.charge)
