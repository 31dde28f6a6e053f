"""`settlepay reconcile` against the real stack: a summary, the run as JSON, an HTML report
with its PNG charts (embedded, or beside it with --png), the exit code of the verdict."""

from __future__ import annotations

import base64
import json
import re
import struct
import time
from datetime import UTC, datetime

import pytest

from settlepay import cli
from settlepay.config import get_settings
from tests.support import reconciliation as rec
from tests.support.factories import make_player
from tests.support.stack import STRIPE_KEY, Stack


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


def assert_png(data: bytes) -> None:
    """A real PNG chart: the signature, its header chunk first, a drawing of some size."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width >= 300 and height >= 100 and len(data) > 2_000


def whole_second() -> int:
    now = int(time.time())
    while int(time.time()) == now:    # the next second's start: nothing older falls inside
        time.sleep(0.01)
    return now + 1


@pytest.fixture
def cli_env(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    settings = stack.settings
    for name, value in (("DATABASE_URL", settings.database_url),
                        ("STRIPE_API_BASE", stack.stripe_url), ("STRIPE_API_KEY", STRIPE_KEY),
                        ("TEMPORAL_ADDRESS", settings.temporal_address),
                        ("TEMPORAL_NAMESPACE", settings.temporal_namespace)):
        monkeypatch.setenv(f"SETTLEPAY_{name}", str(value))
    get_settings.cache_clear()
    yield stack
    get_settings.cache_clear()


def test_reconcile_prints_a_summary_writes_json_and_an_html_report(cli_env: Stack, tmp_path,
                                                                   capsys):
    stack = cli_env
    start = whole_second()
    player = make_player(stack.engine)
    wid = rec.paid_withdrawal(stack, player, 1_100, gateway_ref="po_vanished")
    until = whole_second()
    out_json, out_html = tmp_path / "run.json", tmp_path / "report.html"
    code = cli.main(["reconcile", "--since", iso(start), "--until", iso(until), "--grace", "0",
                     "--json", str(out_json), "--html", str(out_html)])
    printed = capsys.readouterr().out
    assert code == 1                                  # breaks
    assert "breaks" in printed and "payout_missing" in printed
    written = json.loads(out_json.read_text())
    assert written["run"]["verdict"] == "breaks"
    assert written["run"]["counts"] == {"payout_missing": 1}
    assert [b["business_key"] for b in written["breaks"]] == [f"{wid}:1"]
    report = out_html.read_text()
    assert "breaks by class" in report and "payout_missing" in report
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', report)
    assert len(embedded) == 2                        # by class, by day: matplotlib PNGs
    for chart in embedded:
        assert_png(base64.b64decode(chart, validate=True))
    linked = cli.main(["reconcile", "--since", iso(start), "--until", iso(until), "--grace", "0",
                       "--no-repair", "--json", str(tmp_path / "again.json"),
                       "--html", str(tmp_path / "linked.html"), "--png"])
    assert linked == 1
    pngs = sorted(tmp_path.glob("linked-*.png"))
    assert [p.name for p in pngs] == ["linked-breaks-by-class.png", "linked-breaks-by-day.png"]
    for png in pngs:
        assert_png(png.read_bytes())
    assert re.findall(r'<img src="([^"]+)"', (tmp_path / "linked.html").read_text()) == [
        "linked-breaks-by-class.png", "linked-breaks-by-day.png"]
    clean = cli.main(["reconcile", "--since", iso(until), "--until", iso(whole_second()),
                      "--json", str(tmp_path / "clean.json")])
    assert clean == 0
    assert json.loads((tmp_path / "clean.json").read_text())["run"]["verdict"] == "reconciled"


def test_reconcile_refuses_an_empty_window(cli_env: Stack, capsys):
    now = iso(int(time.time()))
    assert cli.main(["reconcile", "--since", now, "--until", now]) == 2
    assert cli.main(["reconcile", "--since", "yesterday"]) == 2
