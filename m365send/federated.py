"""The federated credential: the app registration trusts the Function App's managed identity.

The identity's token for ``api://AzureADTokenExchange`` is msal's client assertion, so there is no
secret to store, rotate, leak or let expire, and no Key Vault for the credential. azure-identity's
``ManagedIdentityCredential`` caches that token and fetches a new one five minutes before it expires;
msal asks for it only when it fetches a Graph token, so the seed's token rules hold as in the other
modes. Microsoft documents the trust ("Configure an application to trust a managed identity"):
https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import jwt
from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError

from m365send.azure_errors import first_line, safe_cause
from m365send.credentials import AppCredential
from m365send.errors import CredentialError, DependencyUnavailable
from m365send.telemetry import ASSERTION_REQUESTS

__all__ = ["FederatedTrust", "ManagedIdentityAssertion", "TokenSource"]


class TokenSource(Protocol):
    """What azure-identity's credentials offer: a token for a scope."""

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        """An ``AccessToken`` with ``.token`` and ``.expires_on``."""
        ...


@dataclass(frozen=True)
class FederatedTrust:
    """What the app registration's federated identity credential must say, read from an identity token."""

    issuer: str
    subject: str
    audience: str

    def identity_step(self) -> str:
        """What the managed identity did, as ``m365send check`` shows it."""
        return f"managed identity (principal {self.subject}) gets a token for {self.audience}"

    def credential(self, client_id: str) -> str:
        """The federated credential app ``client_id`` must have for this token."""
        return (
            f"a federated credential on app {client_id} with issuer {self.issuer}, subject {self.subject} "
            f"and audience {self.audience}"
        )


class ManagedIdentityAssertion:
    """``AppCredentialSource`` for the federated mode: a client assertion callback over a managed identity."""

    def __init__(self, *, identity: TokenSource, identity_client_id: str, audience: str) -> None:
        self._identity = identity
        self._identity_client_id = identity_client_id
        self._scope = f"{audience}/.default"
        self._audience = audience
        self._credential = AppCredential(
            # One version for the life of the worker: there is nothing to rotate.
            version=f"federated:{identity_client_id}",
            kind="federated credential",
            msal_credential={"client_assertion": self.assertion},
        )

    def current(self) -> AppCredential:
        """The credential msal uses; its assertion is fetched when msal needs one."""
        return self._credential

    def reread(self) -> AppCredential:
        """Nothing to re-read: the identity's token is renewed by its own cache."""
        return self._credential

    def assertion(self) -> str:
        """The managed identity's token for the token exchange audience (cached by azure-identity)."""
        try:
            token = self._identity.get_token(self._scope)
        except ServiceRequestError as exc:
            raise DependencyUnavailable(
                f"the managed identity endpoint is unreachable: {first_line(exc)}"
            ) from safe_cause(exc)
        except ClientAuthenticationError as exc:
            # azure-identity folds every refusal and every error answer into this one type.
            message = first_line(exc)
            if "unexpected error" in message.lower() or "500" in message:
                raise DependencyUnavailable(f"the managed identity endpoint failed: {message}") from safe_cause(exc)
            if "Token request error" not in message:
                # No endpoint answered at all: this process has no managed identity (it is not in Azure).
                raise CredentialError(
                    f"no managed identity is available here for M365_FEDERATED_CLIENT_ID "
                    f"'{self._identity_client_id}': only Azure (App Service, Functions, VMs) provides one; locally, "
                    "./scripts/local --credential federated runs a stand-in of it"
                ) from safe_cause(exc)
            raise CredentialError(
                f"managed identity '{self._identity_client_id}' (M365_FEDERATED_CLIENT_ID) could not get a token for "
                f"{self._audience}: {message}"
            ) from safe_cause(exc)
        except AzureError as exc:
            raise DependencyUnavailable(f"the managed identity endpoint failed: {first_line(exc)}") from safe_cause(exc)
        ASSERTION_REQUESTS.add(1)
        return str(token.token)

    def trust(self) -> FederatedTrust:
        """The issuer, subject and audience of the identity's token: what the app's federated credential must match.

        Read without verifying the signature: it only describes the token, which Entra ID verifies.
        """
        claims = jwt.decode(self.assertion(), options={"verify_signature": False})
        audience = claims.get("aud", self._audience)
        return FederatedTrust(
            issuer=str(claims.get("iss", "")),
            subject=str(claims.get("sub", "")),
            audience=str(audience if isinstance(audience, str) else self._audience),
        )
