"""`settlepay reconcile [--since T] [--until T] [--no-repair] [--json F] [--html F] [--png]`: one
reconciliation run from the command line (also what a cron job runs where the worker's daily
Temporal Schedule is not used).

It shows a progress bar while it reads the gateway, prints a readable summary (verdict, match
rates, breaks by class, residual per currency, the open breaks), writes the run and its breaks
as JSON, and with --html a report a person would rather look at: PNG bar charts of breaks by
class and by day (matplotlib, reconciliation/report.py) embedded in the page, or with --png
written as files beside it (beside the JSON without --html). Exit code: 0 reconciled (with or
without pending items), 1 breaks, 2 incomplete or no database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from reconciliation import runner
from reconciliation.model import Window
from settlepay.cli_commands import USAGE
from settlepay.config import Settings, get_settings

EXIT = {"reconciled": 0, "reconciled_with_pending": 0, "breaks": 1, "incomplete": 2}


def _parse_time(value: str | None) -> int | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp())


def reconcile(args: argparse.Namespace) -> int:
    settings = get_settings()
    if not settings.database_url:
        print("settlepay: SETTLEPAY_DATABASE_URL (or DATABASE_URL) is not set")
        return USAGE
    try:
        since, until = _parse_time(args.since), _parse_time(args.until)
    except ValueError as error:
        print(f"settlepay reconcile: {error}")
        return USAGE
    return asyncio.run(_reconcile(settings, since, until, args))


async def _reconcile(settings: Settings, since: int | None, until: int | None,
                     args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from adapters.gateway import from_settings
    from settlepay.cli_commands import _engine

    console = Console()
    engine = _engine(settings)
    until = until or int(time.time())
    if since is None:
        since = await asyncio.to_thread(runner.default_since, engine, "stripe", until)
    if since >= until:
        console.print("settlepay reconcile: --since must be before --until")
        return USAGE
    client = await _temporal(settings, console)
    options = runner.options_from(settings, Window(since, until), repair=not args.no_repair,
                                  actor=f"cli:{_user()}")
    if args.grace is not None:
        options.grace_seconds = args.grace
    with Progress(SpinnerColumn(), TextColumn("[bold]reading the gateway[/] {task.description}"),
                  TextColumn("{task.completed} rows"), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("", total=None)
        result = await runner.run(
            engine, settings, from_settings(settings), options, client=client,
            progress=lambda what, rows: bar.update(task, description=what, completed=rows))
    from commands.reconciliation import break_payload, run_payload
    from store import reconciliation as store
    with engine.connect() as conn:
        breaks = [break_payload(b) for b in store.list_breaks(
            conn, status=None, run_id=result.run["id"], limit=100_000)]
    run = run_payload(result.run)
    _summary(console, run, breaks)
    target = Path(args.json or f"reconciliation-{run['id']}.json")
    target.write_text(json.dumps({"run": run, "breaks": breaks}, indent=2, default=str))
    console.print(f"run written to {target}")
    if args.html or args.png:
        for written in write_report(run, breaks, html_path=args.html, png=args.png,
                                    beside=target):
            console.print(f"report written to {written}")
    engine.dispose()
    return EXIT[run["verdict"]]


async def _temporal(settings: Settings, console: Any) -> Any:
    """A Temporal client to restart orphaned deposits; without one those stay for an operator."""
    from settlepay.temporal import connect
    try:
        return await asyncio.wait_for(connect(settings), timeout=5)
    except Exception as error:   # any failure to connect: run without restarts
        console.print(f"[yellow]Temporal unreachable ({type(error).__name__}): orphaned "
                      "deposits are not restarted in this run[/]")
        return None


def _user() -> str:
    import getpass
    try:
        return getpass.getuser()
    except Exception:   # no user name in a container
        return "unknown"


def write_report(run: dict[str, Any], breaks: list[dict[str, Any]], *, html_path: str | None,
                 png: bool, beside: Path) -> list[Path]:
    """The charts (reconciliation.report): embedded in the HTML page, or with `png` written as
    PNG files beside it (beside the JSON without a page), the page linking them. Returns the
    files written."""
    from reconciliation import report

    images = report.charts(breaks)
    written: list[Path] = []
    links: dict[str, str] | None = None
    if png:
        where = Path(html_path) if html_path else beside
        links = {}
        for name, data in images.items():
            path = where.with_name(f"{where.stem}-{name}")
            path.write_bytes(data)
            written.append(path)
            links[name] = path.name
    if html_path:
        Path(html_path).write_text(report.html_report(run, breaks, images=images, links=links))
        written.append(Path(html_path))
    return written


def _summary(console: Any, run: dict[str, Any], breaks: list[dict[str, Any]]) -> None:
    from rich.table import Table

    colour = {"reconciled": "green", "reconciled_with_pending": "green",
              "breaks": "red", "incomplete": "yellow"}[run["verdict"]]
    console.print(f"[bold]reconciliation {run['id']}[/]  {run['window_start']} -> "
                  f"{run['window_end']}  verdict [bold {colour}]{run['verdict']}[/]")
    console.print(f"  items {run['items']}, matched {run['matched']} "
                  f"({run['match_rate_by_count']:.4%} by count, "
                  f"{run['match_rate_by_amount']:.4%} by amount), pending {run['pending']}, "
                  f"auto-repaired {run['repaired']}, fees booked {run['fees_booked']}, "
                  f"gateway rows read {run['gateway_rows']}")
    if run["error"]:
        console.print(f"  [yellow]{run['error']}[/]")
    console.print(f"  residual per currency: {run['residual'] or 'none'}")
    if run["counts"]:
        table = Table("class", "found", title="breaks by class")
        for cls, n in run["counts"].items():
            table.add_row(cls, str(n))
        console.print(table)
    open_breaks = [b for b in breaks if b["status"] == "open"]
    if open_breaks:
        table = Table("id", "class", "key", "amount", "detail", title="open breaks (operator)")
        for b in open_breaks[:50]:
            table.add_row(str(b["id"]), b["class"], b["business_key"],
                          f"{b['amount']} {b['currency']}", b["evidence"].get("detail", ""))
        console.print(table)
