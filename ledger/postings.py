"""Posting money: validate in Python, then one call of a SQL function (one round trip).

The SQL functions lock, check funds, store the idempotency key with the request hash, write
entries with their running balances and update the balance rows, all inside the caller's
transaction: ledger_post is ledger/sql/ledger_post_0019.sql (2 statements inside the function
for a posting between single-row accounts, 3 when it touches a hot account), the others are
ledger/sql/functions.sql. A single posting is one statement from the client, sent on the
psycopg connection itself as a prepared statement (SQLAlchemy's statement machinery cost more
client CPU than the call). This module never retries: a caller that posts outside a larger
unit of work wraps it in `settlepay.db.run_in_transaction`, which retries deadlocks and
serialization failures from the start (post_now retries them itself).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import weakref
from collections.abc import Sequence
from functools import lru_cache
from json.encoder import encode_basestring_ascii as _json_str
from time import perf_counter
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text
from sqlalchemy.exc import DBAPIError

from ledger.types import (
    HOT,
    NO_NEGATIVE,
    AccountRef,
    AccountType,
    Balance,
    IdempotencyConflict,
    InvalidTransfer,
    Leg,
    PostResult,
    ResultCode,
    Transfer,
    flat_json,
    hash_request,
    legs_hash_text,
    metadata_json,
)
from settlepay.db import is_retryable
from settlepay.observability.metrics import LEDGER_POSTING_SECONDS, Latency, timed
from settlepay.observability.tracing import recording

_CURRENCY = re.compile(r"^[A-Z]{3}$")
HOT_SHARDS = 16


def _leg_json(leg: Leg) -> dict[str, Any]:
    account = leg.account
    out: dict[str, Any] = {
        "owner": account.owner, "type": str(account.type), "currency": account.currency,
        "amount": leg.amount, "no_negative": account.type in NO_NEGATIVE,
        "shards": HOT_SHARDS if account.type in HOT else 1,
    }
    if leg.shortfall_to is not None:
        out["sf_owner"] = leg.shortfall_to.owner
        out["sf_type"] = str(leg.shortfall_to.type)
    return out


def validate(transfer: Transfer) -> None:
    """Reject malformed transfers before they reach the database (InvalidTransfer)."""
    _validate_key(transfer)
    _validate_legs(transfer)


def _validate_key(transfer: Transfer) -> None:
    if not transfer.key:
        raise InvalidTransfer("a transfer needs an idempotency key")


def _validate_legs(transfer: Transfer) -> None:
    """The legs' checks (a batch whose transfers share one tuple of legs runs them once)."""
    if len(transfer.legs) < 2:
        raise InvalidTransfer(f"{transfer.key}: a transfer needs at least two legs")
    currency = transfer.legs[0].account.currency
    if not _CURRENCY.match(currency):
        raise InvalidTransfer(f"{transfer.key}: bad currency {currency!r}")
    total = 0
    for leg in transfer.legs:
        if type(leg.amount) is not int or leg.amount == 0:
            raise InvalidTransfer(
                f"{transfer.key}: leg amounts are non-zero integers in minor units")
        if leg.account.currency != currency:
            raise InvalidTransfer(f"{transfer.key}: a transfer moves one currency")
        if leg.shortfall_to is not None:
            if leg.amount > 0 or leg.account.type not in NO_NEGATIVE:
                raise InvalidTransfer(
                    f"{transfer.key}: shortfall only on debits of no-negative accounts")
            if leg.shortfall_to.currency != currency or leg.shortfall_to.type in NO_NEGATIVE | HOT:
                raise InvalidTransfer(
                    f"{transfer.key}: shortfall account must be a plain account"
                    " in the same currency")
        total += leg.amount
    if len({leg.account for leg in transfer.legs}) != len(transfer.legs):
        raise InvalidTransfer(f"{transfer.key}: an account appears twice")
    if total != 0:
        raise InvalidTransfer(f"{transfer.key}: legs do not sum to zero (off by {total})")


_CODES = {str(code): code for code in ResultCode}


