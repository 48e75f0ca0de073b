"""Graph access tokens from Entra ID with msal; the msal app's cache is the warm-instance token cache.

The seed's token rules: no token → fetch one; an expired token → fetch a new one; a valid token →
reuse it. msal's ``acquire_token_for_client`` applies them itself (it treats a token within five
minutes of expiry as expired), so one ``ConfidentialClientApplication`` is kept per credential.
"""

from __future__ import annotations

import logging
import re
import threading
from datetime import UTC, datetime
from typing import Any

import msal
import msal.exceptions
import requests

from m365send.azure_errors import safe_cause
from m365send.credentials import AppCredential, AppCredentialSource
from m365send.errors import CredentialRejected, DependencyUnavailable
from m365send.telemetry import TOKEN_REQUESTS

__all__ = ["GraphTokens"]

log = logging.getLogger(__name__)

_AADSTS = re.compile(r"AADSTS\d+")
# Entra refused the secret or certificate itself: a rotated credential explains that, so re-read it.
_REJECTED_CREDENTIAL = {"invalid_client"}
_TRANSIENT = {"temporarily_unavailable", "server_error"}


class GraphTokens:
    """Hands out a Graph token, fetching one only when msal's cache has no valid token."""

    def __init__(
        self,
        *,
        credentials: AppCredentialSource,
        tenant_id: str,
        client_id: str,
        authority_host: str,
        scope: str,
        timeout: float = 30.0,
    ) -> None:
        self._credentials = credentials
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._authority_host = authority_host.rstrip("/")
        self._authority = f"{self._authority_host}/{tenant_id}"
        self._scopes = [scope]
        self._timeout = timeout
        self._app: tuple[str, msal.ConfidentialClientApplication] | None = None
        self._lock = threading.Lock()

    def token(self) -> str:
        """A valid access token for Graph; re-reads the credential once if Entra rejects it."""
        credential = self._credentials.current()
        result = self._acquire(credential)
        if result.get("error") in _REJECTED_CREDENTIAL:
            fresh = self._credentials.reread()
            if fresh.version != credential.version:
                log.warning("Entra ID rejected the %s; retrying with the version just read", credential.kind)
                result = self._acquire(fresh)
        if "access_token" in result:
            return str(result["access_token"])
        raise self._error(result)

    def _acquire(self, credential: AppCredential) -> dict[str, Any]:
        app = self._app_for(credential)
        try:
            result = app.acquire_token_for_client(scopes=self._scopes)
        except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
            # msal returns OAuth errors (4xx) as dicts but raises on a 5xx from the token endpoint.
            raise DependencyUnavailable(f"Entra ID at {self._authority} is unavailable: {exc}") from safe_cause(exc)
        except ValueError as exc:  # msal raises this on a response that is not JSON, e.g. a proxy's 502 page
            raise DependencyUnavailable(
                f"Entra ID at {self._authority} gave an unreadable answer: {exc}"
            ) from safe_cause(exc)
        TOKEN_REQUESTS.add(1, {"cache": "miss" if result.get("token_source") == "identity_provider" else "hit"})
        if result.get("token_source") == "identity_provider":
            details: dict[str, Any] = {"expires_in": result.get("expires_in"), "credential": credential.kind}
            if credential.expires_on is not None:
                # The dashboard's alert on a secret or certificate about to expire reads this.
                details["credential_days_left"] = (credential.expires_on - datetime.now(UTC)).days
            log.info("fetched a Graph token from Entra ID", extra=details)
        return dict(result)

    def _app_for(self, credential: AppCredential) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app and self._app[0] == credential.version:
                return self._app[1]
            try:
                app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=credential.msal_credential,
                    authority=self._authority,
                    # No instance discovery: it would call the public cloud even for a sovereign or
                    # local authority host, and well-known hosts skip it anyway.
                    instance_discovery=False,
                    timeout=self._timeout,
                )
            except (requests.RequestException, msal.exceptions.MsalServiceError) as exc:
                raise DependencyUnavailable(f"Entra ID at {self._authority} is unavailable: {exc}") from safe_cause(exc)
            except ValueError as exc:
                # msal reads the tenant's OpenID metadata here; an unknown tenant fails this way.
                match = _AADSTS.search(str(exc))
                code = match.group(0) if match else "AADSTS90002"
                raise CredentialRejected(
                    f"Entra ID has no tenant '{self._tenant_id}' (M365_TENANT_ID) at {self._authority_host} ({code})",
                    aadsts=code,
                ) from None
            self._app = (credential.version, app)
            return app

    def _error(self, result: dict[str, Any]) -> Exception:
        error = str(result.get("error", "unknown_error"))
        description = str(result.get("error_description", ""))
        first_line = description.splitlines()[0] if description else error
        match = _AADSTS.search(description)
        if error in _TRANSIENT:
            return DependencyUnavailable(f"Entra ID is unavailable: {first_line}")
        return CredentialRejected(
            f"Entra ID refused the app's credential ({error}): {first_line}",
            aadsts=match.group(0) if match else None,
        )
