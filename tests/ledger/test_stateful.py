"""Random ledger operations under injected failures keep the ledger's invariants.

Hypothesis drives a state machine over a fresh database: deposits, stakes, lost bets, payouts,
clawbacks into debt, holds and their posts and voids, batches, requests sent again with their
key, and keys reused for another request. Each unit of work runs through
`settlepay.db.run_in_transaction` under an injected fault: none, the caller's next step raising
before the commit, a database error before the commit, the connection dying before the commit,
a serialization failure on the first attempt (retried from the start), or the answer lost after
the commit (the client sends the same requests again). A plain Python model says what every
answer and every balance must be.

Invariants, re-asserted after every step (a failure shows the last operations):
  1. `ledger check` finds nothing: every invariant of ledger/check.py holds.
  2. Every player account (cash, bets in play, debt, pending withdrawal) has the model's posted
     balance, pending debits and pending credits.
  3. The house revenue and gateway clearing accounts have moved exactly as the model says
     (summed over their split rows).
  4. The ledger holds exactly the idempotency keys of the units of work that committed: a unit
     that failed before its commit left no trace, a unit retried after a serialization failure
     or sent again after a lost answer is stored once.
  5. Every hold is in the model's state (pending, posted with its amount, voided).
And at every answer:
  6. Every answer is the model's: the result code, the shortfall moved into debt, and whether
     it is a replay.
  7. A request sent again with its key gets its first answer (same result, same transaction)
     and moves nothing; a key sent with a different request is refused (IdempotencyConflict)
     and the whole unit of work around it rolls back.
"""

from __future__ import annotations

import copy
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

import ledger
from ledger import AccountRef, IdempotencyConflict, Leg, PostResult, ResultCode, Transfer
from ledger.check import run as check
from ledger.types import HOT, NO_NEGATIVE, AccountType
from settlepay.db import run_in_transaction

PLAYERS = 3
CURRENCY = "USD"
GATEWAY = AccountRef.gateway_clearing("stripe", CURRENCY)
HOUSE = AccountRef.house_revenue(CURRENCY)
JOURNAL_LENGTH = 15


class Fault(StrEnum):
    NONE = "none"
    RAISE_BEFORE_COMMIT = "raise_before_commit"          # the caller's next step fails
    DB_ERROR_BEFORE_COMMIT = "db_error_before_commit"    # a later statement fails (22012)
    CONNECTION_LOST_BEFORE_COMMIT = "connection_lost_before_commit"  # the backend dies
    SERIALIZATION_FAILURE = "serialization_failure"      # 40001 once: retried from the start
    ANSWER_LOST_AFTER_COMMIT = "answer_lost_after_commit"  # committed; the client never heard


ROLLS_BACK = frozenset({Fault.RAISE_BEFORE_COMMIT, Fault.DB_ERROR_BEFORE_COMMIT,
                        Fault.CONNECTION_LOST_BEFORE_COMMIT})


class InjectedFault(Exception):
    """The caller's own work failed after the ledger answered, before the commit."""


@dataclass(frozen=True)
class Post:
    transfer: Transfer

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.transfer.key,)


@dataclass(frozen=True)
class Hold:
    key: str
    debit: AccountRef
    credit: AccountRef
    amount: int

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True)
class Resolve:
    key: str
    hold_key: str
    action: str              # post | void
    amount: int | None       # post: None = all of it

    @property
    def keys(self) -> tuple[str, ...]:
        return (self.key,)


