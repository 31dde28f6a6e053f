"""The ledger's contract, one behaviour per test, on a real PostgreSQL."""

from __future__ import annotations

import json
import uuid

import psycopg
import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import ledger
from ledger import (
    AccountRef,
    IdempotencyConflict,
    InvalidTransfer,
    Leg,
    ResultCode,
    Transfer,
    postings,
)
from ledger.check import run as check
from ledger.types import metadata_json
from settlepay import migrate
from settlepay.db import make_engine
from tests.support.databases import admin_url, sqlalchemy_url
from tests.support.ledger import deposit, house_pays, new_player, stake


def cash(conn, player, currency="USD"):
    return ledger.balance(conn, AccountRef.player_cash(player, currency))


def test_deposit_credits_player_and_debits_clearing(engine):
    p = new_player()
    with engine.begin() as conn:
        result = ledger.post(conn, deposit(p, 2500))
        assert result.ok and not result.replayed
        assert cash(conn, p).posted == 2500
        entries = conn.execute(text("SELECT amount, balance_after FROM ledger_entries"
                                    " WHERE transaction_id = :t ORDER BY amount"),
                               {"t": result.transaction_id}).all()
        assert [e.amount for e in entries] == [-2500, 2500]
        assert entries[1].balance_after == 2500


def test_same_key_same_request_replays_first_result(engine):
    p = new_player()
    transfer = deposit(p, 700, key=f"dep-{p}")
    with engine.begin() as conn:
        first = ledger.post(conn, transfer)
        second = ledger.post(conn, transfer)
        assert second.replayed and second.transaction_id == first.transaction_id
        assert cash(conn, p).posted == 700


def test_stored_rejection_replays_even_after_funds_arrive(engine):
    p = new_player()
    with engine.begin() as conn:
        rejected = ledger.post(conn, stake(p, 1000, key=f"stake-{p}"))
        assert rejected.code is ResultCode.INSUFFICIENT_FUNDS
        ledger.post(conn, deposit(p, 5000))
        again = ledger.post(conn, stake(p, 1000, key=f"stake-{p}"))
        assert again.code is ResultCode.INSUFFICIENT_FUNDS and again.replayed
        assert cash(conn, p).posted == 5000


def test_same_key_different_request_is_a_conflict(engine):
    p = new_player()
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 100, key=f"dep-{p}"))
        with pytest.raises(IdempotencyConflict):
            ledger.post(conn, deposit(p, 101, key=f"dep-{p}"))


@pytest.mark.parametrize("legs", [
    (),
    (Leg(AccountRef.player_cash("x", "USD"), 100),),
    (Leg(AccountRef.player_cash("x", "USD"), 100),
     Leg(AccountRef.house_revenue("USD"), -99)),
    (Leg(AccountRef.player_cash("x", "USD"), 100), Leg(AccountRef.house_revenue("EUR"), -100)),
    (Leg(AccountRef.player_cash("x", "USD"), 100), Leg(AccountRef.house_revenue("USD"), -100),
     Leg(AccountRef.player_cash("y", "EUR"), 5), Leg(AccountRef.house_revenue("EUR"), -5)),
    (Leg(AccountRef.player_cash("x", "USD"), 0), Leg(AccountRef.house_revenue("USD"), 0)),
    (Leg(AccountRef.player_cash("x", "usd"), 1), Leg(AccountRef.house_revenue("usd"), -1)),
])
def test_malformed_transfers_are_refused_before_the_database(legs):
    with pytest.raises(InvalidTransfer):
        ledger.post(None, Transfer("k", "deposit", legs))  # type: ignore[arg-type]


def test_float_amounts_are_refused():
    legs = (Leg(AccountRef.player_cash("x", "USD"), 1.5),  # type: ignore[arg-type]
            Leg(AccountRef.house_revenue("USD"), -1.5))  # type: ignore[arg-type]
    with pytest.raises(InvalidTransfer):
        ledger.post(None, Transfer("k", "deposit", legs))  # type: ignore[arg-type]


def test_database_refuses_an_unbalanced_call_that_skips_validation(engine):
    with pytest.raises(DBAPIError), engine.begin() as conn:
        legs = ('[{"owner":"a","type":"player_cash","currency":"USD","amount":5,'
                '"no_negative":true,"shards":1},'
                '{"owner":"b","type":"player_cash","currency":"USD","amount":-4,'
                '"no_negative":true,"shards":1}]')
        conn.execute(text("SELECT * FROM ledger_post('raw', '\\x00', 'x', NULL, NULL, '{}',"
                          " CAST(:legs AS jsonb))"),
                     {"legs": legs})


