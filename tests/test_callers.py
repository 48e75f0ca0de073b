"""Who may send as whom over HTTP: Entra ID callers and named keys, each with its own senders and its own keys.

Every request goes through the real decorated functions; tokens come from the Entra stand-in, and
m365send fetches the tenant's signing keys from it as it would from login.microsoftonline.com.
"""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from m365send.callers import key_digest
from standins.cloud import TENANT_ID, LocalCloud
from standins.examples import SENDER
from tests.conftest import Answer, Configure, invoke, status_of

API = "api://m365send-tests"
HR_APP = str(uuid.uuid4())  # an app granted the HR role
CRM_APP = str(uuid.uuid4())  # an app named by its object id
STRANGER = str(uuid.uuid4())  # an app of the tenant that no rule names
MAKER = str(uuid.uuid4())  # a user, named by object id (a Power Automate maker's connection)
INVOICES_KEY = "invoices-" + uuid.uuid4().hex
PAYROLL, HR_DIRECTOR, CRM, INVOICES = (
    "payroll@contoso.com",
    "hr-director@contoso.com",
    "crm@contoso.com",
    "invoices@contoso.com",
)

POLICY = {
    "functionKeys": {"invoices-flow": key_digest(INVOICES_KEY)},
    "callers": [
        {"name": "Invoices flow", "key": "invoices-flow", "senders": [INVOICES]},
        {
            "name": "HR apps",
            "role": "Mail.Send.HR",
            "senders": [PAYROLL],
            "onBehalfOf": [f"{PAYROLL}>{HR_DIRECTOR}"],
        },
        {"name": "CRM", "objectId": CRM_APP, "senders": [CRM]},
        {"name": "Marketing maker", "objectId": MAKER, "senders": [SENDER]},
    ],
}


@pytest.fixture
def setup(configure: Configure, cloud: LocalCloud, storage_settings: dict[str, str]) -> LocalCloud:
    """A deployment that accepts Entra ID tokens for API, with the policy above and send records."""
    for address in (CRM, INVOICES):
        cloud.graph.add_mailbox(address)
    cloud.graph.add_mailbox(PAYROLL).send_on_behalf.add(HR_DIRECTOR)
    configure(**storage_settings, M365_API_AUDIENCE=API, M365_SENDER_POLICY=json.dumps(POLICY))
    return cloud


def token(cloud: LocalCloud, object_id: str, *, roles: tuple[str, ...] = (), **overrides: Any) -> str:
    """A token for the API, as Entra issues one (overrides make it a bad one)."""
    claims: dict[str, Any] = {
        "tenant_id": TENANT_ID,
        "audience": API,
        "object_id": object_id,
        "client_id": str(uuid.uuid4()),
        "roles": roles,
        **overrides,
    }
    return cloud.entra.api_token(**claims)


def message(sender: str = SENDER, **extra: Any) -> dict[str, Any]:
    return {
        "To": [{"Address": "someone@example.org"}],
        "From": {"Address": sender},
        "Subject": "Payslip",
        "Body": "private body text",
        **extra,
    }


def send(body: dict[str, Any], *, bearer: str | None = None, key: str | None = None, **params: str) -> Answer:
    headers = {}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if key is not None:
        headers["x-functions-key"] = key
    return invoke("send", body=json.dumps(body).encode(), params=params, headers=headers)


