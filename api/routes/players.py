"""/v1/players: create a player, read one (profile and balances per currency).

HTTP in, command or view out: the rules live in api/commands/players.py (create) and
api/views/players.py (what a player looks like). Partner keys see only their own players.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Response
from sqlalchemy import Engine

from api.auth import Principal, require, visible_player
from api.commands.players import create_player
from api.deps import get_engine
from api.idempotency import IdempotencyKey, optional_idempotency_key
from api.problems import PROBLEM_RESPONSES
from api.schemas.players import Player, PlayerCreate
from api.scopes import Scope
from api.views.players import player_view
from settlepay.db import run_in_transaction

router = APIRouter(prefix="/v1/players", tags=["players"], responses=PROBLEM_RESPONSES)


@router.post("", status_code=201, response_model=Player, summary="Create a player")
def create(body: PlayerCreate, response: Response,
           principal: Principal = Depends(require(Scope.PLAYERS_WRITE)),
           idem: IdempotencyKey | None = Depends(optional_idempotency_key),
           engine: Engine = Depends(get_engine)) -> Player:
    def work(conn):
        row = create_player(conn, principal, body, idem.operation_id if idem else None)
        return player_view(conn, row)

    player = run_in_transaction(engine, work)
    response.headers["Location"] = f"/v1/players/{player.id}"
    return player


@router.get("/{player_id}", response_model=Player, summary="Retrieve a player")
def retrieve(player_id: str, principal: Principal = Depends(require(Scope.PLAYERS_READ)),
             engine: Engine = Depends(get_engine)) -> Player:
    # One REPEATABLE READ snapshot: the balances of all currencies are from the same moment.
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            return player_view(conn, visible_player(conn, principal, player_id))
