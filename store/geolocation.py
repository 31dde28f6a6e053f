"""Geolocation checks on record: insert one, read a player's latest.

Rows are append-only (the database refuses UPDATE/DELETE): a check is evidence of where the
player was when they moved money. Must never: decide whether a check allows anything.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, text


@dataclass(frozen=True)
class GeolocationCheck:
    id: str
    player_id: str
    checked_at: datetime
    latitude: float
    longitude: float
    ip_address: str
    provider: str
    jurisdiction: str | None
    distance_to_border_miles: float | None
    ip_country: str | None
    ip_subdivision: str | None
    anonymous_flags: tuple[str, ...]
    allowed: bool
    code: str
    reason: str
    valid_until: datetime


def new_id() -> str:
    return "geo_" + uuid.uuid4().hex


_COLUMNS = ("id, player_id, checked_at, latitude, longitude, host(ip_address) AS ip_address, "
            "provider, "
            "jurisdiction, distance_to_border_miles, ip_country, ip_subdivision, anonymous_flags, "
            "allowed, code, reason, valid_until")


def _row(row: Row) -> GeolocationCheck:
    data = dict(row._mapping)
    data["anonymous_flags"] = tuple(data["anonymous_flags"] or ())
    return GeolocationCheck(**data)


def insert(conn: Connection, check: GeolocationCheck) -> GeolocationCheck:
    row = conn.execute(text(f"""
        INSERT INTO geolocation_checks (id, player_id, checked_at, latitude, longitude, ip_address,
            provider, jurisdiction, distance_to_border_miles, ip_country, ip_subdivision,
            anonymous_flags, allowed, code, reason, valid_until)
        VALUES (:id, :player_id, :checked_at, :latitude, :longitude, CAST(:ip_address AS inet),
            :provider, :jurisdiction, :distance_to_border_miles, :ip_country, :ip_subdivision,
            :anonymous_flags, :allowed, :code, :reason, :valid_until)
        RETURNING {_COLUMNS}"""),
        {**check.__dict__, "anonymous_flags": list(check.anonymous_flags)}).one()
    return _row(row)


def latest(conn: Connection, player_id: str) -> GeolocationCheck | None:
    row = conn.execute(text(f"""
        SELECT {_COLUMNS} FROM geolocation_checks WHERE player_id = :player_id
        ORDER BY checked_at DESC, id DESC LIMIT 1"""), {"player_id": player_id}).first()
    return _row(row) if row else None


def get(conn: Connection, check_id: str) -> GeolocationCheck | None:
    row = conn.execute(text(f"SELECT {_COLUMNS} FROM geolocation_checks WHERE id = :id"),
                       {"id": check_id}).first()
    return _row(row) if row else None
