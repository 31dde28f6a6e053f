"""Lists in Stripe's style, the same for every /v1 list route.

    @router.get("", response_model=PlayerList)
    def list_players(query: ListParams, principal: PlayersReader, engine: EngineDep,
                     partner: PartnerFilter = None, status: ... = None) -> PlayerList:
        tenant = tenancy(principal, partner)           # a partner key sees its own rows only
        with engine.connect() as conn:
            page = read_page(conn, LISTING, query, tenant, filters={"status": status})
        return PlayerList(url="/v1/players", has_more=page.has_more, data=[...])

The request: `limit` (1-100, default 10), `starting_after=<id>` (the next, older page: pass
the last id of the page you have) or `ending_before=<id>` (the previous, newer page: pass its
first id), `created[gt|gte|lt|lte]=<ISO 8601>`, plus each list's own filters (player, status,
partner for operator keys). The answer: `{"object": "list", "url", "has_more", "data": [...]}`,
newest first (created, then id, descending: a total order, so pages never repeat or skip a row
while rows are added). `has_more` says whether more rows lie in the direction read.

The envelope is `api.schemas.lists.ListPage`. Errors: both cursors at once → 422
`validation_error`; a cursor that names no row the key can see (unknown, or another partner's)
→ 400 `invalid_cursor`; a partner key asking for another partner → 403 `partner_mismatch`.
The SQL is store/pagination.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import Connection

from api.auth import Principal
from api.problems import Problem
from api.schemas.moments import Moment
from store import pagination
from store.pagination import Condition, Listing, Page, PageQuery

DEFAULT_LIMIT = 10
MAX_LIMIT = 100

def _created(bound: str, meaning: str) -> Any:
    return Query(alias=f"created[{bound}]",
                 description=f"Only items created {meaning} this moment (ISO 8601).",
                 examples=["2026-11-01T00:00:00Z"])


def list_query(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page (1-100).")]
    = DEFAULT_LIMIT,
    starting_after: Annotated[str | None, Query(
        min_length=1, max_length=128,
        description="An item id: the page of items that follow it (older ones).")] = None,
    ending_before: Annotated[str | None, Query(
        min_length=1, max_length=128,
        description="An item id: the page of items that precede it (newer ones).")] = None,
    created_gt: Annotated[Moment | None, _created("gt", "after")] = None,
    created_gte: Annotated[Moment | None, _created("gte", "at or after")] = None,
    created_lt: Annotated[Moment | None, _created("lt", "before")] = None,
    created_lte: Annotated[Moment | None, _created("lte", "at or before")] = None,
) -> PageQuery:
    if starting_after is not None and ending_before is not None:
        raise Problem(422, "validation_error", "The request is not valid",
                      "Send starting_after or ending_before, not both.",
                      errors=[{"loc": ["query", "ending_before"],
                               "message": "starting_after and ending_before exclude each other",
                               "type": "value_error"}])
    return PageQuery(limit=limit, starting_after=starting_after, ending_before=ending_before,
                     created_gt=aware(created_gt), created_gte=aware(created_gte),
                     created_lt=aware(created_lt), created_lte=aware(created_lte))


def aware(moment: datetime | None) -> datetime | None:
    """A moment sent without a UTC offset is read as UTC (the API's time zone)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


ListParams = Annotated[PageQuery, Depends(list_query)]
PartnerFilter = Annotated[str | None, Query(
    min_length=1, max_length=64,
    description="Operator keys: only this partner's items. Partner keys see their own anyway "
                "(naming another partner is 403 partner_mismatch).")]


@dataclass(frozen=True)
class Tenancy:
    """Which rows of a list a key may page through (`scope`: the cursor is looked up under it
    too) and the partner an operator narrowed the list to (`filters`: the listed rows only)."""

    scope: dict[str, str]
    filters: dict[str, str]


def tenancy(principal: Principal, partner: str | None) -> Tenancy:
    """A partner key: its own partner, always. An operator key: every partner, or the one it
    names (as a filter: its cursor may still be any row)."""
    if principal.is_operator:
        return Tenancy({}, {} if partner is None else {"partner_id": partner})
    if principal.partner_id is None or partner not in (None, principal.partner_id):
        raise Problem(403, "partner_mismatch", "Not your partner",
                      "A partner key lists its own partner's items only.")
    return Tenancy({"partner_id": principal.partner_id}, {})


def read_page(conn: Connection, listing: Listing, query: PageQuery, tenant: Tenancy,
              filters: dict[str, Any] | None = None, *,
              condition: Condition | None = None) -> Page:
    """A page of `listing` for a tenancy (a scope `condition` where the tenant is no column);
    filters whose value is None are left out."""
    chosen = {column: value for column, value in (filters or {}).items() if value is not None}
    try:
        return pagination.page(conn, listing, query, scope=tenant.scope, condition=condition,
                               filters={**chosen, **tenant.filters})
    except pagination.CursorNotFound as missing:
        raise invalid_cursor(missing.parameter, missing.cursor) from missing


def invalid_cursor(parameter: str, cursor: str) -> Problem:
    return Problem(400, "invalid_cursor", "Unknown cursor",
                   f"{parameter}={cursor!r} names no item of this list that this key can see.")
