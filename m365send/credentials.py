"""The app registration's credential: a client secret or certificate read through a ``SecretSource``
(the federated credential, which has no secret, is in ``federated.py``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from m365send.certificates import load_pfx
from m365send.errors import CredentialError

__all__ = ["AppCredential", "AppCredentialSource", "Secret", "SecretSource", "VaultCertificate", "VaultClientSecret"]


@dataclass(frozen=True)
class Secret:
    """One version of one secret. ``value`` never appears in ``repr``."""

    name: str
    version: str
    value: str = field(repr=False)
    content_type: str | None = None
    expires_on: datetime | None = None


class SecretSource(Protocol):
    """Where the app registration's secret or certificate comes from."""

    def get(self, name: str) -> Secret:
        """The current value of secret ``name``, possibly cached."""
        ...

    def invalidate(self, name: str) -> None:
        """Forget the cached value so the next ``get`` reads the vault again."""
        ...


@dataclass(frozen=True)
class AppCredential:
    """What msal needs to authenticate the app; ``version`` changes when the secret is rotated."""

    version: str
    kind: str
    # A secret, a certificate's fields, or {"client_assertion": callable} for a federated credential.
    msal_credential: str | dict[str, Any] = field(repr=False)
    expires_on: datetime | None = None  # the earliest of the secret's and the certificate's expiry


class AppCredentialSource(Protocol):
    """Supplies the current credential and re-reads it on demand (after Entra rejected it)."""

    def current(self) -> AppCredential:
        """The credential to use now, possibly cached."""
        ...

    def reread(self) -> AppCredential:
        """Bypass any cache and read the credential again."""
        ...


def _non_empty(secret: Secret, seed_property: str) -> str:
    if not secret.value:
        raise CredentialError(
            f"Key Vault secret '{secret.name}' ({seed_property}) is empty", exception="PropertyEmptyException"
        )
    return secret.value


class VaultClientSecret:
    """A client secret kept as a Key Vault secret (``M365_CLIENT_SECRET_NAME``)."""

    def __init__(self, *, secrets: SecretSource, name: str) -> None:
        self._secrets = secrets
        self._name = name

    def current(self) -> AppCredential:
        """The secret's current version."""
        secret = self._secrets.get(self._name)
        return AppCredential(
            version=f"secret:{secret.version}",
            kind="client secret",
            msal_credential=_non_empty(secret, "ClientSecret"),
            expires_on=secret.expires_on,
        )

    def reread(self) -> AppCredential:
        """Forget the cached secret and read it again."""
        self._secrets.invalidate(self._name)
        return self.current()


class VaultCertificate:
    """A PFX kept in Key Vault (``M365_CERTIFICATE_NAME``), with an optional password secret."""

    def __init__(self, *, secrets: SecretSource, name: str, password_name: str | None) -> None:
        self._secrets = secrets
        self._name = name
        self._password_name = password_name
        self._parsed: tuple[str, AppCredential] | None = None

    def current(self) -> AppCredential:
        """The certificate's current version, parsed once per version."""
        pfx = self._secrets.get(self._name)
        password = None
        version = f"certificate:{pfx.version}"
        if self._password_name:
            password_secret = self._secrets.get(self._password_name)
            password = _non_empty(password_secret, "CertificatePassword")
            version += f"+{password_secret.version}"
        if self._parsed and self._parsed[0] == version:
            return self._parsed[1]
        certificate = load_pfx(_non_empty(pfx, "CertificatePath"), password, name=self._name)
        expiries = [d for d in (certificate.not_after, pfx.expires_on) if d is not None]
        credential = AppCredential(
            version=version,
            kind="certificate",
            msal_credential=certificate.msal_credential(),
            expires_on=min(expiries) if expiries else None,
        )
        self._parsed = (version, credential)
        return credential

    def reread(self) -> AppCredential:
        """Forget the cached certificate (and password) and read them again."""
        self._secrets.invalidate(self._name)
        if self._password_name:
            self._secrets.invalidate(self._password_name)
        return self.current()
