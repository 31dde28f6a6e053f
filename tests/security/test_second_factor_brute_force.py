"""Guessing a withdrawal's second factor is locked out: three wrong codes cancel the withdrawal
and release its hold, whatever the guesser does -- guessing in turn, all at once, with a code
of another withdrawal, or against an authenticator (TOTP) -- and the right code afterwards
pays nothing.

Guessing an enrolment's codes is locked out too (security finding: unlimited TOTP guesses):
FAILED_CODES_MAX wrong first codes of a new authenticator, or wrong codes of the current one
offered to replace it, lock both (429 second_factor_locked, Retry-After) until the window
passes; each refusal's count is committed, in turn or all at once."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp
from sqlalchemy import text

from commands.second_factor import FAILED_CODES_MAX, FAILED_CODES_WINDOW_SECONDS
from tests.support.factories import (
    Player,
    audit_actions,
    balance,
    events,
    ledger_violations,
    make_player,
)
from tests.support.stack import Stack
from tests.support.withdrawals import FINAL, code_for, ready_player, start, submit, wait_state

CASH = 5_000
UNTOUCHED = {"cash": CASH, "held": 0, "available": CASH, "pending_withdrawal": 0,
             "pending_withdrawal_incoming": 0}


def guesses(right: str, count: int) -> list[str]:
    """`count` different wrong codes."""
    return [f"{(int(right) + n) % 1_000_000:06d}" for n in range(1, count + 1)]


async def locked_out(stack: Stack, http: httpx.AsyncClient, player: Player,
                     withdrawal_id: str, right: str) -> None:
    """The withdrawal is cancelled for failed codes, the right code is refused, nothing paid."""
    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert (done["state"], done["reason_code"]) == ("cancelled", "second_factor_failed")
    late = await submit(http, player, withdrawal_id, right)
    assert late.status_code == 409, late.text
    assert balance(stack.engine, player) == UNTOUCHED
    assert [s["outcome"] for s in done["steps"] if s["step"] == "second_factor"].count(
        "wrong_code") == 3
    assert events(stack.engine, withdrawal_id) == ["withdrawal.created", "withdrawal.cancelled"]
    assert ledger_violations(stack.engine) == []


async def test_guessing_codes_in_turn_is_stopped_after_three(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = ready_player(stack, cash=CASH)
    withdrawal_id = (await start(http, player, 3_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    right = await code_for(stack, player, withdrawal_id)
    answers = [await submit(http, player, withdrawal_id, code) for code in guesses(right, 10)]
    assert [(a.status_code, a.json().get("attempts_left")) for a in answers[:3]] == [
        (422, 2), (422, 1), (422, 0)]
    assert [a.status_code for a in answers[3:]] == [409] * 7
    await locked_out(stack, http, player, withdrawal_id, right)


async def test_a_burst_of_concurrent_guesses_is_counted_and_locked_out_after_three(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = ready_player(stack, cash=CASH)
    withdrawal_id = (await start(http, player, 3_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    right = await code_for(stack, player, withdrawal_id)
    answers = await asyncio.gather(*(submit(http, player, withdrawal_id, code)
                                     for code in guesses(right, 12)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(200) == 0 and statuses.count(422) <= 3, [a.text for a in answers]
    assert set(statuses) <= {409, 422}
    await locked_out(stack, http, player, withdrawal_id, right)


async def test_the_code_of_another_withdrawal_is_a_wrong_code(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = ready_player(stack, cash=CASH)
    first = (await start(http, player, 1_000))["id"]
    await wait_state(http, player, first, ("awaiting_2fa",))
    first_code = await code_for(stack, player, first)
    second, second_code = "", first_code
    while second_code == first_code:   # the same code by chance (one in a million): again
        if second:
            await http.post(f"/v1/withdrawals/{second}/cancel", headers=player.headers, json={})
        second = (await start(http, player, 1_000))["id"]
        await wait_state(http, player, second, ("awaiting_2fa",))
        second_code = await code_for(stack, player, second)
    crossed = await submit(http, player, second, first_code)
    assert crossed.status_code == 422, crossed.text
    assert crossed.json()["code"] == "second_factor_invalid"
    assert crossed.json()["attempts_left"] == 2
    assert (await submit(http, player, first, first_code)).status_code == 200
    assert (await wait_state(http, player, first, FINAL))["state"] == "paid"
    for code in guesses(second_code, 2):
        assert (await submit(http, player, second, code)).status_code == 422
    done = await wait_state(http, player, second, FINAL)
    assert (done["state"], done["reason_code"]) == ("cancelled", "second_factor_failed")
    assert balance(stack.engine, player)["available"] == CASH - 1_000
    assert ledger_violations(stack.engine) == []


async def test_guessing_against_an_authenticator_is_locked_out_after_three(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = ready_player(stack, cash=CASH)
    enrolled = await http.post(f"/v1/players/{player.id}/2fa/totp", headers=player.headers,
                               json={})
    assert enrolled.status_code == 201, enrolled.text
    uri = enrolled.json()["provisioning_uri"]
    authenticator = pyotp.TOTP(parse_qs(urlparse(uri).query)["secret"][0])
    now = time.time()
    confirmed = await http.post(f"/v1/players/{player.id}/2fa/totp/confirm",
                                headers=player.headers, json={"code": authenticator.at(now)})
    assert confirmed.status_code == 200, confirmed.text

    withdrawal_id = (await start(http, player, 3_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    valid = {authenticator.at(now + step * 30) for step in (-1, 0, 1, 2)}
    wrong = [code for code in guesses(authenticator.at(now), 20) if code not in valid][:6]
    answers = [await submit(http, player, withdrawal_id, code) for code in wrong]
    assert [a.status_code for a in answers] == [422, 422, 422, 409, 409, 409]
    done = await wait_state(http, player, withdrawal_id, FINAL)
    assert (done["state"], done["reason_code"]) == ("cancelled", "second_factor_failed")
    late = await submit(http, player, withdrawal_id, authenticator.at(time.time() + 30))
    assert late.status_code == 409, late.text
    assert balance(stack.engine, player) == UNTOUCHED
    assert ledger_violations(stack.engine) == []


def authenticator_of(answer: httpx.Response) -> pyotp.TOTP:
    assert answer.status_code == 201, answer.text
    return pyotp.TOTP(parse_qs(urlparse(answer.json()["provisioning_uri"]).query)["secret"][0])


def wrong_codes(authenticator: pyotp.TOTP, count: int) -> list[str]:
    """`count` different codes that are none of the authenticator's for the next minutes."""
    now = time.time()
    valid = {authenticator.at(now + step * 30) for step in range(-1, 10)}
    return [code for code in guesses(authenticator.at(now), count + len(valid))
            if code not in valid][:count]


