"""Partition maintenance of the append-only tables (migration 0018): SQL only.

- `ensure`: the partitions the next writes need exist ahead of time -- outbox_events and
  webhook_attempts one per calendar month (UTC) up to `months_ahead` after this one; audit_log
  one more range of `audit_records_per_partition` records once fewer than that many are left
  above the chain head. A row that landed in a DEFAULT partition (maintenance lapsed) moves into
  the partition made for it, in the same transaction.
- `archive`: partitions wholly older than their table's cut-off are detached (they stay in the
  database as plain tables, to be dumped and dropped by the operator). audit_log's are
  detached oldest first and only while full, so the live chain stays a suffix of the whole; each
  is entered in audit_archives (its seq range and boundary hashes), where `audit verify` starts
  again. An outbox month with an unpublished event is kept.

Run both from `settlepay partitions ensure|archive` (settlepay/cli_partitions.py), daily.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, text

MONTHLY = ("outbox_events", "webhook_attempts")
AUDIT = "audit_log"
AUDIT_RECORDS_PER_PARTITION = 10_000_000
MONTHS_AHEAD = 3
_BOUND = re.compile(r"FOR VALUES FROM \('?([^')]*)'?\) TO \('?([^')]*)'?\)")


@dataclass(frozen=True)
class Partition:
    name: str
    lower: int | datetime
    upper: int | datetime


def month_start(moment: datetime, plus: int = 0) -> datetime:
    months = moment.year * 12 + moment.month - 1 + plus
    return datetime(months // 12, months % 12 + 1, 1, tzinfo=UTC)


def _bound(value: str, table: str) -> int | datetime:
    if table == AUDIT:
        return int(value)
    return datetime.fromisoformat(value).astimezone(UTC)


def partitions(conn: Connection, table: str) -> list[Partition]:
    """The range partitions of `table`, lowest first (the DEFAULT one is not listed)."""
    conn.execute(text("SET LOCAL TimeZone = 'UTC'"))  # bounds printed as +00
    rows = conn.execute(text("""
        SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound
          FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = CAST(:table AS regclass)"""), {"table": table}).all()
    found = []
    for name, bound in rows:
        match = _BOUND.match(bound)
        if match is not None:
            found.append(Partition(name, _bound(match[1], table), _bound(match[2], table)))
    return sorted(found, key=lambda p: p.lower)


def _literal(value: int | datetime) -> str:
    return str(value) if isinstance(value, int) else f"'{value.isoformat()}'"


def _create(conn: Connection, table: str, name: str, lower: int | datetime,
            upper: int | datetime) -> int:
    """Create the partition [lower, upper); rows of the DEFAULT partition in that range move
    into it. Returns how many moved."""
    key = "seq" if table == AUDIT else "created_at"
    default = f"{table}_default"
    where = f"{key} >= {_literal(lower)} AND {key} < {_literal(upper)}"
    stranded = conn.execute(text(f"SELECT count(*) FROM {default} WHERE {where}")).scalar_one()
    bounds = f"FOR VALUES FROM ({_literal(lower)}) TO ({_literal(upper)})"
    if stranded:
        # A new partition may not overlap rows of the DEFAULT one: take DEFAULT out, move its
        # rows of this range (past the append-only guard, in this transaction only), put it back.
        conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {default}"))
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF {table} {bounds}"))
        conn.execute(text(f"INSERT INTO {table} SELECT * FROM {default} WHERE {where}"))
        conn.execute(text(f"ALTER TABLE {default} DISABLE TRIGGER USER"))
        conn.execute(text(f"DELETE FROM {default} WHERE {where}"))
        conn.execute(text(f"ALTER TABLE {default} ENABLE TRIGGER USER"))
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {default} DEFAULT"))
    else:
        conn.execute(text(f"CREATE TABLE {name} PARTITION OF {table} {bounds}"))
    if table == AUDIT:  # the parent's statement trigger does not cover its partitions
        conn.execute(text(f"CREATE TRIGGER {name}_no_truncate BEFORE TRUNCATE ON {name}"
                          " FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()"))
    return stranded


def ensure(conn: Connection, now: datetime, *, months_ahead: int = MONTHS_AHEAD,
           audit_records_per_partition: int = AUDIT_RECORDS_PER_PARTITION) -> list[str]:
    """Create the partitions missing ahead of `now` and of the audit head; their names (with
    the rows moved out of a DEFAULT partition, if any)."""
    made = []
    for table in MONTHLY:
        have = partitions(conn, table)
        for plus in range(months_ahead + 1):
            lower, upper = month_start(now, plus), month_start(now, plus + 1)
            if any(p.lower < upper and lower < p.upper for p in have):
                continue
            name = f"{table}_{lower:%Y%m}"
            moved = _create(conn, table, name, lower, upper)
            made.append(name + (f" ({moved} rows moved from {table}_default)" if moved else ""))
    head = conn.execute(text("SELECT seq FROM audit_head")).scalar_one()
    have = partitions(conn, AUDIT)
    upper = max((p.upper for p in have), default=1)
    while upper <= head + audit_records_per_partition:
        name = f"{AUDIT}_s{upper:012d}"
        moved = _create(conn, AUDIT, name, upper, upper + audit_records_per_partition)
        made.append(name + (f" ({moved} rows moved from {AUDIT}_default)" if moved else ""))
        upper += audit_records_per_partition
    return made


def _archive_audit(conn: Connection, before: datetime) -> list[str]:
    head = conn.execute(text("SELECT seq FROM audit_head")).scalar_one()
    detached = []
    for partition in partitions(conn, AUDIT):
        if partition.upper > head + 1:
            break  # the partition being written (and those after it) stay
        span = conn.execute(text(f"""
            SELECT min(seq) AS first_seq, max(seq) AS last_seq, count(*) AS records,
                   min(created_at) AS oldest_at, max(created_at) AS newest_at
              FROM {partition.name}""")).one()
        if span.records == 0 or span.newest_at >= before:
            break  # in chain order: nothing after a partition that stays is detached
        conn.execute(text(f"ALTER TABLE {AUDIT} DETACH PARTITION {partition.name}"))
        conn.execute(text(f"""
            INSERT INTO audit_archives (partition, first_seq, last_seq, first_prev_hash,
                                        last_hash, records, oldest_at, newest_at)
            SELECT :name, :first_seq, :last_seq,
                   (SELECT prev_hash FROM {partition.name} WHERE seq = :first_seq),
                   (SELECT hash FROM {partition.name} WHERE seq = :last_seq),
                   :records, :oldest_at, :newest_at"""),
            {"name": partition.name, **span._asdict()})
        detached.append(partition.name)
    return detached


def archive(conn: Connection, before: Mapping[str, datetime]) -> list[str]:
    """Detach the partitions of each table named in `before` that hold only rows older than
    its cut-off; their names."""
    detached = _archive_audit(conn, before[AUDIT]) if AUDIT in before else []
    for table in MONTHLY:
        if table not in before:
            continue
        for partition in partitions(conn, table):
            if partition.upper > before[table]:
                break
            if table == "outbox_events" and conn.execute(text(
                    f"SELECT EXISTS (SELECT 1 FROM {partition.name}"
                    "                 WHERE published_at IS NULL)")).scalar_one():
                continue  # still to be published
            conn.execute(text(f"ALTER TABLE {table} DETACH PARTITION {partition.name}"))
            detached.append(partition.name)
    return detached
