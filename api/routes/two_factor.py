"""TOTP enrolment: POST /v1/players/{id}/2fa/totp returns a provisioning URI, once.

The secret is sealed at rest (store/totp.py) and never returned again: a second enrolment is a
409, and the answer is not kept for Idempotency-Key replay (it holds the secret).
Players without TOTP get a one-time code by notification when they withdraw.
"""

from __future__ import annotations

from typing import Any

import pyotp
from fastapi import APIRouter, Depends, Request
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool

import audit
from api.auth import Principal, require, visible_player
from api.deps import get_engine, get_settings
from api.problems import DISCARD_SCOPE_KEY, PROBLEM_RESPONSES, Problem
from api.scopes import Scope
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import totp

router = APIRouter(prefix="/v1/players", tags=["two-factor"], responses=PROBLEM_RESPONSES)


@router.post("/{player_id}/2fa/totp", status_code=201, summary="Enrol the player in TOTP")
async def enrol_totp(player_id: str, request: Request,
                     principal: Principal = Depends(require(Scope.PLAYERS_WRITE)),
                     engine: Engine = Depends(get_engine),
                     settings: Settings = Depends(get_settings)) -> dict[str, Any]:
    request.scope[DISCARD_SCOPE_KEY] = True   # never store an answer that carries the secret
    secret = pyotp.random_base32()

    def work(conn):  # noqa: ANN001, ANN202
        player = visible_player(conn, principal, player_id)
        if not totp.enrol(conn, player_id, totp.seal(settings.totp_encryption_key, secret)):
            raise Problem(409, "totp_already_enrolled", "TOTP already enrolled",
                          "The player already has an authenticator; the secret is not shown again.")
        audit.record(conn, actor=principal.actor, action="player.totp_enrolled", subject_type="player",
                     subject_id=player_id, before=None, after={"second_factor": "totp"})
        return player

    player = await run_in_threadpool(run_in_transaction, engine, work)
    label = player["email"] or player_id
    return {"object": "totp_enrolment", "player_id": player_id,
            "provisioning_uri": pyotp.TOTP(secret).provisioning_uri(name=label, issuer_name=settings.totp_issuer)}