def lock_of(stack: Stack, player: Player) -> tuple[int, object]:
    with stack.engine.connect() as conn:
        row = conn.execute(text("SELECT failed_codes, locked_until FROM totp_enrolments "
                                "WHERE player_id = :p"), {"p": player.id}).one()
    return row.failed_codes, row.locked_until


def the_window_passes(stack: Stack, player: Player) -> None:
    """What FAILED_CODES_WINDOW_SECONDS of waiting does to the lock."""
    with stack.engine.begin() as conn:
        conn.execute(text("UPDATE totp_enrolments SET locked_until = now() - interval '1 second'"
                          " WHERE player_id = :p"), {"p": player.id})


async def test_guessing_an_enrolment_s_first_code_is_locked_out_and_each_refusal_is_counted(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine)
    authenticator = authenticator_of(await http.post(
        f"/v1/players/{player.id}/2fa/totp", headers=player.headers, json={}))
    confirm_url = f"/v1/players/{player.id}/2fa/totp/confirm"
    answers = [await http.post(confirm_url, headers=player.headers, json={"code": code})
               for code in wrong_codes(authenticator, FAILED_CODES_MAX)]
    assert [(a.status_code, a.json()["code"], a.json()["attempts_left"]) for a in answers] == [
        (422, "second_factor_invalid", left) for left in range(FAILED_CODES_MAX - 1, -1, -1)]
    # Every refusal's count was committed: the lock is in the database.
    failed, locked_until = lock_of(stack, player)
    assert failed == 0 and locked_until is not None

    # Locked: the right code is refused (on the alias path too), and says when to come back.
    for path in (confirm_url, f"/v1/players/{player.id}/second_factor/totp/confirm"):
        locked = await http.post(path, headers=player.headers,
                                 json={"code": authenticator.now()})
        assert locked.status_code == 429, locked.text
        assert locked.json()["code"] == "second_factor_locked"
        assert 0 < int(locked.headers["Retry-After"]) <= FAILED_CODES_WINDOW_SECONDS
    assert audit_actions(stack.engine, player.id).count(
        "player.second_factor.wrong_code") == FAILED_CODES_MAX
    assert events(stack.engine, player.id) == ["player.second_factor.enrolment_started",
                                               "player.second_factor.locked"]

    the_window_passes(stack, player)
    right = await http.post(confirm_url, headers=player.headers,
                            json={"code": authenticator.now()})
    assert right.status_code == 200 and right.json()["state"] == "confirmed", right.text
    assert lock_of(stack, player) == (0, None)
    assert ledger_violations(stack.engine) == []


async def test_a_burst_of_guesses_at_the_current_code_locks_the_replacement_after_the_maximum(
        stack: Stack, worker, http: httpx.AsyncClient) -> None:
    player = make_player(stack.engine)
    enrol_url = f"/v1/players/{player.id}/2fa/totp"
    authenticator = authenticator_of(await http.post(enrol_url, headers=player.headers,
                                                     json={}))
    confirmed = await http.post(f"{enrol_url}/confirm", headers=player.headers,
                                json={"code": authenticator.now()})
    assert confirmed.status_code == 200, confirmed.text

    answers = await asyncio.gather(*(
        http.post(enrol_url, headers=player.headers, json={"code": code})
        for code in wrong_codes(authenticator, 3 * FAILED_CODES_MAX)))
    statuses = [a.status_code for a in answers]
    assert statuses.count(422) == FAILED_CODES_MAX, [a.text for a in answers]
    assert statuses.count(429) == 2 * FAILED_CODES_MAX, [a.text for a in answers]
    assert sorted(a.json()["attempts_left"] for a in answers if a.status_code == 422) == list(
        range(FAILED_CODES_MAX))
    # The right code of the current authenticator is refused while locked: no new secret.
    later = authenticator.at(time.time() + 30)
    locked = await http.post(enrol_url, headers=player.headers, json={"code": later})
    assert locked.status_code == 429 and locked.json()["code"] == "second_factor_locked"
    assert "provisioning_uri" not in locked.text
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT pending_secret_encrypted FROM totp_enrolments "
                                 "WHERE player_id = :p"), {"p": player.id}).scalar() is None

    the_window_passes(stack, player)
    replaced = await http.post(enrol_url, headers=player.headers, json={"code": later})
    assert replaced.status_code == 201, replaced.text
    assert ledger_violations(stack.engine) == []
