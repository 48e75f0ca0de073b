"""App settings: defaults, and failing fast with the name of each bad setting."""

from __future__ import annotations

import pytest

from m365send.errors import ConfigurationInvalid
from m365send.settings import DEFAULT_AUTHORITY_HOST, DEFAULT_GRAPH_BASE_URL, load_settings
from tests.conftest import fresh_python

BASE = {
    "M365_TENANT_ID": "contoso.onmicrosoft.com",
    "M365_CLIENT_ID": "0b5c9e7a-6d41-4f2e-8a3c-1e9f7d6b5a42",
    "KEY_VAULT_URL": "https://kv-m365send.vault.azure.net/",
    "M365_CLIENT_SECRET_NAME": "m365-client-secret",
    "M365_SENDER": "notifications@contoso.com",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name in [
        *BASE,
        "M365_CERTIFICATE_NAME",
        "M365_CERTIFICATE_PASSWORD_NAME",
        "M365_ALLOWED_SENDERS",
        "M365_AUTHORITY_HOST",
        "GRAPH_BASE_URL",
        "AZURE_CLIENT_ID",
    ]:
        monkeypatch.delenv(name, raising=False)
    for name, value in BASE.items():
        monkeypatch.setenv(name, value)
    return dict(BASE)


def test_defaults_point_at_the_public_cloud(env: dict[str, str]) -> None:
    settings = load_settings()

    assert settings.authority_host == DEFAULT_AUTHORITY_HOST
    assert settings.graph_base_url == DEFAULT_GRAPH_BASE_URL
    assert settings.graph_scope == "https://graph.microsoft.com/.default"
    assert settings.key_vault_url == "https://kv-m365send.vault.azure.net"
    assert settings.senders == {"notifications@contoso.com"}
    assert not settings.vault_is_loopback


def test_allowed_senders_are_split_and_case_folded(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365_ALLOWED_SENDERS", "Support@Contoso.com; sales@contoso.com,")

    assert load_settings().senders == {"support@contoso.com", "sales@contoso.com", "notifications@contoso.com"}


def test_both_secret_and_certificate_is_contradictory(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365_CERTIFICATE_NAME", "m365-certificate")

    with pytest.raises(ConfigurationInvalid, match="exactly one of M365_CLIENT_SECRET_NAME"):
        load_settings()


def test_password_without_certificate_is_contradictory(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365_CERTIFICATE_PASSWORD_NAME", "pfx-password")

    with pytest.raises(ConfigurationInvalid, match="M365_CERTIFICATE_PASSWORD_NAME is set"):
        load_settings()


def test_object_id_sender_needs_its_addresses_listed(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("M365_SENDER", "7d3a5f1e-2c4b-4e8a-9f10-3b6c2d1e0a55")

    with pytest.raises(ConfigurationInvalid, match="M365_ALLOWED_SENDERS must list"):
        load_settings()


def test_plain_http_endpoints_are_refused(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPH_BASE_URL", "http://graph.microsoft.com/v1.0")

    with pytest.raises(ConfigurationInvalid) as caught:
        load_settings()

    assert caught.value.settings == ("GRAPH_BASE_URL",)
    assert "https://" in caught.value.detail


def test_each_missing_setting_is_named(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("M365_TENANT_ID")
    monkeypatch.delenv("M365_SENDER")

    with pytest.raises(ConfigurationInvalid) as caught:
        load_settings()

    assert set(caught.value.settings) == {"M365_TENANT_ID", "M365_SENDER"}
    assert caught.value.exception == "PropertyNullException"


def test_loopback_vault_is_recognised(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KEY_VAULT_URL", "https://127.0.0.1:8443")

    assert load_settings().vault_is_loopback


def test_settings_come_from_the_environment_alone_with_no_settings_library_imported() -> None:
    # pydantic-settings imports its CLI, dotenv, cloud secret store sources and asyncio: a cold start
    # paid for them though the app reads nothing but its environment.
    probe = (
        "import sys\n"
        "from m365send.settings import load_settings\n"
        "settings = load_settings({'M365_TENANT_ID': 't', 'M365_CLIENT_ID': 'c', 'M365_FEDERATED_CLIENT_ID': 'm',"
        " 'M365_SENDER': 'a@contoso.com', 'M365_ALLOWED_SENDERS': 'a@contoso.com; b@contoso.com'})\n"
        "print(sorted(settings.allowed_senders), settings.credential_mode,"
        " [m for m in sys.modules if m.startswith(('pydantic_settings', 'dotenv'))])\n"
    )
    assert fresh_python(probe) == "['a@contoso.com', 'b@contoso.com'] federated []"