@dataclass(frozen=True)
class Batch:
    transfers: tuple[Transfer, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(t.key for t in self.transfers)


Request = Post | Hold | Resolve | Batch


@dataclass(frozen=True)
class Answer:
    """What the model expects of one posting: its result and the shortfall it moved."""
    code: ResultCode
    shortfall: int = 0


@dataclass
class HoldState:
    debit: AccountRef
    credit: AccountRef
    amount: int
    state: str = "pending"
    posted_amount: int | None = None


@dataclass
class Model:
    """What the ledger should hold, computed without a database."""
    posted: dict[AccountRef, int] = field(default_factory=dict)
    pending_debits: dict[AccountRef, int] = field(default_factory=dict)
    pending_credits: dict[AccountRef, int] = field(default_factory=dict)
    holds: dict[str, HoldState] = field(default_factory=dict)
    # key -> the request it was stored for and its answer (rejections are stored too)
    stored: dict[str, tuple[Request, Answer]] = field(default_factory=dict)

    def available(self, account: AccountRef) -> int:
        return self.posted.get(account, 0) - self.pending_debits.get(account, 0)

    def _add(self, book: dict[AccountRef, int], account: AccountRef, amount: int) -> None:
        book[account] = book.get(account, 0) + amount

    def transfer(self, t: Transfer) -> Answer:
        for leg in t.legs:
            if (leg.amount < 0 and leg.account.type in NO_NEGATIVE and leg.shortfall_to is None
                    and self.available(leg.account) < -leg.amount):
                return Answer(ResultCode.INSUFFICIENT_FUNDS)
        shortfall = 0
        for leg in t.legs:
            if leg.shortfall_to is None:
                self._add(self.posted, leg.account, leg.amount)
                continue
            covered = min(-leg.amount, max(self.available(leg.account), 0))
            self._add(self.posted, leg.account, -covered)
            self._add(self.posted, leg.shortfall_to, -(-leg.amount - covered))
            shortfall += -leg.amount - covered
        return Answer(ResultCode.OK, shortfall)

    def hold(self, h: Hold) -> Answer:
        if self.available(h.debit) < h.amount:
            return Answer(ResultCode.INSUFFICIENT_FUNDS)
        self._add(self.pending_debits, h.debit, h.amount)
        self._add(self.pending_credits, h.credit, h.amount)
        self.holds[h.key] = HoldState(h.debit, h.credit, h.amount)
        return Answer(ResultCode.OK)

    def resolve(self, r: Resolve) -> Answer:
        held = self.holds.get(r.hold_key)
        if held is None:
            return Answer(ResultCode.HOLD_NOT_FOUND)
        if held.state == "posted":
            return Answer(ResultCode.HOLD_ALREADY_POSTED)
        if held.state == "voided":
            return Answer(ResultCode.HOLD_ALREADY_VOIDED)
        amount = 0 if r.action == "void" else held.amount if r.amount is None else r.amount
        if amount > held.amount:
            return Answer(ResultCode.HOLD_AMOUNT_EXCEEDED)
        self._add(self.pending_debits, held.debit, -held.amount)
        self._add(self.pending_credits, held.credit, -held.amount)
        self._add(self.posted, held.debit, -amount)
        self._add(self.posted, held.credit, amount)
        held.state = "posted" if r.action == "post" else "voided"
        held.posted_amount = amount
        return Answer(ResultCode.OK)

    def apply(self, request: Request) -> list[Answer]:
        """The answers of `request` (replays of stored keys included), applying its effect."""
        answers: list[Answer] = []
        parts: list[tuple[str, Callable[[], Answer]]]
        if isinstance(request, Batch):
            parts = [(t.key, lambda t=t: self.transfer(t)) for t in request.transfers]
        elif isinstance(request, Post):
            parts = [(request.transfer.key, lambda: self.transfer(request.transfer))]
        elif isinstance(request, Hold):
            parts = [(request.key, lambda: self.hold(request))]
        else:
            parts = [(request.key, lambda: self.resolve(request))]
        for key, decide in parts:
            if key in self.stored:
                answers.append(self.stored[key][1])
            else:
                answers.append(decide())
                self.stored[key] = (request, answers[-1])
        return answers


def send(conn: Connection, request: Request) -> list[PostResult]:
    if isinstance(request, Post):
        return [ledger.post(conn, request.transfer)]
    if isinstance(request, Hold):
        return [ledger.hold(conn, request.key, request.debit, request.credit, request.amount)]
    if isinstance(request, Resolve):
        if request.action == "post":
            return [ledger.post_hold(conn, request.key, request.hold_key, request.amount)]
        return [ledger.void_hold(conn, request.key, request.hold_key)]
    return ledger.post_many(conn, request.transfers)


def inject(conn: Connection, fault: Fault, attempt: int) -> None:
    """The fault, between the ledger's answer and the commit of the unit of work."""
    if fault is Fault.RAISE_BEFORE_COMMIT:
        raise InjectedFault("the caller's next step failed")
    if fault is Fault.DB_ERROR_BEFORE_COMMIT:
        conn.exec_driver_sql("SELECT 1 / 0")
    if fault is Fault.CONNECTION_LOST_BEFORE_COMMIT:
        conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
    if fault is Fault.SERIALIZATION_FAILURE and attempt == 1:
        conn.exec_driver_sql("DO $$ BEGIN RAISE EXCEPTION 'injected'"
                             " USING ERRCODE = 'serialization_failure'; END $$")


amounts = st.integers(min_value=1, max_value=1_000)          # what moves out of an account
deposits = st.integers(min_value=500, max_value=3_000)      # what comes in, larger
players = st.integers(min_value=0, max_value=PLAYERS - 1)
faults = st.just(Fault.NONE) | st.sampled_from(Fault)      # about half the units fault
picks = st.integers(min_value=0, max_value=10**6)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self.run = f"sf-{uuid.uuid4().hex[:10]}"
        self.players = [f"{self.run}-p{i}" for i in range(PLAYERS)]
        self.model = Model()
        self.baseline: dict[AccountRef, int] = {}
        self.steps = 0
        self.hold_keys: list[str] = []          # every hold asked for, committed or not
        self.rolled_back: list[Request] = []    # requests whose unit of work rolled back
        self.journal: deque[str] = deque(maxlen=JOURNAL_LENGTH)

    # -- helpers -------------------------------------------------------------------------

    def key(self, what: str) -> str:
        self.steps += 1
        return f"{self.run}:{self.steps}:{what}"

    def cash(self, player: int) -> AccountRef:
        return AccountRef.player_cash(self.players[player], CURRENCY)

    def accounts(self) -> list[AccountRef]:
        refs = [HOUSE, GATEWAY]
        for p in self.players:
            refs += [AccountRef(f"player:{p}", t, CURRENCY) for t in (
                AccountType.PLAYER_CASH, AccountType.BETS_IN_PLAY, AccountType.PLAYER_DEBT,
                AccountType.PLAYER_PENDING_WITHDRAWAL)]
        return refs

    def fail(self, message: str) -> None:
        raise AssertionError(message + "\nlast operations:\n  " + "\n  ".join(self.journal))

    def expect(self, condition: bool, message: str) -> None:
        if not condition:
            self.fail(message)

    def compare(self, what: str, results: list[PostResult], answers: list[Answer],
                replayed: bool) -> None:
        got = [(r.code, r.shortfall, r.replayed) for r in results]
        want = [(a.code, a.shortfall, replayed) for a in answers]
        self.expect(got == want, f"{what}: ledger answered {got}, the model says {want}")

    def unit(self, requests: list[Request], fault: Fault) -> list[PostResult] | None:
        """Run one unit of work under `fault`; None when it rolled back."""
        trial = copy.deepcopy(self.model)
        replays = [all(k in trial.stored for k in r.keys) for r in requests]
        answers = [trial.apply(r) for r in requests]
        seen: list[list[PostResult]] = []
        attempts = 0

        def work(conn: Connection) -> list[list[PostResult]]:
            nonlocal attempts
            attempts += 1
            seen.clear()
            for request in requests:
                seen.append(send(conn, request))
            inject(conn, fault, attempts)
            return seen

        label = " + ".join(type(r).__name__ + repr(r.keys) for r in requests)
        self.journal.append(f"{label} under {fault}")
        try:
            results = run_in_transaction(self.engine, work)
        except (InjectedFault, DBAPIError) as error:
            self.expect(fault in ROLLS_BACK, f"{label}: unexpected {error!r}")
            for got, want, replay in zip(seen, answers, replays, strict=True):
                self.compare(f"{label} before the rollback", got, want, replay)
            self.rolled_back += [r for r in requests if not all(
                k in self.model.stored for k in r.keys)]
            self.journal[-1] += " -> rolled back"
            return None
        self.expect(fault not in ROLLS_BACK, f"{label}: committed despite {fault}")
        self.expect(attempts == (2 if fault is Fault.SERIALIZATION_FAILURE else 1),
                    f"{label}: {attempts} attempts under {fault}")
        for got, want, replay in zip(results, answers, replays, strict=True):
            self.compare(label, got, want, replay)
        self.model = trial
        self.journal[-1] += " -> " + ", ".join(r.code for rs in results for r in rs)
        if fault is Fault.ANSWER_LOST_AFTER_COMMIT:
            self.send_again(requests, results)
        return results

    def send_again(self, requests: list[Request], first: list[list[PostResult]]) -> None:
        """The client never heard: it sends the same requests with the same keys."""
        again = run_in_transaction(self.engine, lambda conn: [send(conn, r) for r in requests])
        for before, after in zip(first, again, strict=True):
            self.expect([(r.code, r.transaction_id, r.shortfall) for r in after]
                        == [(r.code, r.transaction_id, r.shortfall) for r in before]
                        and all(r.replayed for r in after),
                        f"sent again: {after} after the first answer {before}")
        self.journal[-1] += " -> sent again: replayed"

    # -- set-up --------------------------------------------------------------------------

    @initialize()
    def note_the_shared_accounts(self) -> None:
        """The house and the gateway are shared by every run on this database."""
        with self.engine.connect() as conn:
            for account in (HOUSE, GATEWAY):
                self.baseline[account] = ledger.balance(conn, account).posted

    # -- rules ---------------------------------------------------------------------------

    @rule(player=players, amount=deposits, fault=faults)
    def deposit(self, player: int, amount: int, fault: Fault) -> None:
        self.unit([Post(Transfer(self.key("deposit"), "deposit", (
            Leg(GATEWAY, -amount), Leg(self.cash(player), amount))))], fault)

    @rule(player=players, amount=amounts, fault=faults)
    def stake(self, player: int, amount: int, fault: Fault) -> None:
        bets = AccountRef.bets_in_play(self.players[player], CURRENCY)
        self.unit([Post(Transfer(self.key("stake"), "bet_stake", (
            Leg(self.cash(player), -amount), Leg(bets, amount))))], fault)

    @rule(player=players, amount=amounts, fault=faults)
    def lose_bet(self, player: int, amount: int, fault: Fault) -> None:
        bets = AccountRef.bets_in_play(self.players[player], CURRENCY)
        self.unit([Post(Transfer(self.key("lost"), "settlement", (
            Leg(bets, -amount), Leg(HOUSE, amount))))], fault)

    @rule(player=players, amount=deposits, fault=faults)
    def pay_out(self, player: int, amount: int, fault: Fault) -> None:
        self.unit([Post(Transfer(self.key("payout"), "settlement", (
            Leg(HOUSE, -amount), Leg(self.cash(player), amount))))], fault)

    @rule(player=players, amount=amounts, fault=faults)
    def claw_back(self, player: int, amount: int, fault: Fault) -> None:
        debt = AccountRef.player_debt(self.players[player], CURRENCY)
        self.unit([Post(Transfer(self.key("clawback"), "resettlement", (
            Leg(self.cash(player), -amount, shortfall_to=debt), Leg(HOUSE, amount))))], fault)

    @rule(player=players, amount=amounts, fault=faults)
    def hold(self, player: int, amount: int, fault: Fault) -> None:
        key = self.key("hold")
        self.hold_keys.append(key)
        pending = AccountRef.pending_withdrawal(self.players[player], CURRENCY)
        self.unit([Hold(key, self.cash(player), pending, amount)], fault)

    @rule(player=players, amount=amounts, action=st.sampled_from(["post", "void", "later"]),
          part=st.none() | st.integers(min_value=0, max_value=1_000),
          hold_fault=faults, resolve_fault=faults)
    def withdraw(self, player: int, amount: int, action: str, part: int | None,
                 hold_fault: Fault, resolve_fault: Fault) -> None:
        """A deposit that funds it, a hold, then its post (all or part) or void, each its
        own unit of work; or the hold stays pending (`later`)."""
        self.deposit(player, amount, Fault.NONE)
        self.hold(player, amount, hold_fault)
        if action == "later":
            return
        self.unit([Resolve(self.key(action), self.hold_keys[-1], action,
                           part if action == "post" else None)], resolve_fault)

    @precondition(lambda self: self.hold_keys)
    @rule(pick=picks, action=st.sampled_from(["post", "void"]),
          amount=st.none() | st.integers(min_value=0, max_value=1_100), fault=faults)
    def resolve(self, pick: int, action: str, amount: int | None, fault: Fault) -> None:
        hold_key = self.hold_keys[pick % len(self.hold_keys)]
        self.unit([Resolve(self.key(action), hold_key, action,
                           amount if action == "post" else None)], fault)

    @rule(player=players, amount=amounts, fault=faults)
    def batch(self, player: int, amount: int, fault: Fault) -> None:
        """A settlement-like batch: stakes that may be refused between payouts."""
        transfers = []
        for j in range(3):
            who = (player + j) % PLAYERS
            bets = AccountRef.bets_in_play(self.players[who], CURRENCY)
            legs = ((Leg(self.cash(who), -(amount + j)), Leg(bets, amount + j)) if j % 2 == 0
                    else (Leg(HOUSE, -(amount + j)), Leg(self.cash(who), amount + j)))
            transfers.append(Transfer(self.key(f"batch{j}"), "settlement", legs))
        self.unit([Batch(tuple(transfers))], fault)

    @rule(player=players, amount=amounts, fault=faults)
    def deposit_and_stake_together(self, player: int, amount: int, fault: Fault) -> None:
        """Two postings in one unit of work: they commit or roll back together."""
        bets = AccountRef.bets_in_play(self.players[player], CURRENCY)
        self.unit([
            Post(Transfer(self.key("deposit"), "deposit", (
                Leg(GATEWAY, -amount), Leg(self.cash(player), amount)))),
            Post(Transfer(self.key("stake"), "bet_stake", (
                Leg(self.cash(player), -amount), Leg(bets, amount)))),
        ], fault)

    @precondition(lambda self: self.model.stored)
    @rule(pick=picks)
    def send_a_stored_request_again(self, pick: int) -> None:
        keys = sorted(self.model.stored)
        request, _ = self.model.stored[keys[pick % len(keys)]]
        self.unit([request], Fault.NONE)

    @precondition(lambda self: self.rolled_back)
    @rule(pick=picks, fault=faults)
    def retry_a_rolled_back_request(self, pick: int, fault: Fault) -> None:
        request = self.rolled_back.pop(pick % len(self.rolled_back))
        self.unit([request], fault)

    @precondition(lambda self: any(isinstance(r, Post) for r, _ in self.model.stored.values()))
    @rule(pick=picks, player=players, amount=amounts)
    def reuse_a_key_for_another_request(self, pick: int, player: int, amount: int) -> None:
        """A new deposit, then a stored key with another amount: the unit rolls back whole."""
        stored = sorted(k for k, (r, _) in self.model.stored.items() if isinstance(r, Post))
        original = self.model.stored[stored[pick % len(stored)]][0]
        assert isinstance(original, Post)
        legs = original.transfer.legs
        changed = Transfer(original.transfer.key, original.transfer.kind, (
            Leg(legs[0].account, legs[0].amount - 1, legs[0].shortfall_to),
            Leg(legs[1].account, legs[1].amount + 1)))
        fresh = Transfer(self.key("deposit"), "deposit", (
            Leg(GATEWAY, -amount), Leg(self.cash(player), amount)))
        self.journal.append(f"deposit {fresh.key} + key {changed.key} reused")

        def work(conn: Connection) -> None:
            ledger.post(conn, fresh)
            ledger.post(conn, changed)

        try:
            run_in_transaction(self.engine, work)
        except IdempotencyConflict:
            self.journal[-1] += " -> IdempotencyConflict, rolled back"
            self.rolled_back.append(Post(fresh))
            return
        self.fail(f"key {changed.key} reused for another request was accepted")

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def ledger_check_finds_nothing(self) -> None:
        with self.engine.connect() as conn:
            violations = check(conn)
        self.expect(violations == [], "1. ledger check: " + "\n".join(violations))

    @invariant()
    def balances_equal_the_model(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT a.owner, a.type, sum(b.posted), sum(b.pending_debits),"
                "       sum(b.pending_credits)"
                "  FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id"
                " WHERE a.owner = ANY(:owners) AND a.currency = :currency GROUP BY a.id"),
                {"owners": [a.owner for a in self.accounts()], "currency": CURRENCY}).all()
        got = {AccountRef(owner, AccountType(kind), CURRENCY): (int(p), int(d), int(c))
               for owner, kind, p, d, c in rows}
        for account in self.accounts():
            posted, debits, credits = got.get(account, (0, 0, 0))
            if account.type in HOT:
                posted -= self.baseline.get(account, 0)
            want = (self.model.posted.get(account, 0),
                    self.model.pending_debits.get(account, 0),
                    self.model.pending_credits.get(account, 0))
            self.expect((posted, debits, credits) == want,
                        f"2./3. {account}: (posted, pending debits, pending credits)"
                        f" {(posted, debits, credits)}, the model says {want}")

    @invariant()
    def stored_keys_are_the_committed_ones(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT idempotency_key, result FROM ledger_transactions"
                " WHERE idempotency_key LIKE :prefix"), {"prefix": f"{self.run}:%"}).all()
        got = {key: result for key, result in rows}
        want = {key: str(answer.code) for key, (_, answer) in self.model.stored.items()}
        self.expect(len(rows) == len(got) and got == want,
                    f"4. stored keys and results {sorted(got.items())},"
                    f" the model says {sorted(want.items())}")

    @invariant()
    def holds_are_in_the_model_state(self) -> None:
        with self.engine.connect() as conn:
            rows = conn.execute(text(
                "SELECT t.idempotency_key, h.amount, h.state, h.posted_amount"
                "  FROM ledger_holds h JOIN ledger_transactions t ON t.id = h.transaction_id"
                " WHERE t.idempotency_key LIKE :prefix"), {"prefix": f"{self.run}:%"}).all()
        got = {key: (amount, state, posted) for key, amount, state, posted in rows}
        want = {key: (h.amount, h.state, h.posted_amount)
                for key, h in self.model.holds.items()}
        self.expect(got == want, f"5. holds {got}, the model says {want}")


def test_random_ledger_operations_under_injected_failures_keep_every_invariant(
        fresh_engine: Engine) -> None:
    run_state_machine_as_test(
        lambda: LedgerMachine(fresh_engine),
        settings=settings(max_examples=20, stateful_step_count=30, deadline=None,
                          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                 HealthCheck.too_slow]))
