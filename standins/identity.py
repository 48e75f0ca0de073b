"""Managed identity stand-in: the token endpoint App Service and Azure Functions give an app.

Speaks the documented REST contract (``GET {IDENTITY_ENDPOINT}?api-version=2019-08-01&resource=...&
client_id=...`` with the ``X-IDENTITY-HEADER`` secret; ``expires_on`` in Unix seconds), which
azure-identity's ``ManagedIdentityCredential`` uses when ``IDENTITY_ENDPOINT`` and ``IDENTITY_HEADER``
are set. Tokens are issued by the Entra stand-in, for user-assigned identities registered here.
https://learn.microsoft.com/azure/app-service/overview-managed-identity#rest-endpoint-reference
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field

from standins.entra import EntraStandIn
from standins.https import Reply, Request, json_reply

__all__ = ["ManagedIdentity", "ManagedIdentityStandIn"]


@dataclass(frozen=True)
class ManagedIdentity:
    """A user-assigned managed identity given to the app: its client id and its principal (object) id."""

    client_id: str
    principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _error(status: int, message: str) -> Reply:
    return json_reply(status, {"statusCode": status, "message": message, "correlationId": str(uuid.uuid4())})


class ManagedIdentityStandIn:
    """``identities`` are the user-assigned identities the app holds; ``header`` is ``IDENTITY_HEADER``."""

    def __init__(self, *, entra: EntraStandIn, tenant_id: str, token_lifetime: int = 86_399) -> None:
        self.url = ""
        self.header = secrets.token_urlsafe(24)
        self.token_lifetime = token_lifetime  # managed identity tokens live about a day
        self.identities: dict[str, ManagedIdentity] = {}
        self.requests: Counter[str] = Counter()  # token requests per client id
        self.unavailable = 0  # answer this many token requests with 500
        self._entra = entra
        self._tenant_id = tenant_id
        self._lock = threading.Lock()

    @property
    def endpoint(self) -> str:
        """``IDENTITY_ENDPOINT``."""
        return f"{self.url}/msi/token"

    def add(self, identity: ManagedIdentity) -> ManagedIdentity:
        """Give the app a user-assigned identity."""
        self.identities[identity.client_id] = identity
        return identity

    def handle(self, request: Request) -> Reply:
        if request.path != "/msi/token" or request.method != "GET":
            return _error(404, "Not found")
        if request.header("x-identity-header") != self.header:
            return _error(401, "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER.")
        query = {name: values[0] for name, values in request.query.items()}
        if query.get("api-version") != "2019-08-01":
            return _error(400, "api-version must be 2019-08-01.")
        client_id = query.get("client_id", "")
        with self._lock:
            self.requests[client_id] += 1
            if self.unavailable > 0:
                self.unavailable -= 1
                return _error(500, "An unexpected error occurred while fetching the token.")
        identity = self.identities.get(client_id)
        if identity is None:
            # App Service answers an identity the app does not hold with an error, not a token.
            return _error(400, f"No managed identity with client id '{client_id}' is assigned to this app.")
        resource = query.get("resource", "")
        if resource not in self._entra.resources:
            return _error(400, f"The resource '{resource}' was not found in the tenant.")
        token, expires_on = self._entra.identity_token(
            tenant_id=self._tenant_id,
            principal_id=identity.principal_id,
            client_id=identity.client_id,
            audience=resource,
            lifetime=self.token_lifetime,
        )
        return json_reply(
            200,
            {
                "access_token": token,
                "expires_on": str(expires_on),
                "resource": resource,
                "token_type": "Bearer",
                "client_id": identity.client_id,
            },
        )
