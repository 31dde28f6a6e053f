"""Checking the audit chain and exporting it.

audit_log is range-partitioned on `seq` (migration 0018): the chain is walked in global `seq`
order across its partitions. Partitions detached for archive are listed in audit_archives, in
chain order; the live chain must start where the last of them ends (its last seq and hash), and
the archives must follow one another from the genesis.

Anchors (audit/anchor.py) are checked on the same walk: each anchored seq must still hold its
anchored hash. An anchor of an archived range is checked against what the archive recorded (its
boundary hashes) or, while the detached partition is still in the database, against its row;
otherwise it is counted as unchecked (check it against the partition's dump).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO

from sqlalchemy import Connection, text

from audit.anchor import Anchor
from audit.canonical import GENESIS_HASH, canonical_json, chain_hash


@dataclass
class VerifyReport:
    records: int = 0
    archived_records: int = 0  # in partitions detached for archive (audit_archives)
    problems: list[str] = field(default_factory=list)
    anchors_checked: int = 0
    anchors_unchecked: int = 0  # in archived partitions no longer in the database

    @property
    def ok(self) -> bool:
        return not self.problems


def _rows(conn: Connection, since: datetime | None = None) -> Iterator:
    sql = "SELECT seq, prev_hash, hash, record, created_at FROM audit_log"
    if since is not None:
        sql += " WHERE created_at >= :since"
    sql += " ORDER BY seq"
    yield from conn.execution_options(yield_per=5000).execute(text(sql), {"since": since})


class _Anchors:
    """The anchors to check, by seq, and what the walk found of them."""

    def __init__(self, anchors: Iterable[Anchor]) -> None:
        self.by_seq: dict[int, list[Anchor]] = {}
        for anchor in anchors:
            self.by_seq.setdefault(anchor.seq, []).append(anchor)
        self.mismatches: list[tuple[Anchor, str]] = []

    def check(self, report: VerifyReport, seq: int, stored_hash: bytes | None) -> None:
        """Compare the anchors of `seq` with the hash the chain holds there (None: unknown)."""
        for anchor in self.by_seq.pop(seq, []):
            if stored_hash is None:
                report.anchors_unchecked += 1
                continue
            report.anchors_checked += 1
            if anchor.hash != stored_hash:
                self.mismatches.append((anchor, f"the chain holds {stored_hash.hex()} at seq "
                                                f"{seq}, the anchor {anchor.hash.hex()}"))

    def check_detached(self, conn: Connection, report: VerifyReport, partition: str,
                       first_seq: int, last_seq: int) -> None:
        """Anchors inside an archived range, against its detached table while it exists."""
        inside = [seq for seq in self.by_seq if first_seq <= seq < last_seq]
        if not inside:
            return
        table = None
        if conn.execute(text("SELECT to_regclass(:name)"), {"name": partition}).scalar():
            table = conn.dialect.identifier_preparer.quote(partition)
        for seq in sorted(inside):
            found = None if table is None else conn.execute(
                text(f"SELECT hash FROM {table} WHERE seq = :seq"), {"seq": seq}).scalar()
            self.check(report, seq, None if found is None else bytes(found))

    def finish(self, report: VerifyReport, last_seq: int) -> None:
        """Anchors the walk did not reach, then the mismatches, the first one in full."""
        for seq in sorted(self.by_seq):
            for anchor in self.by_seq[seq]:
                self.mismatches.append((anchor, f"no record at seq {seq}" if seq <= last_seq
                                        else f"the chain ends at seq {last_seq}"))
        self.mismatches.sort(key=lambda found: (found[0].seq, found[0].line))
        if self.mismatches:
            anchor, why = self.mismatches[0]
            more = len(self.mismatches) - 1
            report.problems.append(
                f"{anchor.describe()} does not match: {why}; the chain was rewritten at or "
                f"before seq {anchor.seq}" + (f" ({more} later anchor(s) do not match either)"
                                              if more else ""))


def _archived(conn: Connection, report: VerifyReport, anchors: _Anchors) -> tuple[bytes, int]:
    """Check the archive manifest links up from the genesis; where the live chain starts."""
    expected_prev, expected_seq = GENESIS_HASH, 1
    anchors.check(report, 0, GENESIS_HASH)
    archives = conn.execute(text("""SELECT partition, first_seq, last_seq, first_prev_hash,
                                           last_hash, records
                                      FROM audit_archives ORDER BY first_seq""")).all()
    for name, first_seq, last_seq, first_prev, last_hash, records in archives:
        if first_seq != expected_seq or records != last_seq - first_seq + 1:
            report.problems.append(f"archive {name}: records {first_seq}..{last_seq} do not "
                                   f"follow on from record {expected_seq - 1}")
        if bytes(first_prev) != expected_prev:
            report.problems.append(f"archive {name}: previous-hash link broken")
        anchors.check(report, first_seq - 1, bytes(first_prev))
        anchors.check_detached(conn, report, name, first_seq, last_seq)
        anchors.check(report, last_seq, bytes(last_hash))
        report.archived_records += records
        expected_prev, expected_seq = bytes(last_hash), last_seq + 1
    return expected_prev, expected_seq


def verify(conn: Connection, anchors: Iterable[Anchor] = ()) -> VerifyReport:
    """Recompute every hash from the genesis (or from the last archived partition's last
    hash): any edited, removed or inserted record shows, in whichever partition it is. With
    `anchors`, each anchored seq must still hold its anchored hash: a consistent rewrite of
    the chain up to an anchor shows too."""
    report = VerifyReport()
    anchored = _Anchors(anchors)
    expected_prev, expected_seq = _archived(conn, report, anchored)
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
        if seq in anchored.by_seq:
            anchored.check(report, seq, bytes(stored_hash))
        expected_prev, expected_seq = bytes(stored_hash), seq + 1
    head = conn.execute(text("SELECT seq, hash FROM audit_head")).one_or_none()
    head_moved = head is not None and (
        head.seq != expected_seq - 1 or bytes(head.hash) != expected_prev)
    if (report.records or report.archived_records) and head_moved:
        report.problems.append(
            "chain head does not match the last record (records removed at the end?)")
    anchored.finish(report, expected_seq - 1)
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
