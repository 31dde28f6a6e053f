"""API keys: made with their audit record, stored hashed, found by prefix, revoked."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from sqlalchemy import text

from commands.api_keys import (
    ApiKeyRefusal,
    ApiKeyRefused,
    Grantor,
    create_api_key,
    ensure_api_key,
    grant,
    revoke,
    revoke_key,
    roll,
)
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


def grantor_of(conn, key_id: str) -> Grantor:
    row = conn.execute(text("SELECT role, partner_id, scopes FROM api_keys WHERE id = :id"),
                       {"id": key_id}).one()
    return Grantor(f"api_key:{key_id}", row.role, row.partner_id, frozenset(row.scopes))


def test_a_partner_grants_its_own_scopes_by_default_and_never_more(engine):
    with engine.begin() as conn:
        key_id, _ = create_api_key(conn, "partner", "partner-grant",
                                   [Scope.PLAYERS_READ, Scope.API_KEYS_WRITE], "granter")
        granter = grantor_of(conn, key_id)
        row, plaintext = grant(conn, granter, role=None, partner_id=None, scopes=None,
                               name="child", rate_limits=None)
        assert set(row["scopes"]) == {Scope.PLAYERS_READ, Scope.API_KEYS_WRITE}
        assert row["partner_id"] == "partner-grant" and row["created_by"] == granter.actor
        assert authenticate(conn, plaintext).id == row["id"]
        with pytest.raises(ApiKeyRefused) as refused:
            grant(conn, granter, role=None, partner_id=None, scopes=[Scope.DEPOSITS_WRITE],
                  name="more", rate_limits=None)
        assert refused.value.refusal.code == ApiKeyRefusal.SCOPE_NOT_HELD


def test_a_refused_grant_writes_no_key_and_no_audit_record(engine):
    partner_grantor = Grantor("api_key:p", "partner", "p-x", ALL_SCOPES)
    attempts = [  # (grantor, role, partner_id, scopes, rate limits, refusal)
        (partner_grantor, "operator", None, None, None, ApiKeyRefusal.OPERATOR_ONLY),
        (partner_grantor, None, None, None, {"*": {"requests": 1, "window_seconds": 1}},
         ApiKeyRefusal.OPERATOR_ONLY),
        (Grantor.system(), None, "p-x", ["operator:review"], None, ApiKeyRefusal.INVALID),
        (Grantor.system(), "partner", None, None, None, ApiKeyRefusal.INVALID),
        (Grantor.system(), None, "p-x", None, {"*": {"requests": 0, "window_seconds": 1}},
         ApiKeyRefusal.INVALID),
    ]
    with engine.begin() as conn:
        before = conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one()
        audits = conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one()
        for grantor, role, partner_id, scopes, limits, code in attempts:
            with pytest.raises(ApiKeyRefused) as refused:
                grant(conn, grantor, role=role, partner_id=partner_id, scopes=scopes, name="x",
                      rate_limits=limits)
            assert refused.value.refusal.code == code
        assert conn.execute(text("SELECT count(*) FROM api_keys")).scalar_one() == before
        assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == audits


def test_rolling_keeps_the_definition_and_expires_the_old_key_with_an_audit_record(engine):
    limits = {"*": {"requests": 5, "window_seconds": 1}}
    with engine.begin() as conn:
        old_id, old_secret = create_api_key(conn, "partner", "partner-roll", None, "roll me",
                                            rate_limits=limits)
        after, new, new_secret = roll(conn, Grantor.system("cli:ops"), old_id,
                                      timedelta(hours=1))
        assert after["expires_at"] is not None and not after["expired"]
        assert (new["name"], new["partner_id"], new["rate_limits"], new["rolled_from"]) == (
            "roll me", "partner-roll", limits, old_id)
        assert set(new["scopes"]) == set(after["scopes"])
        assert authenticate(conn, old_secret) is not None
        assert authenticate(conn, new_secret).rate_limits == limits
        roll(conn, Grantor.system("cli:ops"), new["id"], timedelta(0))
        assert authenticate(conn, new_secret) is None
        with pytest.raises(ApiKeyRefused) as refused:
            roll(conn, Grantor.system(), new["id"], timedelta(0))
        assert refused.value.refusal.code == ApiKeyRefusal.NOT_LIVE
        with pytest.raises(ApiKeyRefused):
            roll(conn, Grantor.system(), old_id, timedelta(days=8))
        actions = conn.execute(text("""SELECT record::jsonb->>'action' FROM audit_log
                                       WHERE record::jsonb->>'subject_id' = :id ORDER BY seq"""),
                               {"id": old_id}).scalars().all()
    assert actions == ["api_key.created", "api_key.rolled"]


def test_revoking_through_a_grantor_is_refused_for_keys_it_cannot_see(engine):
    with engine.begin() as conn:
        mine, _ = create_api_key(conn, "partner", "partner-r1", None, "mine")
        theirs, _ = create_api_key(conn, "partner", "partner-r2", None, "theirs")
        granter = grantor_of(conn, mine)
        with pytest.raises(ApiKeyRefused) as refused:
            revoke_key(conn, granter, theirs)
        assert refused.value.refusal.code == ApiKeyRefusal.NOT_FOUND
        assert revoke_key(conn, granter, mine)["revoked_at"] is not None