def _result(row: Any, key: str) -> PostResult:
    if row.result == "conflict":
        raise IdempotencyConflict(f"idempotency key {key!r} was used for a different request")
    return PostResult(ResultCode(row.result), row.transaction_id, row.replayed, row.shortfall)


def _batch_result(row: Any, transfers: Sequence[Transfer]) -> PostResult:
    """One row of ledger_post_many (idx, result, transaction_id, replayed, shortfall), read by
    position: a batch is thousands of rows."""
    idx, result, transaction_id, replayed, shortfall = row
    if result == "conflict":
        raise IdempotencyConflict(
            f"idempotency key {transfers[idx - 1].key!r} was used for a different request")
    return PostResult(_CODES[result], transaction_id, replayed, shortfall)


# The latency of every single posting (also when it fails), bound once: see metrics.Latency.
_POSTED = Latency(LEDGER_POSTING_SECONDS, "post", buffered=True)

_POST_SQL = "SELECT * FROM ledger_post(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb)"


def _post_args(transfer: Transfer) -> tuple[Any, ...]:
    return (transfer.key, transfer.request_hash(), transfer.kind, transfer.reference,
            transfer.corrects, json.dumps(transfer.metadata) if transfer.metadata else "{}",
            json.dumps([_leg_json(leg) for leg in transfer.legs]))


def _call(cursor: psycopg.Cursor[Any], transfer: Transfer) -> PostResult:
    """The one round trip of a posting, on a psycopg cursor of the connection itself.

    SQLAlchemy's statement machinery (execution context, cursor wrapper, result metadata, row
    objects) cost the client more CPU than the call itself (bench/ledger.py, cProfile): the hot
    path goes to the driver, as a prepared statement, and turns driver errors back into
    SQLAlchemy's exceptions so that callers (settlepay.db retries, IntegrityError handlers)
    see what they always saw.
    """
    args = _post_args(transfer)
    started = perf_counter()
    try:
        row = cursor.execute(_POST_SQL, args, prepare=True).fetchone()
    except psycopg.Error as error:
        raise DBAPIError.instance(_POST_SQL, args, error, psycopg.Error) from error
    finally:
        _POSTED.since(started)
    if row is None:
        raise AssertionError("ledger_post returned no row")
    result, transaction_id, replayed, shortfall = row
    if result == "conflict":
        raise IdempotencyConflict(
            f"idempotency key {transfer.key!r} was used for a different request")
    return PostResult(ResultCode(result), transaction_id, replayed, shortfall)


def _cursor(driver: psycopg.Connection) -> psycopg.Cursor[Any]:
    """The ledger's cursor of a connection, made once (a new psycopg cursor copies the
    connection's adapters: a measurable part of a posting's client CPU).

    Inside a recorded trace it is a cursor of the connection's own class, the tracing
    instrumentation's (the posting's statement makes its SQL span); otherwise a plain
    `psycopg.Cursor`, which runs the same statement without the instrumentation's subclass
    in between: that costs ~3,000 instructions per posting (callgrind, bench/observability.py)
    for a span that would not be made anyway."""
    if recording():
        traced: psycopg.Cursor[Any] | None = getattr(driver, "_settlepay_traced_cursor", None)
        if traced is None or traced.closed:
            traced = driver.cursor()
            driver._settlepay_traced_cursor = traced  # type: ignore[attr-defined]
        return traced
    cursor: psycopg.Cursor[Any] | None = getattr(driver, "_settlepay_ledger_cursor", None)
    if cursor is None or cursor.closed:
        cursor = psycopg.Cursor(driver)
        driver._settlepay_ledger_cursor = cursor  # type: ignore[attr-defined]
    return cursor


def post(conn: Connection, transfer: Transfer) -> PostResult:
    """Post one balanced transaction (or replay the stored outcome of its key)."""
    validate(transfer)
    if not conn.in_transaction():
        conn.begin()  # what SQLAlchemy's autobegin does: the caller's commit() commits this
    return _call(_cursor(conn.connection.driver_connection), transfer)


_IDLE = psycopg.pq.TransactionStatus.IDLE


