"""`metrics.Latency`: a histogram series observed by updating prometheus_client's own values
directly (the hot path of every ledger posting) gives exactly the exposition of the library's
`observe`, in one process and in multiprocess mode (the API's), records nothing with telemetry
off, and falls back to the library's method when a series does not look as expected."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Histogram

from settlepay.observability import metrics

ROOT = Path(__file__).resolve().parents[3]
BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# On a bound, between bounds, below the first, above the last, zero, and the +Inf bucket.
AMOUNTS = (0.0, 0.0005, 0.001, 0.0010001, 0.0025, 0.003, 0.01, 0.5, 0.7, 10.0, 11.0, 1e9,
           float("inf"), 0.001)


def _samples(registry: CollectorRegistry) -> list[tuple[str, dict[str, str], float]]:
    """Every sample but the creation time (two series are never made at the same instant)."""
    return [(sample.name, sample.labels, sample.value) for family in registry.collect()
            for sample in family.samples if not sample.name.endswith("_created")]


def _histogram(registry: CollectorRegistry) -> Histogram:
    return Histogram("latency_probe_seconds", "a probe", ["operation"], buckets=BOUNDS,
                     registry=registry)


def test_a_latency_series_exposes_what_the_librarys_observe_exposes():
    direct, library = CollectorRegistry(), CollectorRegistry()
    series = metrics.Latency(_histogram(direct), "post")
    reference = _histogram(library).labels("post")
    for amount in AMOUNTS:
        series.observe(amount)
        reference.observe(amount)
    assert _samples(direct) == _samples(library)
    assert direct.get_sample_value("latency_probe_seconds_bucket",
                                   {"operation": "post", "le": "0.001"}) == 4
    assert direct.get_sample_value("latency_probe_seconds_count", {"operation": "post"}) == len(
        AMOUNTS)


def test_since_records_the_time_from_a_perf_counter_reading():
    registry = CollectorRegistry()
    series = metrics.Latency(_histogram(registry), "post")
    series.since(time.perf_counter() - 0.3)     # 0.3 s and a little: in (0.25, 0.5]
    assert registry.get_sample_value("latency_probe_seconds_bucket",
                                     {"operation": "post", "le": "0.25"}) == 0
    assert registry.get_sample_value("latency_probe_seconds_bucket",
                                     {"operation": "post", "le": "0.5"}) == 1
    assert 0.3 <= registry.get_sample_value("latency_probe_seconds_sum",
                                            {"operation": "post"}) < 0.5


def test_telemetry_off_records_nothing_and_no_series_appears():
    registry = CollectorRegistry()
    series = metrics.Latency(_histogram(registry), "off")
    metrics.set_enabled(False)
    try:
        series.observe(0.2)
        series.since(time.perf_counter())
    finally:
        metrics.set_enabled(True)
    assert registry.get_sample_value("latency_probe_seconds_count", {"operation": "off"}) is None
    series.observe(0.2)
    assert registry.get_sample_value("latency_probe_seconds_count", {"operation": "off"}) == 1


def test_a_series_without_the_expected_values_is_observed_through_its_own_method():
    class Series:
        def __init__(self) -> None:
            self.seen: list[float] = []

        def observe(self, amount: float) -> None:
            self.seen.append(amount)

    odd = Series()
    assert metrics._direct_observe(odd) == odd.observe
    reference = _histogram(CollectorRegistry()).labels("x")
    reference._upper_bounds = [0.1, 0.2]   # no +Inf bound: not the layout expected
    assert metrics._direct_observe(reference) == reference.observe


_CHILD = """
import sys
sys.path.insert(0, {root!r})
from prometheus_client import Histogram
from settlepay.observability import metrics
bounds = {bounds!r}
histogram = Histogram("latency_probe_seconds", "a probe", ["operation"], buckets=bounds)
series = metrics.Latency(histogram, "direct")
buffered = metrics.Latency(histogram, "buffered", buffered=True)
reference = histogram.labels("library")
for amount in {amounts!r}:
    series.observe(amount)
    buffered.observe(amount)   # queued: written to this process's file at exit
    reference.observe(amount)
