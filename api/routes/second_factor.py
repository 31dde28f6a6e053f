"""The second factor: TOTP enrolment, confirmed by a first code.

    POST /v1/players/{id}/2fa/totp            {code?} -> 201 provisioning URI (pending), once
    POST /v1/players/{id}/2fa/totp/confirm    {code}  -> the first code makes it the factor
    (also under /v1/players/{id}/second_factor/...)

A new enrolment is pending until confirmed; until then the player's factor for withdrawals is
the one-time code sent by notification. Once a factor is confirmed, enrolling another needs a
code of it. The secret is sealed at rest and never shown again; answers carrying it are not kept
for Idempotency-Key replay. The rules and the audit records are commands/second_factor.py's.

Wrong codes (a first code, or the current factor's code to replace it) are counted; too many
lock both for a while: 429 `second_factor_locked` with Retry-After. A refusal's transaction is
committed before the refusal is answered, so its wrong code stays counted.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import Connection, RowMapping
from starlette.concurrency import run_in_threadpool

from api.auth import PlayersWriter, visible_player
from api.deps import EngineDep, SettingsDep
from api.problems import DISCARD_SCOPE_KEY, PROBLEM_RESPONSES, Problem, refused
from api.schemas.second_factor import SecondFactor, TotpConfirmIn, TotpEnrolment, TotpEnrolmentIn
from commands import second_factor
from commands.second_factor import SecondFactorRefused
from settlepay.db import run_in_transaction

router = APIRouter(prefix="/v1/players", tags=["second factor"], responses=PROBLEM_RESPONSES)


@router.post("/{player_id}/2fa/totp", status_code=201, response_model=TotpEnrolment,
             summary="Enrol the player in TOTP (pending until confirmed)")
@router.post("/{player_id}/second_factor/totp", status_code=201, response_model=TotpEnrolment,
             summary="Enrol the player in TOTP (same as /2fa/totp)")
async def enrol_totp(player_id: str, request: Request, principal: PlayersWriter,
                     engine: EngineDep, settings: SettingsDep,
                     body: TotpEnrolmentIn | None = None) -> TotpEnrolment:
    request.scope[DISCARD_SCOPE_KEY] = True   # never store an answer that carries the secret

    def work(conn: Connection) -> tuple[RowMapping, str] | SecondFactorRefused:
        player = visible_player(conn, principal, player_id)
        try:
            secret = second_factor.begin_totp(conn, settings, player_id, actor=principal.actor,
                                              current_code=body.code if body else None)
        except SecondFactorRefused as error:
            return error        # committed: a wrong code stays counted
        return player, secret

    outcome = await run_in_threadpool(run_in_transaction, engine, work)
    if isinstance(outcome, SecondFactorRefused):
        raise _refused(outcome, "TOTP enrolment refused")
    player, secret = outcome
    uri = second_factor.provisioning_uri(secret, label=player["email"] or player_id,
                                         issuer=settings.totp_issuer)
    return TotpEnrolment(player_id=player_id, provisioning_uri=uri)


@router.post("/{player_id}/2fa/totp/confirm", response_model=SecondFactor,
             summary="Confirm a TOTP enrolment with its first code")
@router.post("/{player_id}/second_factor/totp/confirm", response_model=SecondFactor,
             summary="Confirm a TOTP enrolment with its first code (same as /2fa/totp/confirm)")
async def confirm_totp(player_id: str, body: TotpConfirmIn, principal: PlayersWriter,
                       engine: EngineDep, settings: SettingsDep) -> SecondFactor:
    def work(conn: Connection) -> SecondFactorRefused | None:
        visible_player(conn, principal, player_id)
        try:
            second_factor.confirm_totp(conn, settings, player_id, body.code,
                                       actor=principal.actor)
        except SecondFactorRefused as error:
            return error        # committed: a wrong code stays counted
        return None

    refusal = await run_in_threadpool(run_in_transaction, engine, work)
    if refusal is not None:
        raise _refused(refusal, "TOTP confirmation refused")
    return SecondFactor(player_id=player_id)


def _refused(error: SecondFactorRefused, title: str) -> Problem:
    """The refusal's problem: `attempts_left` after a wrong code, Retry-After when locked."""
    problem = refused(error.refusal, title, extensions=None if error.attempts_left is None
                      else {"attempts_left": error.attempts_left})
    if error.retry_after_seconds is not None:
        problem.headers = {"Retry-After": str(error.retry_after_seconds)}
    return problem
