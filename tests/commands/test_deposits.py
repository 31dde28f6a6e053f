"""commands.deposits on the real database: each change of a deposit writes its row, its audit
record and (where partners care) its outbox event in the caller's transaction; money moves only
through the deposit's own ledger key; a verdict for a closed deposit is settled, never
dropped."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine, RowMapping

from commands import deposits as commands
from commands.deposits import DepositRefused, LateOutcome
from store import deposits as store
from tests.support.deposits import ledger_credits
from tests.support.factories import (
    Player,
    audit_actions,
    cash,
    events,
    ledger_violations,
    make_player,
    wait_until,
)
from tests.support.races import in_thread, named_connection, waiting_on_a_lock
from workflows.contracts.deposit import (
    Credit,
    DepositRefusal,
    DepositRequest,
    DepositStatus,
    Failure,
    GatewayStatus,
    Payment,
    Review,
    ReviewReason,
)

AMOUNT = 3_000


def create(engine: Engine, player: Player, amount: int = AMOUNT) -> RowMapping:
    deposit_id = f"dep_{uuid.uuid4().hex[:24]}"
    with engine.begin() as conn:
        player_row = {"id": player.id, "partner_id": player.partner_id}
        row, created = commands.create(conn, deposit_id=deposit_id, player=player_row,
                                       amount=amount, currency="USD",
                                       payment_method="pm_card_visa", actor="api_key:test")
    assert created
    return row


def request(row: RowMapping) -> DepositRequest:
    return DepositRequest(row["id"], row["player_id"], row["partner_id"], row["amount"], "USD",
                          "pm_card_visa", "api_key:test")


def pi(row: RowMapping, name: str = "late") -> str:
    """A payment intent id of this deposit's (ids are unique across deposits)."""
    return f"pi_{name}_{row['id'][4:]}"


def snapshot(row: RowMapping, status: str = GatewayStatus.SUCCEEDED, *,
             payment_intent: str | None = None, amount: int | None = None) -> dict:
    """A `payment_intent.*` event's object for this deposit, as Stripe sends it."""
    return {"id": payment_intent or pi(row), "object": "payment_intent", "status": status,
            "amount": row["amount"] if amount is None else amount, "currency": "usd",
            "latest_charge": "ch_late" if status == GatewayStatus.SUCCEEDED else None,
            "metadata": {"settlepay_deposit_id": row["id"]}}


def deposit(engine: Engine, deposit_id: str) -> RowMapping:
    with engine.connect() as conn:
        row = store.get(conn, deposit_id)
    assert row is not None
    return row


@pytest.fixture
def player(engine: Engine) -> Player:
    return make_player(engine, purpose="deposit commands")


def test_create_writes_the_row_its_audit_record_and_its_event_once(engine, player):
    row = create(engine, player)
    with engine.begin() as conn:
        again, created = commands.create(
            conn, deposit_id=row["id"], player={"id": player.id, "partner_id": player.partner_id},
            amount=AMOUNT, currency="USD", payment_method="pm_card_visa", actor="api_key:test")
    assert not created and again["id"] == row["id"]
    assert row["status"] == DepositStatus.PENDING and row["workflow_id"] == f"deposit-{row['id']}"
    assert audit_actions(engine, row["id"]) == ["deposit.created"]
    assert events(engine, row["id"]) == ["deposit.created"]


def test_only_three_d_secure_is_announced_and_a_recorded_payment_is_not_recorded_twice(
        engine, player):
    row = create(engine, player)
    action = Payment(pi(row, "3ds"), GatewayStatus.REQUIRES_ACTION,
                     next_action={"type": "redirect"})
    with engine.begin() as conn:
        assert commands.record_payment(conn, request(row), action)
        assert not commands.record_payment(conn, request(row), action)
        assert commands.record_payment(conn, request(row),
                                       Payment(pi(row, "3ds"), GatewayStatus.PROCESSING))
    after = deposit(engine, row["id"])
    assert (after["status"], after["gateway_payment_intent"]) == ("processing", pi(row, "3ds"))
    assert audit_actions(engine, row["id"]) == [
        "deposit.created", "deposit.requires_action", "deposit.processing"]
    assert events(engine, row["id"]) == ["deposit.created", "deposit.requires_action"]


