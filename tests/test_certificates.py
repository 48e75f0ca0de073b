"""PFX from Key Vault → msal certificate credential, in memory."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives import hashes

from m365send.certificates import load_pfx
from m365send.errors import CertificateInvalid
from standins.cloud import make_pfx


def test_pfx_with_password_gives_key_certificate_and_thumbprint() -> None:
    pfx = make_pfx("unit", password="s3cret")

    loaded = load_pfx(pfx.base64, "s3cret", name="cert")

    assert loaded.thumbprint_sha1 == pfx.certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303
    assert loaded.private_key_pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert loaded.msal_credential()["public_certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert loaded.not_after == pfx.certificate.not_valid_after_utc


def test_private_key_never_shows_in_repr() -> None:
    loaded = load_pfx(make_pfx("unit", password=None).base64, None, name="cert")

    assert "PRIVATE KEY" not in repr(loaded)


def test_wrong_password_says_so() -> None:
    with pytest.raises(CertificateInvalid, match="password is wrong"):
        load_pfx(make_pfx("unit", password="right").base64, "wrong", name="cert")


def test_data_that_is_not_pkcs12_says_so() -> None:
    with pytest.raises(CertificateInvalid, match="not a PFX"):
        load_pfx(base64.b64encode(b"-----BEGIN CERTIFICATE-----").decode(), None, name="cert")


def test_text_that_is_not_base64_says_so() -> None:
    with pytest.raises(CertificateInvalid, match="not base64"):
        load_pfx("C:\\certificate.pfx", None, name="cert")
