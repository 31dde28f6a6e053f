"""settlepay_http_request_seconds as RequestContext records it (api/telemetry.py): one
observation per request, under its method label and route template, in the buckets the
library's own `observe` would put it in (cumulative, +Inf equal to the count)."""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY

from settlepay.observability import metrics

SECONDS = "settlepay_http_request_seconds"
ROUTE = "/v1/players/{player_id}"


def _series(method: str, route: str) -> dict[str, float]:
    """count, sum and each bucket (by its `le`) of one series."""
    found: dict[str, float] = {}
    for family in REGISTRY.collect():
        if family.name != SECONDS:
            continue
        for sample in family.samples:
            if sample.labels.get("method") != method or sample.labels.get("route") != route:
                continue
            if sample.name.endswith("_created"):
                continue
            key = sample.labels.get("le", sample.name.rsplit("_", 1)[-1])
            found[key] = sample.value
    return found


@pytest.fixture(autouse=True)
def _metrics_on():
    previous = metrics.enabled()
    metrics.set_enabled(True)
    yield
    metrics.set_enabled(previous)


async def test_each_request_is_one_observation_of_its_route_in_cumulative_buckets(client, keys):
    before = _series("GET", ROUTE)
    for _ in range(3):
        answer = await client.get("/v1/players/ply_nobody", headers=keys.partner_a.headers)
        assert answer.status_code == 404
    after = _series("GET", ROUTE)
    assert after["count"] - before.get("count", 0) == 3
    assert after["sum"] > before.get("sum", 0)
    bounds = [str(float(b)) for b in metrics.LATENCY_BUCKETS] + ["+Inf"]
    added = [after[le] - before.get(le, 0) for le in bounds]
    assert added == sorted(added) and added[-1] == 3   # cumulative; +Inf holds every one
    assert after["+Inf"] == after["count"]


def test_an_observation_lands_where_the_librarys_observe_puts_it():
    route = "/v1/test-http-metrics/{id}"
    durations = (0.0004, 0.001, 0.0010001, 0.003, 0.25, 7.0, 11.0, 0.0)
    for seconds in durations:
        metrics.latency(metrics.HTTP_REQUEST_SECONDS, "POST", route).observe(seconds)
    ours = _series("POST", route)
    library = metrics.HTTP_REQUEST_SECONDS.labels("PUT", route)   # another series, same metric
    for seconds in durations:
        library.observe(seconds)
    theirs = _series("PUT", route)
    assert ours == theirs
    series = metrics.latency(metrics.HTTP_REQUEST_SECONDS, "POST", route)
    assert series is metrics.latency(metrics.HTTP_REQUEST_SECONDS, "POST", route)   # made once
