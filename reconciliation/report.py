"""The reconciliation report a person would rather look at: PNG charts of a run's breaks (by
class, by day) drawn with matplotlib on its Agg backend (no display, no pyplot global state),
and an HTML page showing them with the run's summary and its breaks.

    charts(breaks)                       {file name: PNG bytes}, always the two CHARTS
    html_report(run, breaks, ...)        the page; charts embedded as base64 data URIs, or
                                         linked by the names of files written beside it
Pure rendering over the payloads of commands.reconciliation (`run_payload`, `break_payload`):
no database, no gateway.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

BY_CLASS = "breaks-by-class.png"
BY_DAY = "breaks-by-day.png"
CHARTS = (BY_CLASS, BY_DAY)
BAR_COLOUR = "#c0392b"


def breaks_by_class(breaks: list[dict[str, Any]]) -> dict[str, int]:
    return dict(sorted(Counter(b["class"] for b in breaks).items()))


def breaks_by_day(breaks: list[dict[str, Any]]) -> dict[str, int]:
    """Each break on the day its business operation began (its earliest evidence), else the
    day it was found."""
    days: Counter[str] = Counter()
    for b in breaks:
        times = [e.get("created") for side in ("ours", "gateway")
                 for e in b["evidence"].get(side, []) if e.get("created")]
        day = (datetime.fromtimestamp(min(times), UTC).date().isoformat() if times
               else str(b["created_at"])[:10])
        days[day] += 1
    return dict(sorted(days.items()))


def bar_chart(title: str, counts: Mapping[str, int], *, horizontal: bool) -> bytes:
    """One bar chart as PNG bytes; 'no breaks' written on it when `counts` is empty."""
    rows = max(len(counts), 1)
    size = (8.0, 1.2 + 0.4 * rows) if horizontal else (max(6.0, 1.0 + 0.6 * rows), 4.0)
    figure = Figure(figsize=size, dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.set_title(title)
    labels, values = list(counts), list(counts.values())
    if not counts:
        axes.text(0.5, 0.5, "no breaks", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    elif horizontal:
        bars = axes.barh(labels, values, color=BAR_COLOUR)
        axes.invert_yaxis()                     # first class on top
        axes.bar_label(bars, padding=3)
        axes.margins(x=0.08)                    # room for the labels
        axes.set_xlabel("breaks")
        axes.xaxis.get_major_locator().set_params(integer=True)
    else:
        bars = axes.bar(labels, values, color=BAR_COLOUR)
        axes.bar_label(bars, padding=3)
        axes.margins(y=0.12)
        axes.set_ylabel("breaks")
        axes.yaxis.get_major_locator().set_params(integer=True)
        axes.tick_params(axis="x", labelrotation=45)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def charts(breaks: list[dict[str, Any]]) -> dict[str, bytes]:
    return {BY_CLASS: bar_chart("breaks by class", breaks_by_class(breaks), horizontal=True),
            BY_DAY: bar_chart("breaks by day", breaks_by_day(breaks), horizontal=False)}


def html_report(run: dict[str, Any], breaks: list[dict[str, Any]], *,
                images: Mapping[str, bytes] | None = None,
                links: Mapping[str, str] | None = None) -> str:
    """The page. Each chart of CHARTS is linked by `links[chart]` (a file written beside the
    page) when given, else embedded as a base64 data URI of `images` (default:
    `charts(breaks)`)."""
    if links is None and images is None:
        images = charts(breaks)

    def img(name: str, alt: str) -> str:
        if links is not None:
            src = html.escape(links[name])
        else:
            assert images is not None
            src = "data:image/png;base64," + base64.b64encode(images[name]).decode("ascii")
        return f'<img src="{src}" alt="{html.escape(alt)}">'

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
<h2>Breaks by class</h2>{img(BY_CLASS, 'breaks by class')}
<h2>Breaks by day</h2>{img(BY_DAY, 'breaks by day')}
<h2>Breaks</h2><table><tr><th>id</th><th>class</th><th>key</th><th>amount</th><th>status</th>
<th>detail</th></tr>{rows}</table></body></html>"""
