"""Checking the audit chain and exporting it.

audit_log is range-partitioned on `seq` (migration 0018): the chain is walked in global `seq`
order across its partitions. Partitions detached for archive are listed in audit_archives, in
chain order; the live chain must start where the last of them ends (its last seq and hash), and
the archives must follow one another from the genesis.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from sqlalchemy import Connection, text

from audit.canonical import GENESIS_HASH, canonical_json, chain_hash


@dataclass
class VerifyReport:
    records: int = 0
    archived_records: int = 0  # in partitions detached for archive (audit_archives)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _rows(conn: Connection, since: datetime | None = None) -> Iterator:
    sql = "SELECT seq, prev_hash, hash, record, created_at FROM audit_log"
    if since is not None:
        sql += " WHERE created_at >= :since"
    sql += " ORDER BY seq"
    yield from conn.execution_options(yield_per=5000).execute(text(sql), {"since": since})


def _archived(conn: Connection, report: VerifyReport) -> tuple[bytes, int]:
    """Check the archive manifest links up from the genesis; where the live chain starts."""
    expected_prev, expected_seq = GENESIS_HASH, 1
    archives = conn.execute(text("""SELECT partition, first_seq, last_seq, first_prev_hash,
                                           last_hash, records
                                      FROM audit_archives ORDER BY first_seq""")).all()
    for name, first_seq, last_seq, first_prev, last_hash, records in archives:
        if first_seq != expected_seq or records != last_seq - first_seq + 1:
            report.problems.append(f"archive {name}: records {first_seq}..{last_seq} do not "
                                   f"follow on from record {expected_seq - 1}")
        if bytes(first_prev) != expected_prev:
            report.problems.append(f"archive {name}: previous-hash link broken")
        report.archived_records += records
        expected_prev, expected_seq = bytes(last_hash), last_seq + 1
    return expected_prev, expected_seq


def verify(conn: Connection) -> VerifyReport:
    """Recompute every hash from the genesis (or from the last archived partition's last
    hash): any edited, removed or inserted record shows, in whichever partition it is."""
    report = VerifyReport()
    expected_prev, expected_seq = _archived(conn, report)
    for seq, prev_hash, stored_hash, record_json, _ in _rows(conn):
        report.records += 1
        if seq != expected_seq:
            report.problems.append(f"record {seq}: sequence gap, expected {expected_seq}")
        if bytes(prev_hash) != expected_prev:
            report.problems.append(f"record {seq}: previous-hash link broken")
        try:
            if canonical_json(json.loads(record_json)) != record_json:
                report.problems.append(f"record {seq}: record is not in canonical form")
        except ValueError:
            report.problems.append(f"record {seq}: record is not valid JSON")
        if chain_hash(bytes(prev_hash), record_json) != bytes(stored_hash):
            report.problems.append(f"record {seq}: hash does not match its content")
        expected_prev, expected_seq = bytes(stored_hash), seq + 1
    head = conn.execute(text("SELECT seq, hash FROM audit_head")).one_or_none()
    head_moved = head is not None and (
        head.seq != expected_seq - 1 or bytes(head.hash) != expected_prev)
    if (report.records or report.archived_records) and head_moved:
        report.problems.append(
            "chain head does not match the last record (records removed at the end?)")
    return report


def export(conn: Connection, out: IO[str], since: datetime | None = None) -> int:
    """Write records as JSON lines (with their hashes, so a copy can be verified elsewhere)."""
    count = 0
    for seq, prev_hash, stored_hash, record_json, created_at in _rows(conn, since):
        line = {"seq": seq, "prev_hash": bytes(prev_hash).hex(), "hash": bytes(stored_hash).hex(),
                "created_at": created_at.isoformat(), "record": json.loads(record_json)}
        out.write(json.dumps(line, sort_keys=True) + "\n")
        count += 1
    return count
