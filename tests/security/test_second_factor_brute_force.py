"""Guessing a withdrawal's second factor is locked out: three wrong codes cancel the withdrawal
and release its hold, whatever the guesser does -- guessing in turn, all at once, with a code
of another withdrawal, or against an authenticator (TOTP) -- and the right code afterwards
pays nothing."""

from __future__ import annotations

import asyncio
import time
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp

from tests.support.factories import Player, balance, events, ledger_violations
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
