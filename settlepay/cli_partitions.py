"""`settlepay partitions ensure|archive`: maintenance of the partitioned append-only tables.

    partitions ensure                  make the partitions the next writes need (run daily,
                                       and once after `settlepay migrate`)
    partitions archive                 detach the partitions wholly past their table's retention
                                       (--audit-keep-days, --outbox-keep-days,
                                       --attempts-keep-days); dump them, then drop them

The SQL is store/partitions.py's; this module is a door into it.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

from settlepay.cli_commands import OK, USAGE, _database_settings, _engine


def _run(work) -> int:  # noqa: ANN001 - a function of one Connection
    settings = _database_settings()
    if settings is None:
        return USAGE
    engine = _engine(settings)
    try:
        with engine.begin() as conn:
            names = work(conn)
    finally:
        engine.dispose()
    for name in names:
        print(name)
    return OK


def ensure(args: argparse.Namespace) -> int:
    from store import partitions

    def work(conn):  # noqa: ANN001, ANN202
        return partitions.ensure(conn, datetime.now(UTC), months_ahead=args.months_ahead,
                                 audit_records_per_partition=args.audit_records_per_partition)

    code = _run(work)
    print("settlepay partitions: ahead of time", file=sys.stderr)
    return code


def archive(args: argparse.Namespace) -> int:
    from store import partitions

    now = datetime.now(UTC)
    before = {partitions.AUDIT: now - timedelta(days=args.audit_keep_days),
              "outbox_events": now - timedelta(days=args.outbox_keep_days),
              "webhook_attempts": now - timedelta(days=args.attempts_keep_days)}
    code = _run(lambda conn: partitions.archive(conn, before))
    print("settlepay partitions: detached what is past its retention; dump those tables"
          " (pg_dump -t NAME), then drop them", file=sys.stderr)
    return code