def test_clawback_beyond_cash_goes_to_debt(engine):
    p = new_player()
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 300))
        result = ledger.post(conn, Transfer(f"claw-{p}", "resettlement", (
            Leg(AccountRef.player_cash(p, "USD"), -1000,
                shortfall_to=AccountRef.player_debt(p, "USD")),
            Leg(AccountRef.house_revenue("USD"), 1000))))
        assert result.ok and result.shortfall == 700
        assert cash(conn, p).posted == 0
        assert ledger.balance(conn, AccountRef.player_debt(p, "USD")).posted == -700


def test_hold_counts_against_available_and_posts_in_part_once(engine):
    p = new_player()
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 1000))
        held = ledger.hold(conn, f"wd-{p}:hold", AccountRef.player_cash(p, "USD"),
                           AccountRef.pending_withdrawal(p, "USD"), 800)
        assert held.ok
        assert cash(conn, p).available == 200
        # Available funds, not posted funds, gate a second debit.
        assert ledger.post(conn, stake(p, 300)).code is ResultCode.INSUFFICIENT_FUNDS
        posted = ledger.post_hold(conn, f"wd-{p}:post", f"wd-{p}:hold", 500)
        assert posted.ok
        assert cash(conn, p).posted == 500 and cash(conn, p).available == 500
        assert ledger.balance(conn, AccountRef.pending_withdrawal(p, "USD")).posted == 500
        voided = ledger.void_hold(conn, f"wd-{p}:void", f"wd-{p}:hold")
        assert voided.code is ResultCode.HOLD_ALREADY_POSTED
        posted_again = ledger.post_hold(conn, f"wd-{p}:post2", f"wd-{p}:hold")
        assert posted_again.code is ResultCode.HOLD_ALREADY_POSTED
        assert ledger.post_hold(conn, f"wd-{p}:post", f"wd-{p}:hold", 500).replayed


def test_void_releases_hold_and_cannot_post_afterwards(engine):
    p = new_player()
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 1000))
        ledger.hold(conn, f"h-{p}", AccountRef.player_cash(p, "USD"),
                    AccountRef.pending_withdrawal(p, "USD"), 1000)
        assert ledger.void_hold(conn, f"v-{p}", f"h-{p}").ok
        assert cash(conn, p).available == 1000
        assert ledger.post_hold(conn, f"p-{p}", f"h-{p}").code is ResultCode.HOLD_ALREADY_VOIDED
        assert ledger.post_hold(conn, f"p2-{p}", "no-such-hold").code is ResultCode.HOLD_NOT_FOUND


def test_hold_over_available_is_rejected_and_posting_more_than_held_too(engine):
    p = new_player()
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 100))
        too_big = ledger.hold(conn, f"big-{p}", AccountRef.player_cash(p, "USD"),
                              AccountRef.pending_withdrawal(p, "USD"), 101)
        assert too_big.code is ResultCode.INSUFFICIENT_FUNDS
        ledger.hold(conn, f"h-{p}", AccountRef.player_cash(p, "USD"),
                    AccountRef.pending_withdrawal(p, "USD"), 50)
        over = ledger.post_hold(conn, f"p-{p}", f"h-{p}", 51)
        assert over.code is ResultCode.HOLD_AMOUNT_EXCEEDED


def test_batch_posts_set_based_and_replays(engine):
    players = [new_player() for _ in range(5)]
    transfers = [house_pays(p, 100 * (i + 1), key=f"pay-{p}") for i, p in enumerate(players)]
    with engine.begin() as conn:
        results = ledger.post_many(conn, transfers)
        assert all(r.ok and not r.replayed for r in results)
        again = ledger.post_many(conn, transfers)
        assert [r.transaction_id for r in again] == [r.transaction_id for r in results]
        assert all(r.replayed for r in again)
        assert [cash(conn, p).posted for p in players] == [100, 200, 300, 400, 500]


class _Captured:
    """A connection that keeps the arguments of post_many's one statement."""

    def exec_driver_sql(self, sql, args):
        self.items, self.legs = args
        return self

    def all(self):
        return [(i + 1, "ok", i, False, 0) for i in range(len(json.loads(self.items)))]