class _Autocommit:
    """Autocommit psycopg connections beside an engine's pool, for postings that are a
    transaction of their own: the SQL function is the whole transaction (no BEGIN / COMMIT
    exchange, no rollback on return), so a standalone posting costs one round trip.

    Connections are made with the engine's own connect arguments, kept LIFO up to the engine's
    pool size, dropped when broken or left inside a transaction, and never used across a fork
    (a child process opens its own).
    """

    def __init__(self, engine: Engine) -> None:
        args, kwargs = engine.dialect.create_connect_args(engine.url)
        self._args, self._kwargs = args, dict(kwargs, autocommit=True)
        self._idle: list[psycopg.Connection] = []
        self._keep = max(engine.pool.size(), 1)
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._inherited: list[psycopg.Connection] = []

    def get(self) -> psycopg.Connection:
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours to use
                self._inherited, self._idle = self._inherited + self._idle, []
                self._pid = os.getpid()
            if self._idle:
                return self._idle.pop()
        try:
            return psycopg.connect(*self._args, **self._kwargs)
        except psycopg.Error as error:
            raise DBAPIError.instance(None, None, error, psycopg.Error) from error

    def put(self, driver: psycopg.Connection) -> None:
        healthy = not driver.closed and driver.pgconn.transaction_status == _IDLE
        with self._lock:
            if healthy and self._pid == os.getpid() and len(self._idle) < self._keep:
                self._idle.append(driver)
                return
        if self._pid == os.getpid():
            driver.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for driver in idle:
            driver.close()


_AUTOCOMMIT: weakref.WeakKeyDictionary[Engine, _Autocommit] = weakref.WeakKeyDictionary()
_AUTOCOMMIT_LOCK = threading.Lock()


def _autocommit(engine: Engine) -> _Autocommit:
    found = _AUTOCOMMIT.get(engine)
    if found is None:
        with _AUTOCOMMIT_LOCK:
            found = _AUTOCOMMIT.get(engine)
            if found is None:
                found = _AUTOCOMMIT[engine] = _Autocommit(engine)
                weakref.finalize(engine, found.close)
    return found


def post_now(engine: Engine, transfer: Transfer, attempts: int = 8) -> PostResult:
    """Post one transfer as a transaction of its own, in ONE round trip (autocommit: the SQL
    function is the whole transaction, no BEGIN/COMMIT exchange). For postings that have no
    other state to commit with them; retries deadlocks and serialization failures."""
    validate(transfer)
    connections = _autocommit(engine)
    for attempt in range(1, attempts + 1):
        driver = connections.get()
        try:
            return _call(_cursor(driver), transfer)
        except DBAPIError as error:
            if not is_retryable(error) or attempt == attempts:
                raise
        finally:
            connections.put(driver)
    raise AssertionError("unreachable")


def post_many(conn: Connection, transfers: Sequence[Transfer]) -> list[PostResult]:
    """Post a batch of transfers set-based, in one round trip; results in input order.

    Keys already posted replay; a key reused with a different request raises
    IdempotencyConflict (and the caller's transaction must be rolled back).
    """
    if not transfers:
        return []
    items, legs = [], []
    metadata_texts: dict[int, tuple[str, str]] = {}   # id of a metadata dict -> its texts
    # id of a legs tuple -> its texts (_legs_texts). A settlement page's postings of one
    # player with the same outcome share one tuple of legs (commands/settlement.py): those
    # legs are validated and written once. `transfers` keeps every tuple alive meanwhile.
    legs_texts: dict[int, tuple[tuple[str, ...], str]] = {}
    for idx, t in enumerate(transfers, start=1):
        _validate_key(t)
        shared = legs_texts.get(id(t.legs))
        if shared is None:
            _validate_legs(t)
            shared = legs_texts[id(t.legs)] = _legs_texts(t.legs)
        texts = metadata_texts.get(id(t.metadata))
        if texts is None:
            texts = metadata_texts[id(t.metadata)] = _metadata_texts(t.metadata)
        heads, legs_text = shared
        items.append(_item_json(t, *texts, legs_text))
        for leg_no, head in enumerate(heads, start=1):
            legs.append(f'{head}{idx}, "leg_no": {leg_no}}}')
    with timed(LEDGER_POSTING_SECONDS, "post_many"):
        rows = conn.exec_driver_sql("SELECT * FROM ledger_post_many(%s::jsonb, %s::jsonb)",
                                    ("[" + ", ".join(items) + "]",
                                     "[" + ", ".join(legs) + "]")).all()
    return [_batch_result(row, transfers) for row in rows]


