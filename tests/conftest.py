"""Shared fixtures: the local cloud (Entra ID, Key Vault, Graph stand-ins) and the real HTTP trigger."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import azure.functions as func
import pytest

import function_app
from m365send.wiring import Worker
from standins.cloud import SEED_EXAMPLE, LocalCloud

# Every variable the product or azure-identity reads; each test starts with none of them set.
_ENV = [
    "M365_TENANT_ID",
    "M365_CLIENT_ID",
    "KEY_VAULT_URL",
    "M365_CLIENT_SECRET_NAME",
    "M365_CERTIFICATE_NAME",
    "M365_CERTIFICATE_PASSWORD_NAME",
    "M365_SENDER",
    "M365_ALLOWED_SENDERS",
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
    "MSI_ENDPOINT",
    "REQUESTS_CA_BUNDLE",
    "SSL_CERT_FILE",
]


@dataclass(frozen=True)
class Answer:
    """What the HTTP trigger answered."""

    status: int
    headers: dict[str, str]
    body: dict[str, Any]


@functools.cache
def indexed_functions() -> dict[str, Any]:
    """The app's functions as the Functions host indexes them (indexing may run once per app)."""
    return {str(f.get_function_name()): f for f in function_app.app.get_functions()}


class SendApi:
    """Calls the real decorated ``send`` function with real ``func.HttpRequest`` objects."""

    def __init__(self) -> None:
        self._send = indexed_functions()["send"].get_user_function()

    def post(
        self,
        message: Any = None,
        *,
        raw: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Answer:
        """POST ``message`` (as JSON) or ``raw`` bytes to /api/send."""
        body = raw if raw is not None else json.dumps(message).encode()
        request = func.HttpRequest(
            "POST", "https://localhost/api/send", body=body, params=params or {}, headers=headers or {}
        )
        response: func.HttpResponse = self._send(request)
        text = response.get_body()
        return Answer(response.status_code, dict(response.headers), json.loads(text) if text else {})


@pytest.fixture
def seed_message() -> dict[str, Any]:
    """A fresh copy of the seed's example message, safe to modify."""
    return copy.deepcopy(SEED_EXAMPLE)


@pytest.fixture
def cloud() -> Iterator[LocalCloud]:
    """The three stand-ins, seeded, with tokens that live an hour as Entra's do."""
    with LocalCloud() as local:
        yield local


Configure = Callable[..., SendApi]


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch, cloud: LocalCloud) -> Configure:
    """Point a fresh worker at the local cloud; keyword overrides set (or, with None, remove) settings."""

    def _configure(credential: Literal["secret", "certificate"] = "secret", **overrides: str | None) -> SendApi:
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
