"""The `settlepay` console script: parser, ledger check, audit verify / export, migrate.

The checks run in-process through `settlepay.cli.main` against a fresh database each, and one
of each is made to fail by tampering with the database as its superuser (bypassing the
append-only triggers), because a check that cannot fail proves nothing.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

import audit
import ledger
from ledger import AccountRef, Leg, Transfer
from settlepay import cli
from settlepay.config import get_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def database(fresh_engine: Engine, monkeypatch) -> Engine:
    """Point the commands (which read Settings from the environment) at the fresh database."""
    monkeypatch.setenv("SETTLEPAY_DATABASE_URL",
                       fresh_engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield fresh_engine
    get_settings.cache_clear()


def test_help_lists_every_command():
    result = subprocess.run([sys.executable, "-m", "settlepay.cli", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    for command in ("dev", "migrate", "api", "worker", "ledger", "audit"):
        assert command in result.stdout
    parser = cli.build_parser()
    for path, (module, function, _) in cli.COMMANDS.items():
        positionals = [flags[0].upper() for flags, _ in cli.ARGUMENTS.get(path, [])
                       if not flags[0].startswith("-")]
        args = parser.parse_args([*path, *positionals])
        assert args._target == (module, function)
        target = getattr(importlib.import_module(module), function)
        assert callable(target), f"{' '.join(path)}: no {module}.{function}"
    with pytest.raises(SystemExit):
        parser.parse_args(["ledger"])  # a group without its subcommand is an error, not a no-op


def test_ledger_check_passes_on_a_fresh_database_and_fails_on_a_forged_balance(database, capsys):
    assert cli.main(["ledger", "check"]) == 0
    out = capsys.readouterr().out
    from ledger.check import INVARIANTS

    for invariant in INVARIANTS:  # every invariant is stated, in words
        assert f"checked: {invariant}" in out

    with database.begin() as conn:
        result = ledger.post(conn, Transfer(key="cli-test:1", kind="deposit", legs=(
            Leg(AccountRef.gateway_clearing("stripe", "USD"), -2500),
            Leg(AccountRef.player_cash("p_cli", "USD"), 2500))))
        assert result.ok
    assert cli.main(["ledger", "check"]) == 0
    capsys.readouterr()

    with database.begin() as conn:  # money appears from nowhere: the balance row alone changes
        account = conn.execute(text(
            "SELECT id FROM ledger_accounts WHERE owner = 'player:p_cli'")).scalar_one()
        conn.execute(text("ALTER TABLE ledger_balances DISABLE TRIGGER USER"))
        conn.execute(text("UPDATE ledger_balances SET posted = posted + 100 WHERE account_id = :a"),
                     {"a": account})
        conn.execute(text("ALTER TABLE ledger_balances ENABLE TRIGGER USER"))
    assert cli.main(["ledger", "check"]) == 1
    assert "VIOLATION: every balance row equals the sum of its entries" in capsys.readouterr().out


def test_audit_verify_and_export(database, capsys, tmp_path):
    with database.begin() as conn:
        for n in range(3):
            audit.record(conn, actor="system:test", action="thing.changed", subject_type="thing",
                         subject_id=f"t{n}", before={"n": n}, after={"n": n + 1})
    assert cli.main(["audit", "verify"]) == 0
    assert "chain intact, 3 records" in capsys.readouterr().out

    out_file = tmp_path / "audit.jsonl"
    assert cli.main(["audit", "export", "-o", str(out_file)]) == 0
    lines = [json.loads(line) for line in out_file.read_text().splitlines()]
    assert [line["record"]["subject_id"] for line in lines] == ["t0", "t1", "t2"]
    assert all(len(line["hash"]) == 64 for line in lines)
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert cli.main(["audit", "export", "--since", future]) == 0
    assert capsys.readouterr().out == ""  # nothing after the future
    assert cli.main(["audit", "export", "--since", "yesterday-ish"]) == 2

    with database.begin() as conn:  # rewrite history: the second record says something else
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text(
            "UPDATE audit_log SET record = replace(record, '\"t1\"', '\"t9\"') WHERE seq = 2"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
    assert cli.main(["audit", "verify"]) == 1
    assert "TAMPERED: record 2" in capsys.readouterr().out


def test_database_commands_refuse_to_run_without_a_database_url(monkeypatch, capsys):
    monkeypatch.delenv("SETTLEPAY_DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    get_settings.cache_clear()
    try:
        for argv in (["migrate"], ["ledger", "check"], ["audit", "verify"]):
            assert cli.main(argv) == 2
            assert "SETTLEPAY_DATABASE_URL" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()


def test_migrate_is_idempotent(database, capsys):
    # The fixture's database is already at head: migrating again changes nothing and succeeds.
    assert cli.main(["migrate"]) == 0
    with database.connect() as conn:
        heads = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert len(heads) == 1


def test_api_keys_create_makes_the_first_operator_key_and_prints_it_once(database, capsys):
    from store.api_keys import authenticate

    assert cli.main(["api-keys", "create", "ops bootstrap"]) == 0
    out, err = capsys.readouterr()
    secret = out.strip()
    assert "shown once" in err and secret not in err
    assert cli.main(["api-keys", "create", "feed", "--role", "partner", "--partner", "p-1",
                     "--scopes", "players:read, bets:write"]) == 0
    partner_secret = capsys.readouterr().out.strip()
    with database.connect() as conn:
        operator = authenticate(conn, secret)
        partner = authenticate(conn, partner_secret)
        created_by = conn.execute(text("SELECT created_by FROM api_keys WHERE id = :id"),
                                  {"id": operator.id}).scalar_one()
        actions = conn.execute(text("SELECT record::jsonb->>'action' FROM audit_log "
                                    "WHERE record::jsonb->>'subject_id' = :id"),
                               {"id": operator.id}).scalars().all()
    assert operator.role == "operator" and "operator:review" in operator.scopes
    assert (partner.partner_id, partner.scopes) == ("p-1", {"players:read", "bets:write"})
    assert created_by.startswith("cli:") and actions == ["api_key.created"]
    # A definition no key can have: usage error, nothing made.
    assert cli.main(["api-keys", "create", "bad", "--role", "partner"]) == 2
    assert "partner_id" in capsys.readouterr().err


def test_api_keys_create_pins_the_key_to_the_version_asked_for(database, capsys, monkeypatch):
    from domain import api_versions

    monkeypatch.setattr(api_versions, "VERSIONS", ("2026-06-01", *api_versions.VERSIONS))
    assert cli.main(["api-keys", "create", "legacy feed", "--role", "partner", "--partner", "p-1",
                     "--api-version", "2026-06-01"]) == 0
    pinned = capsys.readouterr().out.strip()
    assert cli.main(["api-keys", "create", "new feed", "--role", "partner",
                     "--partner", "p-1"]) == 0
    current = capsys.readouterr().out.strip()
    with database.connect() as conn:
        versions = dict(conn.execute(text("SELECT name, api_version FROM api_keys "
                                          "WHERE name IN ('legacy feed', 'new feed')")).all())
    assert versions == {"legacy feed": "2026-06-01", "new feed": api_versions.current()}
    assert pinned != current
    # A version the API does not serve: usage error, no key made.
    assert cli.main(["api-keys", "create", "future", "--api-version", "2099-01-01"]) == 2
    assert "api_version must be one of" in capsys.readouterr().err
    with database.connect() as conn:
        made = conn.execute(text("SELECT count(*) FROM api_keys WHERE name = 'future'")).scalar()
    assert made == 0
