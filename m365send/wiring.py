"""Composition root: settings → the real adapters (Key Vault, msal, httpx) → one ``EmailService`` per worker."""

from __future__ import annotations

import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import httpx
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from m365send.credentials import AppCredentialSource, VaultCertificate, VaultClientSecret
from m365send.graph import GraphMailClient
from m365send.keyvault import KeyVaultSecrets
from m365send.service import EmailService
from m365send.settings import DEFAULT_AUTHORITY_HOST, Settings, load_settings
from m365send.tokens import GraphTokens

__all__ = ["Worker", "build_service"]


def _vault_credential(settings: Settings) -> DefaultAzureCredential:
    """Managed identity in Azure (``AZURE_CLIENT_ID`` picks a user-assigned one); the usual chain locally."""
    custom_authority = urlsplit(settings.authority_host).netloc != urlsplit(DEFAULT_AUTHORITY_HOST).netloc
    return DefaultAzureCredential(
        authority=settings.authority_host,
        managed_identity_client_id=settings.managed_identity_client_id,
        # Instance discovery asks the public cloud to vouch for the authority: impossible for a
        # sovereign or local one, so only the public default keeps it.
        **({"disable_instance_discovery": True} if custom_authority else {}),
    )


def _app_credential(settings: Settings, secrets: KeyVaultSecrets) -> AppCredentialSource:
    if settings.certificate_name:
        return VaultCertificate(
            secrets=secrets, name=settings.certificate_name, password_name=settings.certificate_password_name
        )
    assert settings.client_secret_name  # settings guarantee exactly one of the two
    return VaultClientSecret(secrets=secrets, name=settings.client_secret_name)


def build_service(settings: Settings) -> EmailService:
    """Create every I/O client once and wire them into the service."""
    secret_client = SecretClient(
        vault_url=settings.key_vault_url,
        credential=_vault_credential(settings),
        # The challenge names vault.azure.net; a loopback stand-in cannot be a subdomain of it.
        verify_challenge_resource=not settings.vault_is_loopback,
    )
    secrets = KeyVaultSecrets(client=secret_client, ttl_seconds=settings.secret_cache_seconds)
    tokens = GraphTokens(
        credentials=_app_credential(settings, secrets),
        tenant_id=settings.tenant_id,
        client_id=settings.client_id,
        authority_host=settings.authority_host,
        scope=settings.graph_scope,
        timeout=settings.http_timeout,
    )
    mail = GraphMailClient(
        http=httpx.Client(timeout=settings.http_timeout),
        base_url=settings.graph_base_url,
        max_attempts=settings.graph_max_attempts,
        max_retry_wait=settings.graph_max_retry_wait,
    )
    return EmailService(tokens=tokens, mail=mail, default_sender=settings.sender, allowed_senders=settings.senders)


class Worker:
    """Builds the service on first use and keeps it for the worker's life (the warm-instance caches live in it).

    Settings are read on first use, not at import, so a misconfigured app still indexes its functions
    and answers each request with a problem that names the bad setting.
    """

    def __init__(
        self,
        *,
        settings: Callable[[], Settings] = load_settings,
        build: Callable[[Settings], EmailService] = build_service,
    ) -> None:
        self._settings = settings
        self._build = build
        self._service: EmailService | None = None
        self._lock = threading.Lock()

    def service(self) -> EmailService:
        """The worker's service, built once."""
        with self._lock:
            if self._service is None:
                self._service = self._build(self._settings())
            return self._service
