"""API keys: made with their audit record, stored hashed, found by prefix, revoked."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import text

from commands.api_keys import create_api_key, ensure_api_key, revoke
from domain.scopes import ALL_SCOPES, PARTNER_DEFAULT, Scope
from store.api_keys import authenticate


def test_keys_are_stored_hashed_and_found_by_prefix(engine):
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, "partner", "partner-hash", None, "hash test")
        row = conn.execute(text("SELECT * FROM api_keys WHERE id = :id"),
                           {"id": key_id}).mappings().one()
        assert bytes(row["key_hash"]) == hashlib.sha256(plaintext.encode()).digest()
        assert plaintext.startswith(row["prefix"])
        assert len(plaintext) - len(row["prefix"]) >= 43  # 256 secret bits
        assert not any(plaintext in str(value) for value in row.values())
        assert set(row["scopes"]) == PARTNER_DEFAULT
        found = authenticate(conn, plaintext)
        assert found is not None and found.id == key_id and found.partner_id == "partner-hash"
        assert authenticate(conn, plaintext + "x") is None
        logged = conn.execute(text("""SELECT record FROM audit_log
                                       WHERE record::jsonb->>'subject_id' = :id"""),
                              {"id": key_id}).scalars().all()
        assert len(logged) == 1 and plaintext not in logged[0] and '"api_key.created"' in logged[0]


def test_ensure_api_key_is_idempotent_and_guards_its_prefix(engine):
    plaintext = "sp_dev_operator_testensurekey_" + "0" * 12
    with engine.begin() as conn:
        first = ensure_api_key(conn, plaintext, "operator", None, None, "dev")
        again = ensure_api_key(conn, plaintext, "operator", None, None, "dev")
        assert first == again
        assert conn.execute(text("SELECT count(*) FROM api_keys WHERE prefix = :p"),
                            {"p": plaintext[:16]}).scalar_one() == 1
        assert set(authenticate(conn, plaintext).scopes) == ALL_SCOPES
        with pytest.raises(ValueError, match="prefix"):
            ensure_api_key(conn, plaintext[:-1] + "1", "operator", None, None, "dev")


@pytest.mark.parametrize("role, partner, scopes", [("admin", None, None), ("partner", None, None),
                                                    ("operator", "p1", None),
                                                    ("partner", "p1", ["players:read", "root"])])
def test_bad_key_definitions_are_refused(engine, role, partner, scopes):
    with engine.begin() as conn, pytest.raises(ValueError):
        create_api_key(conn, role, partner, scopes, "bad")


def test_short_plaintext_is_refused(engine):
    with engine.begin() as conn, pytest.raises(ValueError):
        ensure_api_key(conn, "sp_short", "operator", None, [Scope.PLAYERS_READ], "short")


def test_revoking_a_key_is_audited_once_and_the_key_stops_authenticating(engine):
    with engine.begin() as conn:
        key_id, plaintext = create_api_key(conn, "partner", "partner-revoke", None, "revoke")
        assert authenticate(conn, plaintext) is not None
        assert revoke(conn, key_id, actor="operator:test") is True
        assert revoke(conn, key_id, actor="operator:test") is False
        assert authenticate(conn, plaintext) is None
        actions = conn.execute(text("""SELECT record::jsonb->>'action' FROM audit_log
                                       WHERE record::jsonb->>'subject_id' = :id ORDER BY seq"""),
                               {"id": key_id}).scalars().all()
    assert actions == ["api_key.created", "api_key.revoked"]