def test_a_credit_posts_once_under_the_deposits_key(engine, player):
    row = create(engine, player)
    credit = Credit(row["id"], player.id, AMOUNT, "USD", pi(row, "ok"), "ch_ok")
    with engine.begin() as conn:
        first = commands.credit(conn, credit)
    with engine.begin() as conn:
        assert commands.credit(conn, credit) == first     # a retried activity
    done = deposit(engine, row["id"])
    assert (done["status"], done["ledger_transaction_id"]) == ("succeeded", first)
    assert [c["idempotency_key"] for c in ledger_credits(engine, row["id"])] == [
        f"deposit-{row['id']}:credit"]
    assert cash(engine, player.id) == AMOUNT
    assert events(engine, row["id"]) == ["deposit.created", "deposit.succeeded"]
    assert ledger_violations(engine) == []


def test_a_failed_deposit_is_not_credited_by_the_workflow_path(engine, player):
    row = create(engine, player)
    with engine.begin() as conn:
        assert commands.fail(conn, Failure(row["id"], "expired", "too late", pi(row, "x")))
    with engine.begin() as conn, pytest.raises(DepositRefused) as refused:
        commands.credit(conn, Credit(row["id"], player.id, AMOUNT, "USD", pi(row, "x"), None))
    assert refused.value.refusal.code == DepositRefusal.DEPOSIT_ALREADY_FAILED
    assert cash(engine, player.id) == 0 and ledger_credits(engine, row["id"]) == []


def test_a_success_reported_after_the_deposit_failed_is_credited_once(engine, player):
    """Issue 9, item 5: the deposit failed at the timeout while the gateway still processed the
    payment; the gateway's later success is credited through the deposit's own command and key,
    however often it is reported."""
    row = create(engine, player)
    with engine.begin() as conn:
        commands.fail(conn, Failure(row["id"], "expired", "did not complete in time",
                                    pi(row, "late")))
    late = snapshot(row)
    payment = commands.payment_from_event_object(late)
    for _ in range(2):
        with engine.begin() as conn:
            outcome = commands.settle_after_close(conn, row["id"], payment, late,
                                                  actor="webhook:stripe")
    assert outcome == LateOutcome.NOTHING_TO_DO   # the second report finds it credited
    done = deposit(engine, row["id"])
    assert (done["status"], done["failure_code"], done["failed_at"]) == ("succeeded", None, None)
    assert done["gateway_charge"] == "ch_late"
    assert [c["idempotency_key"] for c in ledger_credits(engine, row["id"])] == [
        f"deposit-{row['id']}:credit"]
    assert cash(engine, player.id) == AMOUNT
    assert audit_actions(engine, row["id"])[-2:] == ["deposit.failed", "deposit.succeeded"]
    assert events(engine, row["id"]) == ["deposit.created", "deposit.failed", "deposit.succeeded"]
    assert ledger_violations(engine) == []


def test_the_first_late_success_reports_credited(engine, player):
    row = create(engine, player)
    with engine.begin() as conn:
        commands.review(conn, Review(row["id"], ReviewReason.STILL_PROCESSING, "no verdict",
                                     pi(row, "late")))
        late = snapshot(row)
        outcome = commands.settle_after_close(
            conn, row["id"], commands.payment_from_event_object(late), late, actor="webhook")
    assert outcome == LateOutcome.CREDITED
    assert deposit(engine, row["id"])["status"] == DepositStatus.SUCCEEDED
    assert cash(engine, player.id) == AMOUNT


