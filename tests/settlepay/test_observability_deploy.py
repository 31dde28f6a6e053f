"""The observability deployment files agree with the code, read without Docker: the compose
services and the files they mount, Prometheus' scrape targets and rules, the collector's
receiver, and every settlepay metric the dashboard and the rules name is one the code defines."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

from settlepay.config import Settings
from settlepay.observability import metrics

ROOT = Path(__file__).resolve().parents[2]
NAME = re.compile(r"\b(settlepay_[a-z0-9_]+)")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _defined() -> set[str]:
    """Family names of every metric the code defines (counters without `_total`)."""
    names = {name.removesuffix("_total") for name in metrics.BUSINESS_METRICS}
    return names | {family.name for family in REGISTRY.collect()}


def _family(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count", "_total"):
        name = name.removesuffix(suffix)
    return name


def test_compose_runs_the_collector_jaeger_prometheus_and_grafana_with_files_that_exist():
    services = _compose()["services"]
    for name in ("otel-collector", "jaeger", "prometheus", "grafana"):
        assert name in services, name
        for volume in services[name].get("volumes", []):
            source = volume.split(":", 1)[0]
            assert (ROOT / source).exists(), f"{name} mounts {source}, which does not exist"
    env = services["api"]["environment"]
    assert env["SETTLEPAY_OTLP_ENDPOINT"] == "http://otel-collector:4318"
    collector = yaml.safe_load((ROOT / "deploy/otel/collector.yml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert "traces" in collector["service"]["pipelines"]


def test_prometheus_scrapes_the_api_and_the_worker_where_they_serve_metrics():
    defaults = Settings()
    config = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    # Every replica of a service is a target: its name resolves to all of them (DNS A records).
    targets = {job["job_name"]: [f"{name}:{sd['port']}" for sd in job["dns_sd_configs"]
                                 for name in sd["names"]]
               for job in config["scrape_configs"]}
    assert targets["settlepay-api"] == [f"api:{defaults.api_port}"]
    assert targets["settlepay-worker"] == [f"worker:{defaults.worker_metrics_port}",
                                           f"worker-settlement:{defaults.worker_metrics_port}"]
    for worker in ("worker", "worker-settlement"):
        assert _compose()["services"][worker]["environment"]["SETTLEPAY_WORKER_METRICS_PORT"] \
            == str(defaults.worker_metrics_port)


def test_every_settlepay_metric_the_dashboard_and_the_rules_name_is_defined():
    defined = _defined()
    rules = (ROOT / "deploy/prometheus/rules.yml").read_text()
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/settlepay.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = set(NAME.findall(rules)) | {n for e in exprs for n in NAME.findall(e)}
    assert named and {n for n in named if _family(n) not in defined} == set()
    titles = " ".join(panel["title"] for panel in dashboard["panels"]).lower()
    for slo in ("deposit success rate", "p99", "settlement", "webhook", "reconciliation match",
                "availability"):
        assert slo in titles, slo
