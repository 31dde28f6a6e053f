"""Keyset pages of a table, newest first, for every list of the API. SQL only.

    LISTING = Listing("players", COLUMNS)
    page = pagination.page(conn, LISTING, query, scope={"partner_id": "p1"},
                           filters={"status": "active"})
    page.rows, page.has_more

A list is ordered by (created, id) descending: a total, stable order (ids are unique), so a
row is never shown twice nor skipped while rows are added between two pages. A cursor is the
id of the last row the client saw (`starting_after`, the next older rows) or of the first
(`ending_before`, the newer rows); the page continues strictly after / before that row's
(created, id), with one row-value comparison an index on (scope..., created DESC, id DESC)
answers as a range scan, however far into the table the page lies. No OFFSET anywhere.

`scope` is the tenant (partner_id): the rows AND the cursor row are looked up under it, so a
cursor naming another partner's row is "not found", exactly like an unknown id. Where the
tenant is not a column (markets: those a partner has bets on), `Condition` is a piece of SQL
from code with its parameters, part of the scope in the same way. `filters` are equality
conditions on the listed rows only (the cursor may be any row of the scope).

Column names come from code (`Listing`, the keys of `scope` and `filters`), never from a
request: they are checked to be plain identifiers. Values are always bound parameters.
Must never: build SQL from a request's text; decide who may see what (the caller's scope).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, RowMapping, text

IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*(\.[a-z_][a-z0-9_]*)?$")


class CursorNotFound(LookupError):
    """`starting_after` / `ending_before` names no row in the caller's scope."""

    def __init__(self, parameter: str, cursor: str) -> None:
        super().__init__(f"{parameter}={cursor!r} names no row in scope")
        self.parameter, self.cursor = parameter, cursor


@dataclass(frozen=True)
class Listing:
    """How one table is listed: its FROM clause, the columns a page returns, and its key."""

    table: str
    columns: str
    id_column: str = "id"
    created_column: str = "created_at"

    def __post_init__(self) -> None:
        for name in (self.table, self.id_column, self.created_column):
            _identifier(name)


@dataclass(frozen=True)
class Condition:
    """A scope condition that is not an equality: SQL written in code (never from a request)
    over the listed table's columns, with its own bound parameters (names prefixed `c_`)."""

    sql: str
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if any(not name.startswith("c_") for name in self.params):
            raise ValueError("a condition's parameters are named c_...")


@dataclass(frozen=True)
class PageQuery:
    """What one request asks of a list (api/pagination.py builds it from the query string)."""

    limit: int
    starting_after: str | None = None
    ending_before: str | None = None
    created_gt: datetime | None = None
    created_gte: datetime | None = None
    created_lt: datetime | None = None
    created_lte: datetime | None = None

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError("a page holds at least one row")
        if self.starting_after is not None and self.ending_before is not None:
            raise ValueError("starting_after and ending_before exclude each other")


@dataclass(frozen=True)
class Page:
    rows: list[RowMapping] = field(default_factory=list)
    has_more: bool = False     # more rows in the direction the page was read


def _identifier(name: str) -> str:
    if not IDENTIFIER.match(name):
        raise ValueError(f"not a plain SQL identifier: {name!r}")
    return name


def _equalities(prefix: str, conditions: Mapping[str, Any],
                params: dict[str, Any]) -> list[str]:
    clauses = []
    for n, (column, value) in enumerate(sorted(conditions.items())):
        name = f"{prefix}{n}"
        clauses.append(f"{_identifier(column)} = :{name}")
        params[name] = value
    return clauses


def page(conn: Connection, listing: Listing, query: PageQuery, *,
         scope: Mapping[str, Any] | None = None, condition: Condition | None = None,
         filters: Mapping[str, Any] | None = None) -> Page:
    """One page of `listing` under `scope` (and `condition`) and `filters`, newest first.
    Raises CursorNotFound when the cursor names no row of the scope."""
    params: dict[str, Any] = {"limit": query.limit + 1}
    scoped = _equalities("s", scope or {}, params)
    if condition is not None:
        scoped.append(f"({condition.sql})")
        params.update(condition.params)
    where = [*scoped, *_equalities("f", filters or {}, params)]
    created, key = listing.created_column, listing.id_column
    for bound, operator in (("created_gt", ">"), ("created_gte", ">="), ("created_lt", "<"),
                            ("created_lte", "<=")):
        value = getattr(query, bound)
        if value is not None:
            where.append(f"{created} {operator} :{bound}")
            params[bound] = value
    cursor = query.starting_after or query.ending_before
    newer = query.ending_before is not None
    if cursor is not None:
        # The cursor row's position, read under the scope in the same statement: a missing
        # cursor compares with NULL and yields no rows (told apart below).
        position = (f"(SELECT {created} FROM {listing.table} WHERE {key} = :cursor"
                    + "".join(f" AND {clause}" for clause in scoped) + ")")
        where.append(f"({created}, {key}) {'>' if newer else '<'} ({position}, :cursor)")
        params["cursor"] = cursor
    order = "ASC" if newer else "DESC"
    sql = (f"SELECT {listing.columns} FROM {listing.table}"
           + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY {created} {order}, {key} {order} LIMIT :limit")
    rows = list(conn.execute(text(sql), params).mappings())
    if not rows and cursor is not None and not _exists(conn, listing, cursor, scope or {},
                                                       condition):
        raise CursorNotFound("ending_before" if newer else "starting_after", cursor)
    has_more = len(rows) > query.limit
    rows = rows[:query.limit]
    if newer:
        rows.reverse()   # shown newest first, like every page
    return Page(rows, has_more)


def _exists(conn: Connection, listing: Listing, row_id: str, scope: Mapping[str, Any],
            condition: Condition | None) -> bool:
    params: dict[str, Any] = {"id": row_id}
    where = [f"{listing.id_column} = :id", *_equalities("s", scope, params)]
    if condition is not None:
        where.append(f"({condition.sql})")
        params.update(condition.params)
    sql = f"SELECT 1 FROM {listing.table} WHERE {' AND '.join(where)}"
    return conn.execute(text(sql), params).first() is not None
