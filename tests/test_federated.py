"""The federated credential: the app registration trusts the Function App's managed identity; no secret exists.

The real msal and azure-identity talk to the Entra ID stand-in (which checks a federated assertion's
issuer, subject, audience, signature and lifetime as Entra does) and to the managed identity endpoint
App Service gives an app (``IDENTITY_ENDPOINT``/``IDENTITY_HEADER``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from m365send import cli
from m365send.errors import ConfigurationInvalid
from m365send.settings import load_settings
from m365send.wiring import Worker
from standins.cloud import FEDERATED_IDENTITY_ID, MAIL_APP_ID, TENANT_ID, LocalCloud
from standins.identity import ManagedIdentity
from tests.conftest import Configure, invoke

OTHER_IDENTITY_ID = "9a0b1c2d-3e4f-4a5b-8c6d-7e8f9a0b1c2d"
# msal (Graph tokens) and azure-identity (identity tokens) treat a token with under five minutes left as
# expired, so a lifetime of 302 s is valid for about 2 s.
SHORT_LIFETIME = 302
# msal answers again from its own record of a 5xx from the identity endpoint for 5 s (no Retry-After),
# so that a failing endpoint is not hammered by every send.
MSAL_HOLD_BACK = 5


def _vault_reads(cloud: LocalCloud) -> int:
    return sum(cloud.vault.reads.values())


def test_a_federated_send_uses_the_identity_token_and_no_secret_or_vault(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure("federated")

    answer = api.post(seed_message)

    assert answer.status == 202, answer.body
    assert len(cloud.graph.sent) == 1
    assert cloud.identity.requests[FEDERATED_IDENTITY_ID] == 1
    assert cloud.entra.token_requests[MAIL_APP_ID] == 1
    assert _vault_reads(cloud) == 0


def test_the_graph_token_of_a_federated_send_is_the_apps_with_its_roles(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    configure("federated").post(seed_message)

    [graph_token] = [
        t
        for t in cloud.entra.issued
        if jwt.decode(t, options={"verify_signature": False})["aud"] == cloud.graph.resource
    ]
    claims = cloud.entra.verify(graph_token, audience=cloud.graph.resource)
    assert claims["appid"] == MAIL_APP_ID
    assert "Mail.Send" in claims["roles"]


def test_a_thousand_federated_sends_cost_one_assertion_and_one_token(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure("federated")

    statuses = {api.post(seed_message).status for _ in range(1000)}

    assert statuses == {202}
    assert cloud.identity.requests[FEDERATED_IDENTITY_ID] == 1
    assert cloud.entra.token_requests[MAIL_APP_ID] == 1


def test_an_expired_graph_token_is_replaced_with_the_cached_identity_token(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.entra.token_lifetime = SHORT_LIFETIME
    api = configure("federated")
    api.post(seed_message)

    time.sleep(SHORT_LIFETIME - 300 + 0.5)
    answer = api.post(seed_message)

    assert answer.status == 202
    assert cloud.entra.token_requests[MAIL_APP_ID] == 2
    assert cloud.identity.requests[FEDERATED_IDENTITY_ID] == 1  # a day-long identity token is reused


def test_an_identity_token_near_its_expiry_is_renewed_before_entra_sees_it(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.entra.token_lifetime = SHORT_LIFETIME
    cloud.identity.token_lifetime = SHORT_LIFETIME
    api = configure("federated")
    api.post(seed_message)

    time.sleep(SHORT_LIFETIME - 300 + 0.5)
    answer = api.post(seed_message)

    assert answer.status == 202
    assert cloud.identity.requests[FEDERATED_IDENTITY_ID] == 2
    assert cloud.entra.token_requests[MAIL_APP_ID] == 2


def _wrong_audience(cloud: LocalCloud) -> dict[str, str]:
    # The identity asks for a token of another audience; the federated credential trusts only the exchange's.
    return {"M365_TOKEN_EXCHANGE_AUDIENCE": "https://vault.azure.net"}


def _untrusted_identity(cloud: LocalCloud) -> dict[str, str]:
    # Another identity the app holds, whose principal id the federated credential does not name.
    cloud.identity.add(ManagedIdentity(client_id=OTHER_IDENTITY_ID))
    return {"M365_FEDERATED_CLIENT_ID": OTHER_IDENTITY_ID}


def _expired_assertion(cloud: LocalCloud) -> dict[str, str]:
    cloud.identity.token_lifetime = -60  # the identity endpoint hands out a token that has already expired
    return {}


@pytest.mark.parametrize(
    ("arrange", "aadsts"),
    [(_wrong_audience, "AADSTS700212"), (_untrusted_identity, "AADSTS700213"), (_expired_assertion, "AADSTS700024")],
    ids=["wrong audience", "wrong subject", "expired assertion"],
)
def test_entra_refuses_an_assertion_its_federated_credential_does_not_match_and_nothing_is_sent(
    configure: Configure,
    cloud: LocalCloud,
    seed_message: dict[str, Any],
    arrange: Callable[[LocalCloud], dict[str, str]],
    aadsts: str,
) -> None:
    api = configure("federated", **arrange(cloud))

    answer = api.post(seed_message)

    assert answer.status == 500
    assert aadsts in answer.body["detail"]
    assert cloud.graph.sent == []


def test_an_identity_the_app_does_not_hold_is_named_with_its_setting(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure("federated", M365_FEDERATED_CLIENT_ID=OTHER_IDENTITY_ID)

    answer = api.post(seed_message)

    assert answer.status == 500
    assert "M365_FEDERATED_CLIENT_ID" in answer.body["detail"]
    assert cloud.entra.token_requests[MAIL_APP_ID] == 0
    assert cloud.graph.sent == []


def test_the_identity_endpoint_down_is_503_to_try_again(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure("federated")
    cloud.take_down("identity")

    started = time.monotonic()
    answer = api.post(seed_message)

    assert answer.status == 503
    assert "managed identity endpoint" in answer.body["detail"]
    assert time.monotonic() - started < 15
    assert cloud.graph.sent == []


def test_an_identity_endpoint_error_is_503_and_a_send_after_msals_hold_back_recovers(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure("federated")
    cloud.identity.unavailable = 5  # more than azure-identity's own retry absorbs

    first = api.post(seed_message)
    cloud.identity.unavailable = 0
    held_back = api.post(seed_message)
    time.sleep(MSAL_HOLD_BACK + 0.3)
    second = api.post(seed_message)

    assert (first.status, held_back.status, second.status) == (503, 503, 202)
    assert cloud.identity.requests[FEDERATED_IDENTITY_ID] == 3  # two tries, then one after the hold-back
    assert len(cloud.graph.sent) == 1


def test_no_token_appears_in_the_logs_of_a_federated_send(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG")
    configure("federated").post(seed_message)

    assert len(cloud.entra.issued) == 2  # the identity's token and the Graph token
    assert not any(token in caplog.text for token in cloud.entra.issued)


def test_a_queued_federated_send_is_sent(queue_host: Any, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    host = queue_host("federated")

    host.producer.enqueue(seed_message, key="federated-1")
    host.drain()

    assert len(cloud.graph.sent) == 1
    assert _vault_reads(cloud) == 0


# --- settings, health and check ------------------------------------------------------------------


def test_federated_settings_need_no_key_vault(configure: Configure) -> None:
    configure("federated")

    settings = load_settings()

    assert settings.credential_mode == "federated"
    assert settings.key_vault_url is None


def test_a_secret_without_a_vault_names_key_vault_url(configure: Configure) -> None:
    configure("secret", KEY_VAULT_URL=None)

    with pytest.raises(ConfigurationInvalid) as raised:
        load_settings()

    assert list(raised.value.settings) == ["KEY_VAULT_URL"]
    assert "KEY_VAULT_URL is required" in raised.value.detail


def test_a_federated_identity_and_a_secret_together_are_refused(configure: Configure, cloud: LocalCloud) -> None:
    configure("federated", M365_CLIENT_SECRET_NAME="m365-client-secret", KEY_VAULT_URL=cloud.vault.url)

    with pytest.raises(ConfigurationInvalid, match=r"exactly one of .* M365_FEDERATED_CLIENT_ID"):
        load_settings()


def test_health_reports_the_federated_mode_and_its_trust(configure: Configure) -> None:
    configure("federated")

    answer = invoke("health", "GET")

    assert answer.status == 200
    assert answer.body["checks"]["credential"] == "federated credential (managed identity)"
    assert any("api://AzureADTokenExchange" in step for step in answer.body["federated_trust"])
    assert FEDERATED_IDENTITY_ID not in json.dumps(answer.body)


def test_health_reports_the_secret_mode(configure: Configure) -> None:
    configure("secret")

    answer = invoke("health", "GET")

    assert answer.body["checks"]["credential"] == "client secret (Key Vault)"
    assert "federated_trust" not in answer.body


def test_check_walks_the_federated_trust(
    configure: Configure, cloud: LocalCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    configure("federated")

    code = cli.main(["check"], worker=Worker())

    out = capsys.readouterr().out
    assert code == 0, out
    lines = out.strip().splitlines()
    steps = [line.split(":")[0] for line in lines if line[:1] in ("✓", "✗")]
    assert steps == ["✓ settings", "✓ managed identity", "✓ token", "✓ sender", "✓ sender policy"]
    assert cloud.managed_identity.principal_id in out
    assert cloud.entra.issuer(TENANT_ID) in out


def test_check_gives_the_federated_credential_to_add_when_the_trust_is_missing(
    configure: Configure, cloud: LocalCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    cloud.app.federated[:] = []
    configure("federated")

    code = cli.main(["check", "--json"], worker=Worker())

    report = json.loads(capsys.readouterr().out)
    assert code == 1
    [token] = [s for s in report["steps"] if s["step"] == "token"]
    assert "AADSTS700211" in token["detail"]
    assert f"issuer {cloud.entra.issuer(TENANT_ID)}" in token["fix"]
    assert f"subject {cloud.managed_identity.principal_id}" in token["fix"]
    assert "audience api://AzureADTokenExchange" in token["fix"]


def test_outside_azure_the_missing_managed_identity_is_one_clear_line(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    api = configure("federated", IDENTITY_ENDPOINT=None, IDENTITY_HEADER=None)
    # Where no App Service endpoint is set, azure-identity asks a VM's metadata endpoint: a dead port here.
    monkeypatch.setenv("AZURE_POD_IDENTITY_AUTHORITY_HOST", "http://127.0.0.1:9")

    answer = api.post(seed_message)

    assert answer.status == 500
    assert "no managed identity is available here" in answer.body["detail"]
    assert cloud.entra.token_requests[MAIL_APP_ID] == 0
