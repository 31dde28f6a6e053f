"""/v1/reconciliation over the real stack: operators run, read and resolve; partner keys are
refused; bad input is a 4xx problem, never a 500."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from tests.support import reconciliation as rec
from tests.support.factories import audit_actions, events, make_player, wait_until
from tests.support.stack import Stack


def iso(t: int) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat()


async def completed(http: httpx.AsyncClient, headers: dict[str, str],
                    run_id: str) -> dict[str, Any]:
    """The run once its workflow recorded it."""
    async def probe() -> dict[str, Any] | None:
        got = await http.get(f"/v1/reconciliation/runs/{run_id}", headers=headers)
        assert got.status_code == 200, got.text
        return got.json() if got.json()["status"] == "completed" else None
    return await wait_until(probe, timeout=60)


async def test_an_operator_runs_reads_and_resolves_a_break_with_a_reason(
        stack: Stack, worker, http: httpx.AsyncClient):
    start = await rec.next_second()
    player = make_player(stack.engine)
    wid = rec.paid_withdrawal(stack, player, 900, gateway_ref="po_lost")
    until = await rec.next_second()
    operator = player.operator
    made = await http.post("/v1/reconciliation/runs", headers=operator,
                           json={"since": iso(start), "until": iso(until), "grace_seconds": 0})
    assert made.status_code == 202, made.text
    started = made.json()
    assert made.headers["location"] == f"/v1/reconciliation/runs/{started['id']}"
    assert started["id"].startswith("reconciliation-")
    assert (started["status"], started["verdict"], started["items"]) == ("running", None, None)
    assert [datetime.fromisoformat(started[k]) for k in ("window_start", "window_end")] == [
        datetime.fromtimestamp(t, UTC) for t in (start, until)]
    run = await completed(http, operator, started["id"])
    assert (run["id"], run["window_start"], run["window_end"]) == (
        started["id"], started["window_start"], started["window_end"])
    assert run["status"] == "completed"
    assert run["created_by"] == f"{started['created_by']}:{started['id']}"   # the operator
    assert run["verdict"] == "breaks" and run["counts"] == {"payout_missing": 1}
    assert (run["items"], run["match_rate_by_count"]) == (1, 0.0)
    assert run["residual"] == {"USD": 900}
    got = await http.get(f"/v1/reconciliation/runs/{run['id']}", headers=operator)
    assert got.status_code == 200 and got.json() == run
    listed = await http.get("/v1/reconciliation/runs", headers=operator, params={"limit": 100})
    assert run["id"] in [r["id"] for r in listed.json()["data"]]
    queue = await http.get("/v1/reconciliation/breaks", headers=operator,
                           params={"status": "open", "run_id": run["id"]})
    assert queue.status_code == 200
    [item] = queue.json()["data"]
    assert (item["class"], item["business_key"], item["partner_id"]) == (
        "payout_missing", f"{wid}:1", player.partner_id)
    assert set(item["evidence"]) == {"gateway", "ours", "ledger", "detail"}
    resolved = await http.post(f"/v1/reconciliation/breaks/{item['id']}/resolve",
                               headers=operator,
                               json={"reason": "payout re-sent by treasury, ref T-1"})
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["status"], resolved.json()["resolution"]) == (
        "resolved", "payout re-sent by treasury, ref T-1")
    again = await http.post(f"/v1/reconciliation/breaks/{item['id']}/resolve",
                            headers=operator, json={"reason": "twice"})
    assert again.status_code == 409
    assert again.json()["code"] == "reconciliation_break_not_open"
    assert "reconciliation.break.resolved" in audit_actions(stack.engine, str(item["id"]))
    assert "reconciliation.run.recorded" in audit_actions(stack.engine, run["id"])
    assert events(stack.engine, run["id"]) == ["reconciliation.run.completed"]
    still = await http.get("/v1/reconciliation/breaks", headers=operator,
                           params={"status": "open", "run_id": run["id"]})
    assert still.json()["data"] == []


async def test_a_run_shows_as_running_until_its_workflow_records_it(stack: Stack,
                                                                   http: httpx.AsyncClient):
    operator = make_player(stack.engine).operator     # no worker: the workflow waits
    start = await rec.next_second()
    until = await rec.next_second()
    made = await http.post("/v1/reconciliation/runs", headers=operator,
                           json={"since": iso(start), "until": iso(until)})
    assert made.status_code == 202, made.text
    started = made.json()
    got = await http.get(f"/v1/reconciliation/runs/{started['id']}", headers=operator)
    assert got.status_code == 200 and got.json() == started
    assert got.json()["status"] == "running"
    handle = stack.client.get_workflow_handle(started["id"])
    described = await handle.describe()
    assert described.workflow_type == "Reconciliation"
    await handle.terminate("test: never ran")       # ended without recording a run
    gone = await http.get(f"/v1/reconciliation/runs/{started['id']}", headers=operator)
    assert gone.status_code == 404
    assert gone.headers["content-type"].startswith("application/problem+json")


async def test_partner_keys_cannot_see_or_touch_reconciliation(stack: Stack,
                                                             http: httpx.AsyncClient):
    player = make_player(stack.engine)
    for method, path, body in (("GET", "/v1/reconciliation/runs", None),
                               ("POST", "/v1/reconciliation/runs", {}),
                               ("GET", "/v1/reconciliation/runs/recon_x", None),
                               ("GET", "/v1/reconciliation/breaks", None),
                               ("POST", "/v1/reconciliation/breaks/1/resolve",
                                {"reason": "mine now"})):
        answer = await http.request(method, path, headers=player.headers, json=body)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")


async def test_bad_reconciliation_requests_are_4xx_problems(stack: Stack,
                                                           http: httpx.AsyncClient):
    operator = make_player(stack.engine).operator
    now = datetime.now(UTC)
    cases = [
        ("POST", "/v1/reconciliation/runs", {"since": now.isoformat(),
                                             "until": (now - timedelta(hours=1)).isoformat()},
         422),
        ("POST", "/v1/reconciliation/runs", {"until": (now + timedelta(days=1)).isoformat()},
         422),
        ("POST", "/v1/reconciliation/runs", {"since": "2026-01-01T00:00:00"}, 422),
        ("POST", "/v1/reconciliation/runs", {"surprise": 1}, 422),
        ("GET", "/v1/reconciliation/runs/recon_nope", None, 404),
        ("GET", "/v1/reconciliation/breaks?status=sideways", None, 422),
        ("POST", "/v1/reconciliation/breaks/987654321/resolve", {"reason": "why not"}, 404),
        ("POST", "/v1/reconciliation/breaks/1/resolve", {"reason": ""}, 422),
    ]
    for method, path, body, status in cases:
        answer = await http.request(method, path, headers=operator, json=body)
        assert answer.status_code == status, (path, body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
