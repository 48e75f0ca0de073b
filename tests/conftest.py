"""Shared fixtures: the local cloud (Entra ID, Key Vault, Graph stand-ins) and the real HTTP trigger."""

from __future__ import annotations

import copy
import functools
import json
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ContainerClient,
    ContentSettings,
    ResourceTypes,
    generate_account_sas,
)

import function_app
from m365send.wiring import Worker
from standins.azurite import ACCOUNT, KEY, Azurite
from standins.cloud import SEED_EXAMPLE, Credential, LocalCloud
from standins.queue_host import QueueHost

# Every variable the product or azure-identity reads; each test starts with none of them set.
_ENV = [
    "M365_TENANT_ID",
    "M365_CLIENT_ID",
    "KEY_VAULT_URL",
    "M365_CLIENT_SECRET_NAME",
    "M365_CERTIFICATE_NAME",
    "M365_CERTIFICATE_PASSWORD_NAME",
    "M365_FEDERATED_CLIENT_ID",
    "M365_TOKEN_EXCHANGE_AUDIENCE",
    "M365_SENDER",
    "M365_ALLOWED_SENDERS",
    "M365_SENDER_POLICY",
    "M365_API_AUDIENCE",
    "M365_OUTBOX_QUEUES",
    "M365_AUTHORITY_HOST",
    "GRAPH_BASE_URL",
    "M365_SECRET_CACHE_SECONDS",
    "M365_GRAPH_MAX_ATTEMPTS",
    "M365_GRAPH_MAX_RETRY_WAIT",
    "M365_HTTP_TIMEOUT",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_AUTHORITY_HOST",
    "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_USERNAME",
    "AZURE_FEDERATED_TOKEN_FILE",
    "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER",
    "AZURE_POD_IDENTITY_AUTHORITY_HOST",
    "MSI_ENDPOINT",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
    "M365SEND_LOCAL_CA_BUNDLE",
    "M365Storage",
    "M365Storage__queueServiceUri",
    "M365Storage__tableServiceUri",
    "M365_QUEUE_NAME",
    "M365_SEND_TABLE",
    "M365_SEND_LEASE_SECONDS",
    "M365_DRAFT_SETTLE_SECONDS",
    "M365_QUEUE_MAX_ATTEMPTS",
    "M365_QUEUE_RETRY_BASE_SECONDS",
    "M365_QUEUE_MAX_DELAY_SECONDS",
    "M365_ATTACHMENT_CONTAINERS",
    "M365_MESSAGE_MAX_MB",
    "M365Storage__blobServiceUri",
]


@dataclass(frozen=True)
class Answer:
    """What the HTTP trigger answered."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]


def fresh_python(code: str, env: dict[str, str] | None = None) -> str:
    """Run ``code`` in a fresh interpreter at the project's root (what a cold worker imports); its stdout."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@functools.cache
def indexed_functions() -> dict[str, Any]:
    """The app's functions as the Functions host indexes them (indexing may run once per app)."""
    return {str(f.get_function_name()): f for f in function_app.app.get_functions()}


def invoke(
    function: str,
    method: str = "POST",
    *,
    body: bytes = b"",
    params: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
    url: str = "https://func-m365send.azurewebsites.net/api/",
) -> Answer:
    """Call one decorated HTTP function with a real ``func.HttpRequest``."""
    request = func.HttpRequest(method, url + function, body=body, params=params or {}, headers=headers or {})
    response: func.HttpResponse = indexed_functions()[function].get_user_function()(request)
    text = response.get_body()
    return Answer(response.status_code, dict(response.headers), json.loads(text) if text else {})


def status_of(key: str, headers: dict[str, str] | None = None, **params: str) -> Answer:
    """GET /api/messages/{key} through the real ``status`` function."""
    request = func.HttpRequest(
        "GET",
        f"https://func-m365send.azurewebsites.net/api/messages/{key}",
        body=b"",
        params=params,
        route_params={"key": key},
        headers=headers or {},
    )
    response: func.HttpResponse = indexed_functions()["status"].get_user_function()(request)
    return Answer(response.status_code, dict(response.headers), json.loads(response.get_body()))


class SendApi:
    """Calls the real decorated ``send`` function with real ``func.HttpRequest`` objects."""

    def post(
        self,
        message: Any = None,
        *,
        raw: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        function: str = "send",
    ) -> Answer:
        """POST ``message`` (as JSON) or ``raw`` bytes to /api/send (or another POST function)."""
        body = raw if raw is not None else json.dumps(message).encode()
        return invoke(function, body=body, params=params, headers=headers)


