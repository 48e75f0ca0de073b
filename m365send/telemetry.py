"""OpenTelemetry traces and metrics, exported to Application Insights when it is configured.

The instruments come from the OpenTelemetry API, which is a no-op until a provider is installed:
``configure_from_environment`` installs Azure Monitor's when ``APPLICATIONINSIGHTS_CONNECTION_STRING``
is set (Entra auth when ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` says so), and nothing otherwise.
"""

from __future__ import annotations

import logging
import os

from opentelemetry import metrics, trace

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

tracer = trace.get_tracer("m365send")
_meter = metrics.get_meter("m365send")

SENDS = _meter.create_counter("m365send.sends", unit="{email}", description="Emails Graph accepted")
FAILURES = _meter.create_counter(
    "m365send.failures", unit="{email}", description="Sends that failed, by problem type (reason)"
)
GRAPH_DURATION = _meter.create_histogram(
    "m365send.graph.duration", unit="ms", description="Time of each Graph sendMail request"
)
TOKEN_REQUESTS = _meter.create_counter(
    "m365send.token.requests", unit="{token}", description="Graph tokens handed out, by cache=hit|miss"
)
# Federated mode: client assertions msal asked for (the managed identity's cache answers most of them).
ASSERTION_REQUESTS = _meter.create_counter(
    "m365send.assertion.requests", unit="{assertion}", description="Managed identity assertions handed to msal"
)
KEY_VAULT_READS = _meter.create_counter("m365send.keyvault.reads", unit="{read}", description="Key Vault reads")
THROTTLING_WAIT = _meter.create_histogram(
    "m365send.throttling.wait", unit="s", description="Waits before retrying a throttled Graph request"
)
PACING_FALLBACKS = _meter.create_counter(
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
