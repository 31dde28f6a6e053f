"""/v1/markets/{market_id}: post a result version (starts settlement or resettlement), roll a
settlement back, reopen a market for betting, read where a market's settlement stands.

Who may do what (issue 9 item 8). A market belongs to no partner: it is the house's (one feed
result settles every partner's bets on it), so only the house changes it:
- POST .../results    operator keys with `results:write`
- POST .../rollback   operator keys with `operator:review`
- POST .../reopen     operator keys with `operator:review` (audited: `market.reopened`)
- POST .../cancellations               operator keys with `results:write`: a BetCancel of the
                      feed, every bet on the market (or placed in its window) refunded in full,
                      201 (200 for the same cancellation again)
- POST .../cancellations/{id}/rollback operator keys with `results:write`: RollbackBetCancel
- GET .../settlement  any key with `players:read`; a partner key sees the counts and totals of
                      its own players' bets only (404 when it has none on the market), an
                      operator key sees every partner's.
- GET /v1/markets     any key with `players:read`: the markets with a result, newest first
                      (api/pagination.py; filters betting, created[...]); a partner key lists
                      the markets its players have bets on, an operator key every market (or
                      one partner's with ?partner=).
A partner key holding `results:write` or `operator:review` is refused with 403 `operator_only`.

A result is stored in one transaction (with audit and outbox, commands/settlement.py), then the
workflow `settle-<market>-v<version>` is started by name; posting the same version again
replays and makes sure the workflow runs (a start that failed after the commit is repaired by
the retry). HTTP only: the rules live in commands/settlement.py.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Response
from starlette.concurrency import run_in_threadpool
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDReusePolicy
from temporalio.exceptions import WorkflowAlreadyStartedError

from api.auth import Operator, PlayersReader, Principal, ResultsWriter
from api.deps import EngineDep, SettingsDep, TemporalDep
from api.pagination import ListParams, PartnerFilter, Tenancy, read_page, tenancy
from api.problems import PROBLEM_RESPONSES, not_found, refused
from api.schemas.markets import (
    CancellationCreate,
    Market,
    MarketBetting,
    MarketCancellation,
    MarketList,
    MarketResult,
    MarketRollback,
    MarketSettlement,
    ResultCreate,
    RollbackCreate,
)
from commands import settlement as commands
from settlepay import search_attributes, task_queues
from settlepay.config import Settings
from settlepay.db import run_in_transaction
from store import settlements as store
from store.pagination import Condition
from workflows.contracts.refusal import Refusal
from workflows.contracts.settlement import (
    WORKFLOW,
    MarketState,
    Mode,
    ResultStatus,
    SettlementRefusal,
    SettlementRun,
    workflow_id,
)

router = APIRouter(prefix="/v1/markets", tags=["markets"], responses=PROBLEM_RESPONSES)


def house_only(principal: Principal) -> None:
    """Markets are the house's: a partner key never changes one, whatever its scopes."""
    if not principal.is_operator:
        raise refused(Refusal(SettlementRefusal.OPERATOR_ONLY,
                              "Markets belong to the house: only an operator key may post "
                              "results, roll back or reopen a market."),
                      "Only an operator may change a market")


async def start_settlement(client: Client, settings: Settings, market_id: str, version: int,
                           mode: Mode) -> str:
    wf_id = workflow_id(market_id, version, mode)
    try:
        await client.start_workflow(
            WORKFLOW,
            SettlementRun(market_id=market_id, version=version, mode=mode,
                          batch_size=settings.settlement_batch_size),
            id=wf_id, task_queue=task_queues.SETTLEMENT,
            # A finished settlement is never run again under its id; a failed one may be.
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes([
                SearchAttributePair(search_attributes.MARKET_ID, market_id)]))
    except WorkflowAlreadyStartedError:
        pass   # the same version again: one workflow, one settlement
    return wf_id


@router.post("/{market_id}/results", status_code=202, response_model=MarketResult,
             summary="Post a result version of a market (operators)")
async def post_result(market_id: str, body: ResultCreate, principal: ResultsWriter,
                      engine: EngineDep, settings: SettingsDep,
                      client: TemporalDep) -> MarketResult:
    house_only(principal)
    selections = {sid: r.model_dump(exclude_none=True) for sid, r in body.selections.items()}
    try:
        result, replayed = await run_in_threadpool(
            run_in_transaction, engine, lambda conn: commands.record_result(
                conn, settings, market_id, body.version, selections, actor=principal.actor))
    except commands.ResultRefused as error:
        raise refused(error.refusal, "The result cannot be applied") from error
    if result["status"] == ResultStatus.CURRENT:
        wf_id = await start_settlement(client, settings, market_id, body.version, Mode.SETTLE)
    else:   # a replay of a version since corrected or rolled back: nothing to run
        wf_id = workflow_id(market_id, body.version, Mode.SETTLE)
    return MarketResult(**result, replayed=replayed, workflow_id=wf_id)


