"""The OpenAPI contract, fuzzed: schemathesis over every /v1 operation of the real app.

The app (api.app.create_app) is served over real HTTP on the session database, with a real
Temporal dev server and a worker behind it, and the schemathesis CLI runs all four phases
(examples, coverage, fuzzing, stateful, following the API's links) against its /openapi.json
with every check of issue 13 on every operation: a fixed seed, deterministic generation, a
bounded number of examples per operation.

tests/support/schemathesis_hooks.py makes positive cases what a real client sends (unique
Idempotency-Keys, list cursors naming listed items, whole numbers as JSON integers) and lists,
per operation, the documented business refusals (REFUSALS) schema-valid data may still get;
its check holds every such refusal to its code, never `validation_error`.

EXCLUSIONS (checks turned off for one operation, with the reason) is empty: keep it so; a row
needs a reason a reviewer can check.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import jsonschema_rs
import pytest
from pydantic import BaseModel, ValidationError
from sqlalchemy import Engine
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from api.app import create_app
from api.schemas.api_keys import ApiKeyCreate
from api.schemas.geolocation import GeolocationCheckCreate
from api.schemas.limits import DepositLimitsUpdate, SelfExclusionCreate
from api.schemas.players import PlayerCreate
from api.schemas.reconciliation import ReconciliationRunCreate
from api.schemas.webhooks import WebhookEndpointUpdate
from settlepay.config import Settings
from tests.support import schemathesis_hooks as hooks
from tests.support.api import Keys, assert_problem, make_key, player_body
from tests.support.factories import fund, make_player, mark_kyc_verified
from tests.support.servers import serve_asgi
from tests.support.stack import Stack

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "ignored_auth",
    "missing_required_header",
    "use_after_free",
    "ensure_resource_availability",
)
# schemathesis' other checks, not asked for by issue 13.
OTHER_CHECKS = ("response_headers_conformance", "unsupported_method", "allow_header_conformance",
                "object_level_authorization")
SEED = 13
MAX_EXAMPLES = 10
STATEFUL_EXAMPLES = 30
RUN_SECONDS_MAX = 180


@dataclass(frozen=True)
class Exclusion:
    operation: str                  # "METHOD /path" as in the OpenAPI description
    checks: tuple[str, ...]         # the checks turned off for this operation only
    reason: str


EXCLUSIONS: tuple[Exclusion, ...] = ()
# positive_data_acceptance's own default statuses; an operation with business refusals
# (tests/support/schemathesis_hooks.py REFUSALS) adds their statuses, and the hooks' check
# positive_refusals_are_documented_business_rules holds each such refusal to its code.
ACCEPTED = ("2xx", "3xx", "401", "403", "404", "409", "429", "5xx")
CUSTOM_CHECKS = ("positive_refusals_are_documented_business_rules",)


def _config(exclusions: tuple[Exclusion, ...]) -> str:
    """schemathesis.toml: the business refusals each operation may answer schema-valid data
    with, and the exclusions, as per-operation check settings."""
    # Not on the command line: `--checks` would override the per-operation switches.
    lines = ['[checks]']
    lines += [f"{check}.enabled = true" for check in CHECKS + CUSTOM_CHECKS]
    lines += [f"{check}.enabled = false" for check in OTHER_CHECKS]
    # The stateful phase follows the links the API declares (api/openapi_links.py: player ->
    # retrieve / deposit -> retrieve, withdrawal -> retrieve / second factor -> retrieve), not
    # hundreds of inferred ones it would sample a few of, with scenarios enough to reach each.
    lines += ["", "[phases.stateful]", "inference.algorithms = []",
              f"generation.max-examples = {STATEFUL_EXAMPLES}"]
    for operation, codes in sorted(hooks.REFUSALS.items()):
        statuses = sorted({str(hooks.refusal_status(code)) for code in codes} - set(ACCEPTED))
        expected = ", ".join(f'"{status}"' for status in (*ACCEPTED, *statuses))
        lines += ["", "[[operations]]", f'include-name = "{operation}"',
                  f"checks.positive_data_acceptance.expected-statuses = [{expected}]"]
    for exclusion in exclusions:
        lines += ["", "[[operations]]", f'include-name = "{exclusion.operation}"']
        lines += [f"checks.{check}.enabled = false" for check in exclusion.checks]
    return "\n".join(lines) + "\n"


async def test_every_v1_operation_keeps_its_openapi_contract_under_fuzzing(
        settings: Settings, engine: Engine, temporal_env: WorkflowEnvironment,
        worker: Worker, stack: Stack, tmp_path: Path) -> None:
    # A real worker polls the main task queue (tests/support/stack.py), so the workflows the
    # fuzzer starts really run and answer their Updates (second factor, cancel, review), as in
    # production; without one, an Update would wait for a worker that never comes.
    target = temporal_env.client.service_client.config.target_host
    app_settings = settings.model_copy(update={"temporal_address": target,
                                               "rate_limit_backend": "off"})
    operator = make_key(engine, "operator", None, name="schemathesis operator")
    # A player a withdrawal can start for (any schema-valid amount is covered): the stateful
    # links withdrawal -> second factor -> retrieve then reach a withdrawal awaiting its code.
    ready = make_player(stack.engine, purpose="schemathesis withdrawals")
    mark_kyc_verified(stack.engine, ready)
    fund(stack.engine, ready, 10**14)
    config = tmp_path / "schemathesis.toml"
    config.write_text(_config(EXCLUSIONS))
    st = Path(sys.executable).with_name("st")
    root = Path(__file__).resolve().parents[2]
    env = dict(os.environ, SCHEMATHESIS_HOOKS="tests.support.schemathesis_hooks",
               PYTHONPATH=str(root), SETTLEPAY_ST_WITHDRAWAL_PLAYER=ready.id)
    app = create_app(app_settings, engine=engine)
    operations = sum(len(methods) for path, methods in app.openapi()["paths"].items()
                     if path.startswith("/v1/"))
    with serve_asgi(app) as base:
        started = time.monotonic()
        process = await asyncio.create_subprocess_exec(
            str(st), "--config-file", str(config), "run", f"{base}/openapi.json",
            "--include-path-regex", "^/v1/",
            "--phases", "examples,coverage,fuzzing,stateful",
            "-H", f"Authorization: Bearer {operator.plaintext}",
            "--seed", str(SEED), "--generation-deterministic",
            "--max-examples", str(MAX_EXAMPLES), "--workers", "1",
            # The API refuses NUL in any text by design (api/nul_bytes.py, 422 documented).
            "--generation-allow-x00", "false",
            "--no-color", "--suppress-health-check", "all",
            cwd=str(tmp_path), env=env,     # anything schemathesis writes stays there
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(process.communicate(), RUN_SECONDS_MAX + 60)
        elapsed = time.monotonic() - started
    report = out.decode(errors="replace")
    print(report)
    print(f"schemathesis ran {elapsed:.0f} s (limit {RUN_SECONDS_MAX} s)")
    assert process.returncode == 0, report[-20000:]
    assert f"Tested: {operations}" in report, report[-3000:]
    assert elapsed < RUN_SECONDS_MAX, f"schemathesis took {elapsed:.0f} s"
    # The stateful phase followed the API's links (player -> retrieve, player -> deposit, ...).
    covered = re.search(r"API Links:\s+(\d+) covered", report)
    assert covered is not None and int(covered.group(1)) > 0, report[-3000:]


# What the fuzzing found, pinned: each failed before its fix.

async def test_a_reconciliation_cursor_beyond_a_bigint_is_a_422_not_a_500(
        client: httpx.AsyncClient, keys: Keys) -> None:
    for path, cursor in (("/v1/reconciliation/breaks", "after"),
                         ("/v1/reconciliation/runs", "before")):
        response = await client.get(path, params={cursor: str(2**64)},
                                    headers=keys.operator.headers)
        assert_problem(response, 422, "validation_error")


async def test_a_number_is_not_a_date_time_anywhere_the_api_reads_one(
        client: httpx.AsyncClient, keys: Keys) -> None:
    player = (await client.post("/v1/players", json=player_body(),
                                headers=keys.partner_a.headers)).json()["id"]
    for path, params in (("/v1/players", {"created[lte]": "0.5"}),
                         ("/v1/deposits", {"created[gt]": "1700000000"}),
                         (f"/v1/players/{player}/balances", {"at": "0"}),
                         (f"/v1/players/{player}/transactions.csv",
                          {"created[gte]": "0", "created[lt]": "2026-01-01T00:00:00Z"})):
        response = await client.get(path, params=params, headers=keys.partner_a.headers)
        assert_problem(response, 422, "validation_error")
    for body in ({"since": 0}, {"until": "1700000000"}):      # the route needs Temporal first
        with pytest.raises(ValidationError):
            ReconciliationRunCreate.model_validate(body)
    listed = await client.get("/v1/players", params={"created[lte]": "2026-01-01T00:00:00Z"},
                              headers=keys.partner_a.headers)
    assert listed.status_code == 200, listed.text


# The request schemas say what the models accept (so /docs and the fuzzer see the real rules):
# each body is valid to the JSON Schema exactly when the model takes it.
_RATE = {"requests": 5, "window_seconds": 1}


@pytest.mark.parametrize("model, body", [
    (WebhookEndpointUpdate, {"disabled": True}),
    (WebhookEndpointUpdate, {"disabled": 0}),                   # was taken as false
    (WebhookEndpointUpdate, {"rate_limit_per_minute": 5}),
    (WebhookEndpointUpdate, {"rate_limit_per_minute": "5"}),    # was taken as 5
    (GeolocationCheckCreate, {"latitude": 40.2, "longitude": -74.7, "ip_address": "8.8.8.8"}),
    (GeolocationCheckCreate, {"latitude": 40.2, "longitude": -74.7, "ip_address": "2001:db8::1"}),
    (GeolocationCheckCreate, {"latitude": 40.2, "longitude": -74.7, "ip_address": 134}),
    (GeolocationCheckCreate, {"latitude": 40.2, "longitude": -74.7, "ip_address": "a.b"}),
    (GeolocationCheckCreate, {"latitude": "40.2", "longitude": -74.7, "ip_address": "8.8.8.8"}),
    (SelfExclusionCreate, {"permanent": True}),
    (SelfExclusionCreate, {"duration_days": 30}),
    (SelfExclusionCreate, {"duration_days": 30, "permanent": False}),
    (SelfExclusionCreate, {"duration_days": 30, "permanent": True}),
    (SelfExclusionCreate, {"permanent": False}),
    (SelfExclusionCreate, {}),
    (DepositLimitsUpdate, {"currency": "USD", "day": 100}),
    (DepositLimitsUpdate, {"currency": "USD", "week": None}),
    (DepositLimitsUpdate, {"currency": "USD"}),
    (PlayerCreate, {"first_name": "A", "last_name": "B", "email": "ada@example.com"}),
    (PlayerCreate, {"first_name": "A", "last_name": "B", "email": "a\x85b@example.com"}),
    (PlayerCreate, {"first_name": "A", "last_name": "B", "email": "a\ufeff@example.com"}),
])
def test_a_request_schema_states_what_its_model_accepts(model: type[BaseModel],
                                                        body: dict[str, object]) -> None:
    schema = jsonschema_rs.validator_for(model.model_json_schema(), validate_formats=True)
    try:
        model.model_validate(body)
        accepted = True
    except ValidationError:
        accepted = False
    assert schema.is_valid(body) == accepted


def test_rate_limits_name_known_buckets_in_the_schema() -> None:
    schema = jsonschema_rs.validator_for(ApiKeyCreate.model_json_schema())
    assert schema.is_valid({"name": "k", "rate_limits": {"*": _RATE, "players:read": _RATE}})
    assert not schema.is_valid({"name": "k", "rate_limits": {"players:reed": _RATE}})