"""


def test_in_multiprocess_mode_the_files_sum_to_what_the_librarys_observe_writes(tmp_path):
    """The API's processes write their values to files (PROMETHEUS_MULTIPROC_DIR): the direct
    updates go to the same files, and the summed scrape shows both label sets alike."""
    processes = 2
    script = _CHILD.format(root=str(ROOT), bounds=BOUNDS, amounts=AMOUNTS[:-2])
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for _ in range(processes):
        subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    registry = metrics.summed_registry(str(tmp_path))
    for le in ("0.001", "0.0025", "0.01", "0.5", "1.0", "10.0", "+Inf"):
        library = registry.get_sample_value("latency_probe_seconds_bucket",
                                            {"operation": "library", "le": le})
        assert library is not None and library > 0, le
        for operation in ("direct", "buffered"):
            assert registry.get_sample_value("latency_probe_seconds_bucket", {
                "operation": operation, "le": le}) == library, (operation, le)
    total = {op: registry.get_sample_value("latency_probe_seconds_sum", {"operation": op})
             for op in ("direct", "buffered", "library")}
    assert total["direct"] == pytest.approx(total["library"]) and total["direct"] > 1e9
    assert total["buffered"] == pytest.approx(total["library"])
    assert registry.get_sample_value("latency_probe_seconds_count",
                                     {"operation": "direct"}) == processes * len(AMOUNTS[:-2])


def _count(registry: CollectorRegistry, operation: str) -> float | None:
    return registry.get_sample_value("latency_probe_seconds_count", {"operation": operation})


def test_a_buffered_series_is_exact_in_every_exposition_of_its_process():
    buffered_registry, library = CollectorRegistry(), CollectorRegistry()
    series = metrics.Latency(_histogram(buffered_registry), "post", buffered=True)
    reference = _histogram(library).labels("post")
    for amount in AMOUNTS:
        series.observe(amount)
        reference.observe(amount)
    series.since(time.perf_counter() - 0.3)
    reference.observe(0.3)
    text = metrics.exposition(buffered_registry).decode()   # drains first
    assert f'latency_probe_seconds_count{{operation="post"}} {len(AMOUNTS) + 1}.0' in text
    buckets = [(name, labels, value) for name, labels, value in _samples(buffered_registry)
               if name.endswith("_bucket") or name.endswith("_count")]
    assert buckets == [(name, labels, value) for name, labels, value in _samples(library)
                       if name.endswith("_bucket") or name.endswith("_count")]
    assert buffered_registry.get_sample_value(
        "latency_probe_seconds_sum", {"operation": "post"}) == pytest.approx(
        library.get_sample_value("latency_probe_seconds_sum", {"operation": "post"}), rel=1e-6)


def test_a_buffered_series_folds_its_queue_when_full_and_every_drain_interval():
    registry = CollectorRegistry()
    series = metrics.Latency(_histogram(registry), "queue", buffered=True)
    for _ in range(metrics.DRAIN_AT - 1):
        series.observe(0.002)
    series.observe(0.002)      # the DRAIN_AT-th: folded at once, no scrape needed
    assert _count(registry, "queue") == metrics.DRAIN_AT
    series.observe(0.002)      # queued; the draining thread folds it within DRAIN_EVERY
    deadline = time.monotonic() + 5 * metrics.DRAIN_EVERY
    while _count(registry, "queue") != metrics.DRAIN_AT + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _count(registry, "queue") == metrics.DRAIN_AT + 1
    assert any(thread.name == "settlepay-metrics-drain" for thread in threading.enumerate())


def test_a_forked_child_drops_its_parents_queue_and_the_parent_records_it():
    registry = CollectorRegistry()
    series = metrics.Latency(_histogram(registry), "fork", buffered=True)
    for _ in range(3):
        series.observe(0.02)
    context = multiprocessing.get_context("fork")
    answer = context.Queue()

    def child() -> None:   # what the fork left queued in the child: nothing
        answer.put(len(series._pending if series._pending is not None else [None]))

    process = context.Process(target=child)
    process.start()
    seen_in_child = answer.get(timeout=30)
    process.join(timeout=30)
    assert seen_in_child == 0
    metrics.drain_all()
    assert _count(registry, "fork") == 3
