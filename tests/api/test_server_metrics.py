"""`/metrics` of the API run as two processes on one port (api/server.py,
settlepay/observability/metrics.py multiprocess mode): whichever process answers a scrape, it
answers the sum over both, so a counter neither jumps nor undercounts.

Which process answers is forced, not hoped for: the other one is stopped (SIGSTOP), so the
listening socket's connections can only be accepted by the running one (as in test_server.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from settlepay.observability import metrics
from tests.support.supervised import (
    stopped,
    supervised_api,
    wait_each_answering,
    worker_processes,
)

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = "settlepay_http_requests_total"
SECONDS_COUNT = "settlepay_http_request_seconds_count"
IN_FLIGHT = "settlepay_http_requests_in_flight"
UNMATCHED = {"method": "GET", "route": "unmatched", "status": "4xx"}


def _stale_directory(path: Path) -> Path:
    """A previous run's metrics directory, 1000 requests counted in it."""
    path.mkdir()
    stale = MmapedDict(str(path / "counter_1.db"))
    stale.write_value(mmap_key("settlepay_http_requests", REQUESTS, list(UNMATCHED),
                               list(UNMATCHED.values()), metrics.HTTP_REQUESTS._documentation),
                      1000.0, 0.0)
    stale.close()
    return path


@pytest.fixture(scope="module")
def api(api_settings, tmp_path_factory) -> Iterator[tuple[str, subprocess.Popen, list[int], Path]]:
    tmp = tmp_path_factory.mktemp("metrics")
    stale = _stale_directory(tmp / "stale")
    with supervised_api(api_settings, TMPDIR=str(tmp), PROMETHEUS_MULTIPROC_DIR=str(stale),
                        SETTLEPAY_TELEMETRY_ENABLED="true") as (url, proc, workers):
        yield url, proc, workers, tmp


def _scrape(url: str) -> dict[tuple[str, frozenset], float]:
    answer = httpx.get(f"{url}/metrics", timeout=30)
    assert answer.status_code == 200
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples}


def _settled(url: str) -> dict[tuple[str, frozenset], float]:
    """A scrape once every request answered before is counted: a request is counted after its
    answer is sent, and leaves the in-flight gauge after it is counted (api/telemetry.py), so a
    scrape that sees only itself in flight (livesum over the processes) sees them all."""
    deadline = time.monotonic() + 10
    while (samples := _scrape(url)) and _value(samples, IN_FLIGHT, {}) != 1:
        assert time.monotonic() < deadline, _value(samples, IN_FLIGHT, {})
        time.sleep(0.05)
    return samples


def _value(samples: dict, name: str, labels: dict[str, str]) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _missing(url: str, count: int) -> None:
    for _ in range(count):   # a fresh connection each (httpx.get): any process may accept it
        assert httpx.get(f"{url}/no-such-page-{uuid.uuid4().hex}", timeout=30).status_code == 404


def _scrapes_by_each(url: str, workers: list[int]) -> list[dict]:
    scrapes = []
    for pid in workers * 2:   # each process answers twice, the other one stopped
        with stopped(next(other for other in workers if other != pid)):
            scrapes.append(_scrape(url))
    return scrapes + [_scrape(url) for _ in range(4)]   # and whichever accepts


def test_a_scrape_answered_by_either_process_counts_the_requests_of_both(api):
    url, _, (first, second), _ = api
    with stopped(second):
        _missing(url, 3)      # answered by `first`
    with stopped(first):
        _missing(url, 5)      # answered by `second`
    _missing(url, 4)          # by either
    # 12, not 1012: the stale directory in PROMETHEUS_MULTIPROC_DIR is not this run's
    assert _value(_settled(url), REQUESTS, UNMATCHED) == 12
    for samples in _scrapes_by_each(url, [first, second]):
        assert _value(samples, REQUESTS, UNMATCHED) == 12
        assert _value(samples, SECONDS_COUNT, {"method": "GET", "route": "unmatched"}) == 12
        # one series, no pid label: the processes' in-flight requests summed (livesum)
        assert [labels for name, labels in samples if name == IN_FLIGHT] == [frozenset()]
        assert not any(name.startswith("process_") for name, _ in samples)


def test_a_dead_process_is_marked_dead_and_its_counts_stay_summed(api):
    url, proc, workers, tmp = api
    supervisor = proc.pid
    before = _value(_settled(url), REQUESTS, UNMATCHED)
    directory = next(tmp.glob("settlepay-metrics-*"))   # this run's, fresh
    victim, survivor = workers
    with stopped(survivor):
        _missing(url, 2)      # counted by the victim
    assert _value(_settled(url), REQUESTS, UNMATCHED) == before + 2
    assert (directory / f"gauge_livesum_{victim}.db").exists()
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while (directory / f"gauge_livesum_{victim}.db").exists() or len(
            [pid for pid in worker_processes(supervisor) if pid != victim]) < 2:
        assert time.monotonic() < deadline, "the dead process was not marked dead / replaced"
        time.sleep(0.2)
    replacement = next(pid for pid in worker_processes(supervisor) if pid not in workers)
    wait_each_answering(url, [survivor, replacement])
    workers[:] = [survivor, replacement]   # the module's fixture goes on with the live ones
    # the victim's in-flight requests no longer summed (it was marked dead), its counts are
    assert _value(_settled(url), REQUESTS, UNMATCHED) == before + 2
    for samples in _scrapes_by_each(url, workers):
        assert _value(samples, REQUESTS, UNMATCHED) == before + 2


def test_the_supervisor_removes_its_metrics_directory_when_it_stops(api):
    """(Last: it stops the module's API.)"""
    _, proc, _, tmp = api
    assert len(list(tmp.glob("settlepay-metrics-*"))) == 1
    proc.terminate()
    assert proc.wait(timeout=30) == 0
    assert list(tmp.glob("settlepay-metrics-*")) == []
    assert (tmp / "stale" / "counter_1.db").exists()   # not its own: left alone
