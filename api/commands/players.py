"""Creating a player: the row, its audit record and its outbox event in one transaction.

The player id is derived from the request's Idempotency-Key when there is one, so a request
run twice (a retry after its first attempt died mid-flight) finds the player it already made
instead of making a second. This module must not decide who may see a player (api/auth.py).
"""

from __future__ import annotations

import uuid

from sqlalchemy import Connection, RowMapping

import audit
import outbox
from api.auth import Principal
from api.problems import Problem
from api.schemas.players import PlayerCreate
from store import players


def partner_for(principal: Principal, requested: str | None) -> str:
    """The partner the new player belongs to: a partner key's own; an operator names one."""
    if principal.is_operator:
        if requested is None:
            raise Problem(422, "validation_error", "The request is not valid",
                          "Operator keys must say which partner the player belongs to.",
                          errors=[{"loc": ["body", "partner_id"], "message": "Field required",
                                   "type": "missing"}])
        return requested
    if requested is not None and requested != principal.partner_id:
        raise Problem(403, "partner_mismatch", "Not your partner",
                      "A partner key creates players for its own partner only.")
    return principal.partner_id  # type: ignore[return-value]


def create_player(conn: Connection, principal: Principal, request: PlayerCreate,
                  operation_id: str | None) -> RowMapping:
    partner_id = partner_for(principal, request.partner_id)
    player_id = "ply_" + (operation_id or uuid.uuid4().hex)[:24]
    row = players.insert(conn, player_id=player_id, partner_id=partner_id,
                         external_ref=request.external_ref, first_name=request.first_name,
                         last_name=request.last_name, email=request.email,
                         date_of_birth=request.date_of_birth, jurisdiction=request.jurisdiction)
    if row is None:
        earlier = players.get(conn, player_id, partner_id=partner_id)
        if earlier is not None:  # this very operation ran before: its player, not a new one
            return earlier
        raise Problem(409, "player_exists", "Player already exists",
                      f"Partner {partner_id!r} already has a player with external_ref "
                      f"{request.external_ref!r}.")
    record = players.as_record(row)
    audit.record(conn, actor=principal.actor, action="player.created", subject_type="player",
                 subject_id=player_id, before=None, after=record)
    # Partner webhooks get the identifiers, not the personal data: they already hold it.
    outbox.emit(conn, event_type="player.created", aggregate_type="player", aggregate_id=player_id,
                payload={"id": player_id, "partner_id": partner_id,
                         "external_ref": request.external_ref, "status": record["status"],
                         "jurisdiction": request.jurisdiction, "created_at": record["created_at"]},
                player_id=player_id, partner_id=partner_id)
    return row
