"""The second factor: TOTP enrolment and the use of its codes, and the one-time withdrawal code.

    secret = begin_totp(conn, settings, player_id, actor=..., current_code=None)  # pending
    confirm_totp(conn, settings, player_id, code, actor=...)     # the first code confirms it
    verify_totp(conn, settings, player_id, code)                 # a withdrawal's code, used once

A TOTP secret is pending until a first code from the authenticator confirms it; until then the
player's factor is the one-time code sent by notification. Once a factor is confirmed, a new
enrolment needs a valid code of the current factor (the current one stays in force until the new
one is confirmed). A code is accepted once: the time-step it belongs to is recorded and no code
of that step or an earlier one is accepted again. Secrets are sealed (Fernet,
`Settings.totp_encryption_key`) before they are stored; the clear secret leaves this module only
as `begin_totp`'s answer, shown to the caller once. Each change writes its audit record and
outbox event in the caller's transaction.

Wrong codes are limited. Confirming an enrolment and the current factor's code that authorises a
replacement count their wrong codes (an already used code included) per player: the
FAILED_CODES_MAX-th wrong code within FAILED_CODES_WINDOW_SECONDS of the first one locks both
checks for FAILED_CODES_WINDOW_SECONDS (`second_factor_locked`, with the seconds left; a code
sent while locked is not checked, nor counted). An accepted code clears the count (a
withdrawal's TOTP code included; its wrong codes are limited per withdrawal instead). A wrong
code is counted, with its audit record (and the lock's outbox event), in the caller's connection
BEFORE the refusal is raised: the caller commits after a SecondFactorRefused (the refusal is an
answer, not a failure), or the count is lost.
Must never: log, audit or emit a secret or a code; open its own transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import pyotp
from cryptography.fernet import Fernet
from sqlalchemy import Connection, RowMapping

import audit
import outbox
from settlepay.config import Settings
from store import players
from store import second_factor as store
from workflows.contracts.refusal import Refusal
from workflows.contracts.withdrawal import SecondFactorMethod

# A pending enrolment nobody confirmed may be started again after this long.
PENDING_VALID_SECONDS = 900.0
# This many wrong codes within the window (from the first) lock the code checks of enrolment for
# the window's length (see the module docstring).
FAILED_CODES_MAX = 5
FAILED_CODES_WINDOW_SECONDS = 900.0


class SecondFactorRefusal(StrEnum):
    """Refusal codes of enrolment requests; HTTP statuses in api/problems.py STATUS_BY_CODE."""

    ALREADY_ENROLLED = "totp_already_enrolled"
    NOT_PENDING = "second_factor_not_pending"
    INVALID = "second_factor_invalid"
    LOCKED = "second_factor_locked"


class Event(StrEnum):
    ENROLMENT_STARTED = "player.second_factor.enrolment_started"
    ENROLLED = "player.second_factor.enrolled"
    LOCKED = "player.second_factor.locked"


class SecondFactorRefused(Exception):
    """A refusal; `attempts_left` with a wrong code (wrong codes left before the lock),
    `retry_after_seconds` with `second_factor_locked`."""

    def __init__(self, code: SecondFactorRefusal, reason: str, *,
                 attempts_left: int | None = None,
                 retry_after_seconds: int | None = None) -> None:
        super().__init__(reason)
        self.refusal = Refusal(str(code), reason)
        self.attempts_left = attempts_left
        self.retry_after_seconds = retry_after_seconds


# --- sealing and codes -------------------------------------------------------------------------

def seal(key: str, secret: str) -> str:
    return Fernet(key.encode()).encrypt(secret.encode()).decode()


def unseal(key: str, token: str) -> str:
    return Fernet(key.encode()).decrypt(token.encode()).decode()


def one_time_code(secret: str, withdrawal_id: str) -> str:
    """The withdrawal's one-time code: derived, not stored, so a retried send repeats the same
    code and nothing secret sits in the database or the workflow history."""
    digest = hmac.new(secret.encode(), f"withdrawal-code:{withdrawal_id}".encode(),
                      hashlib.sha256).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 1_000_000:06d}"


def one_time_code_matches(secret: str, withdrawal_id: str, code: str) -> bool:
    return hmac.compare_digest(one_time_code(secret, withdrawal_id), code)


def matching_step(secret: str, code: str, now: datetime) -> int | None:
    """The time-step (now, one before or one after: clock drift) whose code is `code`."""
    totp = pyotp.TOTP(secret)
    for offset in (0, -1, 1):
        at = now + timedelta(seconds=offset * totp.interval)
        if hmac.compare_digest(totp.at(at), code):
            return totp.timecode(at)
    return None


def provisioning_uri(secret: str, *, label: str, issuer: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=issuer)


# --- commands ---------------------------------------------------------------------------------

def begin_totp(conn: Connection, settings: Settings, player_id: str, *, actor: str,
               current_code: str | None = None, now: datetime | None = None) -> str:
    """Start a TOTP enrolment and return its new secret (pending until `confirm_totp`).

    Refused while another enrolment is pending (for PENDING_VALID_SECONDS), and, once a factor
    is confirmed, unless `current_code` is a valid, unused code of that factor (a wrong one is
    counted: commit it even when this raises)."""
    now = now or datetime.now(UTC)
    row = store.get(conn, player_id, for_update=True)
    replaces = row is not None and row["confirmed_at"] is not None
    if replaces:
        assert row is not None
        if current_code is None:
            raise SecondFactorRefused(
                SecondFactorRefusal.ALREADY_ENROLLED,
                "The player already has an authenticator; the secret is not shown again. "
                "Send `code` from it to enrol a new one.")
        _refuse_if_locked(row, now)
        if not _use(conn, settings, row, row["secret_encrypted"], current_code, now):
            raise _wrong_code(conn, row, now, actor=actor, reason=(
                "The code is not a valid code of the current authenticator."))
    elif row is not None and row["pending_since"] is not None and \
            now - row["pending_since"] < timedelta(seconds=PENDING_VALID_SECONDS):
        raise SecondFactorRefused(
            SecondFactorRefusal.ALREADY_ENROLLED,
            "An enrolment is waiting for its first code; the secret is not shown again.")
    secret = pyotp.random_base32()
    store.begin(conn, player_id, seal(settings.totp_encryption_key, secret))
    after = {"method": SecondFactorMethod.TOTP, "state": "pending", "replaces_confirmed": replaces}
    audit.record(conn, actor=actor, action="player.second_factor.enrolment_started",
                 subject_type="player", subject_id=player_id, before=None, after=after)
    outbox.emit(conn, event_type=Event.ENROLMENT_STARTED, aggregate_type="player",
                aggregate_id=player_id, payload={"player_id": player_id, **after},
                player_id=player_id, partner_id=_partner_of(conn, player_id))
    return secret


def confirm_totp(conn: Connection, settings: Settings, player_id: str, code: str, *,
                 actor: str, now: datetime | None = None) -> RowMapping:
    """The pending secret's first code makes it the player's factor (a wrong code is counted:
    commit it even when this raises)."""
    now = now or datetime.now(UTC)
    row = store.get(conn, player_id, for_update=True)
    if row is None or row["pending_secret_encrypted"] is None:
        raise SecondFactorRefused(SecondFactorRefusal.NOT_PENDING,
                                  "No TOTP enrolment is waiting for its first code.")
    _refuse_if_locked(row, now)
    step = matching_step(unseal(settings.totp_encryption_key, row["pending_secret_encrypted"]),
                         code, now)
    if step is None:
        raise _wrong_code(conn, row, now, actor=actor,
                          reason="The code is not a valid code of the new authenticator.")
    confirmed = store.confirm(conn, player_id, step)
    assert confirmed is not None
    after = {"method": SecondFactorMethod.TOTP, "state": "confirmed",
             "replaced_confirmed": row["confirmed_at"] is not None}
    audit.record(conn, actor=actor, action="player.second_factor.enrolled",
                 subject_type="player", subject_id=player_id, before=None, after=after)
    outbox.emit(conn, event_type=Event.ENROLLED, aggregate_type="player", aggregate_id=player_id,
                payload={"player_id": player_id, **after}, player_id=player_id,
                partner_id=_partner_of(conn, player_id))
    return confirmed


def verify_totp(conn: Connection, settings: Settings, player_id: str, code: str, *,
                now: datetime | None = None) -> bool:
    """True when `code` is a valid, unused code of the player's confirmed factor; its time-step
    is used up. (The caller records the attempt.)"""
    row = store.get(conn, player_id, for_update=True)
    if row is None or row["confirmed_at"] is None:
        return False
    return _use(conn, settings, row, row["secret_encrypted"], code, now or datetime.now(UTC))


def is_enrolled(conn: Connection, player_id: str) -> bool:
    return store.is_enrolled(conn, player_id)


def _use(conn: Connection, settings: Settings, row: RowMapping, sealed: str, code: str,
         now: datetime) -> bool:
    step = matching_step(unseal(settings.totp_encryption_key, sealed), code, now)
    return step is not None and store.use_step(conn, row["player_id"], step)


def _refuse_if_locked(row: RowMapping, now: datetime) -> None:
    locked_until = row["locked_until"]
    if locked_until is not None and now < locked_until:
        raise SecondFactorRefused(
            SecondFactorRefusal.LOCKED,
            f"Too many wrong codes: no code is checked before {locked_until.isoformat()}.",
            retry_after_seconds=max(1, math.ceil((locked_until - now).total_seconds())))


def _wrong_code(conn: Connection, row: RowMapping, now: datetime, *, actor: str,
                reason: str) -> SecondFactorRefused:
    """Count a wrong code (locking the checks at FAILED_CODES_MAX in the window) with its audit
    record, and the lock's outbox event; the refusal to raise."""
    player_id = row["player_id"]
    window = timedelta(seconds=FAILED_CODES_WINDOW_SECONDS)
    since = row["failed_codes_since"]
    if since is None or now - since >= window:
        failed, since = 1, now
    else:
        failed = row["failed_codes"] + 1
    attempts_left = max(0, FAILED_CODES_MAX - failed)
    locked_until = now + window if attempts_left == 0 else None
    if locked_until is None:
        store.set_failed_codes(conn, player_id, failed, since, None)
    else:   # the lock starts a new window: the count starts again after it
        store.set_failed_codes(conn, player_id, 0, None, locked_until)
    after = {"failed_codes": failed, "attempts_left": attempts_left,
             "locked_until": None if locked_until is None else locked_until.isoformat()}
    audit.record(conn, actor=actor, action="player.second_factor.wrong_code",
                 subject_type="player", subject_id=player_id, before=None, after=after)
    if locked_until is not None:
        outbox.emit(conn, event_type=Event.LOCKED, aggregate_type="player",
                    aggregate_id=player_id,
                    payload={"player_id": player_id, "locked_until": after["locked_until"]},
                    player_id=player_id, partner_id=_partner_of(conn, player_id))
    return SecondFactorRefused(SecondFactorRefusal.INVALID, reason, attempts_left=attempts_left)


def _partner_of(conn: Connection, player_id: str) -> str | None:
    player = players.get(conn, player_id)
    return None if player is None else player["partner_id"]