def test_batch_json_and_request_hash_are_the_json_dumps_text():
    # post_many and request_hash write their JSON from cached pieces; the text must be what
    # json.dumps gave (unicode, quotes, None, shortfalls, odd and nested metadata).
    p = "pl\u00e9yer \"1\"\\"
    cash_, debt = AccountRef.player_cash(p, "EUR"), AccountRef.player_debt(p, "EUR")
    house = AccountRef.house_revenue("EUR")
    transfers = [
        Transfer(key="bet:b1:v1", kind="settlement", reference="b1",
                 legs=(Leg(AccountRef.bets_in_play(p, "EUR"), -1000), Leg(cash_, 2500),
                       Leg(house, -1500)), metadata={"market": "m\u2028", "version": 3}),
        Transfer(key="bet:b1:g1:v2", kind="resettlement", reference=None, corrects="bet:b1:v1",
                 legs=(Leg(cash_, -2500, shortfall_to=debt), Leg(house, 2500))),
        Transfer(key="k3", kind="deposit", reference="r\U0001f600",
                 legs=(Leg(cash_, 7), Leg(house, -7)),
                 metadata={"z": True, "a": None, "n": [1, {"b": 2.5}], "big": 10**20}),
    ]
    # a batch's transfers may share one metadata dict (a settlement page's run)
    transfers.append(Transfer(key="bet:b2:v1", kind="settlement", reference="b2",
                              legs=(Leg(cash_, 9), Leg(house, -9)),
                              metadata=transfers[0].metadata))
    # ... and one tuple of legs (a player's postings with the same outcome): written once,
    # each transfer's hash and idx its own
    transfers.append(Transfer(key="bet:b3:v1", kind="settlement", reference="b3",
                              legs=transfers[0].legs, metadata=transfers[0].metadata))
    transfers.append(Transfer(key="bet:b1:g1:v3", kind="resettlement", reference="b1",
                              corrects="bet:b1:g1:v2", legs=transfers[1].legs))
    captured = _Captured()
    ledger.post_many(captured, transfers)
    items = [{"key": t.key, "hash": t.request_hash().hex(), "kind": t.kind,
              "reference": t.reference, "corrects": t.corrects, "metadata": t.metadata}
             for t in transfers]
    legs = [{**postings._leg_json(leg), "idx": idx, "leg_no": leg_no}
            for idx, t in enumerate(transfers, start=1)
            for leg_no, leg in enumerate(t.legs, start=1)]
    assert captured.items == json.dumps(items)
    assert captured.legs == json.dumps(legs)
    for t in transfers:
        assert metadata_json(t.metadata) == json.dumps(
            t.metadata, sort_keys=True, separators=(",", ":"), default=str)
    # The hashes the json.dumps implementation gave (stored with every posted key).
    assert transfers[0].request_hash().hex() == (
        "1cb88f2f57a35153b9e8f8274f57aadc99c5b656f1de7f3e4a06803a3ee106a1")
    assert transfers[2].request_hash().hex() == (
        "025b771ae9ab73f34ccd6798e2b8a59e344123a6d154eef327278733bb9cb65d")


def test_a_shared_tuple_of_legs_is_validated_once_but_every_key_is_checked():
    p = new_player()
    legs = (Leg(AccountRef.player_cash(p, "USD"), 5), Leg(AccountRef.house_revenue("USD"), -5))
    captured = _Captured()
    with pytest.raises(InvalidTransfer, match="idempotency key"):
        ledger.post_many(captured, [Transfer(key="k1", kind="deposit", legs=legs),
                                    Transfer(key="", kind="deposit", legs=legs)])
    unbalanced = (Leg(AccountRef.player_cash(p, "USD"), 5),
                  Leg(AccountRef.house_revenue("USD"), -4))
    with pytest.raises(InvalidTransfer, match="sum to zero"):
        ledger.post_many(captured, [Transfer(key="k1", kind="deposit", legs=legs),
                                    Transfer(key="k2", kind="deposit", legs=unbalanced),
                                    Transfer(key="k3", kind="deposit", legs=unbalanced)])


def test_batch_with_short_funds_falls_back_to_item_order(engine):
    p = new_player()
    with engine.begin() as conn:
        results = ledger.post_many(conn, [deposit(p, 500), stake(p, 400), stake(p, 400),
                                          deposit(p, 300), stake(p, 400)])
        assert [r.code for r in results] == [ResultCode.OK, ResultCode.OK,
                                             ResultCode.INSUFFICIENT_FUNDS,
                                             ResultCode.OK, ResultCode.OK]
        assert cash(conn, p).posted == 0


