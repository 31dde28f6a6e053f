"""Settlement test helpers: funded players allowed to bet, bets placed through the real bet
command, results and inline settlement runs through commands/settlement.py, and reads of real
outcomes (balances, bet rows, settlement verify)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, text

import ledger
from checks import settlement as settlement_checks
from commands import bets
from commands import settlement as commands
from ledger import AccountRef, Transfer
from settlepay.config import Settings
from settlepay.db import run_in_transaction, transaction
from store import geolocation, players
from store import settlements as store
from workflows.contracts.settlement import Mode
from workflows.contracts.settlement import workflow_id as run_id

PARTNER = "partner_t"


def uid(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def funded_player(engine: Engine, cash: int, currency: str = "GBP",
                  partner_id: str = PARTNER) -> str:
    """An active player with `cash` in their account and a valid geolocation check."""
    player_id = uid("ply")
    now = datetime.now(UTC)
    with transaction(engine) as conn:
        players.insert(conn, player_id=player_id, partner_id=partner_id, external_ref=player_id,
                       first_name="Test", last_name="Player", email=None, date_of_birth=None,
                       jurisdiction="US-NJ")
        geolocation.insert(conn, geolocation.GeolocationCheck(
            id=geolocation.new_id(), player_id=player_id, checked_at=now, latitude=40.2,
            longitude=-74.6, ip_address="203.0.113.7", provider="test", jurisdiction="US-NJ",
            distance_to_border_miles=30.0, ip_country="US", ip_subdivision="NJ",
            anonymous_flags=(), allowed=True, code="allowed", reason="test",
            valid_until=now + timedelta(days=1)))
        if cash:
            assert ledger.post(conn, Transfer(
                key=f"test-fund:{player_id}", kind="deposit", reference=player_id,
                legs=(ledger.Leg(AccountRef.gateway_clearing("test", currency), -cash),
                      ledger.Leg(AccountRef.player_cash(player_id, currency), cash)))).ok
    return player_id


def place(engine: Engine, settings: Settings, player_id: str, stake: int,
          legs: list[tuple[str, str, str]], bet_type: str = "single", currency: str = "GBP",
          **kw: Any) -> str:
    """Place a bet through the real bet command; returns the bet's (internal) id."""
    bet_id = uid("bet")
    req = bets.BetRequest(bet_id=bet_id, player_id=player_id, stake=stake, currency=currency,
                          bet_type=bet_type,
                          legs=tuple(bets.LegRequest(m, s, o) for m, s, o in legs), **kw)
    placed = run_in_transaction(engine, lambda conn: bets.place(conn, settings, req,
                                                                actor="system:test"))
    assert placed.bet["status"] == "open", placed.bet
    return placed.bet["id"]


def cash(engine: Engine, player_id: str, currency: str = "GBP") -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, AccountRef.player_cash(player_id, currency)).posted


def account(engine: Engine, ref: AccountRef) -> int:
    with engine.connect() as conn:
        return ledger.balance(conn, ref).posted


def bet_row(engine: Engine, bet_id: str) -> Any:
    with engine.connect() as conn:
        return conn.execute(text("SELECT * FROM bets WHERE id = :id"),
                            {"id": bet_id}).mappings().one()


def post_result(engine: Engine, settings: Settings, market: str, version: int,
                selections: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    return run_in_transaction(engine, lambda c: commands.record_result(
        c, settings, market, version, selections, actor="system:test"))


def roll_back(engine: Engine, settings: Settings, market: str, version: int) -> bool:
    return run_in_transaction(engine, lambda c: commands.record_rollback(
        c, settings, market, version, actor="operator:test"))


def settle_inline(engine: Engine, settings: Settings, market: str, version: int,
                  mode: Mode | str = Mode.SETTLE, batch_size: int = 3, parts: int = 2,
                  fail: bool = False, lo: str = "", hi: str | None = None,
                  ) -> commands.BatchOutcome:
    """What the workflow's rounds do, inline: round after round, each part in its own
    transaction (from bet id `lo`, up to `hi` when given)."""
    mode = Mode(mode)
    total = commands.BatchOutcome()
    cursor = lo
    while True:
        with engine.connect() as conn:
            end = store.round_end(conn, market, cursor, batch_size * parts)
        if end is None or (hi is not None and cursor >= hi):
            return total
        if hi is not None:
            end = min(end, hi)
        for part in range(parts):
            out = run_in_transaction(
                engine, lambda c, lo=cursor, end=end, part=part: commands.settle_range(
                    c, settings, market, version, mode, lo, end, part=part, parts=parts,
                    actor="system:test", fail_before_commit=fail))
            total.processed += out.processed
            total.posted += out.posted
            total.pending += out.pending
            total.skipped += out.skipped
            total.needs_review += out.needs_review
        cursor = end


def run_market(engine: Engine, settings: Settings, market: str, version: int,
               mode: Mode | str = Mode.SETTLE, workflow_id: str | None = None,
               **kw: Any) -> commands.BatchOutcome:
    """A whole run as the workflow does it: begin, every round, finish (under the workflow's
    own id unless another is given)."""
    mode = Mode(mode)
    workflow_id = workflow_id or run_id(market, version, mode)
    run_in_transaction(engine, lambda c: commands.begin(c, settings, market, version, mode,
                                                        workflow_id))
    out = settle_inline(engine, settings, market, version, mode, **kw)
    run_in_transaction(engine, lambda c: commands.finish(c, market, version, mode, workflow_id,
                                                         out.processed, out.posted))
    return out


def verify_differences(engine: Engine, settings: Settings, market: str) -> list[str]:
    """`settlement verify` of the market: one line per difference (empty: consistent)."""
    with engine.connect() as conn:
        return settlement_checks.run(conn, settings, market)[1]


def player_debt(engine: Engine, player_id: str, currency: str = "GBP") -> int:
    """What the player owes from clawbacks their cash could not cover (>= 0): the player_debt
    account's balance goes negative by what is owed."""
    return max(0, -account(engine, AccountRef.player_debt(player_id, currency)))
