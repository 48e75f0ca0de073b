"""Scale-out at Graph's mailbox limits: ``python -m bench.scaleout N``; prints one JSON line per row.

Three worker processes (separate OS processes, each running the real queue function 24 messages
at a time, as host.json allows) drain N outbox messages from one Azurite queue, against one Graph
stand-in that enforces 4 concurrent requests and 100 requests per 6 s per mailbox with 50 ms
latency (Graph's 10,000 per 10 minutes, scaled down), answering 429 with Retry-After beyond either.

Rows: per-worker pacing (each worker keeps to the limits on its own), the shared limiter, the
shared limiter with the messages split between two mailboxes (each has its own ceiling), and one
worker alone with the shared limiter (for the cost table, ``bench.cost``).
The last line is what the limiter adds to a request when the window has room (``overhead``).

Azurite runs each service in a process of its own, its queue without its 60-second sweep
(``standins.azurite``): one process stops serving its tables for 4 to 6 s while the sweep runs,
which made workers fall back to pacing on their own and Graph answer 429 (544 of them in one run).
``python -m bench.scaleout worker`` is one worker: it warms up, says ``ready``, waits for ``go``,
drains the queue and prints its own figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.harness import StorageRequests
from standins.examples import SEED_EXAMPLE

LIMITS = {"concurrency": 4, "rate": 100, "window": 6.0, "latency": 0.05}
WORKERS = 3
PARALLEL = 24  # batchSize 16 + newBatchThreshold 8
SECOND_MAILBOX = "alerts@contoso.com"
# Messages kept on the queue while the workers drain it: more than they hold at once (3 x 24), so
# they never run dry, but not all N at once. With 2,000 queued, Azurite's queue answered a delete in
# 1 to 4 s at the start of a run; Azure Queue Storage's latency does not grow with a queue's depth.
BACKLOG = 400


def worker() -> None:
    """One instance: warm up, wait for the go, drain the queue, print what it did."""
    import function_app
    from standins.queue_host import QueueHost

    outbox = next(f for f in function_app.app.get_functions() if f.get_function_name() == "outbox")
    current = function_app.current_worker()
    settings = current.settings()
    assert settings.storage_connection is not None
    storage = StorageRequests(settings.storage_connection).install()
    function = outbox.get_user_function()
    executions = 0

    def execute(message: Any) -> None:
        nonlocal executions
        executions += 1  # one function execution per delivery, as the host bills it
        function(message)

    host = QueueHost(settings.storage_connection, settings.queue_name, function=execute)
    current.warm_up()  # Key Vault, token and connections, as the warm-up trigger does on scale-out
    print("ready", flush=True)
    sys.stdin.readline()
    storage.counts.clear()  # the drain's requests only, not the warm-up's
    started = time.perf_counter()
    host.drain(timeout=1800, parallel=PARALLEL)
    pacer = current.parts().mail.pacer
    print(
        json.dumps(
            {
                "seconds": time.perf_counter() - started,
                "failures": len(host.failures),
                "executions": executions,
                "storage_requests": getattr(pacer, "storage_requests", {}),
                "given_up": getattr(pacer, "given_up", 0),
                "fallbacks": getattr(pacer, "fallbacks", 0),
                "storage_by_resource": dict(storage.counts),
            }
        ),
        flush=True,
    )


def run(count: int, *, pacing: str, mailboxes: int, workers: int = WORKERS) -> dict[str, Any]:
    """Drain ``count`` messages with ``workers`` worker processes; the row's figures."""
    from azure.data.tables import TableClient

    from standins.azurite import Azurite
    from standins.cloud import LocalCloud
    from standins.queue_host import QueueHost

    with LocalCloud() as cloud:
        azurite = Azurite(separate=True, sweep_queue=False)
        try:
            cloud.graph.add_mailbox(SECOND_MAILBOX)
            cloud.graph.mailbox_concurrency = int(LIMITS["concurrency"])
            cloud.graph.mailbox_rate = (int(LIMITS["rate"]), LIMITS["window"])
            cloud.graph.latency = LIMITS["latency"]
            suffix = uuid.uuid4().hex[:8]
            env = {
                **os.environ,
                **cloud.env(),
                "M365Storage": azurite.connection_string,
                "M365_QUEUE_NAME": f"outbox-{suffix}",
                "M365_SEND_TABLE": f"sends{suffix}",
                "M365_ALLOWED_SENDERS": f"{cloud.mailbox.upn},{SECOND_MAILBOX}",
                "M365_GRAPH_MAILBOX_CONCURRENCY": str(LIMITS["concurrency"]),
                "M365_GRAPH_MAILBOX_RATE": str(LIMITS["rate"]),
                "M365_GRAPH_MAILBOX_WINDOW_SECONDS": str(LIMITS["window"]),
                "M365_GRAPH_PACING": pacing,
                "M365_QUEUE_RETRY_BASE_SECONDS": "1",
            }
            host = QueueHost(azurite.connection_string, env["M365_QUEUE_NAME"], function=lambda _: None)
            senders = [cloud.mailbox.upn, SECOND_MAILBOX][:mailboxes]

            def enqueue(numbers: range) -> None:
                for n in numbers:
                    message = {**SEED_EXAMPLE, "From": {"Address": senders[n % mailboxes]}}
                    host.producer.enqueue(
                        {**message, "To": [{"Address": f"r{n}@fabrikam.com"}]},
                        key=f"load-{n}",
                        sender=senders[n % mailboxes],
                    )

            enqueue(range(min(count, BACKLOG)))
            feeder = threading.Thread(target=_feed, args=(host, enqueue, count), daemon=True)
            processes = [
                subprocess.Popen(
                    [sys.executable, "-m", "bench.scaleout", "worker"],
                    env=env,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                for _ in range(workers)
            ]
            for process in processes:
                assert process.stdout is not None
                if process.stdout.readline().strip() != "ready":
                    raise RuntimeError("a worker failed to start")
            requests_before = sum(n for path, n in cloud.graph.requests.items() if path.endswith("/sendMail"))
            throttled_before = cloud.graph.throttled
            started = time.perf_counter()
            for process in processes:
                assert process.stdin is not None
                process.stdin.write("go\n")
                process.stdin.flush()
            feeder.start()
            reports = []
            for process in processes:
                out, _ = process.communicate(timeout=1800)
                if process.returncode != 0:
                    raise RuntimeError(f"a worker failed (exit {process.returncode})")
                reports.append(json.loads(out.strip().splitlines()[-1]))
            elapsed = time.perf_counter() - started
            table = TableClient.from_connection_string(azurite.connection_string, env["M365_SEND_TABLE"])
            dead = len(list(table.query_entities("PartitionKey eq 'deadletter'")))
            poisoned = host.poisoned()
        finally:
            azurite.close()
        recipients = [mail.message["toRecipients"][0]["emailAddress"]["address"] for mail in cloud.graph.sent]
        graph_requests = (
            sum(n for path, n in cloud.graph.requests.items() if path.endswith("/sendMail")) - requests_before
        )
        ceiling = min(LIMITS["concurrency"] / LIMITS["latency"], LIMITS["rate"] / LIMITS["window"]) * mailboxes
        sent = len(set(recipients))
        return {
            "pacing": pacing,
            "mailboxes": mailboxes,
            "messages": count,
            "sent": sent,
            "sent_twice": len(recipients) - sent,
            "lost": count - sent - dead - poisoned,
            "dead_lettered": dead + poisoned,
            "seconds": elapsed,
            "sends_per_second": sent / elapsed,
            "ceiling_per_second": ceiling,
            "ratio": sent / elapsed / ceiling,
            "graph_requests": graph_requests,
            "throttled_429": cloud.graph.throttled - throttled_before,
            "storage_requests": _summed(r["storage_requests"] for r in reports),
            "storage_by_resource": _summed(r["storage_by_resource"] for r in reports),
            "executions": sum(r["executions"] for r in reports),
            "pacing_given_up": sum(r["given_up"] for r in reports),
            "pacing_fallbacks": sum(r.get("fallbacks", 0) for r in reports),
            "workers": workers,
            "send_table": env["M365_SEND_TABLE"],
        }


def _feed(host: Any, enqueue: Callable[[range], None], count: int) -> None:
    """Keep the queue ``BACKLOG`` deep until all ``count`` messages are on it (see ``BACKLOG``)."""
    fed = min(count, BACKLOG)
    while fed < count:
        if host.waiting() < BACKLOG:
            more = min(count - fed, BACKLOG // 4)
            enqueue(range(fed, fed + more))
            fed += more
        else:
            time.sleep(0.05)


def _summed(counts: Any) -> dict[str, int]:
    total: dict[str, int] = {}
    for one in counts:
        for kind, n in one.items():
            total[kind] = total.get(kind, 0) + n
    return dict(sorted(total.items()))


def overhead(count: int = 300) -> dict[str, Any]:
    """What the shared limiter adds to one Graph request when the window has room: ``count`` slots, one
    at a time, against Azurite (median and 95th percentile, ms), and the storage transactions each took."""
    import statistics

    from m365send.pacing import MailboxPacer
    from m365send.shared_pacing import SharedMailboxLimiter
    from standins.azurite import Azurite

    azurite = Azurite()
    try:
        limiter = SharedMailboxLimiter.from_connection_string(
            azurite.connection_string,
            table="pacing",
            app_id="bench",
            concurrency=4,
            rate=10_000,
            window=600,
            lease_seconds=30,
            max_wait=30,
            local=MailboxPacer(concurrency=4, rate=10_000, window=600, max_wait=30),
            create_missing=True,
        )
        with limiter.slot("ops@contoso.com"):  # creates the container, table and slot blobs
            pass
        before = sum(limiter.storage_requests.values())
        times = []
        for _ in range(count):
            started = time.perf_counter()
            with limiter.slot("ops@contoso.com"):
                times.append((time.perf_counter() - started) * 1000)
        per_slot = (sum(limiter.storage_requests.values()) - before) / count
    finally:
        azurite.close()
    times.sort()
    return {
        "overhead_ms_median": statistics.median(times),
        "overhead_ms_p95": times[int(len(times) * 0.95)],
        "storage_requests_per_slot": per_slot,
    }


def main() -> None:
    """``worker``, or N: the three rows, one JSON line each."""
    if len(sys.argv) < 2:
        print("usage: python -m bench.scaleout N [worker-1 shared-1 shared-2 shared-1-1 ...] | worker", file=sys.stderr)
        raise SystemExit(2)
    if sys.argv[1] == "worker":
        worker()
        return
    count = int(sys.argv[1])
    # pacing-mailboxes[-workers]; the cost table's one-instance row last.
    names = sys.argv[2:] or ["worker-1", "shared-1", "shared-2", "shared-1-1"]
    for name in names:  # e.g. worker-2 shared-1: only these rows
        pacing, mailboxes, *workers = name.split("-")
        row = run(count, pacing=pacing, mailboxes=int(mailboxes), workers=int(workers[0]) if workers else WORKERS)
        print(json.dumps(row), flush=True)
    print(json.dumps(overhead()), flush=True)


if __name__ == "__main__":
    main()
