"""OpenTelemetry traces and metrics, exported to Application Insights when it is configured.

``configure_from_environment`` installs Azure Monitor's provider when
``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set (Entra auth when
``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says so), and nothing otherwise.

The instruments here load the OpenTelemetry API only once something else has: a provider cannot be
installed without importing it (Azure Monitor's distro, the Functions worker's OpenTelemetry
support, a test), and without one the API's instruments are no-ops anyway. So a worker without
telemetry never imports it, which keeps it off a new instance's first send, and a provider
installed later still gets every span and measurement from then on (the API's proxies forward).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

__all__ = [
    "ASSERTION_REQUESTS",
    "FAILURES",
    "GRAPH_DURATION",
    "KEY_VAULT_READS",
    "PACING_FALLBACKS",
    "SENDS",
    "THROTTLING_WAIT",
    "TOKEN_REQUESTS",
    "configure_from_environment",
    "tracer",
]

log = logging.getLogger(__name__)

_Attributes = Mapping[str, Any] | None
# The API can also build a provider named by these, without any code importing it first.
_PROVIDER_BY_ENVIRONMENT = any(
    os.environ.get(name) for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
)


def _loaded() -> bool:
    return _PROVIDER_BY_ENVIRONMENT or "opentelemetry" in sys.modules


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        """Nothing to record without a provider."""


class _Tracer:
    """``start_as_current_span`` of the API's tracer once it is loaded; a span that records nothing before."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._tracer: Any = None

    @contextmanager
    def start_as_current_span(self, name: str) -> Iterator[Any]:
        """A span around the block (the API's when loaded)."""
        if not _loaded():
            yield _NoSpan()
            return
        if self._tracer is None:  # the API's tracer is a proxy: made once, it follows a provider set later
            from opentelemetry import trace

            self._tracer = trace.get_tracer(self._name)
        with self._tracer.start_as_current_span(name) as span:
            yield span


class _Instrument:
    """One counter or histogram of the ``m365send`` meter, created on its first use once the API is loaded."""

    def __init__(self, kind: str, name: str, *, unit: str, description: str) -> None:
        self._kind, self._name, self._unit, self._description = kind, name, unit, description
        self._instrument: Any = None

    def _api(self) -> Any:
        if self._instrument is None:
            from opentelemetry import metrics

            create = getattr(metrics.get_meter("m365send"), f"create_{self._kind}")
            self._instrument = create(self._name, unit=self._unit, description=self._description)
        return self._instrument

    def add(self, amount: float, attributes: _Attributes = None) -> None:
        """Count ``amount`` (a counter)."""
        if _loaded():
            self._api().add(amount, attributes)

    def record(self, amount: float, attributes: _Attributes = None) -> None:
        """Record ``amount`` (a histogram)."""
        if _loaded():
            self._api().record(amount, attributes)


tracer = _Tracer("m365send")

SENDS = _Instrument("counter", "m365send.sends", unit="{email}", description="Emails Graph accepted")
FAILURES = _Instrument(
    "counter", "m365send.failures", unit="{email}", description="Sends that failed, by problem type (reason)"
)
GRAPH_DURATION = _Instrument(
    "histogram", "m365send.graph.duration", unit="ms", description="Time of each Graph sendMail request"
)
TOKEN_REQUESTS = _Instrument(
    "counter", "m365send.token.requests", unit="{token}", description="Graph tokens handed out, by cache=hit|miss"
)
# Federated mode: client assertions msal asked for (the managed identity's cache answers most of them).
ASSERTION_REQUESTS = _Instrument(
    "counter",
    "m365send.assertion.requests",
    unit="{assertion}",
    description="Managed identity assertions handed to msal",
)
KEY_VAULT_READS = _Instrument("counter", "m365send.keyvault.reads", unit="{read}", description="Key Vault reads")
THROTTLING_WAIT = _Instrument(
    "histogram", "m365send.throttling.wait", unit="s", description="Waits before retrying a throttled Graph request"
)
PACING_FALLBACKS = _Instrument(
    "counter",
    "m365send.pacing.fallbacks",
    unit="{request}",
    description="Graph requests paced by their worker alone because the shared limiter's storage failed",
)

_configured = False


def configure_from_environment() -> bool:
    """Install the Azure Monitor exporter once, if Application Insights is configured; True if it is."""
    global _configured
    connection_string = os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING")
    if _configured or not connection_string:
        return _configured
    # Imported here: it is large, and a worker without Application Insights never needs it.
    from azure.identity import ManagedIdentityCredential
    from azure.monitor.opentelemetry import configure_azure_monitor

    credential = None
    authentication = os.environ.get("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", "")
    if "Authorization=AAD" in authentication:
        fields = dict(part.split("=", 1) for part in authentication.split(";") if "=" in part)
        credential = ManagedIdentityCredential(client_id=fields.get("ClientId"))
    configure_azure_monitor(connection_string=connection_string, credential=credential, logger_name="m365send")
    _configured = True
    log.info("telemetry exported to Application Insights")
    return True
