"""Domain-event outbox: written in the same transaction as the state change it announces.

Partner webhooks (and anything else that must hear about a change) read from this table
after commit, so an event is published if and only if its change committed.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, text

from audit.canonical import canonical_json


def emit(conn: Connection, *, event_type: str, aggregate_type: str, aggregate_id: str,
         payload: dict[str, Any], player_id: str | None = None,
         partner_id: str | None = None) -> int:
    """Append one event (e.g. `deposit.succeeded`) in the caller's transaction; returns its id."""
    return conn.execute(
        text("""INSERT INTO outbox_events (event_type, aggregate_type, aggregate_id, player_id,
                                           partner_id, payload)
                VALUES (:event_type, :aggregate_type, :aggregate_id, :player_id, :partner_id,
                        CAST(:payload AS jsonb))
                RETURNING id"""),
        {"event_type": event_type, "aggregate_type": aggregate_type,
         "aggregate_id": str(aggregate_id), "player_id": player_id, "partner_id": partner_id,
         "payload": canonical_json(payload)},
    ).scalar_one()
