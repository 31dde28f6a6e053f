"""The one Temporal client factory: every process connects through here so that the data
converter (pydantic, then payload encryption: settlepay/codec.py), the namespace and the
tracing interceptor (OpenTelemetry context in Temporal headers: API span -> workflow ->
activities) are the same everywhere. Workers made from a client inherit its interceptor.
`metrics_runtime` is the worker's runtime whose SDK metrics (Prometheus) the worker's /metrics
includes."""

from __future__ import annotations

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from settlepay import codec, search_attributes
from settlepay.config import Settings, get_settings
from settlepay.observability import tracing


async def connect(settings: Settings | None = None, *, address: str | None = None,
                  namespace: str | None = None, runtime: Runtime | None = None) -> Client:
    settings = settings or get_settings()
    return await Client.connect(
        address or settings.temporal_address,
        namespace=namespace or settings.temporal_namespace,
        data_converter=codec.data_converter(settings),
        interceptors=tracing.interceptors(settings),
        runtime=runtime,
    )


def metrics_runtime(bind_address: str) -> Runtime:
    """A Temporal runtime serving the SDK's metrics (workflow / activity task latencies, polls,
    slots, ...) in Prometheus text at `bind_address` (host:port)."""
    return Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(
        bind_address=bind_address, counters_total_suffix=True, durations_as_seconds=True)))


async def register_search_attributes(client: Client) -> list[str]:
    """Add the project's custom search attributes that the server does not know yet."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace))
    missing = {
        key.name: IndexedValueType.ValueType(key.indexed_value_type)
        for key in search_attributes.ALL if key.name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing))
    return sorted(missing)
