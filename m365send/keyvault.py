"""Read secrets from Azure Key Vault, cached in the worker for a TTL."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from azure.core.exceptions import ClientAuthenticationError
from azure.keyvault.secrets import SecretClient

from m365send.azure_errors import azure_errors, first_line, safe_cause
from m365send.credentials import Secret, SecretSource
from m365send.errors import (
    CredentialError,
    DependencyUnavailable,
    KeyVaultAccessDenied,
    M365SendError,
    SecretNotFound,
)
from m365send.telemetry import KEY_VAULT_READS, tracer

__all__ = ["KeyVaultSecrets", "Secret", "SecretSource"]

log = logging.getLogger(__name__)


class KeyVaultSecrets:
    """``SecretSource`` over one ``SecretClient``, with a per-worker TTL cache.

    No lock is shared across names or held while another name is read. A refresh that fails because
    Key Vault is unavailable keeps serving the cached value (with a warning) until it is older than
    ``max_stale_seconds``; only then do sends fail.
    """

    def __init__(
        self,
        *,
        client: SecretClient,
        ttl_seconds: float,
        max_stale_seconds: float = 86_400.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._client = client
        self._ttl = ttl_seconds
        self._max_stale = max_stale_seconds
        self._clock = clock
        self._cache: dict[str, tuple[float, Secret]] = {}
        self._reading: dict[str, threading.Lock] = {}
        # Per name: how many reads have ended, and the error the last one ended in (None: it succeeded).
        # A caller that waited for another's read takes that read's outcome rather than reading again.
        self._reads: dict[str, tuple[int, M365SendError | None]] = {}
        self._lock = threading.Lock()  # guards the two dicts only, never held during a read

    def get(self, name: str) -> Secret:
        """Return the cached secret while fresh; otherwise read it from Key Vault."""
        with self._lock:
            cached = self._cache.get(name)
            reading = self._reading.setdefault(name, threading.Lock())
        if cached and self._clock() - cached[0] < self._ttl:
            return cached[1]
        if cached is not None and not reading.acquire(blocking=False):
            return cached[1]  # another thread is refreshing it: the current value will do meanwhile
        if cached is None:
            with self._lock:
                seen = self._reads.get(name, (0, None))[0]
            reading.acquire()  # nothing to serve: wait for the reader, whose outcome is then ours
            with self._lock:
                cached = self._cache.get(name)
                ended, failure = self._reads.get(name, (0, None))
            if cached and self._clock() - cached[0] < self._ttl:
                reading.release()
                return cached[1]
            if ended != seen and failure is not None:
                # The read this caller waited for failed just now: reading again would double its wait.
                reading.release()
                raise failure.with_traceback(None)
        try:
            secret = self._read(name)
        except M365SendError as error:
            with self._lock:
                self._reads[name] = (self._reads.get(name, (0, None))[0] + 1, error)
            if not isinstance(error, DependencyUnavailable):
                raise
            if cached is not None and self._clock() - cached[0] < self._max_stale:
                log.warning(
                    "Key Vault is unavailable; serving the cached secret read %.0f s ago: %s",
                    self._clock() - cached[0],
                    error.detail,
                    extra={"secret_name": name},
                )
                return cached[1]
            raise
        finally:
            reading.release()
        with self._lock:
            self._cache[name] = (self._clock(), secret)
            self._reads[name] = (self._reads.get(name, (0, None))[0] + 1, None)
        return secret

    def invalidate(self, name: str) -> None:
        """Drop ``name`` from the cache."""
        with self._lock:
            self._cache.pop(name, None)

    def _read(self, name: str) -> Secret:
        vault = self._client.vault_url
        with azure_errors(
            f"Key Vault {vault}",
            not_found=lambda: SecretNotFound(f"Key Vault {vault} has no secret named '{name}'"),
            denied=lambda: KeyVaultAccessDenied(
                f"the worker's identity may not read secret '{name}' in Key Vault {vault}; "
                "grant it the 'Key Vault Secrets User' role"
            ),
            refused=lambda exc: CredentialError(f"Key Vault {vault} refused to read '{name}': {first_line(exc)}"),
        ):
            try:
                with tracer.start_as_current_span("m365send.keyvault.read"):
                    bundle = self._client.get_secret(name)
            except ClientAuthenticationError as exc:  # the worker's own identity, before Key Vault was asked
                raise CredentialError(
                    f"the worker's identity could not authenticate to Key Vault {vault}: {first_line(exc)}"
                ) from safe_cause(exc)
        KEY_VAULT_READS.add(1)
        log.info("read Key Vault secret", extra={"secret_name": name, "secret_version": bundle.properties.version})
        return Secret(
            name=name,
            version=bundle.properties.version or "",
            value=bundle.value or "",
            content_type=bundle.properties.content_type,
            expires_on=bundle.properties.expires_on,
        )