def test_batch_conflicting_key_raises(engine):
    p = new_player()
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 100, key=f"k-{p}"))
    with pytest.raises(IdempotencyConflict), engine.begin() as conn:
        ledger.post_many(conn, [deposit(p, 999, key=f"k-{p}")])


def test_ledger_tables_are_append_only(engine):
    p = new_player()
    with engine.begin() as conn:
        tx = ledger.post(conn, deposit(p, 100)).transaction_id
    for statement in ("UPDATE ledger_entries SET amount = amount WHERE transaction_id = :t",
                      "DELETE FROM ledger_transactions WHERE id = :t"):
        with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
            conn.execute(text(statement), {"t": tx})


def test_hot_account_spreads_over_rows_and_check_passes(fresh_engine):
    with fresh_engine.begin() as conn:
        for i in range(20):
            ledger.post(conn, house_pays(new_player(), 10, key=f"hp-{i}"))
        rows = conn.execute(text("""SELECT count(*) FROM ledger_balances b
                                    JOIN ledger_accounts a ON a.id = b.account_id
                                    WHERE a.type = 'house_revenue'""")).scalar()
        assert rows == 16
        assert ledger.balance(conn, AccountRef.house_revenue("USD")).posted == -200
        assert check(conn) == []


def test_check_detects_a_forged_balance(fresh_engine):
    p = new_player()
    with fresh_engine.begin() as conn:
        ledger.post(conn, deposit(p, 100))
        conn.execute(text("""UPDATE ledger_balances SET posted = posted + 1 WHERE account_id =
                             (SELECT id FROM ledger_accounts
                               WHERE owner = :o AND type = 'player_cash')"""),
                     {"o": f"player:{p}"})
        problems = check(conn)
        assert any("equals the sum of its entries" in v for v in problems)


def test_batch_shortfall_legs_stay_set_based_until_cash_runs_out(engine):
    p = new_player()

    def claw(n: int, amount: int) -> Transfer:
        return Transfer(f"claw-{p}-{n}", "resettlement", (
            Leg(AccountRef.player_cash(p, "USD"), -amount,
                shortfall_to=AccountRef.player_debt(p, "USD")),
            Leg(AccountRef.house_revenue("USD"), amount)))
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 1_000))
        covered = ledger.post_many(conn, [claw(1, 300), claw(2, 300)])
        assert [r.shortfall for r in covered] == [0, 0]
        short = ledger.post_many(conn, [claw(3, 300), claw(4, 300)])
        assert [r.shortfall for r in short] == [0, 200]
        assert cash(conn, p).posted == 0
        assert ledger.balance(conn, AccountRef.player_debt(p, "USD")).posted == -200
        assert check(conn) == []


def test_post_now_replays_rejections_and_refuses_a_reused_key(engine):
    p = new_player()
    rejected = ledger.post_now(engine, stake(p, 1_000, key=f"stake-{p}"))
    assert rejected.code is ResultCode.INSUFFICIENT_FUNDS and not rejected.replayed
    ledger.post_now(engine, deposit(p, 5_000))
    again = ledger.post_now(engine, stake(p, 1_000, key=f"stake-{p}"))
    assert again.code is ResultCode.INSUFFICIENT_FUNDS and again.replayed
    assert again.transaction_id == rejected.transaction_id
    with pytest.raises(IdempotencyConflict):
        ledger.post_now(engine, stake(p, 999, key=f"stake-{p}"))
    with engine.begin() as conn:
        assert cash(conn, p).posted == 5_000


def test_post_commits_and_rolls_back_with_the_callers_connection(engine):
    kept, dropped = new_player(), new_player()
    with engine.connect() as conn:  # no transaction begun yet: the posting begins it
        ledger.post(conn, deposit(kept, 100))
        conn.commit()
        ledger.post(conn, deposit(dropped, 100))
        conn.rollback()
    with engine.connect() as conn:
        assert cash(conn, kept).posted == 100
        assert cash(conn, dropped).posted == 0


def test_driver_errors_reach_callers_as_sqlalchemy_errors(engine):
    with engine.begin() as conn:
        with pytest.raises(DBAPIError):
            conn.exec_driver_sql("SELECT 1 / 0")
        with pytest.raises(DBAPIError) as raised:   # the transaction is aborted
            ledger.post(conn, deposit(new_player(), 100))
        assert raised.value.orig.sqlstate == "25P02"


