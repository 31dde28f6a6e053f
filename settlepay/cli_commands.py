"""The one-process commands of the `settlepay` console script (see settlepay/cli.py).

    migrate        apply the Alembic migrations to SETTLEPAY_DATABASE_URL
    api            serve the HTTP API with uvicorn
    worker         run the Temporal workers (workers/main.py)
    ledger check   verify the ledger's invariants, exit 1 on a violation
    audit verify   verify the audit hash chain (and its anchors), exit 1 on tampering
    audit anchor   append the audit chain head to the anchor log outside the database
    audit export   audit records as JSON lines

Each function takes the parsed arguments and returns the process exit code. Heavy imports
happen inside the functions, so `settlepay --help` stays fast. Nothing here decides business
rules or writes money: these are doors into the packages that do.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

from settlepay.config import Settings, get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

T = TypeVar("T")

# Exit codes: 0 fine, 1 the check found a problem, 2 the command could not run as asked.
OK, FOUND_PROBLEMS, USAGE = 0, 1, 2


def _database_settings() -> Settings | None:
    settings = get_settings()
    if not settings.database_url:
        print("settlepay: SETTLEPAY_DATABASE_URL (or DATABASE_URL) is not set; "
              "`settlepay dev` sets it for the processes it starts", file=sys.stderr)
        return None
    return settings


def _engine(settings: Settings) -> Engine:
    from settlepay.db import make_engine

    # One-shot commands need one connection, not a pool.
    return make_engine(settings.sqlalchemy_url, pool_size=1, settings=settings)


class NoDatabase(Exception):
    """No database is configured; the message was printed."""


def in_one_snapshot(work: Callable[[Any], T]) -> T:
    """Run `work(conn)` against ONE consistent snapshot (REPEATABLE READ) of the configured
    database, so rows committing meanwhile cannot produce a false report. Raises NoDatabase."""
    settings = _database_settings()
    if settings is None:
        raise NoDatabase
    engine = _engine(settings)
    try:
        with engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
            with conn.begin():
                return work(conn)
    finally:
        engine.dispose()


def report(name: str, checks: list[str], problems: list[str], label: str, all_good: str,
           problem_summary: str) -> int:
    """Print what a check command verified and what it found; the exit code says which."""
    for check in checks:
        print(f"checked: {check}")
    for problem in problems:
        print(f"{label}: {problem}")
    if problems:
        print(f"{name}: {problem_summary}", file=sys.stderr)
        return FOUND_PROBLEMS
    print(f"{name}: {all_good}")
    return OK


def migrate(args: argparse.Namespace) -> int:
    from settlepay import migrate as migrations

    settings = _database_settings()
    if settings is None:
        return USAGE
    migrations.upgrade(settings.sqlalchemy_url)
    print("settlepay: database migrated to the latest revision")
    return OK


def api(args: argparse.Namespace) -> int:
    from api.server import serve

    # uvicorn handles SIGINT/SIGTERM itself: it stops accepting, finishes requests, runs lifespan.
    serve(get_settings(), host=getattr(args, "host", None), port=getattr(args, "port", None))
    return OK


def worker(args: argparse.Namespace) -> int:
    from workers.main import main as worker_main

    return worker_main(get_settings(), getattr(args, "task_queue", None))


def ledger_check(args: argparse.Namespace) -> int:
    from ledger import check

    try:
        violations = in_one_snapshot(check.run)
    except NoDatabase:
        return USAGE
    return report("ledger check", check.INVARIANTS, violations, "VIOLATION",
                  f"{len(check.INVARIANTS)} invariants hold", f"{len(violations)} violation(s)")


def _anchor_path(args: argparse.Namespace) -> str:
    return getattr(args, "anchors", None) or get_settings().audit_anchor_path


def audit_verify(args: argparse.Namespace) -> int:
    import audit

    path = _anchor_path(args)
    try:
        anchors = audit.anchor.read(path) if path else []
    except audit.AnchorLogError as error:
        print(f"settlepay: {error}", file=sys.stderr)
        return USAGE
    try:
        report = in_one_snapshot(lambda conn: audit.verify(conn, anchors))
    except NoDatabase:
        return USAGE
    for problem in report.problems:
        print(f"TAMPERED: {problem}")
    if not report.ok:
        print(f"audit verify: {len(report.problems)} problem(s) in {report.records} records",
              file=sys.stderr)
        return FOUND_PROBLEMS
    anchored = ""
    if path:
        anchored = f"; {report.anchors_checked} anchor(s) of {path} hold"
        if report.anchors_unchecked:
            anchored += (f", {report.anchors_unchecked} in archived partitions no longer in the"
                         " database not checked (check them against the partitions' dumps)")
    print(f"audit verify: chain intact, {report.records} records{anchored}")
    return OK


def audit_anchor(args: argparse.Namespace) -> int:
    """Append the committed chain head to the anchor log (production: write-once storage,
    on a schedule). Reading the head is cheap; the chain is verified by `audit verify`.
    With --every SECONDS it anchors again each interval until SIGTERM / SIGINT (the compose
    service `audit-anchor`); a failed anchor is reported and tried again at the next one."""
    import signal
    import threading

    from sqlalchemy.exc import SQLAlchemyError

    path = _anchor_path(args)
    if not path:
        print("settlepay: no anchor log: set SETTLEPAY_AUDIT_ANCHOR_PATH or pass --anchors FILE",
              file=sys.stderr)
        return USAGE
    every = getattr(args, "every", None)
    if every is None:
        return _anchor_once(path)
    if every <= 0:
        print("settlepay: --every must be a positive number of seconds", file=sys.stderr)
        return USAGE
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        try:
            _anchor_once(path)
        except SQLAlchemyError as error:     # the database is away: try at the next interval
            print(f"settlepay: audit anchor failed: {type(error).__name__}", file=sys.stderr)
        stop.wait(every)
    return OK


def _anchor_once(path: str) -> int:
    import audit

    try:
        head = in_one_snapshot(audit.anchor.head)
    except NoDatabase:
        return USAGE
    try:
        audit.anchor.append(path, head)
    except OSError as error:
        print(f"settlepay: cannot append to the anchor log {path}: {error}", file=sys.stderr)
        return USAGE
    print(head.to_json(), flush=True)
    print(f"audit anchor: seq {head.seq} appended to {path}", file=sys.stderr, flush=True)
    return OK


def parse_since(value: str | None) -> datetime | None:
    """ISO 8601; a timestamp without a zone is taken as UTC (audit times are stored in UTC)."""
    if value is None:
        return None
    since = datetime.fromisoformat(value)
    return since if since.tzinfo else since.replace(tzinfo=UTC)


def audit_export(args: argparse.Namespace) -> int:
    import audit

    settings = _database_settings()
    if settings is None:
        return USAGE
    try:
        since = parse_since(getattr(args, "since", None))
    except ValueError:
        print(f"settlepay: --since {args.since!r} is not an ISO 8601 timestamp", file=sys.stderr)
        return USAGE
    output = getattr(args, "output", "-") or "-"
    engine = _engine(settings)
    try:
        with engine.connect() as conn:
            if output == "-":
                count = audit.export(conn, sys.stdout, since)
                sys.stdout.flush()
            else:
                with open(output, "w", encoding="utf-8") as out:
                    count = audit.export(conn, out, since)
    finally:
        engine.dispose()
    print(f"audit export: {count} records", file=sys.stderr)
    return OK


def api_keys_create(args: argparse.Namespace) -> int:
    """Make an API key and print it once: the first operator key of a production deployment,
    which has no development key (later keys can be made through POST /v1/api_keys)."""
    import getpass

    from commands.api_keys import ApiKeyRefused, create_api_key

    settings = _database_settings()
    if settings is None:
        return USAGE
    scopes = None if args.scopes is None else [s.strip() for s in args.scopes.split(",")
                                               if s.strip()]
    engine = _engine(settings)
    try:
        with engine.begin() as conn:
            key_id, plaintext = create_api_key(conn, args.role, args.partner, scopes, args.name,
                                               actor=f"cli:{getpass.getuser()}",
                                               api_version=args.api_version)
    except ApiKeyRefused as refused:
        print(f"settlepay: {refused.refusal.reason}", file=sys.stderr)
        return USAGE
    finally:
        engine.dispose()
    print(f"api key {key_id} ({args.role}{', partner ' + args.partner if args.partner else ''})",
          file=sys.stderr)
    print("the secret below is shown once and cannot be recovered: store it now", file=sys.stderr)
    print(plaintext)
    return OK
