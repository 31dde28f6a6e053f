"""`settlepay reconcile` against the real stack: a summary, the run as JSON, an HTML report
with its charts, the exit code of the verdict."""

from __future__ import annotations

import json
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
    assert "<svg" in report and "breaks by class" in report and "payout_missing" in report
    clean = cli.main(["reconcile", "--since", iso(until), "--until", iso(whole_second()),
                      "--json", str(tmp_path / "clean.json")])
    assert clean == 0
    assert json.loads((tmp_path / "clean.json").read_text())["run"]["verdict"] == "reconciled"


def test_reconcile_refuses_an_empty_window(cli_env: Stack, capsys):
    now = iso(int(time.time()))
    assert cli.main(["reconcile", "--since", now, "--until", now]) == 2
    assert cli.main(["reconcile", "--since", "yesterday"]) == 2
