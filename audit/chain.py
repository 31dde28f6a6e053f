"""Writing audit records: one SQL round trip that appends to the chain under the head lock."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text

from audit.canonical import canonical_json

Actor = str  # "api_key:<id>", "workflow:<workflow id>", "operator:<name>", "system:<command>"


def record(conn: Connection, *, actor: Actor, action: str, subject_type: str, subject_id: str,
           before: Any = None, after: Any = None) -> int:
    """Append one audit record in the caller's transaction; returns its sequence number.

    The record's canonical JSON is built here; the database function `audit_append` chains it
    (hash = sha256(previous hash || record JSON)) while holding the chain head's row lock, so
    the chain has no forks however many transactions write at once.
    """
    body = {
        "actor": actor,
        "action": action,
        "subject_type": subject_type,
        "subject_id": str(subject_id),
        "before": before,
        "after": after,
        "at": datetime.now(UTC).isoformat(),
    }
    return conn.execute(
        text("SELECT audit_append(:record)"), {"record": canonical_json(body)}
    ).scalar_one()