# A batch's JSON is written a transfer and a leg at a time from cached pieces: the same text
# json.dumps gave for the lists of dicts (tests/ledger/test_postings.py compares them), without
# a dict per leg and the encoder's walk over them (a settlement page posts thousands).

def _json_value(value: Any) -> str:
    if type(value) is str:
        return _json_str(value)
    return "null" if value is None else json.dumps(value)


def _metadata_texts(metadata: dict[str, Any]) -> tuple[str, str]:
    """A transfer's metadata as its request hash reads it, and as JSON in its batch item
    (the transfers of a batch may share one metadata dict: each is written once)."""
    item = flat_json(metadata) if type(metadata) is dict else None
    return (metadata_json(metadata) if metadata else "",
            json.dumps(metadata) if item is None else item)


def _legs_texts(legs: Sequence[Leg]) -> tuple[tuple[str, ...], str]:
    """A validated transfer's legs as a batch writes them: each leg's JSON up to its "idx"
    value (_leg_json_head), and the legs' part of the request hash (legs_hash_text)."""
    return tuple(_leg_json_head(leg) for leg in legs), legs_hash_text(legs)


def _item_json(t: Transfer, hash_metadata: str, item_metadata: str, legs_text: str) -> str:
    """`json.dumps` of the batch item of transfer `t` (its idx is its position), with its
    metadata's texts (_metadata_texts) and its legs' hash text (_legs_texts)."""
    digest = hash_request(t.kind, t.reference, t.corrects, legs_text, hash_metadata or None)
    return (f'{{"key": {_json_value(t.key)}, "hash": "{digest.hex()}", '
            f'"kind": {_json_value(t.kind)}, "reference": {_json_value(t.reference)}, '
            f'"corrects": {_json_value(t.corrects)}, "metadata": {item_metadata}}}')


@lru_cache(maxsize=65_536)
def _account_json(account: AccountRef) -> str:
    """A leg's JSON up to its amount (the account's fields), open: `{"owner": ..., `; the
    text json.dumps gives the dict of the three, written with the encoder's string function
    (a json.dumps call per account cost ~5,000 instructions: a settlement page of a market
    with many players meets most of its accounts for the first time)."""
    return (f'{{"owner": {_json_str(account.owner)}, "type": {_json_str(account.type._value_)}, '
            f'"currency": {_json_str(account.currency)}, ')


@lru_cache(maxsize=1_024)
def _account_flags_json(account_type: AccountType) -> str:
    """A leg's JSON after its amount: the account type's flags."""
    return (f'"no_negative": {json.dumps(account_type in NO_NEGATIVE)}, '
            f'"shards": {HOT_SHARDS if account_type in HOT else 1}')


@lru_cache(maxsize=16_384)
def _shortfall_json(account: AccountRef) -> str:
    return f', "sf_owner": {_json_str(account.owner)}, "sf_type": {_json_str(str(account.type))}'


def _leg_json_head(leg: Leg) -> str:
    """`json.dumps` of `_leg_json(leg)` with its "idx" and "leg_no", up to the idx value
    (validate checked that the amount is an int)."""
    account = leg.account
    shortfall = "" if leg.shortfall_to is None else _shortfall_json(leg.shortfall_to)
    return (f'{_account_json(account)}"amount": {int.__repr__(leg.amount)}, '
            f'{_account_flags_json(account.type)}{shortfall}, "idx": ')


def _hold_hash(*parts: Any) -> bytes:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()


