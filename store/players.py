"""The players table: insert and read rows. SQL only.

Creating a player (with its audit record and outbox event) is `commands.players`; who may see
which player is decided in api/auth.py. This module decides neither.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Connection, RowMapping, text

from store.pagination import Listing

COLUMNS = ("id, partner_id, external_ref, status, first_name, last_name, email, date_of_birth, "
           "jurisdiction, created_at, updated_at")
# GET /v1/players pages (store/pagination.py), newest first, on the players_list* indexes.
LISTING = Listing("players", COLUMNS)


def get(conn: Connection, player_id: str, *, partner_id: str | None = None,
        for_update: bool = False) -> RowMapping | None:
    """The player row, or None. With `partner_id`, only that partner's player is found."""
    sql = f"SELECT {COLUMNS} FROM players WHERE id = :id"
    if partner_id is not None:
        sql += " AND partner_id = :partner_id"
    if for_update:
        sql += " FOR UPDATE"
    return conn.execute(text(sql),
                        {"id": player_id, "partner_id": partner_id}).mappings().one_or_none()


def status(conn: Connection, player_id: str) -> str | None:
    """The player's status (active, suspended, closed), None when there is no such player."""
    return conn.execute(text("SELECT status FROM players WHERE id = :id"),
                        {"id": player_id}).scalar_one_or_none()


def insert(conn: Connection, *, player_id: str, partner_id: str, external_ref: str | None,
           first_name: str, last_name: str, email: str | None, date_of_birth: date | None,
           jurisdiction: str | None) -> RowMapping | None:
    """Insert a player; None when the id or (partner_id, external_ref) already exists."""
    return conn.execute(
        text(f"""INSERT INTO players (id, partner_id, external_ref, first_name, last_name, email,
                                     date_of_birth, jurisdiction)
                 VALUES (:id, :partner_id, :external_ref, :first_name, :last_name, :email,
                         :date_of_birth, :jurisdiction)
                 ON CONFLICT DO NOTHING
                 RETURNING {COLUMNS}"""),
        {"id": player_id, "partner_id": partner_id, "external_ref": external_ref,
         "first_name": first_name, "last_name": last_name, "email": email,
         "date_of_birth": date_of_birth, "jurisdiction": jurisdiction},
    ).mappings().one_or_none()


def by_external_ref(conn: Connection, partner_id: str, external_ref: str) -> RowMapping | None:
    return conn.execute(
        text(f"SELECT {COLUMNS} FROM players "
             "WHERE partner_id = :partner_id AND external_ref = :ref"),
        {"partner_id": partner_id, "ref": external_ref}).mappings().one_or_none()


def as_record(row: RowMapping) -> dict[str, Any]:
    """The row as plain JSON-able values (audit before/after, outbox payloads)."""
    return {key: (value.isoformat() if hasattr(value, "isoformat") else value)
            for key, value in row.items()}
