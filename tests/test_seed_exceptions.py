"""The seed block's exception table, row by row: each case gives a clear problem and sends nothing.

Each row names the seed's exception and the case it describes. The seed's attachment files are
blob references here: ``FileNotFoundException`` and ``UnauthorizedAccessException`` are about them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from standins.cloud import CERTIFICATE_NAME, CERTIFICATE_PASSWORD_NAME, CLIENT_SECRET_NAME, LocalCloud, make_pfx
from tests.conftest import AttachmentStore, Configure

UNKNOWN_ID = "00000000-1111-2222-3333-444444444444"


@dataclass(frozen=True)
class Case:
    exception: str
    status: int
    says: str  # text the detail (or the field path, for validation) must contain
    credential: str = "secret"
    settings: dict[str, str | None] = field(default_factory=dict)
    message: Callable[[dict[str, Any]], Any] = lambda m: m
    cloud: Callable[[LocalCloud], object] = lambda c: None


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], Any]:
    def change(message: dict[str, Any]) -> Any:
        target: Any = message
        keys: list[Any] = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return message

    return change


def _unprotected_pfx(cloud: LocalCloud) -> None:
    cloud.vault.set_secret(CERTIFICATE_PASSWORD_NAME, "wrong password")


CASES = {
    # ArgumentException
    "BodyFormat is not an EmailMessageBodyFormat value": Case(
        "ArgumentException", 400, "BodyFormat", message=_set("BodyFormat", 10)
    ),
    "Priority is not an EmailMessagePriority value": Case(
        "ArgumentException", 400, "Priority", message=_set("Priority", 10)
    ),
    # CryptographicException
    "incorrect CertificatePath (not a certificate)": Case(
        "CryptographicException",
        500,
        "not a PFX",
        "certificate",
        cloud=lambda c: c.vault.set_secret(CERTIFICATE_NAME, "just some text"),
    ),
    "incorrect CertificatePassword": Case(
        "CryptographicException", 500, "password is wrong", "certificate", cloud=_unprotected_pfx
    ),
    # MsalServiceException
    "invalid ClientId (client secret)": Case(
        "MsalServiceException", 500, "AADSTS700016", settings={"M365_CLIENT_ID": UNKNOWN_ID}
    ),
    "invalid ClientSecret": Case(
        "MsalServiceException",
        500,
        "AADSTS7000215",
        cloud=lambda c: c.vault.set_secret(CLIENT_SECRET_NAME, "not-the-secret"),
    ),
    "invalid TenantId (client secret)": Case(
        "MsalServiceException", 500, "AADSTS90002", settings={"M365_TENANT_ID": UNKNOWN_ID}
    ),
    "invalid ClientId (certificate)": Case(
        "MsalServiceException", 500, "AADSTS700016", "certificate", settings={"M365_CLIENT_ID": UNKNOWN_ID}
    ),
    "invalid TenantId (certificate)": Case(
        "MsalServiceException", 500, "AADSTS90002", "certificate", settings={"M365_TENANT_ID": UNKNOWN_ID}
    ),
    # PropertyNullException
    "Email Message is null": Case("PropertyNullException", 400, "EmailMessage", message=lambda m: None),
    "To is null": Case("PropertyNullException", 400, "To", message=_set("To", None)),
    "From is null": Case("PropertyNullException", 400, "From", message=_set("From", None)),
    "Address is null": Case("PropertyNullException", 400, "To[0].Address", message=_set("To.0.Address", None)),
    "Credentials is null": Case(
        "ArgumentException", 500, "set exactly one of", settings={"M365_CLIENT_SECRET_NAME": None}
    ),
    "ClientId is null": Case("PropertyNullException", 500, "M365_CLIENT_ID", settings={"M365_CLIENT_ID": None}),
    "TenantId is null": Case("PropertyNullException", 500, "M365_TENANT_ID", settings={"M365_TENANT_ID": None}),
    "ObjectId is null": Case("PropertyNullException", 500, "M365_SENDER", settings={"M365_SENDER": None}),
    "CertificatePassword is null (protected PFX, no password)": Case(
        "CryptographicException",
        500,
        "no password is configured",
        "certificate",
        settings={"M365_CERTIFICATE_PASSWORD_NAME": None},
    ),
    # PropertyEmptyException
    "To is empty": Case("PropertyEmptyException", 400, "To", message=_set("To", [])),
    "Address is empty": Case("PropertyEmptyException", 400, "From.Address", message=_set("From.Address", "")),
    "ClientId is empty": Case("PropertyEmptyException", 500, "M365_CLIENT_ID", settings={"M365_CLIENT_ID": ""}),
    "TenantId is empty": Case("PropertyEmptyException", 500, "M365_TENANT_ID", settings={"M365_TENANT_ID": ""}),
    "ObjectId is empty": Case("PropertyEmptyException", 500, "M365_SENDER", settings={"M365_SENDER": ""}),
    "ClientSecret is empty": Case(
        "PropertyEmptyException", 500, "ClientSecret", cloud=lambda c: c.vault.set_secret(CLIENT_SECRET_NAME, "")
    ),
    "CertificatePath is empty": Case(
        "PropertyEmptyException",
        500,
        "CertificatePath",
        "certificate",
        cloud=lambda c: c.vault.set_secret(CERTIFICATE_NAME, ""),
    ),
    "CertificatePassword is empty": Case(
        "PropertyEmptyException",
        500,
        "CertificatePassword",
        "certificate",
        cloud=lambda c: c.vault.set_secret(CERTIFICATE_PASSWORD_NAME, ""),
    ),
    # ServiceException
    "invalid ObjectId": Case(
        "ServiceException",
        404,
        "ErrorInvalidUser",
        settings={"M365_SENDER": UNKNOWN_ID, "M365_ALLOWED_SENDERS": "notifications@contoso.com"},
    ),
    "sending as a user the app has no rights to": Case(
        "ServiceException", 403, "ErrorAccessDenied", cloud=lambda c: c.graph.app_scope.update({c.app.client_id: set()})
    ),
    "Address is not RFC 5321": Case(
        "ServiceException", 400, "To[0].Address", message=_set("To.0.Address", "recipient@@outlook")
    ),
    # IOException: a dependency cannot be reached; re-running later typically solves it.
    "Graph cannot be reached": Case(
        "IOException",
        503,
        "unreachable",
        settings={"M365_GRAPH_MAX_ATTEMPTS": "2"},
        cloud=lambda c: c.take_down("graph"),
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_seed_exception_case_is_a_clear_problem_and_sends_nothing(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], case: Case
) -> None:
    api = configure(case.credential, **case.settings)
    case.cloud(cloud)

    answer = api.post(case.message(seed_message))

    assert answer.status == case.status
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.body["exception"] == case.exception
    fields = [e["field"] for e in answer.body.get("errors", [])]
    assert case.says in answer.body["detail"] or case.says in fields
    assert cloud.graph.sent == []


def test_a_certificate_secret_that_does_not_exist_names_the_secret(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure("certificate", M365_CERTIFICATE_NAME="no-such-certificate")

    answer = api.post(seed_message)

    assert answer.status == 500
    assert "no-such-certificate" in answer.body["detail"]
    assert answer.body["type"] == "urn:m365send:problem:credential"


def test_worker_identity_without_a_vault_role_is_told_which_role_to_grant(
    api: Any, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.vault.readers.clear()

    answer = api.post(seed_message)

    assert answer.status == 500
    assert "Key Vault Secrets User" in answer.body["detail"]


def test_key_vault_unavailable_is_503(api: Any, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    cloud.vault.unavailable = 10  # more than azure-core's own retries

    answer = api.post(seed_message)

    assert answer.status == 503
    assert cloud.graph.sent == []


def test_a_setting_that_is_missing_is_named_in_the_problem(configure: Configure, seed_message: dict[str, Any]) -> None:
    api = configure(KEY_VAULT_URL=None, M365_CLIENT_ID=None)

    answer = api.post(seed_message)

    assert answer.status == 500
    assert set(answer.body["settings"]) == {"KEY_VAULT_URL", "M365_CLIENT_ID"}


def test_a_pfx_without_password_works_when_none_is_configured(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    bare = make_pfx("m365send-bare", password=None)
    cloud.app.certificates.append(bare.certificate)
    cloud.vault.set_secret(CERTIFICATE_NAME, bare.base64)
    api = configure("certificate", M365_CERTIFICATE_PASSWORD_NAME=None)

    assert api.post(seed_message).status == 202


ATTACHMENT_CASES = {
    "attachment file does not exist": ("FileNotFoundException", 400, "attachment-not-found", "missing.pdf"),
    "access to the attachment file is denied": ("UnauthorizedAccessException", 403, "attachment-access-denied", None),
    "attachment outside the allowed containers": (
        "UnauthorizedAccessException",
        403,
        "attachment-not-allowed",
        "elsewhere",
    ),
}


@pytest.mark.parametrize(("exception", "status", "problem", "case"), ATTACHMENT_CASES.values(), ids=ATTACHMENT_CASES)
def test_seed_attachment_file_case_is_a_clear_problem_and_sends_nothing(
    configure: Configure,
    cloud: LocalCloud,
    attachment_store: AttachmentStore,
    seed_message: dict[str, Any],
    exception: str,
    status: int,
    problem: str,
    case: str | None,
) -> None:
    reference = attachment_store.put("report.pdf", b"%PDF-1.7")
    if case == "missing.pdf":
        reference = f"{attachment_store.container}/missing.pdf"
    elif case == "elsewhere":
        reference = "elsewhere/report.pdf"
    api = configure(**(attachment_store.list_only_settings() if case is None else attachment_store.settings))
    seed_message["Attachments"] = [{"Blob": reference}]

    answer = api.post(seed_message)

    assert (answer.status, answer.body["exception"]) == (status, exception)
    assert answer.body["type"] == f"urn:m365send:problem:{problem}"
    assert answer.body["errors"][0]["field"] == "Attachments[0].Blob"
    assert cloud.graph.sent == []
