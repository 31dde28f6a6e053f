"""`settlepay reconcile [--since T] [--until T] [--no-repair] [--json F] [--html F]`: one
reconciliation run from the command line (also what a cron job runs where the worker's daily
Temporal Schedule is not used).

It shows a progress bar while it reads the gateway, prints a readable summary (verdict, match
rates, breaks by class, residual per currency, the open breaks), writes the run and its breaks
as JSON, and with --html a report a person would rather look at (bar charts of breaks by class
and by day, inline SVG: no plotting library is installed in this deployment). Exit code: 0
reconciled (with or without pending items), 1 breaks, 2 incomplete or no database.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import json
import time
from collections import Counter
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
    if args.html:
        Path(args.html).write_text(html_report(run, breaks))
        console.print(f"report written to {args.html}")
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


def _bars(title: str, counts: dict[str, int]) -> str:
    width, row = 640, 22
    top = max(counts.values(), default=1) or 1
    label_width = 200
    height = row * max(len(counts), 1) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'role="img" aria-label="{html.escape(title)}">']
    for i, (label, n) in enumerate(counts.items()):
        y = 20 + i * row
        w = int((width - label_width - 60) * n / top)
        parts.append(f'<text x="0" y="{y + 14}" font-size="13">{html.escape(label)}</text>'
                     f'<rect x="{label_width}" y="{y}" width="{w}" height="{row - 6}" '
                     f'fill="#c0392b"/><text x="{label_width + w + 6}" y="{y + 14}" '
                     f'font-size="13">{n}</text>')
    parts.append("</svg>")
    return "".join(parts)


def html_report(run: dict[str, Any], breaks: list[dict[str, Any]]) -> str:
    by_class = Counter(b["class"] for b in breaks)
    by_day: Counter[str] = Counter()
    for b in breaks:
        times = [e.get("created") for side in ("ours", "gateway")
                 for e in b["evidence"].get(side, []) if e.get("created")]
        day = (datetime.fromtimestamp(min(times), UTC).date().isoformat() if times
               else str(b["created_at"])[:10])
        by_day[day] += 1
    rows = "".join(
        f"<tr><td>{b['id']}</td><td>{html.escape(b['class'])}</td>"
        f"<td>{html.escape(b['business_key'])}</td><td>{b['amount']} {b['currency']}</td>"
        f"<td>{b['status']}</td><td>{html.escape(b['evidence'].get('detail', ''))}</td></tr>"
        for b in breaks)
    esc = {k: html.escape(str(v)) for k, v in run.items()}
    return f"""<!doctype html><html><head><meta charset="utf-8">
<title>Reconciliation {esc['id']}</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 8px;text-align:left}}
table{{border-collapse:collapse}}tr:nth-child(even){{background:#f4f4f4}}</style></head><body>
<h1>Reconciliation {esc['id']}: {esc['verdict']}</h1>
<p>Window {esc['window_start']} &rarr; {esc['window_end']} ({esc['provider']}).
Items {run['items']}, matched {run['matched']} ({run['match_rate_by_count']:.4%} by count,
{run['match_rate_by_amount']:.4%} by amount), pending {run['pending']},
auto-repaired {run['repaired']}, fees booked {run['fees_booked']}.
Residual per currency: {html.escape(json.dumps(run['residual']))}.</p>
<h2>Breaks by class</h2>{_bars('breaks by class', dict(sorted(by_class.items())))}
<h2>Breaks by day</h2>{_bars('breaks by day', dict(sorted(by_day.items())))}
<h2>Breaks</h2><table><tr><th>id</th><th>class</th><th>key</th><th>amount</th><th>status</th>
<th>detail</th></tr>{rows}</table></body></html>"""
