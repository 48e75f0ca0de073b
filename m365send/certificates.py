"""Turn a PFX (PKCS#12) from Key Vault into msal's certificate credential, in memory only."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from datetime import datetime

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, pkcs12

from m365send.errors import CertificateInvalid

__all__ = ["PfxCredential", "load_pfx"]


@dataclass(frozen=True)
class PfxCredential:
    """A private key and its certificate, ready for ``msal.ConfidentialClientApplication``."""

    private_key_pem: str = field(repr=False)
    certificate_pem: str
    thumbprint_sha1: str
    not_after: datetime

    def msal_credential(self) -> dict[str, str]:
        """msal computes the SHA-256 thumbprint (``x5t#S256``) and sends ``x5c`` from the certificate."""
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}


def _looks_like_pkcs12(data: bytes) -> bool:
    # PFX is a DER SEQUENCE whose first member is INTEGER 3 (the PFX version).
    if len(data) < 8 or data[0] != 0x30:
        return False
    length_octets = data[1] & 0x7F if data[1] & 0x80 else 0
    start = 2 + length_octets
    return data[start : start + 3] == b"\x02\x01\x03"


def load_pfx(pfx_base64: str, password: str | None, *, name: str) -> PfxCredential:
    """Decode Key Vault's base64 PFX; ``CertificateInvalid`` says whether it is not a PFX or the password is wrong."""
    try:
        data = base64.b64decode("".join(pfx_base64.split()), validate=True)
    except (binascii.Error, ValueError):
        raise CertificateInvalid(f"Key Vault secret '{name}' is not base64, so it is not a PFX certificate") from None
    if not _looks_like_pkcs12(data):
        raise CertificateInvalid(f"Key Vault secret '{name}' is not a PFX (PKCS#12) certificate")
    try:
        key, certificate, _ = pkcs12.load_key_and_certificates(data, password.encode() if password else None)
    except ValueError:
        hint = "the password is wrong" if password else "it is password-protected and no password is configured"
        raise CertificateInvalid(f"the PFX in Key Vault secret '{name}' cannot be opened: {hint}") from None
    if key is None or certificate is None:
        raise CertificateInvalid(f"the PFX in Key Vault secret '{name}' must hold a private key and its certificate")
    return PfxCredential(
        private_key_pem=key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode(),
        certificate_pem=certificate.public_bytes(Encoding.PEM).decode(),
        thumbprint_sha1=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303 - Entra's x5t is SHA-1
        not_after=certificate.not_valid_after_utc,
    )
