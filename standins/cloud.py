"""``LocalCloud``: the three stand-ins on loopback HTTPS, seeded like a small real tenant.

The tenant has one app registration (``Mail.Send`` granted, a client secret, a certificate and a
federated credential trusting the app's user-assigned managed identity), a "worker identity" that may
read the vault (standing in for the Function App's identity in the secret and certificate modes; it
authenticates with ``AZURE_CLIENT_ID``/``AZURE_CLIENT_SECRET`` as azure-identity's environment
credential does on a developer machine), the managed identity endpoint App Service gives an app, a
vault holding the app's secret and PFX, and a mailbox.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from standins.entra import TOKEN_EXCHANGE_AUDIENCE, AppRegistration, EntraStandIn, FederatedCredential
from standins.examples import SEED_EXAMPLE, SENDER
from standins.graph import GraphStandIn, Mailbox
from standins.https import HttpsServer
from standins.identity import ManagedIdentity, ManagedIdentityStandIn
from standins.keyvault import KeyVaultStandIn

__all__ = ["SEED_EXAMPLE", "SENDER", "Credential", "LocalCloud", "make_pfx"]

# How the app registration authenticates: a client secret or a certificate (both kept in Key Vault),
# or a federated credential trusting the app's managed identity (no secret at all).
Credential = Literal["secret", "certificate", "federated"]

TENANT_ID = "7d3a5f1e-2c4b-4e8a-9f10-3b6c2d1e0a55"
MAIL_APP_ID = "0b5c9e7a-6d41-4f2e-8a3c-1e9f7d6b5a42"
WORKER_ID = "c1f2e3d4-a5b6-4c7d-8e9f-0a1b2c3d4e5f"
# The user-assigned managed identity the app registration's federated credential trusts.
FEDERATED_IDENTITY_ID = "4e8d2a61-9b3c-4f57-a0d2-6c1e7b9f3a28"
CLIENT_SECRET_NAME = "m365-client-secret"
CERTIFICATE_NAME = "m365-certificate"
CERTIFICATE_PASSWORD_NAME = "m365-certificate-password"


@dataclass(frozen=True)
class Pfx:
    """A certificate with its key, as PFX bytes (and the password that opens them)."""

    certificate: x509.Certificate
    data: bytes
    password: str | None

    @property
    def base64(self) -> str:
        """How Key Vault returns a certificate's PFX through the secrets API."""
        return base64.b64encode(self.data).decode()


