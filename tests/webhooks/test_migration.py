"""Migration 0012: keys that held every scope of their role's default get webhooks:write."""

from __future__ import annotations

import uuid

import psycopg

from settlepay import migrate
from tests.support.databases import _with_database, admin_url, sqlalchemy_url

OLD_OPERATOR = ["players:read", "players:write", "deposits:write", "withdrawals:write",
                "bets:write", "results:write", "operator:review"]
OLD_PARTNER = ["players:read", "players:write", "deposits:write", "withdrawals:write",
               "bets:write"]


def test_keys_with_their_roles_full_default_get_webhooks_write_and_narrower_keys_do_not():
    name = f"sp_wh_migration_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin_url(), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = _with_database(admin_url(), name)
    try:
        migrate.upgrade(sqlalchemy_url(url), "0011_settlement_safety")
        with psycopg.connect(url, autocommit=True) as conn:
            for key, role, partner, scopes in (
                    ("k_op", "operator", None, OLD_OPERATOR),
                    ("k_full", "partner", "p1", OLD_PARTNER),
                    ("k_read", "partner", "p1", ["players:read"])):
                conn.execute("""INSERT INTO api_keys (id, prefix, key_hash, role, partner_id,
                                                      scopes, name)
                                VALUES (%s, %s, %s, %s, %s, %s, 'test')""",
                             (key, key, b"\x00" * 32, role, partner, scopes))
        migrate.upgrade(sqlalchemy_url(url))
        with psycopg.connect(url) as conn:
            scopes = dict(conn.execute("SELECT id, scopes FROM api_keys").fetchall())
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    assert "webhooks:write" in scopes["k_op"] and "webhooks:write" in scopes["k_full"]
    assert scopes["k_read"] == ["players:read"]
