"""Read secrets from Azure Key Vault, cached in the worker for a TTL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from m365send.credentials import Secret, SecretSource
from m365send.errors import CredentialError, DependencyUnavailable, KeyVaultAccessDenied, SecretNotFound
from m365send.telemetry import KEY_VAULT_READS

__all__ = ["KeyVaultSecrets", "Secret", "SecretSource"]

log = logging.getLogger(__name__)


class KeyVaultSecrets:
    """``SecretSource`` over one ``SecretClient``, with a per-worker TTL cache."""

    def __init__(self, *, client: SecretClient, ttl_seconds: float, clock: Callable[[], float] = time.monotonic):
        self._client = client
        self._ttl = ttl_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Secret]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Secret:
        """Return the cached secret while fresh; otherwise read it from Key Vault."""
        with self._lock:
            cached = self._cache.get(name)
            if cached and self._clock() - cached[0] < self._ttl:
                return cached[1]
            secret = self._read(name)
            self._cache[name] = (self._clock(), secret)
            return secret

    def invalidate(self, name: str) -> None:
        """Drop ``name`` from the cache."""
        with self._lock:
            self._cache.pop(name, None)

    def _read(self, name: str) -> Secret:
        vault = self._client.vault_url
        try:
            bundle = self._client.get_secret(name)
        except ResourceNotFoundError:
            raise SecretNotFound(f"Key Vault {vault} has no secret named '{name}'") from None
        except ClientAuthenticationError as exc:
            raise CredentialError(
                f"the worker's identity could not authenticate to Key Vault {vault}: {_first_line(exc)}"
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise DependencyUnavailable(f"Key Vault {vault} is unreachable: {_first_line(exc)}") from None
        except HttpResponseError as exc:
            if exc.status_code == 403:
                raise KeyVaultAccessDenied(
                    f"the worker's identity may not read secret '{name}' in Key Vault {vault}; "
                    "grant it the 'Key Vault Secrets User' role"
                ) from None
            if exc.status_code in (429, 500, 502, 503, 504):
                raise DependencyUnavailable(f"Key Vault {vault} answered {exc.status_code}") from None
            raise CredentialError(f"Key Vault {vault} refused to read '{name}': {_first_line(exc)}") from None
        KEY_VAULT_READS.add(1)
        log.info("read Key Vault secret", extra={"secret_name": name, "secret_version": bundle.properties.version})
        return Secret(
            name=name,
            version=bundle.properties.version or "",
            value=bundle.value or "",
            content_type=bundle.properties.content_type,
            expires_on=bundle.properties.expires_on,
        )


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