def hold(conn: Connection, key: str, debit: AccountRef, credit: AccountRef, amount: int,
         reference: str | None = None, metadata: dict[str, Any] | None = None) -> PostResult:
    """Reserve `amount` of `debit`'s available balance for `credit` (a TigerBeetle pending
    transfer)."""
    if type(amount) is not int or amount <= 0:
        raise InvalidTransfer(f"{key}: a hold amount is a positive integer")
    if debit.currency != credit.currency or debit == credit:
        raise InvalidTransfer(f"{key}: a hold moves between two accounts of one currency")
    if debit.type in HOT or credit.type in HOT:
        raise InvalidTransfer(f"{key}: holds are not supported on hot accounts")
    legs = [_leg_json(Leg(debit, -amount)), _leg_json(Leg(credit, amount))]
    with timed(LEDGER_POSTING_SECONDS, "hold"):
        row = conn.execute(
            text("SELECT * FROM ledger_hold(:key, :hash, :reference, CAST(:metadata AS jsonb),"
                 " CAST(:legs AS jsonb))"),
            {"key": key, "hash": _hold_hash("hold", legs, reference, metadata or {}),
             "reference": reference, "metadata": json.dumps(metadata or {}),
             "legs": json.dumps(legs)},
        ).one()
    return _result(row, key)


def _resolve(conn: Connection, key: str, hold_key: str, action: str, amount: int | None,
             metadata: dict[str, Any] | None) -> PostResult:
    if amount is not None and (type(amount) is not int or amount < 0):
        raise InvalidTransfer(f"{key}: a posted amount is a non-negative integer")
    with timed(LEDGER_POSTING_SECONDS, f"{action}_hold"):
        row = conn.execute(
            text("SELECT * FROM ledger_resolve_hold(:key, :hash, :hold_key, :action, :amount,"
                 " CAST(:metadata AS jsonb))"),
            {"key": key, "hash": _hold_hash(action, hold_key, amount, metadata or {}),
             "hold_key": hold_key, "action": action, "amount": amount,
             "metadata": json.dumps(metadata or {})},
        ).one()
    return _result(row, key)


def post_hold(conn: Connection, key: str, hold_key: str, amount: int | None = None,
              metadata: dict[str, Any] | None = None) -> PostResult:
    """Post a hold: all of it (amount None) or `amount` of it; the rest returns to the debit
    account."""
    return _resolve(conn, key, hold_key, "post", amount, metadata)


def void_hold(conn: Connection, key: str, hold_key: str,
              metadata: dict[str, Any] | None = None) -> PostResult:
    """Void a hold: the reserved amount becomes available again."""
    return _resolve(conn, key, hold_key, "void", None, metadata)


def hold_state(conn: Connection, hold_key: str) -> str | None:
    """The state of the hold made under `hold_key`: pending, posted or voided (None: no hold)."""
    return conn.execute(text("""
        SELECT h.state FROM ledger_holds h JOIN ledger_transactions t ON t.id = h.transaction_id
         WHERE t.idempotency_key = :key"""), {"key": hold_key}).scalar()


_BALANCES_SQL = """
    SELECT a.owner, a.type, a.currency, sum(b.posted) AS posted,
           sum(b.pending_debits) AS pending_debits, sum(b.pending_credits) AS pending_credits
      FROM ledger_accounts a JOIN ledger_balances b ON b.account_id = a.id
     WHERE {where}
     GROUP BY a.id ORDER BY a.currency, a.type
"""


def _balance_row(row: Any) -> Balance:
    return Balance(AccountRef(row.owner, AccountType(row.type), row.currency.strip()),
                   int(row.posted), int(row.pending_debits), int(row.pending_credits))


def balances(conn: Connection, owner: str) -> list[Balance]:
    """Every account of an owner (e.g. `player:<id>`), one Balance per type and currency."""
    rows = conn.execute(text(_BALANCES_SQL.format(where="a.owner = :owner")), {"owner": owner})
    return [_balance_row(r) for r in rows]


def balance(conn: Connection, account: AccountRef) -> Balance:
    """One account's balance; an account never posted to has a zero balance."""
    row = conn.execute(
        text(_BALANCES_SQL.format(
            where="a.owner = :owner AND a.type = :type AND a.currency = :currency")),
        {"owner": account.owner, "type": str(account.type), "currency": account.currency},
    ).one_or_none()
    return _balance_row(row) if row is not None else Balance(account, 0, 0, 0)