def test_shortfall_onto_an_account_that_is_also_a_leg_makes_one_entry(engine):
    p = new_player()
    with engine.begin() as conn:
        ledger.post(conn, deposit(p, 300))
        result = ledger.post(conn, Transfer(f"claw-{p}", "resettlement", (
            Leg(AccountRef.player_cash(p, "USD"), -1_000,
                shortfall_to=AccountRef.player_debt(p, "USD")),
            Leg(AccountRef.player_debt(p, "USD"), 100),
            Leg(AccountRef.house_revenue("USD"), 900))))
        assert result.ok and result.shortfall == 700
        entries = conn.execute(text("SELECT account_id, amount FROM ledger_entries"
                                    " WHERE transaction_id = :t"),
                               {"t": result.transaction_id}).all()
        assert sorted(e.amount for e in entries) == [-600, -300, 900]
        assert ledger.balance(conn, AccountRef.player_debt(p, "USD")).posted == -600
        assert cash(conn, p).posted == 0
        assert check(conn) == []


def test_shortfall_of_an_empty_account_writes_no_zero_entry(engine):
    p = new_player()
    with engine.begin() as conn:
        result = ledger.post(conn, Transfer(f"claw-{p}", "resettlement", (
            Leg(AccountRef.player_cash(p, "USD"), -250,
                shortfall_to=AccountRef.player_debt(p, "USD")),
            Leg(AccountRef.house_revenue("USD"), 250))))
        assert result.ok and result.shortfall == 250
        amounts = conn.execute(text("SELECT amount FROM ledger_entries WHERE transaction_id = :t"
                                    " ORDER BY amount"), {"t": result.transaction_id}).scalars()
        assert list(amounts) == [-250, 250]
        assert check(conn) == []


def test_a_posting_takes_a_free_row_of_a_hot_account_rather_than_wait(fresh_engine):
    """Another transaction holds every row of the house account but one (most likely the
    posting session's own row among them): the posting takes the free row, it does not wait."""
    first = house_pays(new_player(), 1, key="warm-up")
    ledger.post_now(fresh_engine, first)          # creates the accounts
    with fresh_engine.connect() as holder:
        holder.exec_driver_sql("SELECT 1 FROM ledger_balances b JOIN ledger_accounts a"
                               " ON a.id = b.account_id WHERE a.type = 'house_revenue'"
                               " AND b.shard < 15 FOR UPDATE OF b")   # all rows but one
        result = ledger.post_now(fresh_engine, house_pays(new_player(), 5, key="beside"))
        assert result.ok
        with fresh_engine.connect() as conn:
            shard = conn.exec_driver_sql(
                "SELECT shard FROM ledger_entries WHERE transaction_id = %s AND amount = -5",
                (result.transaction_id,)).scalar()
        assert shard == 15
        holder.rollback()


def test_migration_0019_downgrades_to_the_previous_ledger_post_and_back():
    name = f"sp_ledger_0019_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url().rsplit("/", 1)[0] + f"/{name}"
    definition = "SELECT pg_get_functiondef('ledger_post'::regproc)"
    try:
        migrate.upgrade(sqlalchemy_url(url), "0019_ledger_posting")
        engine = make_engine(sqlalchemy_url(url), pool_size=1)
        p = new_player()
        for revision, marker in (("0018_table_growth", "ledger_replay(v_prior, p_hash)"),
                                 ("0019_ledger_posting", "RETURN NEXT")):
            if revision == "0018_table_growth":
                command.downgrade(migrate.alembic_config(sqlalchemy_url(url)), revision)
            else:
                migrate.upgrade(sqlalchemy_url(url), revision)
            engine.dispose()
            with engine.begin() as conn:
                assert marker in conn.exec_driver_sql(definition).scalar()
                assert ledger.post(conn, deposit(p, 100, key=f"d-{revision}")).ok
                assert ledger.post(conn, stake(p, 10**6, key=f"s-{revision}")).code \
                    is ResultCode.INSUFFICIENT_FUNDS
                with pytest.raises(IdempotencyConflict):
                    ledger.post(conn, deposit(p, 101, key=f"d-{revision}"))
            with engine.begin() as conn:
                assert check(conn) == []
        engine.dispose()
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
