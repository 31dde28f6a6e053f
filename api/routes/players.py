"""/v1/players: create a player, read one (profile, balances per currency, KYC status), list
them (api/pagination.py: newest first, cursor pages, filters by status, external_ref, created
range and, for operator keys, partner).

HTTP in, command out: creating is `commands.players.create_player`, the resource is
`commands.players.player_payload`. Which partner a key may create players for is decided here;
which players a key may see, in api/auth.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response
from sqlalchemy import Connection

from api.auth import PlayersReader, PlayersWriter, Principal, visible_player
from api.deps import EngineDep
from api.idempotency import IdempotencyKey, optional_idempotency_key
from api.openapi_links import links, to
from api.pagination import ListParams, PartnerFilter, read_page, tenancy
from api.problems import PROBLEM_RESPONSES, Problem, refused
from api.schemas.players import Player, PlayerCreate, PlayerList, PlayerStatus
from commands.players import (
    NewPlayer,
    PlayerExists,
    create_player,
    player_payload,
    player_payloads,
)
from settlepay.db import run_in_transaction
from store import players as store

router = APIRouter(prefix="/v1/players", tags=["players"], responses=PROBLEM_RESPONSES)

OptionalIdempotencyKey = Annotated[IdempotencyKey | None, Depends(optional_idempotency_key)]


def partner_for(principal: Principal, requested: str | None) -> str:
    """The partner the new player belongs to: a partner key's own; an operator names one."""
    if principal.is_operator:
        if requested is None:
            raise Problem(422, "validation_error", "The request is not valid",
                          "Operator keys must say which partner the player belongs to.",
                          errors=[{"loc": ["body", "partner_id"], "message": "Field required",
                                   "type": "missing"}])
        return requested
    if principal.partner_id is None or requested not in (None, principal.partner_id):
        raise Problem(403, "partner_mismatch", "Not your partner",
                      "A partner key creates players for its own partner only.")
    return principal.partner_id


@router.post("", status_code=201, response_model=Player, summary="Create a player",
             responses=links(201, retrieve=to("GET", "/v1/players/{player_id}",
                                              player_id="$response.body#/id"),
                             deposit=to("POST", "/v1/deposits",
                                        request_body={"player_id": "$response.body#/id"})))
def create(body: PlayerCreate, response: Response, principal: PlayersWriter,
           idem: OptionalIdempotencyKey, engine: EngineDep) -> Player:
    partner_id = partner_for(principal, body.partner_id)
    details = NewPlayer(**body.model_dump(exclude={"partner_id"}))

    def work(conn: Connection) -> Player:
        row = create_player(conn, details, partner_id=partner_id, actor=principal.actor,
                            operation_id=idem.operation_id if idem else None)
        return Player.model_validate(player_payload(conn, row))

    try:
        player = run_in_transaction(engine, work)
    except PlayerExists as exists:
        raise refused(exists.refusal, "Player already exists") from exists
    response.headers["Location"] = f"/v1/players/{player.id}"
    return player


@router.get("/{player_id}", response_model=Player, summary="Retrieve a player")
def retrieve(player_id: str, principal: PlayersReader, engine: EngineDep) -> Player:
    # One REPEATABLE READ snapshot: the balances of all currencies are from the same moment.
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            return Player.model_validate(
                player_payload(conn, visible_player(conn, principal, player_id)))


@router.get("", response_model=PlayerList, summary="List players",
            description="The players this key can see, newest first, a page at a time.")
def list_players(
    query: ListParams, principal: PlayersReader, engine: EngineDep,
    partner: PartnerFilter = None,
    status: Annotated[PlayerStatus | None, Query(description="Only players in this status.")]
    = None,
    external_ref: Annotated[str | None, Query(
        min_length=1, max_length=128, description="The player with this external_ref.")] = None,
) -> PlayerList:
    tenant = tenancy(principal, partner)
    with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        with conn.begin():
            page = read_page(conn, store.LISTING, query, tenant,
                             filters={"status": status, "external_ref": external_ref})
            data = player_payloads(conn, page.rows)
    return PlayerList(url=router.prefix, has_more=page.has_more,
                      data=[Player.model_validate(item) for item in data])
