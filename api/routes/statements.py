"""A player's statement out of the ledger: every movement with its running balance, a CSV
export of a period, and the balances at any past moment.

    GET /v1/players/{id}/transactions        cursor pages, newest first (api/pagination.py)
    GET /v1/players/{id}/transactions.csv    a period, oldest first, as text/csv
    GET /v1/players/{id}/balances?at=T       balances per currency as they stood at T

Reads only: the lines and balances come from ledger/statement.py in one REPEATABLE READ
snapshot each; tenant isolation is `visible_player` (another partner's player is a 404).
Must never: write anything; show a hot (house, gateway) account.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from datetime import UTC
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import Connection, Engine

from api.auth import PlayersReader, visible_player
from api.deps import EngineDep
from api.pagination import ListParams, aware, invalid_cursor
from api.problems import PROBLEM_RESPONSES, Problem
from api.schemas.moments import Moment
from api.schemas.statements import (
    CSV_COLUMNS,
    PlayerBalances,
    PlayerTransaction,
    PlayerTransactionList,
)
from commands.players import currency_views
from ledger import Balance, statement
from ledger.statement import Line, Position, StatementQuery
from ledger.types import AccountType

router = APIRouter(prefix="/v1/players", tags=["statements"], responses=PROBLEM_RESPONSES)

ACCOUNT_NAMES = {AccountType.PLAYER_CASH: "cash",
                 AccountType.PLAYER_PENDING_WITHDRAWAL: "pending_withdrawal",
                 AccountType.BETS_IN_PLAY: "bets_in_play", AccountType.PLAYER_DEBT: "debt"}
LINE_ID = re.compile(r"^ptx_([0-9]{1,18})_([0-9]{1,18})$")
CurrencyFilter = Annotated[str | None, Query(pattern=r"^[A-Z]{3}$",
                                             description="Only this currency's accounts.")]


def line_id(line: Line) -> str:
    return f"ptx_{line.position.transaction_id}_{line.position.account_id}"


def line_resource(player_id: str, line: Line) -> dict[str, Any]:
    """The player_transaction resource of a statement line (debt shown as what is owed)."""
    sign = -1 if line.account.type == AccountType.PLAYER_DEBT else 1
    cash = line.account.type == AccountType.PLAYER_CASH
    return {
        "object": "player_transaction", "id": line_id(line), "player_id": player_id,
        "created_at": line.created_at, "kind": line.kind,
        "account": ACCOUNT_NAMES[line.account.type], "currency": line.account.currency,
        "amount": sign * line.amount, "balance": sign * line.balance,
        "held_change": line.held_change, "held": line.held if cash else None,
        "available": line.available if cash else None, "reference": line.reference,
        "ledger_transaction_id": line.position.transaction_id, "ledger_key": line.ledger_key,
        "corrects_ledger_transaction_id": line.corrects_transaction_id,
        "hold_ledger_transaction_id": line.hold_transaction_id, "metadata": line.metadata,
    }


def _position(conn: Connection, owner: str, parameter: str, cursor: str | None) -> \
        Position | None:
    if cursor is None:
        return None
    match = LINE_ID.match(cursor)
    if match is None:
        raise invalid_cursor(parameter, cursor)
    position = Position(int(match[1]), int(match[2]))
    if not statement.transaction_exists_for(conn, owner, position):
        raise invalid_cursor(parameter, cursor)
    return position


def _snapshot(engine: Engine) -> Connection:
    return engine.connect().execution_options(isolation_level="REPEATABLE READ")


@router.get("/{player_id}/transactions", response_model=PlayerTransactionList,
            summary="List a player's transactions",
            description="Every movement of the player's money (cash, pending withdrawal, bets "
                        "in play, debt), newest first, each with the account's running balance.")
def list_transactions(player_id: str, query: ListParams, principal: PlayersReader,
                      engine: EngineDep, currency: CurrencyFilter = None) -> PlayerTransactionList:
    owner = f"player:{player_id}"
    with _snapshot(engine) as conn, conn.begin():
        visible_player(conn, principal, player_id)
        after = _position(conn, owner, "starting_after", query.starting_after)
        before = _position(conn, owner, "ending_before", query.ending_before)
        found = statement.lines(conn, StatementQuery(
            owner=owner, limit=query.limit + 1, after=after, before=before, currency=currency,
            created_gt=query.created_gt, created_gte=query.created_gte,
            created_lt=query.created_lt, created_lte=query.created_lte))
    has_more = len(found) > query.limit
    found = found[:query.limit]
    if before is not None:
        found.reverse()   # read oldest first from the cursor, shown newest first
    return PlayerTransactionList(
        url=f"{router.prefix}/{player_id}/transactions", has_more=has_more,
        data=[PlayerTransaction.model_validate(line_resource(player_id, line))
              for line in found])


CSV_EXAMPLE = (",".join(CSV_COLUMNS) + "\n"
               "ptx_101_7,2026-11-02T10:00:00+00:00,deposit,cash,USD,10000,10000,0,0,10000,"
               "dep_1,101,deposit-dep_1:credit,,\n")


@router.get("/{player_id}/transactions.csv", response_class=StreamingResponse,
            summary="Export a player's transactions of a period as CSV",
            description="Every line of the period `created[gte]` <= t < `created[lt]`, oldest "
                        "first, with running balances: the statement support and regulators "
                        "ask for. Columns: " + ", ".join(CSV_COLUMNS) + ".",
            responses={200: {"description": "The statement as CSV (UTF-8, header row).",
                             "content": {"text/csv": {"example": CSV_EXAMPLE}}}})
def export_transactions(
    player_id: str, principal: PlayersReader, engine: EngineDep,
    period_start: Annotated[Moment, Query(alias="created[gte]",
                                          description="Start of the period (included).")],
    period_end: Annotated[Moment, Query(alias="created[lt]",
                                        description="End of the period (excluded).")],
    currency: CurrencyFilter = None,
) -> StreamingResponse:
    start, end = aware(period_start), aware(period_end)
    if start >= end:
        raise Problem(422, "validation_error", "The request is not valid",
                      "The period must end after it starts.",
                      errors=[{"loc": ["query", "created[lt]"],
                               "message": "must be after created[gte]", "type": "value_error"}])
    conn = _snapshot(engine)
    try:
        conn.begin()
        visible_player(conn, principal, player_id)
    except BaseException:
        conn.close()
        raise

    def rows() -> Iterator[str]:
        try:
            out = io.StringIO()
            writer = csv.writer(out, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for line in statement.iterate(conn, f"player:{player_id}", currency=currency,
                                          created_gte=start, created_lt=end):
                resource = line_resource(player_id, line)
                resource["created_at"] = line.created_at.astimezone(UTC).isoformat()
                writer.writerow(["" if resource[c] is None else resource[c] for c in CSV_COLUMNS])
                if out.tell() > 64_000:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
            yield out.getvalue()
        finally:
            conn.close()

    name = f"{player_id}_{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}.csv"
    return StreamingResponse(rows(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/{player_id}/balances", response_model=PlayerBalances,
            summary="A player's balances at a moment",
            description="The player's money per currency as it stood at `at` (default: now), "
                        "reconstructed from the ledger's entries and holds.")
def balances_at(
    player_id: str, principal: PlayersReader, engine: EngineDep,
    at: Annotated[Moment | None, Query(description="A past moment (ISO 8601); default now.",
                                       examples=["2026-11-01T00:00:00Z"])] = None,
) -> PlayerBalances:
    with _snapshot(engine) as conn, conn.begin():
        visible_player(conn, principal, player_id)
        now = conn.exec_driver_sql("SELECT clock_timestamp()").scalar_one()
        moment = aware(at) or now
        if moment > now:
            raise Problem(422, "validation_error", "The request is not valid",
                          "`at` lies in the future; balances are known up to now.",
                          errors=[{"loc": ["query", "at"], "message": "must not be in the future",
                                   "type": "value_error"}])
        found = statement.balances_at(conn, f"player:{player_id}", moment)
    views = currency_views([Balance(b.account, b.posted, b.held, 0) for b in found])
    return PlayerBalances(player_id=player_id, at=moment, balances=views)
