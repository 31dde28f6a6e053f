"""commands.second_factor on the real database: wrong codes of an enrolment are limited
(security finding: unlimited TOTP guesses). FAILED_CODES_MAX wrong codes within the window lock
the confirmation of a new authenticator and the current code that authorises a replacement, for
the window's length, with nothing else written; an accepted code clears the count; each wrong
code is counted in the caller's transaction before the refusal is raised, so a caller that
commits keeps it."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
from sqlalchemy import Connection, Engine, RowMapping, text

from commands import second_factor
from commands.second_factor import (
    FAILED_CODES_MAX,
    FAILED_CODES_WINDOW_SECONDS,
    SecondFactorRefused,
)
from settlepay.config import Settings
from store import second_factor as store
from tests.support.factories import Player, audit_actions, events, make_player

ACTOR = "api_key:test"
WINDOW = timedelta(seconds=FAILED_CODES_WINDOW_SECONDS)


def attempt(engine: Engine, work: Callable[[Connection], Any]) -> SecondFactorRefused | None:
    """Run `work` in a transaction committed even when it is refused (as the API does)."""
    with engine.begin() as conn:
        try:
            work(conn)
        except SecondFactorRefused as error:
            return error
    return None


def enrolment(engine: Engine, player: Player) -> RowMapping:
    with engine.connect() as conn:
        row = store.get(conn, player.id)
    assert row is not None
    return row


def wrong(authenticator: pyotp.TOTP, at: datetime, n: int) -> str:
    """The n-th wrong code at `at` (never a code of the steps accepted then or soon after)."""
    valid = {authenticator.at(at + timedelta(seconds=30 * step)) for step in (-1, 0, 1, 2)}
    codes = (f"{(int(authenticator.at(at)) + k) % 1_000_000:06d}" for k in range(1, 100))
    return [code for code in codes if code not in valid][n]


def pending(engine: Engine, settings: Settings, player: Player,
            at: datetime) -> pyotp.TOTP:
    with engine.begin() as conn:
        secret = second_factor.begin_totp(conn, settings, player.id, actor=ACTOR, now=at)
    return pyotp.TOTP(secret)


def confirmed(engine: Engine, settings: Settings, player: Player, at: datetime) -> pyotp.TOTP:
    authenticator = pending(engine, settings, player, at)
    assert attempt(engine, lambda conn: second_factor.confirm_totp(
        conn, settings, player.id, authenticator.at(at), actor=ACTOR, now=at)) is None
    return authenticator


def confirm(engine: Engine, settings: Settings, player: Player, code: str,
            at: datetime) -> SecondFactorRefused | None:
    return attempt(engine, lambda conn: second_factor.confirm_totp(
        conn, settings, player.id, code, actor=ACTOR, now=at))


def replace(engine: Engine, settings: Settings, player: Player, code: str,
            at: datetime) -> SecondFactorRefused | None:
    return attempt(engine, lambda conn: second_factor.begin_totp(
        conn, settings, player.id, actor=ACTOR, current_code=code, now=at))


def test_wrong_first_codes_lock_the_confirmation_until_the_window_passes(engine, settings):
    player = make_player(engine)
    start = datetime.now(UTC)
    authenticator = pending(engine, settings, player, start)
    refusals = [confirm(engine, settings, player, wrong(authenticator, start, n),
                        start + timedelta(seconds=n)) for n in range(FAILED_CODES_MAX)]
    assert [(r.refusal.code, r.attempts_left) for r in refusals if r] == [
        ("second_factor_invalid", FAILED_CODES_MAX - 1 - n) for n in range(FAILED_CODES_MAX)]

    # Locked: even the right code is not checked (nor counted), for the whole window.
    locked_at = start + timedelta(seconds=FAILED_CODES_MAX - 1)
    for later in (locked_at + timedelta(seconds=1), locked_at + WINDOW - timedelta(seconds=1)):
        refusal = confirm(engine, settings, player, authenticator.at(later), later)
        assert refusal is not None and refusal.refusal.code == "second_factor_locked"
        assert refusal.retry_after_seconds == round((locked_at + WINDOW - later).total_seconds())
    assert enrolment(engine, player)["confirmed_at"] is None

    # The window passed: the right code confirms, and the count is cleared.
    after = locked_at + WINDOW
    assert confirm(engine, settings, player, authenticator.at(after), after) is None
    row = enrolment(engine, player)
    assert row["confirmed_at"] is not None
    assert (row["failed_codes"], row["failed_codes_since"], row["locked_until"]) == (
        0, None, None)


def test_wrong_current_codes_lock_the_replacement_of_a_confirmed_factor(engine, settings):
    player = make_player(engine)
    start = datetime.now(UTC)
    authenticator = confirmed(engine, settings, player, start)
    before = enrolment(engine, player)
    at = start + timedelta(seconds=60)
    codes = [wrong(authenticator, at, n) for n in range(FAILED_CODES_MAX)]
    assert [r.attempts_left for c in codes if (r := replace(engine, settings, player, c, at))] \
        == list(range(FAILED_CODES_MAX - 1, -1, -1))
    refusal = replace(engine, settings, player, authenticator.at(at), at)
    assert refusal is not None and refusal.refusal.code == "second_factor_locked"
    # Nothing but the count was written: no pending secret, the current factor untouched.
    row = enrolment(engine, player)
    assert row["pending_secret_encrypted"] is None
    assert (row["secret_encrypted"], row["last_used_step"]) == (
        before["secret_encrypted"], before["last_used_step"])
    assert row["locked_until"] == at + WINDOW

    after = at + WINDOW
    assert replace(engine, settings, player, authenticator.at(after), after) is None
    assert enrolment(engine, player)["pending_secret_encrypted"] is not None


def test_a_correct_code_clears_the_count_of_wrong_codes(engine, settings):
    player = make_player(engine)
    start = datetime.now(UTC)
    authenticator = pending(engine, settings, player, start)
    for n in range(FAILED_CODES_MAX - 1):
        assert confirm(engine, settings, player, wrong(authenticator, start, n), start)
    assert enrolment(engine, player)["failed_codes"] == FAILED_CODES_MAX - 1
    assert confirm(engine, settings, player, authenticator.at(start), start) is None
    assert enrolment(engine, player)["failed_codes"] == 0

    # A full count again on the replacement before any lock.
    at = start + timedelta(seconds=60)
    for n in range(FAILED_CODES_MAX - 1):
        refusal = replace(engine, settings, player, wrong(authenticator, at, n), at)
        assert refusal is not None and refusal.attempts_left == FAILED_CODES_MAX - 1 - n
    assert replace(engine, settings, player, authenticator.at(at), at) is None
    assert enrolment(engine, player)["failed_codes"] == 0


def test_wrong_codes_further_apart_than_the_window_never_lock(engine, settings):
    player = make_player(engine)
    start = datetime.now(UTC)
    authenticator = pending(engine, settings, player, start)
    at = start
    for _ in range(2 * FAILED_CODES_MAX):
        refusal = confirm(engine, settings, player, wrong(authenticator, at, 0), at)
        assert refusal is not None and refusal.refusal.code == "second_factor_invalid"
        assert refusal.attempts_left == FAILED_CODES_MAX - 1   # each one starts a new window
        at += WINDOW
    assert confirm(engine, settings, player, authenticator.at(at), at) is None


def test_an_already_used_code_counts_as_a_wrong_code(engine, settings):
    player = make_player(engine)
    start = datetime.now(UTC)
    authenticator = confirmed(engine, settings, player, start)
    refusal = replace(engine, settings, player, authenticator.at(start), start)
    assert refusal is not None and refusal.refusal.code == "second_factor_invalid"
    assert refusal.attempts_left == FAILED_CODES_MAX - 1


def test_each_wrong_code_is_audited_and_the_lock_is_an_event(engine, settings):
    player = make_player(engine)
    start = datetime.now(UTC)
    authenticator = pending(engine, settings, player, start)
    codes = [wrong(authenticator, start, n) for n in range(FAILED_CODES_MAX + 2)]
    for code in codes:
        confirm(engine, settings, player, code, start)
    assert audit_actions(engine, player.id) == [
        "player.second_factor.enrolment_started",
        *["player.second_factor.wrong_code"] * FAILED_CODES_MAX]   # locked: not counted
    assert events(engine, player.id) == ["player.second_factor.enrolment_started",
                                         "player.second_factor.locked"]
    with engine.connect() as conn:
        records = list(conn.execute(text(
            "SELECT record FROM audit_log WHERE record LIKE :pattern ORDER BY seq"),
            {"pattern": f'%"subject_id":"{player.id}"%'}).scalars())
        payloads = list(conn.execute(text(
            "SELECT payload::text FROM outbox_events WHERE aggregate_id = :id"),
            {"id": player.id}).scalars())
    last = json.loads(records[-1])["after"]
    assert (last["failed_codes"], last["attempts_left"]) == (FAILED_CODES_MAX, 0)
    assert last["locked_until"] == (start + WINDOW).isoformat()
    assert not any(code in text_ for code in codes for text_ in records + payloads)


def test_a_wrong_code_refused_in_a_transaction_that_rolls_back_is_not_counted(engine, settings):
    """The count lives in the caller's transaction (the command never opens its own): the API
    commits it; a caller that rolls back drops it with everything else."""
    player = make_player(engine)
    start = datetime.now(UTC)
    authenticator = pending(engine, settings, player, start)
    with engine.connect() as conn:
        try:
            second_factor.confirm_totp(conn, settings, player.id, wrong(authenticator, start, 0),
                                       actor=ACTOR, now=start)
        except SecondFactorRefused:
            conn.rollback()
    assert enrolment(engine, player)["failed_codes"] == 0
    assert confirm(engine, settings, player, wrong(authenticator, start, 0), start)
    assert enrolment(engine, player)["failed_codes"] == 1
