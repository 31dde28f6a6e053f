"""`ledger check` against corrupted ledgers: each test builds a healthy ledger (holds, hot
accounts with split rows, batches, rejections, replays), corrupts it in exactly one way as the
database superuser would (append-only triggers bypassed with `session_replication_role`), and
asserts that the named invariant reports it. A check that cannot fail proves nothing."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, text

import ledger
from ledger import AccountRef, Leg, ResultCode, Transfer
from ledger.check import INVARIANTS
from ledger.check import run as check
from tests.support.ledger import deposit, house_pays, stake

ENTRY_ROW_EXISTS = "every entry is on a balance row that exists"
ENTRY_CURRENCY = "every entry is in its account's currency"
ROWS_PER_SHARD = "every account has one balance row per shard, numbered 0 to shards - 1"
ROWS_SUM_TO_ZERO = ("the balance rows sum to zero in each currency "
                    "(every row of a hot account counted)")
RUNNING_BALANCE = "every entry carries its balance row's running balance"
LATEST_ENTRY = "every balance row's latest entry carries the row's balance"
GUARDS = "the append-only guards of entries and transactions are in place"
PENDING = "pending debits and credits equal the open holds"
HOLD_ROW = ("every accepted hold has one hold row, between two single-row accounts of its "
            "currency")
RESOLVED_ONCE = "every hold is resolved at most once"
HOLD_STATE = ("a hold's state is its resolution: pending until one accepted post or void of it, "
              "which it names; a voided hold posted nothing")
HOLD_POSTED = ("a posted hold moves exactly its posted amount from its debit to its credit "
               "account")


@dataclass(frozen=True)
class Healthy:
    engine: Engine
    players: list[str]
    posted_hold: str       # held 500, posted in full
    partial_hold: str      # held 300, 100 of it posted
    voided_hold: str       # held 200, voided
    open_hold: str         # held 150, still pending


def account_id(conn, account: AccountRef) -> int:
    return conn.execute(text("SELECT id FROM ledger_accounts WHERE owner = :o AND type = :t "
                             "AND currency = :c"),
                        {"o": account.owner, "t": str(account.type), "c": account.currency}
                        ).scalar_one()


def hold_id(conn, key: str) -> int:
    return conn.execute(text("SELECT id FROM ledger_transactions WHERE idempotency_key = :k"),
                        {"k": key}).scalar_one()


def tamper(engine: Engine, statement: str, **params) -> None:
    """One statement as the superuser, with the ledger's triggers (and foreign keys) off."""
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(statement), params)


def reported(engine: Engine, invariant: str) -> list[str]:
    assert invariant in INVARIANTS
    with engine.connect() as conn:
        violations = check(conn)
    return [v for v in violations if v.startswith(f"{invariant}: ")]


@pytest.fixture
def healthy(fresh_engine: Engine) -> Healthy:
    players = ["alice", "bob", "carol", "dave"]
    cash = {p: AccountRef.player_cash(p, "USD") for p in players}
    pending = {p: AccountRef.pending_withdrawal(p, "USD") for p in players}
    with fresh_engine.begin() as conn:
        for n in range(40):   # many deposits: the gateway's hot rows each take several
            assert ledger.post(conn, deposit(players[n % 4], 1_000 + n, key=f"dep-{n}")).ok
        assert ledger.post(conn, deposit("erin", 7_000, key="dep-eur", currency="EUR")).ok
        assert ledger.post(conn, deposit("alice", 1_000, key="dep-0")).replayed   # a replay
        stakes = [stake(players[n % 4], 200 + n, key=f"stake-{n}") for n in range(20)]
        assert all(r.ok for r in ledger.post_many(conn, stakes))
        wins = [house_pays(players[n % 4], 50 + n, key=f"win-{n}") for n in range(20)]
        assert all(r.ok for r in ledger.post_many(conn, wins))
        claw = Transfer("claw-dave", "resettlement", (
            Leg(cash["dave"], -1_000_000, shortfall_to=AccountRef.player_debt("dave", "USD")),
            Leg(AccountRef.house_revenue("USD"), 1_000_000)))
        assert ledger.post(conn, claw).shortfall > 0
        too_much = ledger.post(conn, stake("bob", 10**9, key="stake-too-much"))
        assert too_much.code is ResultCode.INSUFFICIENT_FUNDS
        for key, who, amount in (("hold-posted", "alice", 500), ("hold-partial", "bob", 300),
                                 ("hold-voided", "carol", 200), ("hold-open", "alice", 150)):
            assert ledger.hold(conn, key, cash[who], pending[who], amount).ok
        assert ledger.post_hold(conn, "post-1", "hold-posted").ok
        assert ledger.post_hold(conn, "post-2", "hold-partial", 100).ok
        assert ledger.void_hold(conn, "void-3", "hold-voided").ok
        late_void = ledger.void_hold(conn, "void-1", "hold-posted")
        assert late_void.code is ResultCode.HOLD_ALREADY_POSTED
    return Healthy(fresh_engine, players, "hold-posted", "hold-partial", "hold-voided",
                   "hold-open")