def test_review_records_why_and_a_late_failure_closes_the_deposit(engine, player):
    row = create(engine, player)
    with engine.begin() as conn:
        status = commands.review(conn, Review(row["id"], ReviewReason.STILL_PROCESSING,
                                              "no verdict within 259200 s", pi(row, "slow")))
    assert status == DepositStatus.REVIEW
    reviewed = deposit(engine, row["id"])
    assert (reviewed["status"], reviewed["review_code"], reviewed["gateway_payment_intent"]) == (
        "review", "still_processing", pi(row, "slow"))
    assert commands.deposit_payload(reviewed)["review_reason"] == "no verdict within 259200 s"
    failed = snapshot(row, GatewayStatus.CANCELED, payment_intent=pi(row, "slow"))
    with engine.begin() as conn:
        outcome = commands.settle_after_close(
            conn, row["id"], commands.payment_from_event_object(failed), failed, actor="webhook")
    assert outcome == LateOutcome.FAILED
    assert deposit(engine, row["id"])["status"] == DepositStatus.FAILED
    assert events(engine, row["id"]) == ["deposit.created", "deposit.review", "deposit.failed"]
    assert cash(engine, player.id) == 0


def test_review_credits_a_success_the_gateway_already_reported(engine, player):
    """Issue 9, item 12: the create call kept failing until its deadline, yet the payment was
    made and Stripe told us (an event answering our own create call): credited, not reviewed."""
    row = create(engine, player)
    with engine.begin() as conn:
        store.record_event(conn, event_id=f"evt_{uuid.uuid4().hex}",
                           type_="payment_intent.succeeded", object_id=pi(row, "late"),
                           payload=snapshot(row))
        status = commands.review(conn, Review(row["id"], ReviewReason.GATEWAY_UNREACHABLE,
                                              "creating the payment still failed"))
    assert status == DepositStatus.SUCCEEDED
    done = deposit(engine, row["id"])
    assert (done["status"], done["gateway_payment_intent"]) == ("succeeded", pi(row, "late"))
    assert cash(engine, player.id) == AMOUNT
    assert ledger_violations(engine) == []


@pytest.mark.parametrize("mismatch", ["payment_intent", "amount"])
def test_a_late_verdict_that_does_not_match_the_deposit_is_left_to_an_operator(
        engine, player, mismatch):
    row = create(engine, player)
    with engine.begin() as conn:
        commands.review(conn, Review(row["id"], ReviewReason.STILL_PROCESSING, "no verdict",
                                     pi(row, "ours")))
    late = (snapshot(row, payment_intent=pi(row, "other")) if mismatch == "payment_intent"
            else snapshot(row, payment_intent=pi(row, "ours"), amount=AMOUNT + 1))
    with engine.begin() as conn:
        outcome = commands.settle_after_close(
            conn, row["id"], commands.payment_from_event_object(late), late, actor="webhook")
    assert outcome == LateOutcome.MISMATCH
    assert deposit(engine, row["id"])["status"] == DepositStatus.REVIEW
    assert cash(engine, player.id) == 0 and ledger_credits(engine, row["id"]) == []


# --- an operator closes a deposit in review (close_review) -----------------------------------

def in_review(engine: Engine, player: Player) -> RowMapping:
    row = create(engine, player)
    with engine.begin() as conn:
        commands.review(conn, Review(row["id"], ReviewReason.GATEWAY_UNREACHABLE,
                                     "creating the payment still failed"))
    return row


def test_an_operator_closes_a_deposit_in_review_as_failed_with_its_reason(engine, player):
    row = in_review(engine, player)
    with engine.begin() as conn:
        closed = commands.close_review(conn, row["id"], reason="no payment at the gateway",
                                       actor="api_key:ops")
    assert (closed["status"], closed["failure_code"], closed["failure_reason"]) == (
        "failed", "closed_in_review", "no payment at the gateway")
    assert deposit(engine, row["id"])["status"] == DepositStatus.FAILED
    assert audit_actions(engine, row["id"]) == ["deposit.created", "deposit.review",
                                                "deposit.failed"]
    assert events(engine, row["id"]) == ["deposit.created", "deposit.review", "deposit.failed"]
    assert cash(engine, player.id) == 0 and ledger_credits(engine, row["id"]) == []


