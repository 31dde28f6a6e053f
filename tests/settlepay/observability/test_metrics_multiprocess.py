"""Several processes' metrics summed (settlepay/observability/metrics.py multiprocess mode):
the sum over the files of each process, a scrape-time collector computed once, dead processes'
live gauges dropped, a fresh private directory per run. The files are written as
prometheus_client writes them; tests/api/test_server_metrics.py runs real API processes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.registry import Collector

from settlepay.observability import metrics


def _write(path: Path, kind: str, pid: int, family: str, sample: str, value: float,
           labels: dict[str, str] | None = None) -> None:
    labels = labels or {}
    file = MmapedDict(str(path / f"{kind}_{pid}.db"))
    file.write_value(mmap_key(family, sample, list(labels), list(labels.values()), "help"),
                     value, 0.0)
    file.close()


class _Holds(Collector):
    """A value computed at scrape time, like DatabaseCollector's."""

    def __init__(self) -> None:
        self.scrapes = 0

    def collect(self) -> Iterator[GaugeMetricFamily]:
        self.scrapes += 1
        yield GaugeMetricFamily("probe_open_holds", "probe", value=7)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_processes_are_summed_and_a_scrape_time_value_computed_once(tmp_path):
    for pid, requests in ((101, 3), (102, 5)):
        _write(tmp_path, "counter", pid, "probe_requests", "probe_requests_total", requests,
               {"route": "/x"})
        _write(tmp_path, "gauge_livesum", pid, "probe_in_flight", "probe_in_flight", 1)
    holds = _Holds()
    metrics.register_live(holds)
    try:
        registry = metrics.summed_registry(str(tmp_path))
        assert registry.get_sample_value("probe_requests_total", {"route": "/x"}) == 8
        assert registry.get_sample_value("probe_in_flight") == 2
        before = holds.scrapes
        text = generate_latest(registry).decode()
    finally:
        metrics.unregister_live(holds)
    assert holds.scrapes == before + 1
    assert [line for line in text.splitlines() if line.startswith("probe_open_holds")] == [
        "probe_open_holds 7.0"]   # once, not once per process
    assert "process_" not in text and "python_gc_" not in text


def test_without_a_directory_the_process_answers_its_own_registry(monkeypatch):
    monkeypatch.delenv(metrics.MULTIPROC_DIR_ENV, raising=False)
    assert metrics.multiprocess_dir() is None
    text = metrics.exposition().decode()   # the process's collectors are in it
    assert "settlepay_http_requests_in_flight " in text and "python_gc_objects" in text


def test_only_the_dead_processes_live_gauges_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    for pid in (dead, alive):
        _write(tmp_path, "gauge_livesum", pid, "probe_in_flight", "probe_in_flight", 1)
        _write(tmp_path, "counter", pid, "probe_requests", "probe_requests_total", 1)
    assert metrics.reap_dead_processes(str(tmp_path)) == [dead]
    assert sorted(file.name for file in tmp_path.iterdir()) == sorted([
        f"counter_{dead}.db", f"counter_{alive}.db", f"gauge_livesum_{alive}.db"])
    registry = metrics.summed_registry(str(tmp_path))
    assert registry.get_sample_value("probe_in_flight") == 1
    assert registry.get_sample_value("probe_requests_total") == 2   # a dead one's counts stay


def test_each_run_has_a_fresh_private_directory_removed_at_its_end(monkeypatch, tmp_path):
    stale = tmp_path / "stale"
    stale.mkdir()
    monkeypatch.setenv(metrics.MULTIPROC_DIR_ENV, str(stale))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    dead = _dead_pid()
    with metrics.multiprocess_directory(interval=0.05) as first:
        assert os.environ[metrics.MULTIPROC_DIR_ENV] == first != str(stale)
        assert os.listdir(first) == []
        assert Path(first).stat().st_mode & 0o777 == 0o700
        _write(Path(first), "gauge_livesum", dead, "probe_in_flight", "probe_in_flight", 1)
        for _ in range(200):   # the reaper marks it within a few intervals
            if not os.listdir(first):
                break
            time.sleep(0.05)
        assert os.listdir(first) == []
    with metrics.multiprocess_directory() as second:
        assert second != first and os.listdir(second) == []
    assert not Path(first).exists() and not Path(second).exists()
    assert os.environ[metrics.MULTIPROC_DIR_ENV] == str(stale)
    assert os.listdir(tmp_path) == ["stale"]