def test_a_healthy_ledger_with_holds_hot_accounts_and_many_postings_passes(healthy):
    with healthy.engine.connect() as conn:
        assert check(conn) == []
        rows = conn.execute(text("""
            SELECT count(DISTINCT (e.account_id, e.shard)) FROM ledger_entries e
              JOIN ledger_accounts a ON a.id = e.account_id WHERE a.shards > 1""")).scalar_one()
        states = conn.execute(text("SELECT state, count(*) FROM ledger_holds GROUP BY 1")).all()
    assert rows > 2   # postings were spread over several rows of the hot accounts
    assert dict(states) == {"posted": 2, "voided": 1, "pending": 1}


def test_entries_on_a_balance_row_that_does_not_exist_are_reported(healthy):
    # A balanced transaction whose entries sit on rows 16 and 17 of accounts that have 16 rows:
    # no row carries them, so no balance shows them.
    with healthy.engine.connect() as conn:
        house = account_id(conn, AccountRef.house_revenue("USD"))
        gateway = account_id(conn, AccountRef.gateway_clearing("stripe", "USD"))
    with healthy.engine.begin() as conn:
        tx = conn.execute(text("""INSERT INTO ledger_transactions
                                    (idempotency_key, request_hash, kind, result)
                                  VALUES ('forged', '\\x00', 'settlement', 'ok') RETURNING id""")
                          ).scalar_one()
    tamper(healthy.engine, """
        INSERT INTO ledger_entries (transaction_id, account_id, shard, currency, amount,
                                    balance_after)
        VALUES (:tx, :house, 16, 'USD', -700, -700), (:tx, :gateway, 17, 'USD', 700, 700)""",
           tx=tx, house=house, gateway=gateway)
    problems = reported(healthy.engine, ENTRY_ROW_EXISTS)
    assert len(problems) == 2
    assert any(f"account {house} row 16, which does not exist" in p for p in problems)


def test_a_hot_account_row_removed_leaves_balance_rows_that_do_not_sum_to_zero(healthy):
    # The house's row 3 (with its entries) disappears: the rows left no longer balance.
    with healthy.engine.connect() as conn:
        house = account_id(conn, AccountRef.house_revenue("USD"))
        row = conn.execute(text("SELECT shard, posted FROM ledger_balances WHERE account_id = :a "
                                "AND posted <> 0 ORDER BY shard LIMIT 1"), {"a": house}).one()
    tamper(healthy.engine, "DELETE FROM ledger_balances WHERE account_id = :a AND shard = :s",
           a=house, s=row.shard)
    assert reported(healthy.engine, ROWS_SUM_TO_ZERO) == [
        f"{ROWS_SUM_TO_ZERO}: USD: balance rows sum to {-row.posted}"]
    assert reported(healthy.engine, ROWS_PER_SHARD)
    assert reported(healthy.engine, ENTRY_ROW_EXISTS)


def test_an_account_moved_to_another_currency_is_reported(healthy):
    # The accounts row says GBP while its entries (and its counterparties) are in USD: every
    # entry still balances, but the balance rows no longer do in either currency.
    tamper(healthy.engine, "UPDATE ledger_accounts SET currency = 'GBP' WHERE owner = "
                           "'player:carol' AND type = 'bets_in_play'")
    assert len(reported(healthy.engine, ENTRY_CURRENCY)) == 5   # carol's five stakes
    sums = reported(healthy.engine, ROWS_SUM_TO_ZERO)
    assert sorted(s.split(": ")[1] for s in sums) == ["GBP", "USD"]


def test_a_hot_account_with_a_row_too_many_is_reported(healthy):
    with healthy.engine.connect() as conn:
        gateway = account_id(conn, AccountRef.gateway_clearing("stripe", "USD"))
    tamper(healthy.engine, "INSERT INTO ledger_balances (account_id, shard) VALUES (:a, 16)",
           a=gateway)
    assert reported(healthy.engine, ROWS_PER_SHARD) == [
        f"{ROWS_PER_SHARD}: account {gateway} (16 shards) has balance rows "
        + ",".join(str(n) for n in range(17))]


def test_a_latest_entry_that_disagrees_with_its_balance_row_is_reported(healthy):
    with healthy.engine.connect() as conn:
        alice = account_id(conn, AccountRef.player_cash("alice", "USD"))
    tamper(healthy.engine, """UPDATE ledger_entries SET balance_after = balance_after + 1
                               WHERE id = (SELECT max(id) FROM ledger_entries
                                            WHERE account_id = :a)""", a=alice)
    assert len(reported(healthy.engine, LATEST_ENTRY)) == 1
    assert len(reported(healthy.engine, RUNNING_BALANCE)) == 1


def test_a_balance_after_out_of_step_with_the_amounts_is_reported(healthy):
    # An entry in the middle of bob's history claims a balance his amounts never added up to;
    # his balance row and its latest entry still agree.
    with healthy.engine.connect() as conn:
        bob = account_id(conn, AccountRef.player_cash("bob", "USD"))
        middle = conn.execute(text("SELECT id FROM ledger_entries WHERE account_id = :a "
                                   "ORDER BY id OFFSET 3 LIMIT 1"), {"a": bob}).scalar_one()
    tamper(healthy.engine, "UPDATE ledger_entries SET balance_after = balance_after - 10 "
                           "WHERE id = :e", e=middle)
    assert [p.split(": ")[1] for p in reported(healthy.engine, RUNNING_BALANCE)] == [
        f"entry {middle}"]
    assert reported(healthy.engine, LATEST_ENTRY) == []


