"""Append-only, hash-chained audit trail.

`record(conn, ...)` writes one audit record inside the caller's transaction, so the record
commits with the change it describes or not at all. Each record's hash covers the previous
record's hash and the record's canonical JSON; the database refuses UPDATE, DELETE and TRUNCATE
on the table (migration 0002). `verify` walks the chain; `export` writes JSON lines. A rewrite
of the whole chain by someone who can write the database shows only against anchors kept
outside it (`anchor`: the chain head, appended to a write-once log; audit/anchor.py).
"""

from audit import anchor
from audit.anchor import Anchor, AnchorLogError
from audit.chain import Actor, record
from audit.verify import VerifyReport, export, verify

__all__ = ["Actor", "Anchor", "AnchorLogError", "VerifyReport", "anchor", "export", "record",
           "verify"]
