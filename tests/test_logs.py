"""Secrets, tokens and message bodies never reach the logs, at any level, on success or failure."""

from __future__ import annotations

import base64
import logging
from typing import Any

import pytest

from standins.cloud import CLIENT_SECRET_NAME, LocalCloud
from standins.graph import Fault
from tests.conftest import Configure

BODY = "Quarterly numbers: confidential body text 7731"
ATTACHMENT = b"attachment payload that must stay private 5524"


def everything_logged(caplog: pytest.LogCaptureFixture) -> str:
    """Each record's message, arguments, extra fields and traceback, as one text."""
    standard = set(vars(logging.makeLogRecord({})))
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.extend(repr(v) for k, v in vars(record).items() if k not in standard)
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


@pytest.mark.parametrize("credential", ["secret", "certificate"])
def test_no_secret_token_or_body_is_logged(
    configure: Configure,
    cloud: LocalCloud,
    seed_message: dict[str, Any],
    caplog: pytest.LogCaptureFixture,
    credential: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    api = configure(credential)
    seed_message["Body"] = BODY
    seed_message["Attachments"] = [{"Name": "a.txt", "ContentBytes": base64.b64encode(ATTACHMENT).decode()}]
    cloud.graph.inject(Fault(429, retry_after="0"))

    assert api.post(seed_message).status == 202
    # A failing send too: Graph refuses a recipient.
    cloud.graph.unresolvable.add("recipient@outlook.com")
    assert api.post(seed_message).status == 400

    logged = everything_logged(caplog)

    assert caplog.records, "the send should log something"
    secrets = [cloud.client_secret, cloud.worker_secret, cloud.certificate.password or "", *cloud.entra.issued]
    for secret in secrets:
        assert secret not in logged
    assert cloud.certificate.base64[:40] not in logged
    assert BODY not in logged
    assert base64.b64encode(ATTACHMENT).decode() not in logged
    assert ATTACHMENT.decode() not in logged


def test_refused_credential_is_logged_without_the_secret(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    cloud.vault.set_secret(CLIENT_SECRET_NAME, "wrong-secret-value-0192")
    api = configure()

    assert api.post(seed_message).status == 500

    logged = everything_logged(caplog)
    assert "AADSTS7000215" in logged
    assert "wrong-secret-value-0192" not in logged
