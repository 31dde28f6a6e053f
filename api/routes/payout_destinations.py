"""/v1/players/{id}/payout_destinations: the bank accounts a player's payouts may go to.

A withdrawal's `payout_destination` must be one of these (422 `payout_destination_unknown`
otherwise). Recording one writes its audit record and event (commands/withdrawals.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import Connection, RowMapping
from starlette.concurrency import run_in_threadpool

from api.auth import WithdrawalsWriter, visible_player
from api.deps import EngineDep
from api.problems import PROBLEM_RESPONSES
from api.schemas.withdrawals import PayoutDestination, PayoutDestinationIn, PayoutDestinationList
from commands import withdrawals as commands
from settlepay.db import run_in_transaction
from store import withdrawals as store

router = APIRouter(prefix="/v1/players", tags=["withdrawals"], responses=PROBLEM_RESPONSES)


@router.post("/{player_id}/payout_destinations", status_code=201,
             response_model=PayoutDestination, summary="Record a payout destination",
             responses={200: {"model": PayoutDestination,
                              "description": "Already recorded: the existing destination"}})
async def add(player_id: str, body: PayoutDestinationIn, response: Response,
              principal: WithdrawalsWriter, engine: EngineDep) -> dict[str, Any]:
    def work(conn: Connection) -> tuple[RowMapping, bool]:
        player = visible_player(conn, principal, player_id)
        return commands.add_payout_destination(conn, player, body.destination,
                                               actor=principal.actor)

    row, created = await run_in_threadpool(run_in_transaction, engine, work)
    if not created:
        response.status_code = 200
    return dict(row)


@router.get("/{player_id}/payout_destinations", response_model=PayoutDestinationList,
            summary="The player's payout destinations")
def list_destinations(player_id: str, principal: WithdrawalsWriter,
                      engine: EngineDep) -> dict[str, Any]:
    with engine.connect() as conn:
        visible_player(conn, principal, player_id)
        return {"data": [dict(row) for row in store.destinations(conn, player_id)]}
