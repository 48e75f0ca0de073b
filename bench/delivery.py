"""Table 6: what verified delivery costs per send against standard delivery, measured in one run.

Keyed sends (``Idempotency-Key``) through the real HTTP function, with send records in Azurite and
the stand-ins in this process, once with the stand-in answering at once and once with 50 ms added
to every Graph request (a round trip to Graph is tens of milliseconds). Each configuration runs on
a fresh worker, warmed by ten sends first. Also measured: the recovery after a lost answer, where
verified delivery asks the mailbox before it sends.

    python -m bench.delivery [N]
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
import uuid
from typing import Any

import azure.functions as func

import function_app
from m365send.wiring import Worker
from standins.azurite import Azurite
from standins.cloud import LocalCloud
from standins.examples import SEED_EXAMPLE
from standins.graph import Fault

__all__ = ["measure", "report"]


_SEND = next(f for f in function_app.app.get_functions() if f.get_function_name() == "send").get_user_function()


def _post(key: str) -> int:
    send = _SEND
    request = func.HttpRequest(
        "POST", "/api/send", body=json.dumps(SEED_EXAMPLE).encode(), headers={"Idempotency-Key": key}, params={}
    )
    return int(send(request).status_code)


def _run(cloud: LocalCloud, azurite: Azurite, mode: str, latency: float, sends: int) -> dict[str, Any]:
    os.environ.update(
        {
            **cloud.env(),
            "M365Storage": azurite.connection_string,
            "M365_SEND_TABLE": f"bench{uuid.uuid4().hex[:10]}",
            "M365_DELIVERY_MODE": mode,
        }
    )
    function_app.worker = Worker()
    for _ in range(10):
        _post(str(uuid.uuid4()))
    cloud.graph.latency = latency
    before = sum(cloud.graph.requests.values())
    times = []
    for _ in range(sends):
        started = time.perf_counter()
        if _post(str(uuid.uuid4())) != 202:
            raise RuntimeError("a send was not accepted")
        times.append((time.perf_counter() - started) * 1000)
    requests = sum(cloud.graph.requests.values()) - before
    # Recovery: Graph delivers, then its answer is lost; the caller retries with the same key.
    key = str(uuid.uuid4())
    cloud.graph.inject(Fault(504, after=True, on="POST /sendMail" if mode == "standard" else "POST /send"))
    sent_before = len(cloud.graph.sent)
    first = _post(key)
    started = time.perf_counter()
    again = _post(key)
    recovery_ms = (time.perf_counter() - started) * 1000
    cloud.graph.latency = 0.0
    return {
        "mode": mode,
        "latency_ms": latency * 1000,
        "graph_requests_per_send": requests / sends,
        "median_ms": statistics.median(times),
        "p95_ms": sorted(times)[int(len(times) * 0.95) - 1],
        "recovery": f"{first} then {again}",
        "recovery_ms": recovery_ms,
        "recovery_deliveries": len(cloud.graph.sent) - sent_before,
    }


def measure(sends: int = 200) -> list[dict[str, Any]]:
    """Both modes, with and without Graph latency, in one run."""
    azurite = Azurite()
    try:
        with LocalCloud() as cloud:
            os.environ.update({"REQUESTS_CA_BUNDLE": str(cloud.ca_bundle), "SSL_CERT_FILE": str(cloud.ca_bundle)})
            return [
                _run(cloud, azurite, mode, latency, sends)
                for latency in (0.0, 0.05)
                for mode in ("standard", "verified")
            ]
    finally:
        azurite.close()


def report(rows: list[dict[str, Any]], sends: int) -> str:
    """Table 6 as Markdown."""
    lines = [
        f"### 6. Verified delivery's cost ({sends} keyed sends per row, HTTP trigger, send records in Azurite)",
        "",
        "| mode | added Graph latency | Graph requests / send | median ms / send | p95 ms | after a lost answer: "
        "answers, deliveries, ms for the retry |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['mode']} | {r['latency_ms']:.0f} ms | {r['graph_requests_per_send']:.2f} | {r['median_ms']:.1f} "
            f"| {r['p95_ms']:.1f} | {r['recovery']}, {r['recovery_deliveries']} delivered, {r['recovery_ms']:.0f} ms |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    logging.disable(logging.WARNING)  # the recovery rows log their (expected) warnings
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    print(report(measure(count), count))