def test_append_only_guards_switched_off_are_reported(healthy):
    with healthy.engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_entries DISABLE TRIGGER ledger_entries_append_only"))
    assert reported(healthy.engine, GUARDS) == [
        f"{GUARDS}: table ledger_entries: append-only trigger not firing"]
    with healthy.engine.begin() as conn:
        conn.execute(text("ALTER TABLE ledger_entries ENABLE TRIGGER ledger_entries_append_only"))
        conn.execute(text("DROP TRIGGER ledger_transactions_append_only ON ledger_transactions"))
    assert reported(healthy.engine, GUARDS) == [
        f"{GUARDS}: table ledger_transactions: append-only trigger missing"]


def test_pending_amounts_on_a_hot_account_row_without_a_hold_are_reported(healthy):
    # Holds sit on row 0; a pending credit on another row is reserved for no hold at all.
    with healthy.engine.connect() as conn:
        house = account_id(conn, AccountRef.house_revenue("USD"))
    tamper(healthy.engine, "UPDATE ledger_balances SET pending_credits = 70 "
                           "WHERE account_id = :a AND shard = 5", a=house)
    assert reported(healthy.engine, PENDING) == [
        f"{PENDING}: account {house}: pending debits 0/0, pending credits 70/0"]


def test_a_pending_hold_marked_voided_without_a_void_is_reported(healthy):
    # The open hold is released by editing its row (and the pending amounts to match), with no
    # void transaction: the reserved cash is free again and nothing records why.
    with healthy.engine.connect() as conn:
        hold = hold_id(conn, healthy.open_hold)
    tamper(healthy.engine, """
        WITH h AS (UPDATE ledger_holds SET state = 'voided', posted_amount = 0
                    WHERE transaction_id = :h RETURNING *)
        UPDATE ledger_balances b
           SET pending_debits = b.pending_debits - CASE WHEN b.account_id = h.debit_account_id
                                                        THEN h.amount ELSE 0 END,
               pending_credits = b.pending_credits - CASE WHEN b.account_id = h.credit_account_id
                                                          THEN h.amount ELSE 0 END
          FROM h WHERE b.account_id IN (h.debit_account_id, h.credit_account_id)
                   AND b.shard = 0""", h=hold)
    assert reported(healthy.engine, PENDING) == []
    assert reported(healthy.engine, HOLD_STATE) == [
        f"{HOLD_STATE}: hold {hold} is voided (posted amount 0) but resolved by nothing"]


def test_a_hold_resolved_twice_is_reported(healthy):
    with healthy.engine.connect() as conn:
        hold = hold_id(conn, healthy.posted_hold)
    tamper(healthy.engine, """INSERT INTO ledger_transactions
                                (idempotency_key, request_hash, kind, result, hold_id)
                              VALUES ('void-again', '\\x00', 'hold_void', 'ok', :h)""", h=hold)
    assert reported(healthy.engine, RESOLVED_ONCE) == [
        f"{RESOLVED_ONCE}: hold {hold} resolved 2 times"]
    assert len(reported(healthy.engine, HOLD_STATE)) == 1


def test_a_posted_hold_whose_posting_moved_another_amount_is_reported(healthy):
    with healthy.engine.connect() as conn:
        hold = hold_id(conn, healthy.partial_hold)
    tamper(healthy.engine, "UPDATE ledger_holds SET posted_amount = 250 WHERE transaction_id = :h",
           h=hold)
    problems = reported(healthy.engine, HOLD_POSTED)
    assert len(problems) == 1
    assert f"hold {hold} posted 250: its posting" in problems[0]
    assert "took 100 from the debit account, gave 100 to the credit account" in problems[0]


def test_an_accepted_hold_without_its_hold_row_is_reported(healthy):
    # The open hold's row vanishes with its pending amounts: the reservation is simply gone.
    with healthy.engine.connect() as conn:
        hold = hold_id(conn, healthy.open_hold)
    tamper(healthy.engine, """
        WITH h AS (DELETE FROM ledger_holds WHERE transaction_id = :h RETURNING *)
        UPDATE ledger_balances b
           SET pending_debits = b.pending_debits - CASE WHEN b.account_id = h.debit_account_id
                                                        THEN h.amount ELSE 0 END,
               pending_credits = b.pending_credits - CASE WHEN b.account_id = h.credit_account_id
                                                          THEN h.amount ELSE 0 END
          FROM h WHERE b.account_id IN (h.debit_account_id, h.credit_account_id)
                   AND b.shard = 0""", h=hold)
    assert reported(healthy.engine, PENDING) == []
    assert reported(healthy.engine, HOLD_ROW) == [
        f"{HOLD_ROW}: transaction {hold} (hold, ok) has no hold row"]
