"""The audit trail: written in the caller's transaction, refused edits, tampering detected."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

import audit


def write_three(engine):
    with engine.begin() as conn:
        for n in range(3):
            audit.record(conn, actor="system:test", action="player.updated", subject_type="player",
                         subject_id=f"p{n}", before={"status": "active"},
                         after={"status": "suspended", "n": n})


def test_chain_verifies_and_rolls_back_with_its_transaction(fresh_engine):
    write_three(fresh_engine)
    with pytest.raises(RuntimeError), fresh_engine.begin() as conn:
        audit.record(conn, actor="system:test", action="never", subject_type="x", subject_id="1")
        raise RuntimeError("the change failed, so its audit record must not stay")
    with fresh_engine.begin() as conn:
        report = audit.verify(conn)
        assert report.ok and report.records == 3
        records = conn.execute(text("SELECT record FROM audit_log ORDER BY seq"))
        actions = [json.loads(r)["action"] for (r,) in records]
        assert "never" not in actions


@pytest.mark.parametrize("statement", ["UPDATE audit_log SET record = record",
                                       "DELETE FROM audit_log", "TRUNCATE audit_log"])
def test_database_refuses_changes(fresh_engine, statement):
    write_three(fresh_engine)
    with pytest.raises(DBAPIError, match="append-only"), fresh_engine.begin() as conn:
        conn.execute(text(statement))


def tamper(engine, sql):
    """What an attacker with superuser rights could do: switch the guard off, edit, switch it on."""
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text(sql))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))


@pytest.mark.parametrize("sql, finding", [
    ("UPDATE audit_log SET record = replace(record, 'suspended', 'closed') WHERE seq = 2",
     "hash does not match"),
    ("DELETE FROM audit_log WHERE seq = 2", "sequence gap"),
    ("DELETE FROM audit_log WHERE seq = 3", "chain head"),
    ("UPDATE audit_log SET hash = sha256(hash) WHERE seq = 1", "previous-hash link broken"),
])
def test_verify_finds_tampering(fresh_engine, sql, finding):
    write_three(fresh_engine)
    tamper(fresh_engine, sql)
    with fresh_engine.begin() as conn:
        report = audit.verify(conn)
    assert not report.ok
    assert any(finding in p for p in report.problems), report.problems


def test_export_writes_json_lines_since_a_time(fresh_engine):
    write_three(fresh_engine)
    out = io.StringIO()
    with fresh_engine.begin() as conn:
        assert audit.export(conn, out, since=datetime.now(UTC) - timedelta(minutes=5)) == 3
        later = datetime.now(UTC) + timedelta(minutes=5)
        assert audit.export(conn, io.StringIO(), since=later) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["seq"] for line in lines] == [1, 2, 3]
    assert lines[1]["prev_hash"] == lines[0]["hash"]
    assert lines[2]["record"]["after"] == {"n": 2, "status": "suspended"}
