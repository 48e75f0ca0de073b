"""Throughput at Graph's mailbox limits, and token / Key Vault economy: ``python -m bench.load MODE``.

``throughput N``: a warm worker drains N outbox messages for one mailbox from Azurite, through the
real queue function (24 at a time, as host.json allows), against a Graph stand-in that enforces 4
concurrent requests and 100 requests per 6 s per mailbox with 50 ms latency (Graph's 10,000 per
10 minutes, scaled down) and answers 429 with Retry-After beyond either.

``economy N``: N sends spread over 3 simulated hours across 3 credentials (3 workers), with tokens
that expire hourly: how many token requests and Key Vault reads they cost. The client's clock is
simulated (``time.time``, which msal and azure-identity read, and the Key Vault cache's clock); the
stand-ins run on real time in their own process.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

from standins.examples import SEED_EXAMPLE

LIMITS = {"concurrency": 4, "rate": 100, "window": 6.0, "latency": 0.05}


def throughput(count: int) -> dict[str, Any]:
    """Drain ``count`` queue messages for one mailbox; sends per second against the ceiling."""
    from standins.azurite import Azurite
    from standins.cloud import LocalCloud
    from standins.queue_host import QueueHost

    with LocalCloud() as cloud:
        azurite = Azurite()
        try:
            cloud.graph.mailbox_concurrency = int(LIMITS["concurrency"])
            cloud.graph.mailbox_rate = (int(LIMITS["rate"]), LIMITS["window"])
            cloud.graph.latency = LIMITS["latency"]
            os.environ.update(cloud.env())
            os.environ.update(
                {
                    "M365Storage": azurite.connection_string,
                    "M365_GRAPH_MAILBOX_CONCURRENCY": str(LIMITS["concurrency"]),
                    "M365_GRAPH_MAILBOX_RATE": str(LIMITS["rate"]),
                    "M365_GRAPH_MAILBOX_WINDOW_SECONDS": str(LIMITS["window"]),
                    "M365_QUEUE_RETRY_BASE_SECONDS": "1",
                }
            )
            import function_app

            outbox = next(f for f in function_app.app.get_functions() if f.get_function_name() == "outbox")
            host = QueueHost(azurite.connection_string, "email-outbox", function=outbox.get_user_function())
            host.producer.enqueue(SEED_EXAMPLE, key="warm-up")
            host.drain(timeout=60)  # the warm-up message: token, secret and connections ready
            for n in range(count):
                host.producer.enqueue({**SEED_EXAMPLE, "To": [{"Address": f"r{n}@fabrikam.com"}]}, key=f"load-{n}")
            cloud.graph.sent.clear()
            throttled_before = cloud.graph.throttled
            started = time.perf_counter()
            host.drain(timeout=1800, parallel=24)
            elapsed = time.perf_counter() - started
            dead = function_app.current_worker().storage().dead_letters.list()
        finally:
            azurite.close()
        ceiling = min(LIMITS["concurrency"] / LIMITS["latency"], LIMITS["rate"] / LIMITS["window"])
        sent = len(cloud.graph.sent)
        return {
            "messages": count,
            "sent": sent,
            "seconds": elapsed,
            "sends_per_second": sent / elapsed,
            "ceiling_per_second": ceiling,
            "ratio": sent / elapsed / ceiling,
            "throttled_429": cloud.graph.throttled - throttled_before,
            "dead_lettered": len(dead),
        }


class SimulatedClock:
    """Wall-clock time that moves only when told to."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def economy(count: int) -> dict[str, Any]:
    """``count`` sends over 3 simulated hours across 3 credentials; token requests and vault reads."""
    settings_by_app: list[dict[str, str]] = json.loads(os.environ["BENCH_APPS"])
    clock = SimulatedClock()
    time.time = clock  # msal and azure-identity read time.time for token expiry

    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    from m365send.models import parse_send_request
    from m365send.settings import load_settings
    from m365send.wiring import build_parts, build_service

    services = []
    for app in settings_by_app:
        os.environ.update(app)
        settings = load_settings()
        services.append(build_service(settings, build_parts(settings, clock=clock)))
    hours = 3.0
    step = hours * 3600 / count
    for n in range(count):
        services[n % len(services)].send(parse_send_request(SEED_EXAMPLE))
        clock.now += step
    totals: dict[str, float] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    name = metric.name + "".join(f"[{v}]" for v in dict(point.attributes or {}).values())
                    totals[name] = totals.get(name, 0) + float(getattr(point, "value", 0) or 0)
    return {
        "sends": count,
        "credentials": len(services),
        "simulated_hours": hours,
        "token_requests": totals.get("m365send.token.requests[miss]", 0),
        "token_cache_hits": totals.get("m365send.token.requests[hit]", 0),
        "key_vault_reads": totals.get("m365send.keyvault.reads", 0),
        "assertions": totals.get("m365send.assertion.requests", 0),
    }


if __name__ == "__main__":
    mode, count = sys.argv[1], int(sys.argv[2])
    print(json.dumps(throughput(count) if mode == "throughput" else economy(count)))