def keyed(key: str, headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": key}


def test_an_app_with_a_role_sends_as_the_sender_its_rule_names(setup: LocalCloud) -> None:
    answer = send(message(PAYROLL), bearer=token(setup, HR_APP, roles=("Mail.Send.HR",)), sender=PAYROLL)

    assert answer.status == 202, answer.body
    assert [mail.mailbox for mail in setup.graph.sent] == [PAYROLL]


def test_an_app_is_refused_a_sender_its_rules_do_not_name_and_nothing_is_sent(setup: LocalCloud) -> None:
    answer = send(message(CRM), bearer=token(setup, HR_APP, roles=("Mail.Send.HR",)), sender=CRM)

    assert answer.status == 403
    assert answer.body["type"].endswith("sender-not-allowed")
    assert f"app {HR_APP}" in answer.body["detail"]
    assert CRM in answer.body["detail"]
    assert setup.graph.sent == []


def test_a_from_address_outside_the_rule_is_refused_even_through_an_allowed_mailbox(setup: LocalCloud) -> None:
    answer = send(message(CRM), bearer=token(setup, HR_APP, roles=("Mail.Send.HR",)), sender=PAYROLL)

    assert answer.status == 403
    assert f"From '{CRM}'" in answer.body["detail"]
    assert setup.graph.sent == []


def test_an_on_behalf_of_pair_the_rule_names_is_allowed(setup: LocalCloud) -> None:
    body = message(PAYROLL, OnBehalfOf={"Address": HR_DIRECTOR})

    answer = send(body, bearer=token(setup, HR_APP, roles=("Mail.Send.HR",)), sender=PAYROLL)

    assert answer.status == 202, answer.body


def test_an_on_behalf_of_pair_the_rule_does_not_name_is_refused(setup: LocalCloud) -> None:
    body = message(PAYROLL, OnBehalfOf={"Address": "ceo@contoso.com"})

    answer = send(body, bearer=token(setup, HR_APP, roles=("Mail.Send.HR",)), sender=PAYROLL)

    assert answer.status == 403
    assert "on behalf of 'ceo@contoso.com'" in answer.body["detail"]
    assert setup.graph.sent == []


def test_an_app_named_by_object_id_sends_as_its_sender(setup: LocalCloud) -> None:
    answer = send(message(CRM), bearer=token(setup, CRM_APP), sender=CRM)

    assert answer.status == 202, answer.body


def test_a_user_token_is_a_user_caller_named_by_object_id(setup: LocalCloud) -> None:
    answer = send(message(), bearer=token(setup, MAKER, user=True))

    assert answer.status == 202, answer.body


def test_an_entra_caller_no_rule_names_may_not_even_use_the_default_sender(setup: LocalCloud) -> None:
    answer = send(message(), bearer=token(setup, STRANGER))

    assert answer.status == 403
    assert f"app {STRANGER} is not named by any rule" in answer.body["detail"]
    assert setup.graph.sent == []


@pytest.mark.parametrize(
    ("bad", "says"),
    [
        ({"audience": "api://another-api"}, "for another API"),
        ({"issuer": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0"}, "not issued by"),
        ({"tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47"}, "not issued by"),
        ({"lifetime": 3600, "issued_ago": 3600 + 301}, "expired"),
        ({"signed": False}, "not signed with RS256"),
    ],
    ids=["audience", "issuer", "tenant", "expiry", "unsigned"],
)
def test_a_token_that_is_not_valid_is_refused_with_401(setup: LocalCloud, bad: dict[str, Any], says: str) -> None:
    bad_token = token(setup, CRM_APP, **bad)

    answer = send(message(CRM), bearer=bad_token, sender=CRM)

    assert answer.status == 401
    assert says in answer.body["detail"]
    assert answer.headers["WWW-Authenticate"].startswith('Bearer realm="m365send", error="invalid_token"')
    assert bad_token not in json.dumps(answer.body)
    assert setup.graph.sent == []


def test_a_token_signed_by_a_key_the_tenant_never_published_is_refused(setup: LocalCloud) -> None:
    forged = setup.entra.forged_token(tenant_id=TENANT_ID, audience=API, object_id=CRM_APP, client_id=str(uuid.uuid4()))

    answer = send(message(CRM), bearer=forged, sender=CRM)

    assert answer.status == 401
    assert "signature is not valid" in answer.body["detail"]
    assert setup.graph.sent == []


def test_a_request_with_neither_token_nor_key_is_refused_with_401(setup: LocalCloud) -> None:
    answer = send(message())

    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="m365send"'
    assert setup.graph.sent == []


def test_another_authorization_scheme_is_refused(setup: LocalCloud) -> None:
    answer = invoke("send", body=json.dumps(message()).encode(), headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert answer.status == 401
    assert "'Basic' is not Bearer" in answer.body["detail"]


def test_the_tenants_keys_are_fetched_once_for_many_tokens(setup: LocalCloud) -> None:
    for _ in range(5):
        assert send(message(CRM), bearer=token(setup, CRM_APP), sender=CRM).status == 202

    assert setup.entra.key_requests == 1


def test_a_named_key_sends_as_its_rules_sender_only(setup: LocalCloud) -> None:
    allowed = send(message(INVOICES), key=INVOICES_KEY, sender=INVOICES)
    refused = send(message(), key=INVOICES_KEY)

    assert allowed.status == 202, allowed.body
    assert refused.status == 403
    assert "key 'invoices-flow' may not send as mailbox" in refused.body["detail"]
    assert INVOICES_KEY not in json.dumps(refused.body)


def test_with_tokens_accepted_a_key_the_policy_does_not_name_is_refused(setup: LocalCloud) -> None:
    answer = send(message(), key="some-host-function-key")

    assert answer.status == 401
    assert "not one the sender policy names" in answer.body["detail"]
    assert "some-host-function-key" not in json.dumps(answer.body)


def test_without_tokens_configured_an_unnamed_key_gets_the_default_rule(
    configure: Configure, cloud: LocalCloud
) -> None:
    cloud.graph.add_mailbox(INVOICES)
    configure(M365_SENDER_POLICY=json.dumps(POLICY))

    default = send(message(), key="a-host-checked-key")
    named = send(message(INVOICES), key=INVOICES_KEY, sender=INVOICES)
    not_default = send(message(INVOICES), key="a-host-checked-key", sender=INVOICES)

    assert (default.status, named.status, not_default.status) == (202, 202, 403)


def test_another_callers_key_is_answered_404_exactly_like_an_unknown_key(setup: LocalCloud) -> None:
    crm = {"Authorization": f"Bearer {token(setup, CRM_APP)}"}
    hr = {"Authorization": f"Bearer {token(setup, HR_APP, roles=('Mail.Send.HR',))}"}
    sent = invoke("send", body=json.dumps(message(CRM)).encode(), params={"sender": CRM}, headers=keyed("order-7", crm))
    assert sent.status == 202, sent.body

    own = status_of("order-7", headers=crm)
    other = status_of("order-7", headers=hr)
    unknown = status_of("order-8", headers=hr)

    assert own.status == 200
    assert own.body["status"] == "sent"
    assert other.status == unknown.status == 404
    assert _without_ids(other.body) == _without_ids(unknown.body)
    assert other.body["detail"] == unknown.body["detail"].replace("order-8", "order-7")


def test_the_same_key_from_two_callers_is_two_sends_and_neither_learns_of_the_other(setup: LocalCloud) -> None:
    crm = keyed("report-1", {"Authorization": f"Bearer {token(setup, CRM_APP)}"})
    hr = keyed("report-1", {"Authorization": f"Bearer {token(setup, HR_APP, roles=('Mail.Send.HR',))}"})

    first = invoke("send", body=json.dumps(message(CRM)).encode(), params={"sender": CRM}, headers=crm)
    # A different message under the same key: another caller's key, so no 409 tells it the key is taken.
    second = invoke("send", body=json.dumps(message(PAYROLL)).encode(), params={"sender": PAYROLL}, headers=hr)

    assert (first.status, second.status) == (202, 202)
    assert sorted(mail.mailbox for mail in setup.graph.sent) == [CRM, PAYROLL]


def test_a_default_callers_keys_are_not_an_identified_callers(
    configure: Configure, cloud: LocalCloud, storage_settings: dict[str, str]
) -> None:
    cloud.graph.add_mailbox(CRM)
    configure(**storage_settings, M365_SENDER_POLICY=json.dumps(POLICY))
    assert invoke("send", body=json.dumps(message()).encode(), headers={"Idempotency-Key": "k-1"}).status == 202

    named = status_of("k-1", headers={"x-functions-key": INVOICES_KEY})
    default = status_of("k-1", headers={"x-functions-key": "a-host-checked-key"})

    assert (named.status, default.status) == (404, 200)


def _without_ids(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("requestId", "instance", "detail")}


def test_while_entra_cannot_be_reached_a_token_is_answered_503_with_retry_after(setup: LocalCloud) -> None:
    bearer = token(setup, CRM_APP)
    setup.take_down("entra")

    answer = send(message(CRM), bearer=bearer, sender=CRM)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "5"
    assert setup.graph.sent == []


# Hostile credentials: any Authorization header and key, including JWT-shaped ones with unknown kids.
_PART = st.text(st.characters(codec="ascii", categories=["L", "N"]), max_size=30).map(
    lambda text: base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
)
_HEADER = st.sampled_from(['{"alg":"RS256","kid":"x"}', '{"alg":"none"}', '{"alg":"HS256"}', "{}", "[]"]).map(
    lambda text: base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
)
_JWT = st.builds(lambda h, p, s: f"{h}.{p}.{s}", _HEADER, _PART, _PART)
_TEXT = st.text(st.characters(codec="latin-1", exclude_categories=["Cc"]), max_size=60)
AUTHORIZATION = st.none() | st.builds(
    lambda scheme, value: f"{scheme} {value}", st.sampled_from(["Bearer", "bearer", "Basic", ""]), _JWT | _TEXT
)


@seed(20261207)
@settings(
    max_examples=300,
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(authorization=AUTHORIZATION, function_key=st.none() | _TEXT)
def test_no_credential_however_hostile_gets_a_5xx_or_sends(
    setup: LocalCloud, authorization: str | None, function_key: str | None
) -> None:
    headers = {
        name: value
        for name, value in (("Authorization", authorization), ("x-functions-key", function_key))
        if value is not None
    }

    answer = invoke("send", body=json.dumps(message()).encode(), headers=headers)

    assert answer.status in (401, 403), answer.body
    assert setup.graph.sent == []
