"""Withdrawal activities: each does ONE thing (the checks, the hold, the second factor, a
gateway refund or payout, posting or releasing the hold) and commits its state change with the
withdrawal's step row, an audit record and, where partners care, an outbox event.

The data types the withdrawal workflow exchanges with its activities, updates, signals and the
API live here too. Idempotency comes from the business operation: ledger keys
`withdrawal-<id>:hold|post|clear|void`, gateway keys `withdrawal-<id>:refund:<n>|payout`, the
notification key `withdrawal-<id>:2fa-code`; a retried activity never makes a second effect.
Must never: decide what the workflow does next, or log a second-factor code or TOTP secret.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

import pyotp
from temporalio import activity
from temporalio.exceptions import ApplicationError

import audit
import ledger
import outbox
from adapters.gateway import GatewayDeclined, GatewayInvalidRequest, PaymentGateway
from compliance import gates
from ledger import AccountRef, Leg, ResultCode, Transfer
from settlepay.db import run_in_transaction
from store import players, totp
from store import withdrawals as store
from sqlalchemy import Engine

from adapters.notify import Notifier
from settlepay.config import Settings

TOTP, CODE = "totp", "code"

# --- what the workflow, the activities, the updates and the API exchange ----------------------


@dataclass
class WithdrawalRequest:
    withdrawal_id: str
    player_id: str
    partner_id: str
    amount: int                       # minor units
    currency: str
    actor: str                        # who asked (api_key:<id>), for the audit trail
    ip_address: str | None = None
    payout_destination: str | None = None   # the player's bank account at the gateway
    # From Settings, fixed at start so the workflow never reads configuration.
    two_factor_timeout_seconds: float = 600.0
    two_factor_max_attempts: int = 3
    approval_threshold: int = 500_000       # above this amount an operator must approve
    gateway_provider: str = "stripe"
    payout_poll_seconds: float = 5.0
    # Off only where the Temporal server has no custom search attributes (time-skipping tests).
    index_search_attributes: bool = True

    @property
    def workflow_id(self) -> str:
        return store.workflow_id_for(self.withdrawal_id)

    def key(self, step: str) -> str:
        return f"{self.workflow_id}:{step}"


@dataclass
class Challenge:
    method: str                       # totp | code
    sent_to: str | None = None        # where the one-time code went (code only)


@dataclass
class SecondFactorCode:
    code: str


@dataclass
class SecondFactorAttempt:
    withdrawal_id: str
    player_id: str
    method: str
    code: str
    attempts_left_if_wrong: int


@dataclass
class SecondFactorAnswer:
    verified: bool
    state: str
    attempts_left: int


@dataclass
class CancelRequest:
    actor: str
    reason: str | None = None


@dataclass
class ApprovalDecision:
    decision: str                     # approve | reject
    operator: str
    note: str | None = None


@dataclass
class Step:
    """A state change the workflow decided (no money moves in it)."""
    withdrawal_id: str
    state: str
    step: str
    outcome: str
    detail: dict[str, Any] = field(default_factory=dict)
    event: str | None = None


@dataclass
class PayoutLeg:
    withdrawal_id: str
    n: int
    method: str                       # refund | payout
    amount: int
    currency: str
    idempotency_key: str
    payment_ref: str | None = None    # refund: the deposit's payment intent
    destination: str | None = None    # payout: the bank account


@dataclass
class LegStatus:
    n: int
    state: str                        # pending | confirmed | failed
    gateway_ref: str | None = None
    failure: str | None = None


@dataclass
class Release:
    """End a withdrawal that did not (fully) pay: post what the gateway paid, return the rest."""
    withdrawal_id: str
    state: str                        # cancelled | rejected | failed
    reason_code: str
    reason: str
    actor: str
    held: bool = True                 # False: refused before anything was held
    paid_amount: int = 0
    gateway_provider: str = "stripe"


@dataclass
class WithdrawalResult:
    withdrawal_id: str
    state: str
    reason_code: str | None = None
    reason: str | None = None
    paid_amount: int = 0


def one_time_code(secret: str, withdrawal_id: str) -> str:
    """The withdrawal's one-time code: derived, not stored, so a retried send repeats the same
    code and nothing secret sits in the database or the workflow history."""
    digest = hmac.new(secret.encode(), f"withdrawal-code:{withdrawal_id}".encode(), hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


def refused(code: str, reason: str) -> ApplicationError:
    return ApplicationError(reason, type=code, non_retryable=True)


class WithdrawalActivities:
    def __init__(self, engine: Engine, settings: Settings, gateway: PaymentGateway,
                 notifier: Notifier) -> None:
        self._engine = engine
        self._settings = settings
        self._gateway_adapter = gateway
        self._notifier = notifier

    def all(self) -> list:
        return [self.check, self.hold, self.start_second_factor, self.verify_second_factor,
                self.record, self.plan_payouts, self.send_payout, self.refresh_payout,
                self.complete, self.release]

    def _gateway(self) -> PaymentGateway:
        return self._gateway_adapter

    def _transition(self, conn, withdrawal_id: str, *, actor: str, state: str, step: str,  # noqa: ANN001
                    outcome: str, detail: dict[str, Any] | None = None, event: str | None = None,
                    **fields: Any) -> bool:
        changed = store.transition(conn, withdrawal_id, state=state, step=step, outcome=outcome,
                                   detail=detail, **fields)
        if changed is None:
            return False
        before, after = changed
        audit.record(conn, actor=actor, action=f"withdrawal.{step}.{outcome}", subject_type="withdrawal",
                     subject_id=withdrawal_id, before=store.as_record(before), after=store.as_record(after))
        if event:
            outbox.emit(conn, event_type=event, aggregate_type="withdrawal", aggregate_id=withdrawal_id,
                        payload=store.resource(after), player_id=after["player_id"],
                        partner_id=after["partner_id"])
        return True

    # --- 1. checks ---------------------------------------------------------------------------
    @activity.defn(name="withdrawal.check")
    def check(self, req: WithdrawalRequest) -> None:
        """KYC verified, geolocation valid, not excluded from withdrawing, no open debt (the
        compliance gates), and enough available cash. A refusal is non-retryable."""
        def work(conn):  # noqa: ANN001, ANN202
            decision = gates.check(conn, self._settings, gates.GateRequest(
                req.player_id, gates.Operation.WITHDRAWAL, req.amount, req.currency, req.ip_address))
            if not decision.allowed:
                return decision.code, decision.reason
            cash = ledger.balance(conn, AccountRef.player_cash(req.player_id, req.currency))
            if cash.available < req.amount:
                return "insufficient_funds", (f"available cash is {cash.available} {req.currency} "
                                              f"minor units, {req.amount} requested")
            store.add_step(conn, req.withdrawal_id, "checks", "passed")
            return None
        refusal = run_in_transaction(self._engine, work)
        if refusal is not None:
            raise refused(*refusal)

    # --- 2. hold -----------------------------------------------------------------------------
    @activity.defn(name="withdrawal.hold")
    def hold(self, req: WithdrawalRequest) -> None:
        """Player cash -> pending withdrawal, as a pending (two-phase) transfer. The ledger
        refuses it when concurrent withdrawals already hold the cash."""
        def work(conn):  # noqa: ANN001, ANN202
            result = ledger.hold(conn, req.key("hold"),
                                 AccountRef.player_cash(req.player_id, req.currency),
                                 AccountRef.pending_withdrawal(req.player_id, req.currency),
                                 req.amount, reference=req.withdrawal_id)
            if result.code is not ResultCode.OK:
                return result.code
            self._transition(conn, req.withdrawal_id, actor=f"workflow:{req.workflow_id}", state=store.HELD,
                             step="hold", outcome="held",
                             detail={"ledger_transaction_id": result.transaction_id})
            return None
        code = run_in_transaction(self._engine, work)
        if code is not None:
            raise refused(str(code), "the player's available cash no longer covers the withdrawal"
                          if code is ResultCode.INSUFFICIENT_FUNDS else f"hold refused: {code}")

    # --- 3. second factor --------------------------------------------------------------------
    @activity.defn(name="withdrawal.start_second_factor")
    def start_second_factor(self, req: WithdrawalRequest) -> Challenge:
        """TOTP for enrolled players; otherwise a one-time code through the notification provider."""
        with self._engine.connect() as conn:
            enrolled = totp.is_enrolled(conn, req.player_id)
            player = players.get(conn, req.player_id)
        challenge = Challenge(TOTP)
        if not enrolled:
            to = (player["email"] if player is not None and player["email"] else f"player:{req.player_id}")
            notifier = self._notifier
            code = one_time_code(self._settings.otp_code_secret, req.withdrawal_id)
            notifier.send(to=to, subject="Your withdrawal code",
                          body=f"Your code to confirm the withdrawal of {req.amount} {req.currency} "
                               f"minor units is {code}. It expires in "
                               f"{int(req.two_factor_timeout_seconds // 60)} minutes.",
                          idempotency_key=req.key("2fa-code"))
            challenge = Challenge(CODE, to)

        def work(conn):  # noqa: ANN001, ANN202
            self._transition(conn, req.withdrawal_id, actor=f"workflow:{req.workflow_id}",
                             state=store.AWAITING_2FA, step="second_factor", outcome="challenged",
                             detail={"method": challenge.method, "sent_to": challenge.sent_to},
                             second_factor=challenge.method, attempts_left=req.two_factor_max_attempts)
        run_in_transaction(self._engine, work)
        return challenge

    @activity.defn(name="withdrawal.verify_second_factor")
    def verify_second_factor(self, attempt: SecondFactorAttempt) -> bool:
        if attempt.method == TOTP:
            with self._engine.connect() as conn:
                sealed = totp.sealed_secret(conn, attempt.player_id)
            secret = totp.unseal(self._settings.totp_encryption_key, sealed) if sealed else None
            ok = secret is not None and pyotp.TOTP(secret).verify(attempt.code, valid_window=1)
        else:
            expected = one_time_code(self._settings.otp_code_secret, attempt.withdrawal_id)
            ok = hmac.compare_digest(expected, attempt.code)

        def work(conn):  # noqa: ANN001, ANN202
            if ok:
                store.add_step(conn, attempt.withdrawal_id, "second_factor", "verified")
            else:
                store.set_attempts_left(conn, attempt.withdrawal_id, attempt.attempts_left_if_wrong)
                store.add_step(conn, attempt.withdrawal_id, "second_factor", "wrong_code",
                               {"attempts_left": attempt.attempts_left_if_wrong})
            audit.record(conn, actor=f"workflow:{store.workflow_id_for(attempt.withdrawal_id)}",
                         action="withdrawal.second_factor." + ("verified" if ok else "wrong_code"),
                         subject_type="withdrawal", subject_id=attempt.withdrawal_id, before=None,
                         after={"attempts_left": None if ok else attempt.attempts_left_if_wrong})
        run_in_transaction(self._engine, work)
        return ok

    # --- 4. approval and other state changes -------------------------------------------------
    @activity.defn(name="withdrawal.record")
    def record(self, step: Step) -> None:
        actor = step.detail.get("operator") or f"workflow:{store.workflow_id_for(step.withdrawal_id)}"
        run_in_transaction(self._engine, lambda conn: self._transition(
            conn, step.withdrawal_id, actor=actor, state=step.state, step=step.step,
            outcome=step.outcome, detail=step.detail, event=step.event))

    # --- 5. closed loop: refunds first, the rest as a payout ---------------------------------
    @activity.defn(name="withdrawal.plan_payouts")
    def plan_payouts(self, req: WithdrawalRequest) -> list[PayoutLeg]:
        """Refund the player's deposits (newest first, up to what each has left to refund), pay
        the rest out. The plan is written once; a retry reads it back."""
        def work(conn):  # noqa: ANN001, ANN202
            existing = store.payouts(conn, req.withdrawal_id)
            if not existing:
                # Lock the withdrawal row: two plans of one withdrawal cannot interleave.
                store.get(conn, req.withdrawal_id, for_update=True)
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
                    legs.append({"withdrawal_id": req.withdrawal_id, "n": n, "method": "refund",
                                 "deposit_id": deposit["deposit_id"], "payment_ref": deposit["payment_ref"],
                                 "amount": amount, "currency": req.currency,
                                 "idempotency_key": req.key(f"refund:{n}")})
                    remaining -= amount
                if remaining > 0:
                    legs.append({"withdrawal_id": req.withdrawal_id, "n": len(legs) + 1, "method": "payout",
                                 "deposit_id": None, "payment_ref": None, "amount": remaining,
                                 "currency": req.currency, "idempotency_key": req.key("payout")})
                store.insert_payouts(conn, legs)
                store.add_step(conn, req.withdrawal_id, "payout", "planned",
                               {"legs": [{k: leg[k] for k in ("n", "method", "amount", "deposit_id")}
                                         for leg in legs]})
                existing = store.payouts(conn, req.withdrawal_id)
            return [PayoutLeg(req.withdrawal_id, row["n"], row["method"], row["amount"], row["currency"],
                              row["idempotency_key"], row["payment_ref"],
                              req.payout_destination if row["method"] == "payout" else None)
                    for row in existing]
        return run_in_transaction(self._engine, work)

    @activity.defn(name="withdrawal.send_payout")
    def send_payout(self, leg: PayoutLeg) -> LegStatus:
        """Create the refund or payout at the gateway (idempotency key of the leg). A decline is
        the leg's final failure; unavailability is retried by Temporal with the same key."""
        gateway = self._gateway()
        metadata = {"withdrawal_id": leg.withdrawal_id, "leg": str(leg.n)}
        try:
            if leg.method == "refund":
                refund = gateway.create_refund(payment_intent=leg.payment_ref or "", amount=leg.amount,
                                               idempotency_key=leg.idempotency_key,
                                               reason="requested_by_customer", metadata=metadata)
                status = LegStatus(leg.n, _refund_state(refund.status), refund.id, refund.failure_reason)
            else:
                payout = gateway.create_payout(amount=leg.amount, currency=leg.currency,
                                               idempotency_key=leg.idempotency_key,
                                               destination=leg.destination,
                                               description=f"withdrawal {leg.withdrawal_id}",
                                               metadata=metadata)
                status = LegStatus(leg.n, _payout_state(payout.status), payout.id,
                                   payout.failure_code or payout.failure_message)
        except (GatewayDeclined, GatewayInvalidRequest) as error:
            status = LegStatus(leg.n, "failed", None, getattr(error, "code", None) or error.message)
        self._record_leg(leg, status)
        return status

    @activity.defn(name="withdrawal.refresh_payout")
    def refresh_payout(self, leg: PayoutLeg, gateway_ref: str) -> LegStatus:
        gateway = self._gateway()
        if leg.method == "refund":
            refund = gateway.retrieve_refund(gateway_ref)
            status = LegStatus(leg.n, _refund_state(refund.status), refund.id, refund.failure_reason)
        else:
            payout = gateway.retrieve_payout(gateway_ref)
            status = LegStatus(leg.n, _payout_state(payout.status), payout.id,
                               payout.failure_code or payout.failure_message)
        self._record_leg(leg, status)
        return status

    def _record_leg(self, leg: PayoutLeg, status: LegStatus) -> None:
        if status.state == "pending":
            return

        def work(conn):  # noqa: ANN001, ANN202
            store.mark_payout(conn, leg.withdrawal_id, leg.n, state=status.state,
                              gateway_ref=status.gateway_ref, failure=status.failure)
            store.add_step(conn, leg.withdrawal_id, "payout", f"{leg.method}_{status.state}",
                           {"n": leg.n, "amount": leg.amount, "gateway_ref": status.gateway_ref,
                            "failure": status.failure})
        run_in_transaction(self._engine, work)

    # --- 6. post the hold, or release it ------------------------------------------------------
    @activity.defn(name="withdrawal.complete")
    def complete(self, req: WithdrawalRequest) -> None:
        """The gateway confirmed every leg: post the hold, then move the money from pending
        withdrawal to the gateway's clearing account (its own transfer), in one transaction."""
        def work(conn):  # noqa: ANN001, ANN202
            posted = ledger.post_hold(conn, req.key("post"), req.key("hold"))
            if posted.code not in (ResultCode.OK, ResultCode.HOLD_ALREADY_POSTED):
                raise ApplicationError(f"posting the hold failed: {posted.code}", type=str(posted.code))
            _clear(conn, req.key("clear"), req.withdrawal_id, req.player_id, req.currency, req.amount,
                   req.gateway_provider)
            self._transition(conn, req.withdrawal_id, actor=f"workflow:{req.workflow_id}",
                             state=store.PAID, step="completed", outcome="paid",
                             detail={"ledger_transaction_id": posted.transaction_id},
                             event="withdrawal.paid", paid_amount=req.amount)
        run_in_transaction(self._engine, work)

    @activity.defn(name="withdrawal.release")
    def release(self, rel: Release) -> None:
        """Void the hold (nothing paid), or post what the gateway paid and return the rest."""
        def work(conn):  # noqa: ANN001, ANN202
            row = store.get(conn, rel.withdrawal_id)
            assert row is not None
            key = f"{store.workflow_id_for(rel.withdrawal_id)}"
            detail: dict[str, Any] = {}
            if rel.held and rel.paid_amount == 0:
                result = ledger.void_hold(conn, f"{key}:void", f"{key}:hold")
                if result.code not in (ResultCode.OK, ResultCode.HOLD_ALREADY_VOIDED):
                    raise ApplicationError(f"voiding the hold failed: {result.code}", type=str(result.code))
                detail["voided_transaction_id"] = result.transaction_id
            elif rel.held:
                result = ledger.post_hold(conn, f"{key}:post", f"{key}:hold", amount=rel.paid_amount)
                if result.code not in (ResultCode.OK, ResultCode.HOLD_ALREADY_POSTED):
                    raise ApplicationError(f"posting the hold failed: {result.code}", type=str(result.code))
                _clear(conn, f"{key}:clear", rel.withdrawal_id, row["player_id"], row["currency"],
                       rel.paid_amount, rel.gateway_provider)
                detail["posted_amount"] = rel.paid_amount
            self._transition(conn, rel.withdrawal_id, actor=rel.actor, state=rel.state, step="finished",
                             outcome=rel.state, detail=detail, event=f"withdrawal.{rel.state}",
                             reason_code=rel.reason_code, reason=rel.reason, paid_amount=rel.paid_amount)
        run_in_transaction(self._engine, work)


def _clear(conn, key: str, withdrawal_id: str, player_id: str, currency: str, amount: int,  # noqa: ANN001
           provider: str) -> None:
    result = ledger.post(conn, Transfer(
        key=key, kind="withdrawal", reference=withdrawal_id,
        legs=(Leg(AccountRef.pending_withdrawal(player_id, currency), -amount),
              Leg(AccountRef.gateway_clearing(provider, currency), amount))))
    if not result.ok:
        raise ApplicationError(f"clearing the withdrawal failed: {result.code}", type=str(result.code))


def _refund_state(status: str) -> str:
    return {"succeeded": "confirmed", "failed": "failed", "canceled": "failed"}.get(status, "pending")


def _payout_state(status: str) -> str:
    return {"paid": "confirmed", "failed": "failed", "canceled": "failed"}.get(status, "pending")
