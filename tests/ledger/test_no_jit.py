"""The ledger's functions run without JIT compilation (migration 0025_ledger_no_jit): a batch
that creates accounts (ledger_post_many -> ledger_ensure_accounts, whose join with
generate_series carries the disable cost of the nested loops ledger_post_many turns off) was
compiled by LLVM on every call. Checked with every plan made eligible for JIT in the session
(thresholds 0) and auto_explain reporting each statement run inside the functions: none of
them is compiled, where a statement outside them is."""

from __future__ import annotations

from importlib import import_module

import psycopg
from sqlalchemy import Connection, Engine, text

import ledger
from tests.support.databases import down_then_up, temporary_database
from tests.support.ledger import deposit, house_pays, new_player, stake

MIGRATION = import_module("migrations.versions.0025_ledger_no_jit")
# as regprocedure prints them (no space after a comma)
FUNCTIONS = sorted(f.replace(", ", ",") for f in MIGRATION.FUNCTIONS)

_EVERY_PLAN_JIT = ("SET jit = on", "SET jit_above_cost = 0", "SET jit_inline_above_cost = 0",
                   "SET jit_optimize_above_cost = 0")
_EXPLAIN_EACH_STATEMENT = ("LOAD 'auto_explain'", "SET auto_explain.log_min_duration = 0",
                           "SET auto_explain.log_nested_statements = on",
                           "SET client_min_messages = log")
_JIT_SETTINGS = """
    SELECT p.oid::regprocedure::text, 'jit=off' = ANY(coalesce(p.proconfig, '{}'))
      FROM pg_proc p WHERE p.oid::regprocedure::text = ANY(:functions) ORDER BY 1"""


def _jit_available(engine: Engine) -> bool:
    with engine.connect() as conn:
        return bool(conn.execute(text("SELECT pg_jit_available()")).scalar_one())


def _explained(conn: Connection) -> list[str]:
    """The plans auto_explain reports for what runs on `conn` from now on (a list that fills
    as statements run), with every plan eligible for JIT."""
    notices: list[str] = []
    conn.connection.driver_connection.add_notice_handler(
        lambda d: notices.append(d.message_primary or ""))
    for statement in _EVERY_PLAN_JIT + _EXPLAIN_EACH_STATEMENT:
        conn.execute(text(statement))
    return notices


def test_every_ledger_function_is_set_to_run_without_jit(engine: Engine) -> None:
    with engine.connect() as conn:
        rows = conn.execute(text(_JIT_SETTINGS), {"functions": FUNCTIONS}).all()
    assert [name for name, _ in rows] == FUNCTIONS
    assert all(off for _, off in rows), rows


def test_postings_that_create_accounts_compile_nothing(fresh_engine: Engine) -> None:
    # A server without a JIT provider (the embedded pgserver) compiles nothing anyway: there the
    # control cannot hold, and the rest checks the postings and what auto_explain saw of them.
    jit = _jit_available(fresh_engine)
    players = [new_player() for _ in range(3)]
    with fresh_engine.connect() as conn:
        notices = _explained(conn)
        # The control: a statement outside the ledger's functions is compiled here.
        conn.execute(text("SELECT count(*) FROM ledger_accounts"))
        assert any("JIT:" in n for n in notices) is jit, notices
        notices.clear()
        results = ledger.post_many(conn, [deposit(p, 500) for p in players]     # new accounts
                                   + [stake(p, 200) for p in players])          # new in play
        results.append(ledger.post(conn, house_pays(players[0], 50, f"pay-{players[0]}")))
        results.append(ledger.post(conn, deposit(new_player(), 70)))            # new account
        assert all(r.ok for r in results)
        conn.rollback()
    # The statements run inside the functions (the client's own call, `SELECT * FROM
    # ledger_post...(...)`, is planned in the session, with its settings).
    inside = [n for n in notices
              if "ledger_" in n and "Query Text: SELECT * FROM ledger_post" not in n]
    assert any("ledger_accounts" in n for n in inside), notices     # the creation was explained
    assert not [n for n in inside if "JIT:" in n]


def test_migration_0025_downgrades_to_the_server_setting_and_back() -> None:
    before, after = "0024_settlement_posting", "0025_ledger_no_jit"
    with temporary_database("sp_no_jit", revision=after) as url:
        expected_at = {before: False, after: True}
        for revision in down_then_up(url, before, after):
            with psycopg.connect(url) as conn:
                settings = conn.execute(
                    "SELECT p.oid::regprocedure::text, 'jit=off' = ANY(coalesce(p.proconfig,"
                    " '{}')) FROM pg_proc p WHERE p.oid::regprocedure::text = ANY(%s)",
                    (FUNCTIONS,)).fetchall()
            assert len(settings) == len(FUNCTIONS)
            assert all(off is expected_at[revision] for _, off in settings), (revision, settings)
