"""The totp_enrolments table: a player's TOTP factor, sealed at rest. SQL only.

A row holds the confirmed secret (`secret_encrypted`, NULL until a first code confirms it), a
pending secret waiting for its first code (a first enrolment, or a replacement authorised by a
code of the current one), the last time-step whose code was accepted (a code is used once), and
the count of wrong codes with the lock they lead to (`failed_codes` since `failed_codes_since`,
`locked_until`); an accepted code clears the count.
Secrets are sealed by commands/second_factor.py before they reach this module.
Must never: hold a secret in clear, or decide whether a code is right.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, RowMapping, text

COLUMNS = ("player_id, secret_encrypted, confirmed_at, pending_secret_encrypted, pending_since, "
           "last_used_step, failed_codes, failed_codes_since, locked_until, created_at")
CLEAR_FAILED_CODES = "failed_codes = 0, failed_codes_since = NULL, locked_until = NULL"


def get(conn: Connection, player_id: str, *, for_update: bool = False) -> RowMapping | None:
    sql = f"SELECT {COLUMNS} FROM totp_enrolments WHERE player_id = :p"
    if for_update:
        sql += " FOR UPDATE"
    return conn.execute(text(sql), {"p": player_id}).mappings().one_or_none()


def begin(conn: Connection, player_id: str, pending_secret_encrypted: str) -> RowMapping:
    """Store a pending secret (replacing an earlier pending one); the confirmed one stays."""
    return conn.execute(text(f"""
        INSERT INTO totp_enrolments (player_id, pending_secret_encrypted, pending_since)
        VALUES (:p, :s, now())
        ON CONFLICT (player_id) DO UPDATE
           SET pending_secret_encrypted = EXCLUDED.pending_secret_encrypted,
               pending_since = EXCLUDED.pending_since
        RETURNING {COLUMNS}"""), {"p": player_id, "s": pending_secret_encrypted}).mappings().one()


def confirm(conn: Connection, player_id: str, step: int) -> RowMapping | None:
    """The pending secret becomes the factor; `step` (its first code's) is used up and the
    wrong codes are cleared."""
    return conn.execute(text(f"""
        UPDATE totp_enrolments
           SET secret_encrypted = pending_secret_encrypted, confirmed_at = now(),
               pending_secret_encrypted = NULL, pending_since = NULL, last_used_step = :step,
               {CLEAR_FAILED_CODES}
         WHERE player_id = :p AND pending_secret_encrypted IS NOT NULL
        RETURNING {COLUMNS}"""), {"p": player_id, "step": step}).mappings().one_or_none()


def use_step(conn: Connection, player_id: str, step: int) -> bool:
    """Mark the time-step `step` used (and clear the wrong codes); False when it (or a later
    one) already was."""
    return conn.execute(text(f"""
        UPDATE totp_enrolments SET last_used_step = :step, {CLEAR_FAILED_CODES}
         WHERE player_id = :p AND last_used_step < :step RETURNING player_id"""),
        {"p": player_id, "step": step}).scalar() is not None


def set_failed_codes(conn: Connection, player_id: str, failed_codes: int,
                     since: datetime | None, locked_until: datetime | None) -> None:
    """Store the count of wrong codes, the start of its window and the lock."""
    conn.execute(text("""
        UPDATE totp_enrolments
           SET failed_codes = :n, failed_codes_since = :since, locked_until = :locked_until
         WHERE player_id = :p"""),
        {"p": player_id, "n": failed_codes, "since": since, "locked_until": locked_until})


def is_enrolled(conn: Connection, player_id: str) -> bool:
    """True when the player has a confirmed TOTP factor."""
    return conn.execute(text("""SELECT 1 FROM totp_enrolments
                                WHERE player_id = :p AND confirmed_at IS NOT NULL"""),
                        {"p": player_id}).scalar() is not None
