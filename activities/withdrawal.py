"""Withdrawal activities: each does ONE thing (the checks, the hold, the second factor, a
gateway refund or payout, posting or releasing the hold) through a command of
commands/withdrawals.py, which writes the state row, audit record and outbox event together.

Types and names are in workflows/contracts/withdrawal.py. A business refusal is a
non-retryable ApplicationError (`Refusal.as_error`); anything else is retried by Temporal with
the same idempotency keys, so a retried activity never makes a second effect. A gateway step
first sent longer ago than the gateway remembers idempotency keys looks for what it created
before it creates anything.
Must never: decide what the workflow does next, or log a second-factor code or TOTP secret.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine
from temporalio import activity

from adapters.gateway import (
    GatewayDeclined,
    GatewayInvalidRequest,
    PaymentGateway,
    Payout,
    Refund,
)
from adapters.notify import Notifier
from commands import second_factor
from commands import withdrawals as commands
from commands.withdrawals import WithdrawalRefused
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from settlepay.observability import metrics
from store import players
from workflows.contracts.refusal import Refusal
from workflows.contracts.withdrawal import (
    GATEWAY_KEY_MEMORY_SECONDS,
    Activity,
    Challenge,
    LegMethod,
    LegState,
    LegStatus,
    PayoutLeg,
    Release,
    SecondFactorAttempt,
    SecondFactorMethod,
    Step,
    WithdrawalRequest,
)

# How far before a leg's first send the gateway's records are searched (clock differences).
LOOKUP_SLACK = timedelta(hours=1)


class WithdrawalActivities:
    def __init__(self, engine: Engine, settings: Settings, gateway: PaymentGateway,
                 notifier: Notifier) -> None:
        self._engine = engine
        self._settings = settings
        self._gateway = gateway
        self._notifier = notifier

    def all(self) -> list[Callable[..., Any]]:
        return [self.check, self.hold, self.start_second_factor, self.verify_second_factor,
                self.record, self.check_debt, self.plan_payouts, self.send_payout,
                self.refresh_payout, self.complete, self.release]

    def _run(self, work: Callable[[Connection], Any]) -> Any:
        """`work` in a transaction; a command's refusal becomes the non-retryable error."""
        try:
            return run_in_transaction(self._engine, work)
        except WithdrawalRefused as refused:
            raise refused.refusal.as_error() from None

    def _refusable(self, work: Callable[[Connection], Refusal | None]) -> None:
        refusal = self._run(work)
        if refusal is not None:
            raise refusal.as_error()

    # --- 1. checks and hold ------------------------------------------------------------------
    @activity.defn(name=Activity.CHECK)
    def check(self, req: WithdrawalRequest) -> None:
        """KYC verified, geolocation valid, no open debt, enough available cash."""
        self._refusable(lambda conn: commands.check(conn, self._settings, req))

    @activity.defn(name=Activity.HOLD)
    def hold(self, req: WithdrawalRequest) -> None:
        """Player cash -> pending withdrawal (two-phase); refused if the cash is gone."""
        self._refusable(lambda conn: commands.hold(conn, req))

    # --- 2. second factor --------------------------------------------------------------------
    @activity.defn(name=Activity.START_SECOND_FACTOR)
    def start_second_factor(self, req: WithdrawalRequest) -> Challenge:
        """TOTP for players with a confirmed authenticator; otherwise a one-time code through
        the notification provider (the same code and key on a retry: sent once)."""
        with self._engine.connect() as conn:
            enrolled = second_factor.is_enrolled(conn, req.player_id)
            player = players.get(conn, req.player_id)
        challenge = Challenge(SecondFactorMethod.TOTP)
        if not enrolled:
            to = (player["email"] if player is not None and player["email"]
                  else f"player:{req.player_id}")
            code = second_factor.one_time_code(self._settings.otp_code_secret, req.withdrawal_id)
            where = f" to {req.payout_destination}" if req.payout_destination else ""
            self._notifier.send(
                to=to, subject="Your withdrawal code",
                body=f"Your code to confirm the withdrawal of {req.amount} {req.currency} "
                     f"minor units{where} is {code}. It expires in "
                     f"{int(req.second_factor_timeout_seconds // 60)} minutes.",
                idempotency_key=req.key("2fa-code"))
            challenge = Challenge(SecondFactorMethod.CODE, to)
        self._run(lambda conn: commands.challenged(conn, req, challenge.method,
                                                   challenge.sent_to))
        return challenge

    @activity.defn(name=Activity.VERIFY_SECOND_FACTOR)
    def verify_second_factor(self, attempt: SecondFactorAttempt) -> bool:
        return self._run(lambda conn: commands.verify_second_factor(conn, self._settings,
                                                                    attempt))

    # --- 3. state changes the workflow decided ------------------------------------------------
    @activity.defn(name=Activity.RECORD)
    def record(self, step: Step) -> None:
        self._run(lambda conn: commands.record(conn, step))

    # --- 4. before the payout: debt again, then the closed-loop plan --------------------------
    @activity.defn(name=Activity.CHECK_DEBT)
    def check_debt(self, req: WithdrawalRequest) -> None:
        """Refused (`open_debt`) when the player owes money now."""
        self._refusable(lambda conn: commands.check_debt(conn, self._settings, req))

    @activity.defn(name=Activity.PLAN_PAYOUTS)
    def plan_payouts(self, req: WithdrawalRequest) -> list[PayoutLeg]:
        """Refunds to the player's deposits first, the rest as a payout; written once."""
        rows = self._run(lambda conn: commands.plan_payouts(conn, req))
        return [PayoutLeg(req.withdrawal_id, row["n"], LegMethod(row["method"]), row["amount"],
                          row["currency"], row["idempotency_key"], row["payment_ref"],
                          req.payout_destination if row["method"] == LegMethod.PAYOUT else None)
                for row in rows]

    # --- 5. the legs at the gateway -----------------------------------------------------------
    @activity.defn(name=Activity.SEND_PAYOUT)
    def send_payout(self, leg: PayoutLeg) -> LegStatus:
        """Create the refund or payout at the gateway under the leg's idempotency key. Refused
        unless the withdrawal is paying and its hold pending. A leg first sent longer ago than
        the gateway remembers keys is looked for at the gateway first. A decline is the leg's
        final failure; unavailability is retried by Temporal with the same key."""
        row = self._run(lambda conn: commands.leg_sending(conn, leg))
        if row["state"] != LegState.PLANNED:   # answered before (a retried activity)
            return LegStatus(leg.n, LegState(row["state"]), row["gateway_ref"], row["failure"])
        status = None
        first_sent_at: datetime = row["first_sent_at"]
        if datetime.now(UTC) - first_sent_at > timedelta(seconds=GATEWAY_KEY_MEMORY_SECONDS):
            status = self._find_at_gateway(leg, first_sent_at - LOOKUP_SLACK)
        if status is None:
            status = self._create(leg)
        self._record_leg(leg, status)
        return status

    @activity.defn(name=Activity.REFRESH_PAYOUT)
    def refresh_payout(self, leg: PayoutLeg, gateway_ref: str) -> LegStatus:
        if leg.method is LegMethod.REFUND:
            status = _refund_status(leg.n, self._gateway.retrieve_refund(gateway_ref))
        else:
            status = _payout_status(leg.n, self._gateway.retrieve_payout(gateway_ref))
        self._record_leg(leg, status)
        return status

    def _create(self, leg: PayoutLeg) -> LegStatus:
        metadata = {"withdrawal_id": leg.withdrawal_id, "leg": str(leg.n)}
        try:
            if leg.method is LegMethod.REFUND:
                return _refund_status(leg.n, self._gateway.create_refund(
                    payment_intent=leg.payment_ref or "", amount=leg.amount,
                    idempotency_key=leg.idempotency_key, reason="requested_by_customer",
                    metadata=metadata))
            return _payout_status(leg.n, self._gateway.create_payout(
                amount=leg.amount, currency=leg.currency, idempotency_key=leg.idempotency_key,
                destination=leg.destination, description=f"withdrawal {leg.withdrawal_id}",
                metadata=metadata))
        except (GatewayDeclined, GatewayInvalidRequest) as error:
            return LegStatus(leg.n, LegState.FAILED, None, error.code or error.message)

    def _find_at_gateway(self, leg: PayoutLeg, since: datetime) -> LegStatus | None:
        """The refund or payout this leg created before, found through the gateway's balance
        transactions since `since` and matched on its metadata; None if there is none."""
        kind = "refund" if leg.method is LegMethod.REFUND else "payout"
        wanted = {"withdrawal_id": leg.withdrawal_id, "leg": str(leg.n)}
        after: str | None = None
        while True:
            page = self._gateway.list_balance_transactions(
                created_gte=int(since.timestamp()), type=kind, starting_after=after)
            for item in page.items:
                if not item.source:
                    continue
                if leg.method is LegMethod.REFUND:
                    refund = self._gateway.retrieve_refund(item.source)
                    if refund.metadata == wanted:
                        return _refund_status(leg.n, refund)
                else:
                    payout = self._gateway.retrieve_payout(item.source)
                    if payout.metadata == wanted:
                        return _payout_status(leg.n, payout)
            if not page.has_more or not page.items:
                return None
            after = page.items[-1].id

    def _record_leg(self, leg: PayoutLeg, status: LegStatus) -> None:
        if status.state is LegState.PENDING:
            return
        self._run(lambda conn: commands.record_leg(conn, leg, status.state, status.gateway_ref,
                                                   status.failure))

    # --- 6. post the hold, or release it ------------------------------------------------------
    @activity.defn(name=Activity.COMPLETE)
    def complete(self, req: WithdrawalRequest) -> None:
        """Every leg confirmed: post the hold and clear it to the gateway (refused, never
        retried, when the hold was voided)."""
        self._run(lambda conn: commands.complete(conn, req))
        metrics.count(metrics.WITHDRAWALS, "paid")   # settlepay_withdrawals_total{outcome}

    @activity.defn(name=Activity.RELEASE)
    def release(self, rel: Release) -> None:
        """Void the hold (nothing paid), or post what the gateway paid and return the rest."""
        self._run(lambda conn: commands.release(conn, rel))
        metrics.count(metrics.WITHDRAWALS, str(rel.state))


def _refund_status(n: int, refund: Refund) -> LegStatus:
    state = {"succeeded": LegState.CONFIRMED, "failed": LegState.FAILED,
             "canceled": LegState.FAILED}.get(refund.status, LegState.PENDING)
    return LegStatus(n, state, refund.id, refund.failure_reason)


def _payout_status(n: int, payout: Payout) -> LegStatus:
    state = {"paid": LegState.CONFIRMED, "failed": LegState.FAILED,
             "canceled": LegState.FAILED}.get(payout.status, LegState.PENDING)
    return LegStatus(n, state, payout.id, payout.failure_code or payout.failure_message)
