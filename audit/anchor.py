"""Anchoring the audit chain outside the database.

The hash chain shows an edit made behind `audit_append`'s back, but not a rewrite: whoever can
write the database can recompute every hash after the record they changed, and the chain
verifies again. So the chain's head (seq, hash) is published where the database's writers cannot
reach -- an append-only log on write-once storage (a WORM bucket, an object-lock volume, a
timestamping service in the manner of RFC 3161) -- on a schedule (`settlepay audit anchor`,
hourly). `settlepay audit verify --anchors FILE` then requires each anchored seq to still hold
its anchored hash: a rewrite of anything at or before an anchored record is found.

One anchor is one JSON line: {"seq": 41, "hash": "<hex sha256>", "records": 41, "at": "<ISO>"}
(`records`: the chain's length at the anchor, archived records included; the chain is dense
from seq 1, so it is `seq`; `at`: when it was anchored). An empty chain anchors seq 0 with the
genesis hash.

Must never: rewrite or truncate the anchor log (it is opened O_APPEND and fsync'd), or anchor
anything but the committed head.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, text


class AnchorLogError(Exception):
    """The anchor log cannot be read or is not anchors: the check cannot run as asked."""


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: bytes
    records: int
    at: str
    line: int = 0  # where it was read from (1-based); 0 for one just taken

    def to_json(self) -> str:
        return json.dumps({"seq": self.seq, "hash": self.hash.hex(), "records": self.records,
                           "at": self.at}, sort_keys=True)

    def describe(self) -> str:
        where = f"line {self.line}, " if self.line else ""
        return f"anchor ({where}seq {self.seq}, anchored {self.at})"


def head(conn: Connection) -> Anchor:
    """The committed chain head as an anchor, taken now."""
    seq, hash_ = conn.execute(text("SELECT seq, hash FROM audit_head")).one()
    return Anchor(seq=seq, hash=bytes(hash_), records=seq, at=datetime.now(UTC).isoformat())


def append(path: str | Path, anchor: Anchor) -> None:
    """Append one anchor line and make it durable (file, and the directory on creation)."""
    path = Path(path)
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (anchor.to_json() + "\n").encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    if created:
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def _parse(number: int, line: str) -> Anchor:
    try:
        value = json.loads(line)
        seq, hash_hex, records, at = value["seq"], value["hash"], value["records"], value["at"]
        if not (isinstance(seq, int) and seq >= 0 and isinstance(records, int)
                and isinstance(at, str) and isinstance(hash_hex, str)):
            raise TypeError
        hash_ = bytes.fromhex(hash_hex)
        if len(hash_) != 32:
            raise ValueError
    except (ValueError, TypeError, KeyError) as error:
        raise AnchorLogError(
            f"line {number} is not an anchor (a JSON object with seq >= 0, a 64-digit hex "
            f"hash, records and at): {type(error).__name__}") from None
    return Anchor(seq=seq, hash=hash_, records=records, at=at, line=number)


def read(path: str | Path) -> list[Anchor]:
    """Every anchor of the log, in its order; blank lines are skipped, anything else that is
    not an anchor is an AnchorLogError (so is a log that cannot be read)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise AnchorLogError(f"cannot read the anchor log {path}: {error}") from None
    try:
        return [_parse(number, line) for number, line in enumerate(lines, 1) if line.strip()]
    except AnchorLogError as error:
        raise AnchorLogError(f"{path}: {error}") from None
