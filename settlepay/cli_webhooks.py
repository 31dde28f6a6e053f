"""`settlepay webhooks ...`: run the dispatcher, and look at or re-drive partner webhooks.

    settlepay webhooks dispatch                         the dispatcher process (N may run)
    settlepay webhooks endpoints [--partner P]          endpoints, their status and failures
    settlepay webhooks attempts (--endpoint E | --event V) [--limit N]
    settlepay webhooks resend EVENT ENDPOINT            one more attempt (not retried)
    settlepay webhooks recover ENDPOINT SINCE           resend what failed since (<= 14 days)

Doors into webhooks/ and commands/webhooks.py; changes are audited as `system:cli`. Exit 0, 1
when the thing named does not exist or the command refused, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from settlepay.cli_commands import OK, USAGE, NoDatabase, parse_since
from settlepay.config import get_settings

if TYPE_CHECKING:
    from sqlalchemy import Engine

NOT_FOUND = 1
ACTOR = "system:cli"


def dispatch(args: argparse.Namespace) -> int:
    from webhooks.dispatcher import main as dispatcher_main

    return dispatcher_main(get_settings())


def _engine() -> Engine:
    from settlepay.db import make_engine

    settings = get_settings()
    if not settings.database_url:
        print("settlepay: SETTLEPAY_DATABASE_URL (or DATABASE_URL) is not set", file=sys.stderr)
        raise NoDatabase
    return make_engine(settings.sqlalchemy_url, pool_size=1, settings=settings)


def _show(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def _table(header: list[str], rows: list[list[object]]) -> None:
    cells = [header] + [[_show(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    for row in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())


def endpoints(args: argparse.Namespace) -> int:
    from store import webhooks as store

    try:
        engine = _engine()
    except NoDatabase:
        return USAGE
    try:
        with engine.connect() as conn:
            rows = store.list_endpoints(conn, partner_id=args.partner)
    finally:
        engine.dispose()
    _table(["ID", "PARTNER", "STATUS", "REASON", "FAILING SINCE", "EVENT TYPES", "URL"],
           [[r["id"], r["partner_id"], r["status"], r["disabled_reason"], r["failing_since"],
             ",".join(r["event_types"]), r["url"]] for r in rows])
    print(f"{len(rows)} endpoint(s)", file=sys.stderr)
    return OK


def attempts(args: argparse.Namespace) -> int:
    from store import webhooks as store

    if (args.endpoint is None) == (args.event is None):
        print("settlepay webhooks attempts: name one of --endpoint or --event", file=sys.stderr)
        return USAGE
    try:
        engine = _engine()
    except NoDatabase:
        return USAGE
    try:
        with engine.connect() as conn:
            rows = store.attempts(conn, partner_id=None, endpoint_id=args.endpoint,
                                  event_id=args.event, limit=args.limit)
    finally:
        engine.dispose()
    _table(["AT", "EVENT", "ENDPOINT", "TRIGGER", "N", "STATUS", "HTTP", "MS", "NEXT",
            "ERROR"],
           [[r["started_at"], r["event_id"], r["endpoint_id"], r["trigger"],
             r["attempt_number"], r["status"], r["response_status_code"], r["duration_ms"],
             r["next_attempt_at"], r["error"]] for r in rows])
    return OK


def _change(work: Any) -> int:
    """Run `work(conn, now)` in a transaction; print a refusal or a missing row as exit 1."""
    from commands import webhooks as commands
    from settlepay.db import run_in_transaction

    try:
        engine = _engine()
    except NoDatabase:
        return USAGE
    try:
        message = run_in_transaction(engine, lambda conn: work(conn, datetime.now(UTC)))
    except commands.WebhookRefused as refused:
        print(f"refused: {refused.refusal.code}: {refused.refusal.reason}", file=sys.stderr)
        return NOT_FOUND
    except LookupError as missing:
        print(f"not found: {missing.args[0]}", file=sys.stderr)
        return NOT_FOUND
    finally:
        engine.dispose()
    print(message)
    return OK


def resend(args: argparse.Namespace) -> int:
    from commands import webhooks as commands
    from store import webhooks as store

    def work(conn: Any, now: datetime) -> str:
        event = store.get_event(conn, args.event_id)
        endpoint = store.get_endpoint(conn, args.endpoint_id)
        if event is None:
            raise LookupError(f"event {args.event_id}")
        if endpoint is None:
            raise LookupError(f"endpoint {args.endpoint_id}")
        commands.resend(conn, event, endpoint, actor=ACTOR, now=now)
        return f"queued: {args.event_id} -> {args.endpoint_id} (one manual attempt)"

    return _change(work)


def recover(args: argparse.Namespace) -> int:
    from commands import webhooks as commands
    from store import webhooks as store

    try:
        since = parse_since(args.since)
    except ValueError:
        print(f"settlepay: {args.since!r} is not an ISO 8601 timestamp", file=sys.stderr)
        return USAGE

    def work(conn: Any, now: datetime) -> str:
        endpoint = store.get_endpoint(conn, args.endpoint_id, for_update=True)
        if endpoint is None:
            raise LookupError(f"endpoint {args.endpoint_id}")
        count = commands.recover(conn, endpoint, since=since, actor=ACTOR, now=now)
        return f"queued: {count} failed event(s) to {args.endpoint_id} again"

    return _change(work)