def make_pfx(common_name: str, *, password: str | None) -> Pfx:
    """A fresh self-signed certificate and key, packed as PFX (encrypted when ``password`` is set)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption()
    )
    data = pkcs12.serialize_key_and_certificates(common_name.encode(), key, certificate, None, encryption)
    return Pfx(certificate, data, password)


class LocalCloud:
    """Starts the stand-ins; ``env()`` gives the app settings that point the product at them."""

    def __init__(self, *, workdir: Path | None = None, token_lifetime: int = 3599) -> None:
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="m365send-cloud-")
        self.workdir = workdir or Path(self._tmp.name)  # type: ignore[union-attr]
        ca = trustme.CA()
        self.ca_bundle = self.workdir / "standin-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_bundle))
        server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(server_context)

        self.entra = EntraStandIn(token_lifetime=token_lifetime)
        self.vault = KeyVaultStandIn(entra=self.entra, tenant_id=TENANT_ID)
        self.graph = GraphStandIn(entra=self.entra, workdir=self.workdir / "graph")
        self.identity = ManagedIdentityStandIn(entra=self.entra, tenant_id=TENANT_ID)
        self._servers = [HttpsServer(s, server_context) for s in (self.entra, self.vault, self.graph, self.identity)]
        self.entra.url, self.vault.url, self.graph.url, self.identity.url = (s.url for s in self._servers)
        self.entra.resources.update({self.graph.resource, TOKEN_EXCHANGE_AUDIENCE})
        self.managed_identity = self.identity.add(ManagedIdentity(client_id=FEDERATED_IDENTITY_ID))

        self.client_secret = secrets.token_urlsafe(30)
        self.certificate = make_pfx("m365send", password=secrets.token_urlsafe(12))
        self.app = self.entra.register(
            AppRegistration(
                client_id=MAIL_APP_ID,
                tenant_id=TENANT_ID,
                secrets=[self.client_secret],
                certificates=[self.certificate.certificate],
                # Mail.ReadWrite: messages too large for one sendMail go through a draft.
                roles={self.graph.resource: ["Mail.Send", "Mail.ReadWrite"]},
                # As Microsoft documents for a managed identity: the tenant's v2.0 issuer, the
                # identity's principal id, api://AzureADTokenExchange.
                federated=[
                    FederatedCredential(
                        name="m365send-function",
                        issuer=self.entra.issuer(TENANT_ID),
                        subject=self.managed_identity.principal_id,
                    )
                ],
            )
        )
        self.worker_secret = secrets.token_urlsafe(30)
        self.worker = self.entra.register(
            AppRegistration(client_id=WORKER_ID, tenant_id=TENANT_ID, secrets=[self.worker_secret])
        )
        self.vault.readers.add(self.worker.object_id)
        self.vault.set_secret(CLIENT_SECRET_NAME, self.client_secret)
        self.vault.set_secret(CERTIFICATE_NAME, self.certificate.base64, content_type="application/x-pkcs12")
        self.vault.set_secret(CERTIFICATE_PASSWORD_NAME, self.certificate.password or "")
        self.mailbox: Mailbox = self.graph.add_mailbox(SENDER)

    def add_app(self, client_id: str) -> dict[str, str]:
        """Another app registration with Mail.Send and its own client secret in the vault.

        Returns the settings that differ from ``env()`` for a worker using it.
        """
        secret, name = secrets.token_urlsafe(30), f"m365-client-secret-{client_id[:8]}"
        self.entra.register(
            AppRegistration(
                client_id=client_id, tenant_id=TENANT_ID, secrets=[secret], roles={self.graph.resource: ["Mail.Send"]}
            )
        )
        self.vault.set_secret(name, secret)
        return {"M365_CLIENT_ID": client_id, "M365_CLIENT_SECRET_NAME": name}

    def env(self, credential: Credential = "secret") -> dict[str, str]:
        """App settings (and the standard TLS trust variables) for the product against these stand-ins."""
        settings = {
            "M365_TENANT_ID": TENANT_ID,
            "M365_CLIENT_ID": MAIL_APP_ID,
            "M365_SENDER": SENDER,
            "M365_AUTHORITY_HOST": self.entra.url,
            "GRAPH_BASE_URL": self.graph.base_url,
            # Trust the stand-ins' test CA: requests (msal, azure-core) and httpx read these.
            "REQUESTS_CA_BUNDLE": str(self.ca_bundle),
            "SSL_CERT_FILE": str(self.ca_bundle),
        }
        if credential == "federated":
            # No vault and no worker secret: the app's managed identity endpoint, as App Service sets it.
            settings["M365_FEDERATED_CLIENT_ID"] = self.managed_identity.client_id
            settings["IDENTITY_ENDPOINT"] = self.identity.endpoint
            settings["IDENTITY_HEADER"] = self.identity.header
            return settings
        settings["KEY_VAULT_URL"] = self.vault.url
        # The worker identity, as azure-identity's EnvironmentCredential reads it.
        settings["AZURE_TENANT_ID"] = TENANT_ID
        settings["AZURE_CLIENT_ID"] = WORKER_ID
        settings["AZURE_CLIENT_SECRET"] = self.worker_secret
        if credential == "secret":
            settings["M365_CLIENT_SECRET_NAME"] = CLIENT_SECRET_NAME
        else:
            settings["M365_CERTIFICATE_NAME"] = CERTIFICATE_NAME
            settings["M365_CERTIFICATE_PASSWORD_NAME"] = CERTIFICATE_PASSWORD_NAME
        return settings

    def apply(self, credential: Credential = "secret") -> None:
        """Put ``env()`` into this process's environment (for the demo)."""
        os.environ.update(self.env(credential))

    def take_down(self, name: Literal["entra", "vault", "graph", "identity"]) -> None:
        """Stop one stand-in's server: its port then refuses connections, as an unreachable service would."""
        self._servers[("entra", "vault", "graph", "identity").index(name)].close()

    def close(self) -> None:
        """Stop the servers and remove the working directory."""
        for server in self._servers:
            server.close()
        if self._tmp:
            self._tmp.cleanup()

    def __enter__(self) -> LocalCloud:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
