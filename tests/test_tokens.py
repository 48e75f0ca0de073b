"""The seed's token rules on a warm worker: no token → fetch; expired → fetch; valid → reuse."""

from __future__ import annotations

import time
from typing import Any

import pytest

from standins.cloud import CLIENT_SECRET_NAME, MAIL_APP_ID, LocalCloud
from tests.conftest import Configure

# msal treats a token with under five minutes left as expired, so this one is valid for about 2 s.
SHORT_LIFETIME = 302


@pytest.fixture
def short_lived_cloud(cloud: LocalCloud) -> LocalCloud:
    cloud.entra.token_lifetime = SHORT_LIFETIME
    return cloud


def wait_for_expiry() -> None:
    time.sleep(SHORT_LIFETIME - 300 + 0.5)


@pytest.mark.parametrize("credential", ["secret", "certificate"])
def test_a_thousand_sends_cost_one_token_request_and_one_key_vault_read(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], credential: str
) -> None:
    api = configure(credential)

    statuses = {api.post(seed_message).status for _ in range(1000)}

    assert statuses == {202}
    assert len(cloud.graph.sent) == 1000
    assert cloud.entra.token_requests[MAIL_APP_ID] == 1
    secret_reads = {"secret": ["m365-client-secret"], "certificate": ["m365-certificate", "m365-certificate-password"]}
    assert {name: cloud.vault.reads[name] for name in secret_reads[credential]} == dict.fromkeys(
        secret_reads[credential], 1
    )


def test_no_token_yet_means_one_is_fetched(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure()
    assert cloud.entra.token_requests[MAIL_APP_ID] == 0

    api.post(seed_message)

    assert cloud.entra.token_requests[MAIL_APP_ID] == 1


def test_a_valid_token_is_reused(
    configure: Configure, short_lived_cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure()

    api.post(seed_message)
    api.post(seed_message)

    assert short_lived_cloud.entra.token_requests[MAIL_APP_ID] == 1


def test_an_expired_token_is_replaced(
    configure: Configure, short_lived_cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure()
    api.post(seed_message)

    wait_for_expiry()
    answer = api.post(seed_message)

    assert answer.status == 202
    assert short_lived_cloud.entra.token_requests[MAIL_APP_ID] == 2
    assert len(short_lived_cloud.graph.sent) == 2


def test_a_rotated_client_secret_is_reread_once_and_the_send_succeeds(
    configure: Configure, short_lived_cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud = short_lived_cloud
    api = configure()
    api.post(seed_message)
    # An operator rotates the secret: Entra forgets the old one, the vault gets a new version.
    cloud.app.secrets[:] = ["rotated-secret-value"]
    cloud.vault.set_secret(CLIENT_SECRET_NAME, "rotated-secret-value")

    wait_for_expiry()
    answer = api.post(seed_message)

    assert answer.status == 202
    assert cloud.vault.reads[CLIENT_SECRET_NAME] == 2
    assert cloud.entra.token_requests[MAIL_APP_ID] == 3  # first token, refused old secret, new secret


def test_a_rotated_certificate_is_reread_once_and_the_send_succeeds(
    configure: Configure, short_lived_cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    from standins.cloud import CERTIFICATE_NAME, CERTIFICATE_PASSWORD_NAME, make_pfx

    cloud = short_lived_cloud
    api = configure("certificate")
    api.post(seed_message)
    fresh = make_pfx("m365send-2027", password="new-password")
    cloud.app.certificates[:] = [fresh.certificate]
    cloud.vault.set_secret(CERTIFICATE_NAME, fresh.base64, content_type="application/x-pkcs12")
    cloud.vault.set_secret(CERTIFICATE_PASSWORD_NAME, "new-password")

    wait_for_expiry()
    answer = api.post(seed_message)

    assert answer.status == 202
    assert cloud.vault.reads[CERTIFICATE_NAME] == 2


def test_a_refused_secret_that_was_not_rotated_is_not_retried_in_a_loop(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure()
    cloud.app.secrets[:] = ["some-other-secret"]

    answer = api.post(seed_message)

    assert answer.status == 500
    assert answer.body["exception"] == "MsalServiceException"
    assert "AADSTS7000215" in answer.body["detail"]
    assert cloud.entra.token_requests[MAIL_APP_ID] == 1
    assert cloud.vault.reads[CLIENT_SECRET_NAME] == 2  # read, then re-read once to look for a rotation
    assert cloud.graph.sent == []


def test_entra_unavailable_is_503_and_the_next_send_recovers(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure()
    cloud.entra.unavailable[MAIL_APP_ID] = 1

    first = api.post(seed_message)
    # msal replays a 5xx locally until its Retry-After has passed, sparing Entra a retry storm.
    during_retry_after = api.post(seed_message)
    time.sleep(1.1)
    after = api.post(seed_message)

    assert first.status == 503
    assert first.body["exception"] == "IOException"
    assert during_retry_after.status == 503
    assert after.status == 202
    assert cloud.entra.token_requests[MAIL_APP_ID] == 2
