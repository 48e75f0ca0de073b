"""What every benchmark shares: the stand-ins in a process of their own, fresh measured children, tables.

The table modules (``bench.bench``, ``bench.memory``, ``bench.body_memory``, ``bench.federated``,
``bench.first_send``) import this and nothing of each other, so the benchmarks form no import circle.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["FIRST_SENDS", "StorageRequests", "app_python", "measure", "run_worker", "standins", "table"]

# A fresh process's first email, as tables 1d (wall time) and 1f (instructions) compare them: the row's
# name, the bench.children mode, and whether the host's storage is configured.
FIRST_SENDS = (
    ("the interpreter alone", "start", False),
    ("import azure.functions only", "import-functions", False),
    ("floor: the mandated libraries alone", "first-send-floor", False),
    ("floor with pydantic validating the message", "first-send-floor-validated", False),
    ("msgraph-sdk", "first-send-sdk", False),
    ("m365send, no storage settings", "first-send", False),
    ("m365send, storage configured (shared pacing)", "first-send", True),
    ("m365send, storage, with an Idempotency-Key", "first-send-keyed", True),
)


@contextmanager
def standins(
    apps: int = 3, credential: str = "secret", counts: dict[str, int] | None = None
) -> Iterator[dict[str, str]]:
    """The stand-ins in a child process; yields the app settings that point at them.

    ``counts``, if given, receives what the stand-ins were asked once they stop.
    """
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.standin_process", "--apps", str(apps), "--credential", credential],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout
    assert process.stdin
    settings: dict[str, str] = json.loads(process.stdout.readline())
    try:
        yield settings
    finally:
        process.stdin.close()
        last = process.stdout.readline()
        process.wait(timeout=30)
        if counts is not None and last.strip():
            counts.update(json.loads(last))


def app_python() -> str:
    """The interpreter of the measured fresh processes: ``M365_BENCH_APP_PYTHON`` (the app's pins
    alone, as deployed; ``bench/run`` sets it), else this one."""
    return os.environ.get("M365_BENCH_APP_PYTHON") or sys.executable


def measure(mode: str, env: dict[str, str], count: int = 0, module: str = "bench.children") -> dict[str, Any]:
    """Run one fresh child; its JSON line plus the wall time of the whole process.

    ``bench.children`` runs with ``M365_BENCH_APP_PYTHON`` when set (``bench/run`` sets it): a venv
    of the app's pins alone, as deployed.
    """
    python = app_python() if module == "bench.children" else sys.executable
    started = time.perf_counter()
    result = subprocess.run(
        [python, "-m", module, mode, str(count)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{result.stderr[-2000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "wall_s": wall}


def run_worker(module: str, args: list[str], env: dict[str, str], *, timeout: float = 900) -> dict[str, Any]:
    """Run ``python -m module args`` as a fresh worker process; the JSON object on its last line."""
    result = subprocess.run(
        [sys.executable, "-m", module, *args], env=env, capture_output=True, text=True, check=False, timeout=timeout
    )
    if result.returncode != 0:
        raise RuntimeError(f"the worker failed:\n{result.stderr[-3000:]}")
    worker_output: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return worker_output


def table(title: str, header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table, readable as plain text too."""
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


class StorageRequests:
    """Counts this process's requests to Azure Storage by service and resource (a table, a queue, a container).

    The count is taken at azure-core's HTTP transport, under every SDK client, so it sees each request
    the app makes (retries included) without the app counting anything itself. For benchmarks only.
    """

    def __init__(self, connection_string: str) -> None:
        from collections import Counter
        from urllib.parse import urlsplit

        self.counts: Counter[str] = Counter()
        # Azurite serves each service on a port of its own: the endpoints say which.
        self._services = {
            urlsplit(value).port: name.removesuffix("Endpoint").lower()
            for name, value in (part.split("=", 1) for part in connection_string.split(";") if "=" in part)
            if name.endswith("Endpoint")
        }

    def install(self) -> StorageRequests:
        """Start counting (patches ``RequestsTransport.send`` in this process)."""
        from urllib.parse import urlsplit

        from azure.core.pipeline.transport import RequestsTransport

        original = RequestsTransport.send
        counts, services = self.counts, self._services

        def counted(transport: Any, request: Any, **kwargs: Any) -> Any:
            url = urlsplit(request.url)
            parts = url.path.split("/")  # /devstoreaccount1/<resource>[(...)|/...]
            resource = (parts[2] if len(parts) > 2 else "").split("(")[0] or "account"
            counts[f"{services.get(url.port, 'other')}:{resource}"] += 1
            return original(transport, request, **kwargs)

        RequestsTransport.send = counted
        return self
