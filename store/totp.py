"""TOTP enrolments: the player's TOTP secret, sealed at rest. SQL plus the sealing.

The secret is encrypted with Fernet (key: Settings.totp_encryption_key) before it is stored and
is decrypted only to verify a code; the provisioning URI is shown once, at enrolment.
Must never: return a secret to an API caller or write it to a log, an audit record or history.
"""

from __future__ import annotations

from cryptography.fernet import Fernet
from sqlalchemy import Connection, text


def seal(key: str, secret: str) -> str:
    return Fernet(key.encode()).encrypt(secret.encode()).decode()


def unseal(key: str, token: str) -> str:
    return Fernet(key.encode()).decrypt(token.encode()).decode()


def enrol(conn: Connection, player_id: str, secret_encrypted: str) -> bool:
    """Store the sealed secret; False when the player is already enrolled (nothing changes)."""
    return conn.execute(text("""
        INSERT INTO totp_enrolments (player_id, secret_encrypted) VALUES (:p, :s)
        ON CONFLICT (player_id) DO NOTHING RETURNING player_id"""),
        {"p": player_id, "s": secret_encrypted}).scalar() is not None


def sealed_secret(conn: Connection, player_id: str) -> str | None:
    return conn.execute(text("SELECT secret_encrypted FROM totp_enrolments WHERE player_id = :p"),
                        {"p": player_id}).scalar()


def is_enrolled(conn: Connection, player_id: str) -> bool:
    return sealed_secret(conn, player_id) is not None
