"""The second factor cannot be bypassed (issue 9, item 11), end to end: a TOTP enrolment is
pending until a first code confirms it, a confirmed factor is replaced only with a code of it, a
TOTP code is accepted once, and a payout goes only to a destination recorded for the player."""

from __future__ import annotations

import time
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp
from sqlalchemy import text

from tests.support.factories import events, ledger_violations, make_player
from tests.support.withdrawals import (
    FINAL,
    add_destination,
    confirm,
    ready_player,
    start,
    submit,
    wait_state,
)


async def enrol(http: httpx.AsyncClient, player, code: str | None = None) -> httpx.Response:
    return await http.post(f"/v1/players/{player.id}/2fa/totp", headers=player.headers,
                           json={} if code is None else {"code": code})


def secret_of(answer: httpx.Response) -> str:
    assert answer.status_code == 201, answer.text
    return parse_qs(urlparse(answer.json()["provisioning_uri"]).query)["secret"][0]


async def confirm_enrolment(http: httpx.AsyncClient, player, code: str) -> httpx.Response:
    return await http.post(f"/v1/players/{player.id}/2fa/totp/confirm", headers=player.headers,
                           json={"code": code})


async def cancel(http: httpx.AsyncClient, player, withdrawal_id: str) -> None:
    answer = await http.post(f"/v1/withdrawals/{withdrawal_id}/cancel", headers=player.headers)
    assert answer.status_code == 200, answer.text


async def test_a_totp_enrolment_is_pending_until_its_first_code_confirms_it(stack, worker, http):
    player = ready_player(stack, cash=3_000)
    answer = await enrol(http, player)
    secret = secret_of(answer)
    assert answer.json()["state"] == "pending"

    # Pending: the player's factor is still the one-time code sent by notification.
    first = (await start(http, player, 1_000))["id"]
    assert (await wait_state(http, player, first, ("awaiting_2fa",)))["second_factor"] == "code"
    await cancel(http, player, first)

    wrong = await confirm_enrolment(http, player,
                                    f"{(int(pyotp.TOTP(secret).now()) + 1) % 1_000_000:06d}")
    assert wrong.status_code == 422 and wrong.json()["code"] == "second_factor_invalid"
    right = await confirm_enrolment(http, player, pyotp.TOTP(secret).now())
    assert right.status_code == 200 and right.json()["state"] == "confirmed", right.text
    # The same alias path answers the same resource.
    again = await http.post(f"/v1/players/{player.id}/second_factor/totp/confirm",
                            headers=player.headers, json={"code": pyotp.TOTP(secret).now()})
    assert again.status_code == 409 and again.json()["code"] == "second_factor_not_pending"

    second = (await start(http, player, 1_000))["id"]
    assert (await wait_state(http, player, second, ("awaiting_2fa",)))["second_factor"] == "totp"
    await cancel(http, player, second)
    assert ledger_violations(stack.engine) == []


async def test_a_confirmed_factor_is_replaced_only_with_a_code_of_it(stack, worker, http):
    player = ready_player(stack, cash=2_000)
    current = pyotp.TOTP(secret_of(await enrol(http, player)))
    now = time.time()
    assert (await confirm_enrolment(http, player, current.at(now))).status_code == 200

    without = await enrol(http, player)
    assert without.status_code == 409 and without.json()["code"] == "totp_already_enrolled"
    assert "otpauth" not in without.text
    wrong = await enrol(http, player, f"{(int(current.at(now + 30)) + 1) % 1_000_000:06d}")
    assert wrong.status_code == 422 and wrong.json()["code"] == "second_factor_invalid"
    assert "otpauth" not in wrong.text
    # A code of the current factor authorises a new one, pending until its own first code.
    replacement = pyotp.TOTP(secret_of(await enrol(http, player, current.at(now + 30))))
    assert replacement.secret != current.secret
    assert (await confirm_enrolment(http, player, replacement.at(now))).status_code == 200

    # The replacement is the factor now: the old authenticator's codes are refused.
    withdrawal_id = (await start(http, player, 1_000))["id"]
    await wait_state(http, player, withdrawal_id, ("awaiting_2fa",))
    old = await submit(http, player, withdrawal_id, current.at(now + 60))
    assert old.status_code == 422 and old.json()["code"] == "second_factor_invalid"
    new = await submit(http, player, withdrawal_id, replacement.at(now + 30))
    assert new.status_code == 200, new.text
    assert (await wait_state(http, player, withdrawal_id, FINAL))["state"] == "paid"
    assert ledger_violations(stack.engine) == []


async def test_a_totp_code_is_accepted_once(stack, worker, http):
    player = ready_player(stack, cash=3_000)
    authenticator = pyotp.TOTP(secret_of(await enrol(http, player)))
    now = time.time()
    confirming, following = authenticator.at(now), authenticator.at(now + 30)
    assert (await confirm_enrolment(http, player, confirming)).status_code == 200

    first = (await start(http, player, 1_000))["id"]
    await wait_state(http, player, first, ("awaiting_2fa",))
    # The code that confirmed the enrolment is used up.
    reused = await submit(http, player, first, confirming)
    assert reused.status_code == 422 and reused.json()["attempts_left"] == 2
    assert (await submit(http, player, first, following)).status_code == 200
    assert (await wait_state(http, player, first, FINAL))["state"] == "paid"

    # Seen once, `following` is refused on the next withdrawal although still in its window.
    second = (await start(http, player, 1_000))["id"]
    await wait_state(http, player, second, ("awaiting_2fa",))
    replayed = await submit(http, player, second, following)
    assert replayed.status_code == 422 and replayed.json()["code"] == "second_factor_invalid"
    await cancel(http, player, second)
    assert ledger_violations(stack.engine) == []


async def test_a_payout_destination_not_recorded_for_the_player_is_refused_and_nothing_is_written(
        stack, worker, http):
    player = ready_player(stack, cash=2_000)
    refused = await http.post("/v1/withdrawals", headers={
        **player.headers, "Idempotency-Key": uuid.uuid4().hex}, json={
        "player_id": player.id, "amount": 1_000, "currency": "USD",
        "payout_destination": "ba_someone_elses_account"})
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "payout_destination_unknown"
    with stack.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM withdrawals WHERE player_id = :p"),
                            {"p": player.id}).scalar() == 0

    # Another partner cannot record a destination for this player.
    stranger = make_player(stack.engine)
    foreign = await http.post(f"/v1/players/{player.id}/payout_destinations",
                              headers=stranger.headers, json={"destination": "ba_stranger"})
    assert foreign.status_code == 404
    await add_destination(http, player, "ba_player_account")
    listed = await http.get(f"/v1/players/{player.id}/payout_destinations",
                            headers=player.headers)
    assert [d["destination"] for d in listed.json()["data"]] == ["ba_player_account"]
    assert "player.payout_destination_added" in events(stack.engine, player.id)

    withdrawal_id = (await start(http, player, 1_000,
                                 payout_destination="ba_player_account"))["id"]
    done = await confirm(stack, http, player, withdrawal_id)
    assert done["state"] == "paid"
    payout = stack.gateway().retrieve_payout(done["payouts"][0]["gateway_ref"])
    assert payout.destination == "ba_player_account"
    assert ledger_violations(stack.engine) == []