@pytest.mark.parametrize("state", ["pending", "succeeded", "failed", "unknown"])
def test_only_a_deposit_in_review_can_be_closed(engine, player, state):
    row = create(engine, player)
    with engine.begin() as conn:
        if state == "succeeded":
            commands.credit(conn, Credit(row["id"], player.id, AMOUNT, "USD", pi(row), None))
        elif state == "failed":
            commands.fail(conn, Failure(row["id"], "payment_failed", "declined"))
    deposit_id = "dep_unknown" if state == "unknown" else row["id"]
    with pytest.raises(DepositRefused) as refused, engine.begin() as conn:
        commands.close_review(conn, deposit_id, reason="x", actor="api_key:ops")
    assert refused.value.refusal.code == (DepositRefusal.DEPOSIT_NOT_FOUND if state == "unknown"
                                          else DepositRefusal.DEPOSIT_NOT_IN_REVIEW)
    if state != "unknown":
        assert deposit(engine, row["id"])["status"] == state
        assert cash(engine, player.id) == (AMOUNT if state == "succeeded" else 0)


def test_a_success_reported_after_an_operator_closed_the_deposit_is_still_credited(
        engine, player):
    """The operator was wrong (the payment went through after all): the money is not lost."""
    row = in_review(engine, player)
    with engine.begin() as conn:
        commands.close_review(conn, row["id"], reason="looked abandoned", actor="api_key:ops")
        late = snapshot(row)
        outcome = commands.settle_after_close(
            conn, row["id"], commands.payment_from_event_object(late), late, actor="webhook")
    assert outcome == LateOutcome.CREDITED
    assert deposit(engine, row["id"])["status"] == DepositStatus.SUCCEEDED
    assert cash(engine, player.id) == AMOUNT
    assert [c["idempotency_key"] for c in ledger_credits(engine, row["id"])] == [
        f"deposit-{row['id']}:credit"]
    assert ledger_violations(engine) == []


@pytest.mark.parametrize("first", ["close", "success"])
async def test_a_close_and_a_late_success_interleaved_credit_the_payment_once(engine, player,
                                                                              first):
    """The two take the deposit row's lock in turn: the one that waits sees the other's work.
    Close first: the success still credits after close. Success first: the close is refused."""
    row = in_review(engine, player)
    late = snapshot(row)

    def close(conn):
        return commands.close_review(conn, row["id"], reason="abandoned", actor="api_key:ops")

    def succeed(conn):
        return commands.settle_after_close(conn, row["id"],
                                           commands.payment_from_event_object(late), late,
                                           actor="webhook")

    holder, waiter = (close, succeed) if first == "close" else (succeed, close)
    name = f"deposit-close-race-{uuid.uuid4().hex[:8]}"
    with named_connection(engine, "holder") as conn:
        holder(conn)                      # row locked, not committed

        def second():
            with named_connection(engine, name) as other:
                value = waiter(other)
                other.commit()
                return value

        thread, outcome = in_thread(second)
        await wait_until(lambda: waiting_on_a_lock(engine, name) or not thread.is_alive(),
                         timeout=10)
        conn.commit()
    thread.join(10)
    assert not thread.is_alive()
    if first == "close":
        assert outcome["value"] == LateOutcome.CREDITED
        assert events(engine, row["id"])[-2:] == ["deposit.failed", "deposit.succeeded"]
    else:
        assert isinstance(outcome["error"], DepositRefused)
        assert outcome["error"].refusal.code == DepositRefusal.DEPOSIT_NOT_IN_REVIEW
        assert events(engine, row["id"])[-1] == "deposit.succeeded"
    assert deposit(engine, row["id"])["status"] == DepositStatus.SUCCEEDED
    assert cash(engine, player.id) == AMOUNT and len(ledger_credits(engine, row["id"])) == 1
    assert ledger_violations(engine) == []
