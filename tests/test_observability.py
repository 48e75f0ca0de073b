"""Correlated logs, OpenTelemetry metrics and traces of a send."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from standins.cloud import LocalCloud
from standins.graph import Fault
from tests.conftest import Configure, SendApi, fresh_python

_READER = InMemoryMetricReader()
_SPANS = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def sdk_providers() -> None:
    """The OpenTelemetry SDK with in-memory exporters (global providers can be set once per process)."""
    metrics.set_meter_provider(MeterProvider(metric_readers=[_READER]))
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(_SPANS))
    trace.set_tracer_provider(tracer_provider)


def totals() -> dict[tuple[str, tuple[tuple[str, Any], ...]], float]:
    """Every metric point so far, summed by name and attributes (histograms count their records)."""
    found: dict[tuple[str, tuple[tuple[str, Any], ...]], float] = {}
    data = _READER.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    # Counters have a value, histograms a count of records.
                    value = float(getattr(point, "value", None) or getattr(point, "count", 0) or 0)
                    key = (metric.name, tuple(sorted(dict(point.attributes or {}).items())))
                    found[key] = found.get(key, 0) + value
    return found


def metric(name: str, **attributes: Any) -> float:
    return sum(v for (n, attrs), v in totals().items() if n == name and set(attributes.items()) <= set(attrs))


def test_every_log_line_of_a_send_carries_its_correlation_ids(
    api: SendApi, seed_message: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)

    answer = api.post(seed_message)

    ours = [r for r in caplog.records if r.name.startswith("m365send") and r.name != "m365send.telemetry"]
    assert ours
    for record in ours:
        fields = vars(record)
        assert fields.get("request_id") == answer.body["requestId"], record.getMessage()
        assert fields.get("mailbox") == answer.body["mailbox"]
        assert fields.get("client_request_id") == answer.body["requestId"]
    [accepted] = [r for r in ours if r.getMessage() == "email accepted by Graph"]
    assert vars(accepted)["graph_request_id"] == answer.body["graphRequestId"]


def test_idempotency_key_is_on_the_log_lines(
    configure: Configure,
    storage_settings: dict[str, str],
    seed_message: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    api = configure(**storage_settings)
    caplog.set_level(logging.INFO)

    api.post(seed_message, headers={"Idempotency-Key": "order-9"})

    sends = [r for r in caplog.records if r.name == "m365send.service"]
    assert sends
    assert all(vars(r).get("idempotency_key") == "order-9" for r in sends)


def test_sends_failures_token_cache_key_vault_and_graph_latency_are_measured(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    before = {
        "sends": metric("m365send.sends"),
        "miss": metric("m365send.token.requests", cache="miss"),
        "hit": metric("m365send.token.requests", cache="hit"),
        "reads": metric("m365send.keyvault.reads"),
        "graph": metric("m365send.graph.duration", status=202),
        "waits": metric("m365send.throttling.wait"),
        "refused": metric("m365send.failures", reason="sender-not-allowed"),
    }
    cloud.graph.inject(Fault(429, retry_after="0"))

    for _ in range(3):
        assert api.post(seed_message).status == 202
    seed_message["From"]["Address"] = "ceo@contoso.com"
    assert api.post(seed_message).status == 403

    assert metric("m365send.sends") - before["sends"] == 3
    assert metric("m365send.token.requests", cache="miss") - before["miss"] == 1
    assert metric("m365send.token.requests", cache="hit") - before["hit"] == 2
    assert metric("m365send.keyvault.reads") - before["reads"] == 1
    assert metric("m365send.graph.duration", status=202) - before["graph"] == 3
    assert metric("m365send.throttling.wait") - before["waits"] == 1
    assert metric("m365send.failures", reason="sender-not-allowed") - before["refused"] == 1


def test_each_send_is_a_span(api: SendApi, seed_message: dict[str, Any]) -> None:
    _SPANS.clear()

    answer = api.post(seed_message)

    [span] = [s for s in _SPANS.get_finished_spans() if s.name == "m365send.send"]
    assert span.attributes is not None
    assert span.attributes["m365send.request_id"] == answer.body["requestId"]
    assert span.attributes["m365send.graph_request_id"] == answer.body["graphRequestId"]


def test_without_application_insights_nothing_is_exported() -> None:
    code = "from m365send.telemetry import configure_from_environment as c; print(c())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}

    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)

    assert result.stdout.strip() == "False"


def test_with_application_insights_the_azure_monitor_exporter_is_installed() -> None:
    code = (
        "from opentelemetry import trace\n"
        "from m365send.telemetry import configure_from_environment as c\n"
        "print(c(), type(trace.get_tracer_provider()).__module__)\n"
    )
    env = {
        **os.environ,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": "InstrumentationKey=00000000-0000-0000-0000-000000000000;"
        "IngestionEndpoint=https://127.0.0.1:9/",
        "OTEL_TRACES_SAMPLER": "always_off",
    }

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60, check=True
    )

    assert result.stdout.split()[:2] == ["True", "opentelemetry.sdk.trace"]


def test_until_something_loads_opentelemetry_the_instruments_cost_no_import_and_then_record() -> None:
    # No provider can be installed without importing the API, so until then every instrument is a
    # no-op and a new instance's first send does not import it; one installed later still sees sends.
    probe = (
        "import sys\n"
        "from m365send.telemetry import SENDS, tracer\n"
        "with tracer.start_as_current_span('before') as span:\n"
        "    span.set_attribute('a', 1)\n"
        "SENDS.add(1)\n"
        "print('opentelemetry' in sys.modules)\n"
        "from opentelemetry import metrics, trace\n"
        "from opentelemetry.sdk.metrics import MeterProvider\n"
        "from opentelemetry.sdk.metrics.export import InMemoryMetricReader\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter\n"
        "reader, spans = InMemoryMetricReader(), InMemorySpanExporter()\n"
        "metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(spans))\n"
        "trace.set_tracer_provider(provider)\n"
        "with tracer.start_as_current_span('after') as span:\n"
        "    span.set_attribute('a', 2)\n"
        "SENDS.add(2)\n"
        "data = reader.get_metrics_data().resource_metrics\n"
        "[metric] = [m for r in data for s in r.scope_metrics for m in s.metrics]\n"
        "print([(s.name, dict(s.attributes)) for s in spans.get_finished_spans()], metric.name,"
        " metric.data.data_points[0].value)\n"
    )
    assert fresh_python(probe).splitlines() == ["False", "[('after', {'a': 2})] m365send.sends 2"]
