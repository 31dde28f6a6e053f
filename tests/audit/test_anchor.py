"""Anchoring the audit chain outside the database (audit/anchor.py, `settlepay audit anchor`).

A rewrite of the whole chain by someone who can write the database -- a record changed and
every hash after it recomputed, the head moved along -- verifies without anchors; against the
anchors taken before it, it fails, naming the first anchored seq that no longer holds. On a
database of the test's own, through the console script as an operator runs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

import audit
from audit.canonical import GENESIS_HASH, canonical_json, chain_hash
from settlepay import cli
from settlepay.config import get_settings
from store import partitions
from tests.audit.test_verify_partitions import migrated_with_a_trail, partition_of, write

__all__ = ["migrated_with_a_trail"]  # the fixture, for the archive test


@pytest.fixture
def cli_database(fresh_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[Engine]:
    monkeypatch.setenv("SETTLEPAY_DATABASE_URL",
                       fresh_engine.url.render_as_string(hide_password=False))
    monkeypatch.delenv("SETTLEPAY_AUDIT_ANCHOR_PATH", raising=False)
    get_settings.cache_clear()
    yield fresh_engine
    get_settings.cache_clear()


def rewrite_from(engine: Engine, seq: int, old: str, new: str) -> None:
    """The intruder: change record `seq`, recompute every hash from it on, move the head."""
    with engine.begin() as conn:
        rows = conn.execute(text("SELECT seq, prev_hash, record FROM audit_log"
                                 " WHERE seq >= :seq ORDER BY seq"), {"seq": seq}).all()
        prev = bytes(rows[0].prev_hash)
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        for row in rows:
            record = row.record.replace(old, new) if row.seq == seq else row.record
            assert canonical_json(json.loads(record)) == record
            hash_ = chain_hash(prev, record)
            conn.execute(text("UPDATE audit_log SET prev_hash = :prev, hash = :hash,"
                              " record = :record WHERE seq = :seq"),
                         {"prev": prev, "hash": hash_, "record": record, "seq": row.seq})
            prev = hash_
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        conn.execute(text("UPDATE audit_head SET hash = :hash"), {"hash": prev})


def test_anchor_then_verify_then_a_consistent_rewrite_is_found_only_against_the_anchors(
        cli_database: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    anchors = tmp_path / "worm" / "audit-anchors.jsonl"
    anchors.parent.mkdir()
    write(cli_database, 3)
    assert cli.main(["audit", "anchor", "--anchors", str(anchors)]) == 0
    write(cli_database, 2)
    assert cli.main(["audit", "anchor", "--anchors", str(anchors)]) == 0
    lines = [json.loads(line) for line in anchors.read_text().splitlines()]
    with cli_database.connect() as conn:
        hashes = dict(conn.execute(text("SELECT seq, hash FROM audit_log")).all())
    assert [(line["seq"], line["records"], line["hash"]) for line in lines] == [
        (3, 3, bytes(hashes[3]).hex()), (5, 5, bytes(hashes[5]).hex())]
    assert all(datetime.fromisoformat(line["at"]).tzinfo is not None for line in lines)
    capsys.readouterr()
    assert cli.main(["audit", "verify", "--anchors", str(anchors)]) == 0
    assert f"chain intact, 5 records; 2 anchor(s) of {anchors} hold" in capsys.readouterr().out

    rewrite_from(cli_database, 2, '"p1"', '"p7"')
    assert cli.main(["audit", "verify"]) == 0  # the chain alone cannot tell
    assert "chain intact, 5 records" in capsys.readouterr().out
    assert cli.main(["audit", "verify", "--anchors", str(anchors)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("TAMPERED: anchor (line 1, seq 3, anchored ")
    assert f"the chain holds {chain_hash_at(cli_database, 3).hex()} at seq 3, the anchor " \
           f"{bytes(hashes[3]).hex()}; the chain was rewritten at or before seq 3 " \
           "(1 later anchor(s) do not match either)" in out


def chain_hash_at(engine: Engine, seq: int) -> bytes:
    with engine.connect() as conn:
        return bytes(conn.execute(text("SELECT hash FROM audit_log WHERE seq = :seq"),
                                  {"seq": seq}).scalar_one())


def test_a_rewrite_after_the_last_anchor_passes_and_records_removed_past_an_anchor_fail(
        cli_database: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    """The anchor covers what is at or before it; the log from the setting, as scheduled."""
    anchors = tmp_path / "anchors.jsonl"
    monkeypatch.setenv("SETTLEPAY_AUDIT_ANCHOR_PATH", str(anchors))
    get_settings.cache_clear()
    write(cli_database, 2)
    assert cli.main(["audit", "anchor"]) == 0
    write(cli_database, 2)
    rewrite_from(cli_database, 4, '"p1"', '"p7"')  # after the anchor: not detectable by it
    assert cli.main(["audit", "verify"]) == 0
    assert "1 anchor(s)" in capsys.readouterr().out
    with cli_database.begin() as conn:  # records 2..4 gone, the head moved back: consistent
        conn.execute(text("ALTER TABLE audit_log DISABLE TRIGGER USER"))
        conn.execute(text("DELETE FROM audit_log WHERE seq >= 2"))
        conn.execute(text("ALTER TABLE audit_log ENABLE TRIGGER USER"))
        conn.execute(text("UPDATE audit_head SET seq = 1,"
                          " hash = (SELECT hash FROM audit_log WHERE seq = 1)"))
    with cli_database.connect() as conn:
        assert audit.verify(conn).ok
        assert audit.verify(conn, audit.anchor.read(anchors)).problems == [
            "anchor (line 1, seq 2, anchored " + json.loads(anchors.read_text())["at"]
            + ") does not match: the chain ends at seq 1; the chain was rewritten at or "
              "before seq 2"]


def test_an_empty_chain_anchors_the_genesis(cli_database: Engine, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    anchors = tmp_path / "anchors.jsonl"
    assert cli.main(["audit", "anchor", "--anchors", str(anchors)]) == 0
    line = json.loads(anchors.read_text())
    assert (line["seq"], line["records"], line["hash"]) == (0, 0, GENESIS_HASH.hex())
    write(cli_database, 1)
    capsys.readouterr()
    assert cli.main(["audit", "verify", "--anchors", str(anchors)]) == 0
    assert "chain intact, 1 records; 1 anchor(s)" in capsys.readouterr().out
    forged = {**line, "hash": "11" * 32}  # a genesis that is not the genesis
    anchors.write_text(json.dumps(forged) + "\n")
    assert cli.main(["audit", "verify", "--anchors", str(anchors)]) == 1
    assert "TAMPERED: anchor (line 1, seq 0" in capsys.readouterr().out


@pytest.mark.parametrize("bad_line", [
    "not json", '{"seq": 3}', '{"seq": -1, "hash": "' + "00" * 32 + '", "records": 0, "at": "x"}',
    '{"seq": 3, "hash": "abcd", "records": 3, "at": "x"}', "[1, 2]",
])
def test_a_malformed_anchor_log_is_a_usage_error(cli_database: Engine, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str],
                                                 bad_line: str) -> None:
    anchors = tmp_path / "anchors.jsonl"
    assert cli.main(["audit", "anchor", "--anchors", str(anchors)]) == 0
    with anchors.open("a") as log:
        log.write("\n" + bad_line + "\n")
    capsys.readouterr()
    assert cli.main(["audit", "verify", "--anchors", str(anchors)]) == 2
    err = capsys.readouterr().err
    assert f"settlepay: {anchors}: line 3 is not an anchor" in err


def test_without_an_anchor_log_anchor_is_a_usage_error_and_a_missing_log_too(
        cli_database: Engine, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["audit", "anchor"]) == 2
    assert "SETTLEPAY_AUDIT_ANCHOR_PATH" in capsys.readouterr().err
    missing = tmp_path / "gone.jsonl"
    assert cli.main(["audit", "verify", "--anchors", str(missing)]) == 2
    assert f"cannot read the anchor log {missing}" in capsys.readouterr().err


def test_anchors_of_archived_partitions_are_checked_against_the_archive(
        migrated_with_a_trail: Engine, tmp_path: Path) -> None:
    """Anchors at 2 (inside a detached partition), 4 (an archive's last record) and 7: held;
    one forged at 6 is found while its detached partition is in the database; once the
    partitions are dropped, only what the archive recorded (its boundary hashes) is checked."""
    engine = migrated_with_a_trail
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE audit_log_s000000000005"))
        partitions.ensure(conn, datetime.now(UTC), audit_records_per_partition=3)
    log = tmp_path / "anchors.jsonl"
    with engine.connect() as conn:  # as if anchored when record 2 was the head
        audit.anchor.append(log, audit.Anchor(2, bytes(conn.execute(text(
            "SELECT hash FROM audit_log WHERE seq = 2")).scalar_one()), 2, "2026-11-01T00:00Z"))
        audit.anchor.append(log, audit.anchor.head(conn))  # 4
    write(engine, 3)
    with engine.connect() as conn:
        audit.anchor.append(log, audit.anchor.head(conn))  # 7
    assert [anchor.seq for anchor in audit.anchor.read(log)] == [2, 4, 7]
    write(engine, 1)  # records 5 .. 8: [5, 8) full, [8, 11) being written
    with engine.begin() as conn:
        assert partitions.archive(conn, {"audit_log": datetime.now(UTC)
                                         + timedelta(minutes=1)}) == [
            "audit_log_s000000000001", "audit_log_s000000000005"]
    assert sorted(partition_of(engine)) == [8]
    anchors = audit.anchor.read(log)
    with engine.connect() as conn:
        found = audit.verify(conn, anchors)
    assert found.ok and (found.anchors_checked, found.anchors_unchecked) == (3, 0), found
    forged = audit.Anchor(6, b"\x07" * 32, 6, "2026-12-01T00:00:00+00:00", line=4)
    with engine.connect() as conn:
        assert audit.verify(conn, [*anchors, forged]).problems[0].startswith(
            "anchor (line 4, seq 6, anchored 2026-12-01T00:00:00+00:00) does not match: "
            "the chain holds ")
    with engine.begin() as conn:  # dumped and dropped, as the operator does
        conn.execute(text("DROP TABLE audit_log_s000000000001"))
        conn.execute(text("DROP TABLE audit_log_s000000000005"))
    with engine.connect() as conn:
        found = audit.verify(conn, [*anchors, forged])
    assert found.ok and (found.anchors_checked, found.anchors_unchecked) == (2, 2), found


def test_anchor_every_interval_appends_until_sigterm_and_a_database_outage_is_survived(
        cli_database: Engine, tmp_path: Path) -> None:
    """`settlepay audit anchor --every S` (the compose service `audit-anchor`) anchors each
    interval, carries on while the database refuses connections, and exits 0 on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    anchors = tmp_path / "audit-anchors.jsonl"
    url = cli_database.url.render_as_string(hide_password=False)
    env = {**os.environ, "SETTLEPAY_DATABASE_URL": url,
           "SETTLEPAY_AUDIT_ANCHOR_PATH": str(anchors)}
    root = Path(__file__).resolve().parents[2]

    def lines() -> list[dict]:
        return [json.loads(line) for line in anchors.read_text().splitlines()] \
            if anchors.exists() else []

    def wait_for(count: int) -> None:
        deadline = time.monotonic() + 30
        while len(lines()) < count:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, f"{len(lines())} anchors, wanted {count}"
            time.sleep(0.05)

    process = subprocess.Popen([sys.executable, "-m", "settlepay.cli", "audit", "anchor",
                                "--every", "0.2"], cwd=root, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(2)
        with cli_database.connect() as conn:
            head = conn.execute(text("SELECT max(seq) FROM audit_log")).scalar() or 0
        assert {line["seq"] for line in lines()} == {head}
        # The database refuses this role's connections for a while: reported, not fatal.
        database = cli_database.url.database
        admin = create_engine(cli_database.url.set(database="postgres"),
                              isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS false'))
            try:
                time.sleep(0.8)
                assert process.poll() is None
            finally:
                with admin.connect() as conn:
                    conn.execute(text(f'ALTER DATABASE "{database}" WITH ALLOW_CONNECTIONS true'))
        finally:
            admin.dispose()
        before = len(lines())
        wait_for(before + 2)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "audit anchor failed: OperationalError" in err
    assert len(out.splitlines()) == len(lines())
