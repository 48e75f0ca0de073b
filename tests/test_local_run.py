"""The local run: the app's own functions over real HTTP on loopback, and its queue function on Azurite."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import LocalRun, start_local_run

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def local_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRun]:
    yield from start_local_run(tmp_path_factory.mktemp("local") / "env")


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
    run = start_local_run(tmp_path / "env", "--credential", "federated")
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
    assert not local.env_file.exists()  # removed when the run stopped: nothing stale to source
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


def _exported(env_file: Path) -> dict[str, str]:
    lines = [line for line in env_file.read_text().splitlines() if line.startswith("export ")]
    exports = (line.removeprefix("export ").split("=", 1) for line in lines)
    return {name: shlex.split(value)[0] for name, value in exports}


def test_the_settings_file_leaves_the_shells_tls_trust_alone(local_run: LocalRun) -> None:
    settings = _exported(local_run.env_file)

    assert "SSL_CERT_FILE" not in settings
    assert "REQUESTS_CA_BUNDLE" not in settings
    assert Path(settings["M365SEND_LOCAL_CA_BUNDLE"]).is_file()


def test_an_enqueued_email_is_sent_by_the_queue_function(local_run: LocalRun) -> None:
    settings = _exported(local_run.env_file)
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
