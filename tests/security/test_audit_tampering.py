"""Audit tampering is refused or detected, on the records real requests wrote.

Through the API (in process, on a database of the test's own) a partner creates players, sets a
deposit limit and self-excludes one: each change wrote its audit record. Then an intruder goes
at the trail: with the database's guards in place every edit is refused; with superuser rights
(triggers switched off) every kind of edit -- a changed amount, a record removed from the middle
or the end, one inserted or appended behind audit_append's back, two swapped, one re-hashed to
look right -- is found by `audit.verify` and by `settlepay audit verify` (exit 1).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

import audit
from api.app import create_app
from audit.canonical import canonical_json, chain_hash
from settlepay import cli
from settlepay.config import Settings, get_settings
from tests.support.api import make_key, player_body
from tests.support.net import free_port

FORGED = canonical_json({"action": "player.created", "actor": "api_key:forged",
                         "subject_type": "player", "subject_id": "ply_forged"})


@pytest_asyncio.fixture
async def trail(fresh_engine: Engine, settings: Settings) -> AsyncIterator[Engine]:
    """A fresh database whose audit trail holds the records of real API requests."""
    app = create_app(settings.model_copy(update={
        "database_url": fresh_engine.url.render_as_string(hide_password=False),
        "temporal_address": f"127.0.0.1:{free_port()}"}), engine=fresh_engine)
    key = make_key(fresh_engine, "partner", "partner-audit")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as http:
        ids = []
        for n in range(3):
            made = await http.post("/v1/players", json=player_body(), headers={
                **key.headers, "Idempotency-Key": f"audit-player-{n}"})
            assert made.status_code == 201, made.text
            ids.append(made.json()["id"])
        limit = await http.put(f"/v1/players/{ids[0]}/limits", headers={
            **key.headers, "Idempotency-Key": "audit-limit"},
            json={"currency": "USD", "day": 50_000})
        assert limit.status_code == 200, limit.text
        excluded = await http.post(f"/v1/players/{ids[1]}/self-exclusion", headers={
            **key.headers, "Idempotency-Key": "audit-exclusion"}, json={"permanent": True})
        assert excluded.status_code == 201, excluded.text
    with fresh_engine.connect() as conn:
        report = audit.verify(conn)
    assert report.ok and report.records >= 5, report
    yield fresh_engine


@pytest.fixture
def cli_database(trail: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("SETTLEPAY_DATABASE_URL",
                       trail.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    yield trail
    get_settings.cache_clear()


def as_superuser(engine: Engine, *statements: str, **params: object) -> None:
    """What an intruder with superuser rights does: the guards off, the edit, the guards on."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        for statement in statements:
            conn.execute(text(statement), params)
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))


def problems(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return audit.verify(conn).problems


def last_seq(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT max(seq) FROM audit_log")).scalar_one()


def seq_of(engine: Engine, action: str) -> int:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT seq, record FROM audit_log ORDER BY seq")).all()
    return next(seq for seq, record in rows if json.loads(record)["action"] == action)


@pytest.mark.parametrize("statement", [
    "UPDATE audit_log SET record = replace(record, '50000', '5000000')",
    "DELETE FROM audit_log WHERE seq = 2",
    "TRUNCATE audit_log",
])
def test_the_database_refuses_an_edit_of_the_trail(trail: Engine, statement: str) -> None:
    before = problems(trail), last_seq(trail)
    with pytest.raises(DBAPIError), trail.begin() as conn:
        conn.execute(text(statement))
    assert (problems(trail), last_seq(trail)) == before == ([], before[1])


def test_a_changed_amount_is_detected(trail: Engine) -> None:
    seq = seq_of(trail, "deposit_limit.changed")
    as_superuser(trail, "UPDATE audit_log SET record = replace(record, :was, :now)"
                        " WHERE seq = :seq", was='"amount":50000', now='"amount":5000000', seq=seq)
    assert any(f"record {seq}: hash does not match" in p for p in problems(trail))


def test_a_record_removed_from_the_middle_is_detected(trail: Engine) -> None:
    as_superuser(trail, "DELETE FROM audit_log WHERE seq = 2")
    assert any("sequence gap" in p for p in problems(trail))


def test_the_newest_record_removed_is_detected(trail: Engine) -> None:
    as_superuser(trail, f"DELETE FROM audit_log WHERE seq = {last_seq(trail)}")
    assert any("chain head" in p for p in problems(trail))


def test_a_record_inserted_between_two_is_detected(trail: Engine) -> None:
    last = last_seq(trail)
    as_superuser(
        trail,
        # Make room at seq 2 (from the top, so the key never collides), then fill it with a
        # record hashed onto record 1, as audit_append would have.
        *[f"UPDATE audit_log SET seq = seq + 1 WHERE seq = {seq}" for seq in range(last, 1, -1)],
        "INSERT INTO audit_log (seq, prev_hash, hash, record, created_at)"
        " SELECT 2, hash, sha256(hash || convert_to(:forged, 'UTF8')), :forged, created_at"
        "   FROM audit_log WHERE seq = 1", forged=FORGED)
    assert any("previous-hash link broken" in p for p in problems(trail))


def test_a_record_appended_behind_the_functions_back_is_detected(trail: Engine) -> None:
    """INSERT is not refused (audit_append inserts), but a record that did not come through
    audit_append leaves the chain head behind it."""
    with trail.begin() as conn:
        conn.execute(text(
            "INSERT INTO audit_log (seq, prev_hash, hash, record)"
            " SELECT seq + 1, hash, sha256(hash || convert_to(:forged, 'UTF8')), :forged"
            "   FROM audit_log ORDER BY seq DESC LIMIT 1"), {"forged": FORGED})
    assert any("chain head" in p for p in problems(trail))


def test_two_records_swapped_is_detected(trail: Engine) -> None:
    as_superuser(trail,
                 "UPDATE audit_log SET seq = -2 WHERE seq = 2",
                 "UPDATE audit_log SET seq = 2 WHERE seq = 3",
                 "UPDATE audit_log SET seq = 3 WHERE seq = -2")
    assert any("previous-hash link broken" in p for p in problems(trail))


def test_a_record_edited_and_rehashed_is_detected_by_its_successor(trail: Engine) -> None:
    """The intruder recomputes the edited record's own hash; the next record still names the
    old one."""
    with trail.connect() as conn:
        prev_hash, record = conn.execute(text(
            "SELECT prev_hash, record FROM audit_log WHERE seq = 2")).one()
    edited = canonical_json({**json.loads(record), "actor": "api_key:someone_else"})
    rehashed = chain_hash(bytes(prev_hash), edited).hex()
    as_superuser(trail, "UPDATE audit_log SET record = :edited, hash = decode(:hash, 'hex')"
                        " WHERE seq = 2", edited=edited, hash=rehashed)
    found = problems(trail)
    assert not any("record 2:" in p for p in found)            # record 2 itself looks right
    assert any("record 3: previous-hash link broken" in p for p in found)


def test_settlepay_audit_verify_exits_1_on_tampering(cli_database: Engine,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "verify"]) == 0
    as_superuser(cli_database, "UPDATE audit_log SET record = replace(record, 'partner-audit',"
                               " 'partner-other') WHERE seq = 1")
    assert cli.main(["audit", "verify"]) == 1
    assert "TAMPERED: record 1" in capsys.readouterr().out