@pytest.fixture
def seed_message() -> dict[str, Any]:
    """A fresh copy of the seed's example message, safe to modify."""
    return copy.deepcopy(SEED_EXAMPLE)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    """One Azurite (queues, tables, blobs) for the session; each test uses its own queue and table."""
    local = Azurite()
    yield local
    local.close()


@pytest.fixture
def storage_settings(azurite: Azurite) -> dict[str, str]:
    """Settings for a fresh queue and table in Azurite, with a short lease so take-overs are quick."""
    suffix = uuid.uuid4().hex[:10]
    return {
        "M365Storage": azurite.connection_string,
        "M365_QUEUE_NAME": f"outbox-{suffix}",
        "M365_SEND_TABLE": f"sends{suffix}",
        "M365_SEND_LEASE_SECONDS": "1",
        "M365_QUEUE_RETRY_BASE_SECONDS": "0.2",
    }


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    """The three stand-ins, seeded, with tokens that live an hour as Entra's do."""
    with LocalCloud() as local:
        yield local


@dataclass(frozen=True)
class AttachmentStore:
    """A fresh Azurite container that the app may read attachments from."""

    container: str
    client: ContainerClient
    settings: dict[str, str]
    blob_endpoint: str

    def list_only_settings(self) -> dict[str, str]:
        """Settings whose storage credential may list blobs but not read them (a real 403 from Azurite)."""
        sas = generate_account_sas(
            ACCOUNT,
            KEY,
            resource_types=ResourceTypes(service=True, container=True, object=True),
            permission=AccountSasPermissions(list=True),
            expiry=datetime.now(UTC) + timedelta(hours=1),
        )
        return {
            **self.settings,
            "M365Storage": f"BlobEndpoint={self.blob_endpoint};SharedAccessSignature={sas}",
        }

    def put(self, name: str, data: bytes, content_type: str | None = None) -> str:
        """Upload a blob; its reference, ``container/name``."""
        settings = ContentSettings(content_type=content_type) if content_type else None
        self.client.upload_blob(name, data, overwrite=True, content_settings=settings)
        return f"{self.container}/{name}"


@pytest.fixture
def attachment_store(azurite: Azurite) -> Iterator[AttachmentStore]:
    """A container in Azurite allowed by M365_ATTACHMENT_CONTAINERS (apply ``settings`` with configure)."""
    name = f"attach-{uuid.uuid4().hex[:10]}"
    client = BlobServiceClient.from_connection_string(azurite.connection_string).create_container(name)
    yield AttachmentStore(
        name,
        client,
        {"M365Storage": azurite.connection_string, "M365_ATTACHMENT_CONTAINERS": name},
        azurite.endpoint("blob"),
    )
    client.delete_container()


Configure = Callable[..., SendApi]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, cloud: LocalCloud) -> Configure:
    """Point a fresh worker at the local cloud; keyword overrides set (or, with None, remove) settings."""

    def _configure(credential: Credential = "secret", **overrides: str | None) -> SendApi:
        for name in _ENV:
            monkeypatch.delenv(name, raising=False)
        settings: dict[str, str | None] = {**cloud.env(credential), **overrides}
        for name, value in settings.items():
            if value is not None:
                monkeypatch.setenv(name, value)
        monkeypatch.setattr(function_app, "worker", Worker())
        return SendApi()

    return _configure


@pytest.fixture
def api(configure: Configure) -> SendApi:
    """The HTTP trigger on a fresh worker, using the client secret."""
    return configure()


@pytest.fixture
def queue_host(configure: Configure, storage_settings: dict[str, str]) -> Callable[..., QueueHost]:
    """Configure a worker with storage and return the emulated queue host (keyword settings override)."""

    def _host(credential: Credential = "secret", **overrides: str | None) -> QueueHost:
        configure(credential, **{**storage_settings, **overrides})
        return QueueHost(
            storage_settings["M365Storage"],
            storage_settings["M365_QUEUE_NAME"],
            function=indexed_functions()["outbox"].get_user_function(),
        )

    return _host


# --- the local run, as ./scripts/local starts it -------------------------------------------------------

_ROOT = Path(__file__).resolve().parent.parent


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


def start_local_run(env_file: Path, *options: str) -> Iterator[LocalRun]:
    """Start ``python -m standins.local_run`` on a free port; yields it once it serves, stops it after."""
    process = subprocess.Popen(
        [sys.executable, "-m", "standins.local_run", "--port", "0", "--env-file", str(env_file), *options],
        cwd=_ROOT,
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