@router.post("/{market_id}/rollback", status_code=202, response_model=MarketRollback,
             summary="Roll a market's settlement back (operators)")
async def rollback(market_id: str, body: RollbackCreate, principal: Operator,
                   engine: EngineDep, settings: SettingsDep,
                   client: TemporalDep) -> MarketRollback:
    house_only(principal)
    try:
        changed = await run_in_threadpool(
            run_in_transaction, engine, lambda conn: commands.record_rollback(
                conn, settings, market_id, body.version, actor=principal.actor))
    except commands.ResultRefused as error:
        raise refused(error.refusal, "The result cannot be applied") from error
    wf_id = await start_settlement(client, settings, market_id, body.version, Mode.ROLLBACK)
    return MarketRollback(market_id=market_id, version=body.version, replayed=not changed,
                          workflow_id=wf_id)


@router.post("/{market_id}/reopen", response_model=MarketBetting,
             summary="Open a market closed for betting again (operators, after a rollback)")
def reopen(market_id: str, principal: Operator, engine: EngineDep) -> MarketBetting:
    house_only(principal)
    try:
        changed = run_in_transaction(engine, lambda conn: commands.reopen_market(
            conn, market_id, actor=principal.actor))
    except commands.ResultRefused as error:
        raise refused(error.refusal, "The market cannot be reopened") from error
    return MarketBetting(market_id=market_id, betting="open", replayed=not changed)


@router.post("/{market_id}/cancellations", status_code=201, response_model=MarketCancellation,
             responses={200: {"model": MarketCancellation,
                              "description": "Already cancelled (same cancellation)"}},
             summary="Cancel a market's bets: BetCancel, refunds in full (operators)")
def cancel(market_id: str, body: CancellationCreate, response: Response,
           principal: ResultsWriter, engine: EngineDep,
           settings: SettingsDep) -> MarketCancellation:
    house_only(principal)
    try:
        resource, replayed = run_in_transaction(engine, lambda conn: commands.cancel_market(
            conn, settings, market_id, cancellation_id=body.id,
            reason_code=str(body.reason_code), reason=body.reason,
            placed_from=body.placed_from, placed_until=body.placed_until,
            actor=principal.actor))
    except commands.ResultRefused as error:
        raise refused(error.refusal, "The cancellation cannot be applied") from error
    if replayed:
        response.status_code = 200
    return MarketCancellation(**resource, replayed=replayed)


@router.post("/{market_id}/cancellations/{cancellation_id}/rollback",
             response_model=MarketCancellation,
             summary="Roll a cancellation back: RollbackBetCancel (operators)")
def rollback_cancellation(market_id: str, cancellation_id: str, principal: ResultsWriter,
                          engine: EngineDep, settings: SettingsDep) -> MarketCancellation:
    house_only(principal)
    try:
        resource, replayed = run_in_transaction(
            engine, lambda conn: commands.rollback_cancellation(
                conn, settings, market_id, cancellation_id, actor=principal.actor))
    except commands.ResultRefused as error:
        raise refused(error.refusal, "The cancellation cannot be rolled back") from error
    return MarketCancellation(**resource, replayed=replayed)


@router.get("", response_model=MarketList, summary="List markets",
            description="Markets with a result, newest first; a partner key sees those its "
                        "players have bets on.")
def list_markets(
    query: ListParams, principal: PlayersReader, engine: EngineDep,
    partner: PartnerFilter = None,
    betting: Annotated[Literal["open", "closed"] | None, Query(
        description="Only markets taking bets (open) or not (closed).")] = None,
) -> MarketList:
    # A market is no partner's: the tenant is "has bets of this partner", a condition.
    chosen = tenancy(principal, partner)
    owner = chosen.scope.get("partner_id") or chosen.filters.get("partner_id")
    condition = None if owner is None else Condition(store.PARTNER_HAS_BETS,
                                                     {"c_partner": owner})
    with engine.connect() as conn:
        page = read_page(conn, store.MARKETS, query, Tenancy({}, {}),
                         filters={"betting": betting}, condition=condition)
    return MarketList(url=router.prefix, has_more=page.has_more,
                      data=[Market(id=row["market_id"], **{k: v for k, v in row.items()
                                                           if k != "market_id"})
                            for row in page.rows])


@router.get("/{market_id}/settlement", response_model=MarketSettlement,
            summary="Where a market's settlement stands (a partner: its own bets' totals)")
def settlement(market_id: str, principal: PlayersReader, engine: EngineDep) -> MarketSettlement:
    partner_id = None if principal.is_operator else principal.partner_id
    with engine.connect() as conn:
        view = store.summary(conn, market_id, partner_id=partner_id)
    unknown = view["state"] == MarketState.OPEN and view["bets"]["total"] == 0
    if unknown or (partner_id is not None and view["bets"]["total"] == 0):
        raise not_found("market", market_id)
    return MarketSettlement(**view)
