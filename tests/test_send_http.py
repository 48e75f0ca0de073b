"""POST /api/send end to end: real trigger, real msal / Key Vault / httpx clients, local stand-ins."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from standins.cloud import SENDER, LocalCloud
from standins.graph import Fault
from tests.conftest import Configure, SendApi


@pytest.mark.parametrize("credential", ["secret", "certificate"])
def test_seed_example_is_sent_with_either_credential_type(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], credential: str
) -> None:
    answer = configure(credential).post(seed_message)

    assert answer.status == 202
    assert answer.body["status"] == "accepted"
    assert answer.body["mailbox"] == SENDER
    [sent] = cloud.graph.sent
    assert sent.mailbox == SENDER
    assert sent.client_request_id == answer.body["requestId"]
    assert sent.message["toRecipients"] == [{"emailAddress": {"address": "recipient@outlook.com"}}]
    assert sent.message["subject"] == "Example email subject"
    # Null Priority and BodyFormat mean Normal and Text, as the seed says.
    assert sent.message["importance"] == "normal"
    assert sent.message["body"] == {"contentType": "text", "content": "Example email body"}


def test_camel_case_html_message_with_attachment_reaches_graph_intact(api: SendApi, cloud: LocalCloud) -> None:
    content = base64.b64encode(b"%PDF-1.7 report").decode()
    answer = api.post(
        {
            "to": [{"name": "Ann", "address": "ann@fabrikam.com"}],
            "from": {"address": SENDER},
            "cc": [{"address": "cc@fabrikam.com"}],
            "bcc": [{"address": "bcc@fabrikam.com"}],
            "priority": "EmailMessagePriority.High",
            "subject": "Report",
            "bodyFormat": "EmailMessageBodyFormat.Html",
            "body": "<p>Attached</p>",
            "attachments": [{"name": "report.pdf", "contentBytes": content, "contentType": "application/pdf"}],
        }
    )

    assert answer.status == 202
    message = cloud.graph.sent[0].message
    assert message["importance"] == "high"
    assert message["body"]["contentType"] == "html"
    assert message["toRecipients"] == [{"emailAddress": {"address": "ann@fabrikam.com", "name": "Ann"}}]
    assert message["ccRecipients"] == [{"emailAddress": {"address": "cc@fabrikam.com"}}]
    assert message["bccRecipients"] == [{"emailAddress": {"address": "bcc@fabrikam.com"}}]
    [attachment] = message["attachments"]
    assert attachment["@odata.type"] == "#microsoft.graph.fileAttachment"
    assert base64.b64decode(attachment["contentBytes"]) == b"%PDF-1.7 report"


def test_invalid_message_is_refused_before_any_network_call(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    seed_message["To"][0]["Address"] = ""

    answer = api.post(seed_message)

    assert answer.status == 400
    assert answer.headers["Content-Type"] == "application/problem+json"
    assert answer.body["errors"][0]["field"] == "To[0].Address"
    assert answer.body["exception"] == "PropertyEmptyException"
    assert sum(cloud.entra.token_requests.values()) == 0
    assert sum(cloud.vault.reads.values()) == 0
    assert cloud.graph.sent == []


def test_from_address_not_allowed_is_403_before_any_network_call(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    seed_message["From"]["Address"] = "ceo@contoso.com"

    answer = api.post(seed_message)

    assert answer.status == 403
    assert answer.body["type"] == "urn:m365send:problem:sender-not-allowed"
    assert "ceo@contoso.com" in answer.body["detail"]
    assert sum(cloud.entra.token_requests.values()) == 0
    assert sum(cloud.graph.requests.values()) == 0


def test_sender_mailbox_not_allowed_is_403(api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    answer = api.post(seed_message, params={"sender": "other@contoso.com"})

    assert answer.status == 403
    assert sum(cloud.graph.requests.values()) == 0


def test_allowed_senders_let_a_request_send_as_another_mailbox(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.graph.add_mailbox("support@contoso.com")
    api = configure(M365_ALLOWED_SENDERS="support@contoso.com")
    seed_message["From"]["Address"] = "support@contoso.com"

    answer = api.post(seed_message, params={"sender": "support@contoso.com"})

    assert answer.status == 202
    assert cloud.graph.sent[0].mailbox == "support@contoso.com"


def test_sender_may_be_given_as_object_id(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(M365_SENDER=cloud.mailbox.object_id, M365_ALLOWED_SENDERS=SENDER)

    answer = api.post(seed_message)

    assert answer.status == 202
    assert cloud.graph.sent[0].mailbox == SENDER


def test_throttled_send_is_retried_after_retry_after_and_sent_once(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.graph.inject(Fault(429, retry_after="1"), Fault(503, retry_after="1"))

    answer = api.post(seed_message)

    assert answer.status == 202
    assert len(cloud.graph.sent) == 1
    assert cloud.graph.requests[f"/v1.0/users/{SENDER}/sendMail"] == 3


def test_graph_throttling_beyond_the_budget_is_503_with_retry_after(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(M365_GRAPH_MAX_ATTEMPTS="2")
    cloud.graph.inject(Fault(429, retry_after="0"), Fault(429, retry_after="7"))

    answer = api.post(seed_message)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "7"
    assert answer.body["exception"] == "IOException"
    assert cloud.graph.sent == []


def test_a_retry_after_longer_than_the_wait_limit_is_handed_back_at_once(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(M365_GRAPH_MAX_RETRY_WAIT="5")
    cloud.graph.inject(Fault(429, retry_after="120"))

    answer = api.post(seed_message)

    assert answer.status == 503
    assert answer.headers["Retry-After"] == "120"
    assert cloud.graph.requests[f"/v1.0/users/{SENDER}/sendMail"] == 1


def test_unknown_mailbox_is_404_with_graphs_code(configure: Configure, seed_message: dict[str, Any]) -> None:
    api = configure(M365_SENDER="gone@contoso.com")
    seed_message["From"]["Address"] = "gone@contoso.com"

    answer = api.post(seed_message)

    assert answer.status == 404
    assert answer.body["graphCode"] == "ErrorInvalidUser"
    assert answer.body["exception"] == "ServiceException"


def test_mailbox_outside_the_apps_access_policy_is_403_send_as_denied(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.graph.app_scope[cloud.app.client_id] = set()

    answer = api.post(seed_message)

    assert answer.status == 403
    assert answer.body["type"] == "urn:m365send:problem:send-as-denied"
    assert answer.body["graphCode"] == "ErrorAccessDenied"


def test_from_the_mailbox_may_not_send_as_is_403_send_as_denied(
    configure: Configure, seed_message: dict[str, Any]
) -> None:
    api = configure(M365_ALLOWED_SENDERS="boss@contoso.com")
    seed_message["From"]["Address"] = "boss@contoso.com"

    answer = api.post(seed_message)

    assert answer.status == 403
    assert answer.body["graphCode"] == "ErrorSendAsDenied"


def test_recipient_graph_cannot_resolve_is_400_recipients_rejected(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.graph.unresolvable.add("recipient@outlook.com")

    answer = api.post(seed_message)

    assert answer.status == 400
    assert answer.body["type"] == "urn:m365send:problem:recipients-rejected"
    assert answer.body["graphCode"] == "ErrorInvalidRecipients"


def test_app_without_mail_send_permission_is_403(api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    cloud.app.roles[cloud.graph.resource] = []

    answer = api.post(seed_message)

    assert answer.status == 403
    assert answer.body["graphCode"] == "ErrorAccessDenied"


def test_body_that_is_not_json_is_400_naming_the_problem(api: SendApi) -> None:
    answer = api.post(raw=b"{not json")

    assert answer.status == 400
    assert answer.body["errors"][0]["code"] == "invalid_json"


def test_callers_client_request_id_becomes_the_request_id(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    request_id = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"

    answer = api.post(seed_message, headers={"client-request-id": request_id})

    assert answer.body["requestId"] == request_id
    assert cloud.graph.sent[0].client_request_id == request_id
