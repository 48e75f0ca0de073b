"""The local run: the app's own functions over real HTTP on loopback, and its queue function on Azurite."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class LocalRun:
    """A running ``python -m standins.local_run`` and everything it printed so far."""

    process: subprocess.Popen[str]
    base: str
    key: str
    env_file: Path
    lines: list[str] = field(default_factory=list)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in self.lines if re.search(pattern, line)), None)
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"never printed {pattern!r}; printed:\n" + "".join(self.lines))


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    yield from _local_run(tmp_path_factory.mktemp("local") / "env")


def _local_run(env_file: Path, *options: str) -> Iterator[LocalRun]:
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.local_run", "--port", "0", "--env-file", str(env_file), *options],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: list[str] = []
    key = base = ""
    for line in process.stdout:
        lines.append(line)
        if match := re.search(r"Function key:\s+(\S+)", line):
            key = match.group(1)
        if match := re.search(r"API:\s+(http://\S+)/send", line):
            base = match.group(1)
        if key and base:
            break
    assert key, "the local run printed no function key:\n" + "".join(lines)
    assert base, "the local run printed no API address:\n" + "".join(lines)
    run = LocalRun(process, base, key, env_file, lines)
    reader = threading.Thread(target=lambda: run.lines.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    yield run
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0, "the local run did not stop cleanly on SIGTERM"


def test_health_answers_without_a_key(local_run: LocalRun) -> None:
    response = httpx.get(f"{local_run.base}/health")

    assert response.status_code == 200


def test_a_send_without_the_function_key_is_refused(local_run: LocalRun) -> None:
    response = httpx.post(f"{local_run.base}/send", json={"To": [{"Address": "a@fabrikam.com"}]})

    assert response.status_code == 401


def test_a_send_over_http_is_accepted_and_reaches_the_graph_stand_in(local_run: LocalRun) -> None:
    message = {"To": "curl@fabrikam.com", "From": {"Address": "notifications@contoso.com"}, "Subject": "Over HTTP"}

    response = httpx.post(f"{local_run.base}/send", params={"code": local_run.key}, json=message)

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "accepted"
    local_run.wait_for(r"sent 'Over HTTP' to curl@fabrikam.com")


def test_the_local_run_sends_with_the_federated_credential(tmp_path: Path) -> None:
    run = _local_run(tmp_path / "env", "--credential", "federated")
    local = next(run)
    message = {"To": "fic@fabrikam.com", "From": {"Address": "notifications@contoso.com"}, "Subject": "Federated"}
    try:
        response = httpx.post(f"{local.base}/send", params={"code": local.key}, json=message)
        settings = local.env_file.read_text()
        health = httpx.get(f"{local.base}/health").json()
        local.wait_for(r"sent 'Federated' to fic@fabrikam.com")
    finally:
        next(run, None)

    assert response.status_code == 202, response.text
    assert "M365_FEDERATED_CLIENT_ID=" in settings
    assert "M365_CLIENT_SECRET_NAME" not in settings
    assert health["checks"]["credential"] == "federated credential (managed identity)"


def test_validate_names_the_field_that_is_wrong(local_run: LocalRun) -> None:
    response = httpx.post(f"{local_run.base}/validate", params={"code": local_run.key}, json={"To": []})

    assert response.status_code == 400
    assert any(error["field"].startswith("To") for error in response.json()["errors"])


def test_the_openapi_document_is_served_for_the_connector(local_run: LocalRun) -> None:
    document = httpx.get(f"{local_run.base}/openapi.json").json()

    assert document["swagger"] == "2.0"


def test_an_enqueued_email_is_sent_by_the_queue_function(local_run: LocalRun) -> None:
    exports = (line.removeprefix("export ").split("=", 1) for line in local_run.env_file.read_text().splitlines())
    settings = {name: shlex.split(value)[0] for name, value in exports}
    command = [sys.executable, "-m", "m365send", "enqueue", "--to", "queued@fabrikam.com", "--subject", "Queued"]
    command += ["--body", "Hi"]

    result = subprocess.run(
        command, env={**os.environ, **settings}, capture_output=True, text=True, cwd=ROOT, timeout=60
    )

    assert result.returncode == 0, result.stderr
    local_run.wait_for(r"sent 'Queued' to queued@fabrikam.com")


def test_the_printed_curl_commands_use_the_key_and_the_real_routes(local_run: LocalRun) -> None:
    printed = "".join(local_run.lines)

    assert f"{local_run.base}/send?code={local_run.key}" in printed
    assert json.loads(shlex.split(re.search(r"-d ('[^']+')", printed).group(1))[0])["To"]  # type: ignore[union-attr]
