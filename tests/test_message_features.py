"""What senders expect of an email beyond the block's fields: Reply-To, headers, categories, receipts, Sent Items.

Each reaches the Graph stand-in as Graph documents it (the stand-in checks the shapes the way Graph
does), and each invalid use is a 400 problem naming the field, with nothing sent.
"""

from __future__ import annotations

from typing import Any

import pytest

from standins.cloud import SENDER, LocalCloud
from tests.conftest import Configure, SendApi


def test_reply_to_reaches_graph_as_reply_to_recipients(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    answer = api.post({**seed_message, "ReplyTo": "help@contoso.com"})

    assert answer.status == 202
    assert cloud.graph.sent[0].message["replyTo"] == [{"emailAddress": {"address": "help@contoso.com"}}]


def test_custom_headers_reach_graph_as_internet_message_headers(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    answer = api.post({**seed_message, "Headers": {"X-Ticket": "INC-42", "x-source": "crm"}})

    assert answer.status == 202
    assert cloud.graph.sent[0].message["internetMessageHeaders"] == [
        {"name": "X-Ticket", "value": "INC-42"},
        {"name": "x-source", "value": "crm"},
    ]


def test_categories_and_receipts_reach_graph(api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    message = {**seed_message, "categories": ["Billing"], "requestReadReceipt": True, "RequestDeliveryReceipt": True}

    answer = api.post(message)

    sent = cloud.graph.sent[0].message
    assert answer.status == 202
    assert (sent["categories"], sent["isReadReceiptRequested"], sent["isDeliveryReceiptRequested"]) == (
        ["Billing"],
        True,
        True,
    )


def test_a_plain_message_carries_none_of_the_optional_properties(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api.post(seed_message)

    sent = cloud.graph.sent[0].message
    optional = {
        "replyTo",
        "internetMessageHeaders",
        "categories",
        "isReadReceiptRequested",
        "isDeliveryReceiptRequested",
    }
    assert optional.isdisjoint(sent)
    assert cloud.graph.sent[0].save_to_sent_items is True


def test_save_to_sent_items_false_reaches_send_mail(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    answer = api.post({**seed_message, "SaveToSentItems": False})

    assert answer.status == 202
    assert cloud.graph.sent[0].save_to_sent_items is False


@pytest.mark.parametrize(
    ("field", "value", "where", "code"),
    [
        ("Headers", {"Subject": "spoofed"}, "Headers", "invalid_header"),
        ("Headers", {"X-A": "1", "X-B": "2", "X-C": "3", "X-D": "4", "X-E": "5", "X-F": "6"}, "Headers", "too_many"),
        ("Headers", {"X-Trace": "a\r\nBcc: victim@fabrikam.com"}, "Headers", "control_characters"),
        ("Headers", {"X-Big": "v" * 999}, "Headers", "too_large"),
        ("ReplyTo", "help@contoso.com; nope", "ReplyTo[1].Address", "invalid_address"),
        ("Categories", ["ok", "bad\u2028"], "Categories", "control_characters"),
        ("RequestReadReceipt", "maybe", "RequestReadReceipt", "type"),
    ],
)
def test_an_invalid_use_is_a_400_naming_the_field_and_sends_nothing(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any], field: str, value: Any, where: str, code: str
) -> None:
    answer = api.post({**seed_message, field: value})

    assert answer.status == 400
    assert [(e["field"], e["code"]) for e in answer.body["errors"]] == [(where, code)]
    assert cloud.graph.sent == []


def test_the_graph_stand_in_refuses_what_graph_refuses(cloud: LocalCloud) -> None:
    from standins.graph import GraphStandIn, _BadBody

    with pytest.raises(_BadBody) as six:
        GraphStandIn._check_headers([{"name": f"x-{n}", "value": "v"} for n in range(6)])
    with pytest.raises(_BadBody) as unprefixed:
        GraphStandIn._check_headers([{"name": "Subject", "value": "v"}])

    assert six.value.code == "InvalidInternetMessageHeaderCollection"
    assert unprefixed.value.code == "InvalidInternetMessageHeader"


# --- OnBehalfOf: Exchange's Send on Behalf ----------------------------------------------------------

HELPDESK = "helpdesk@contoso.com"


def test_on_behalf_of_sends_from_the_principal_with_the_mailbox_as_sender(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(M365_ON_BEHALF_OF=f"{SENDER}>{HELPDESK}")
    cloud.mailbox.send_on_behalf.add(HELPDESK)

    answer = api.post({**seed_message, "From": {"Address": SENDER}, "OnBehalfOf": {"Address": HELPDESK}})

    [sent] = cloud.graph.sent
    assert answer.status == 202
    assert sent.message["from"] == {"emailAddress": {"address": HELPDESK}}
    assert sent.message["sender"] == {"emailAddress": {"address": SENDER}}
    assert sent.sender == SENDER  # Exchange records the mailbox: "notifications on behalf of helpdesk"


def test_on_behalf_of_a_pair_the_allow_list_lacks_is_a_403_naming_the_setting(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(M365_ON_BEHALF_OF=f"{SENDER}>billing@contoso.com")

    answer = api.post({**seed_message, "From": {"Address": SENDER}, "OnBehalfOf": {"Address": HELPDESK}})

    assert answer.status == 403
    assert f"{SENDER}>{HELPDESK}" in answer.body["detail"]
    assert "M365_ON_BEHALF_OF" in answer.body["detail"]
    assert cloud.graph.sent == []


def test_on_behalf_of_without_exchanges_permission_is_graphs_send_as_denied(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(M365_ON_BEHALF_OF=f"{SENDER}>{HELPDESK}")

    answer = api.post({**seed_message, "From": {"Address": SENDER}, "OnBehalfOf": {"Address": HELPDESK}})

    assert answer.status == 403
    assert answer.body["graphCode"] == "ErrorSendAsDenied"
    assert cloud.graph.sent == []


def test_the_graph_stand_in_records_send_as_as_from_itself(cloud: LocalCloud) -> None:
    from standins.graph import GraphStandIn

    cloud.mailbox.send_as.add(HELPDESK)
    message = {"from": {"emailAddress": {"address": HELPDESK}}, "sender": {"emailAddress": {"address": SENDER}}}

    assert GraphStandIn._check_sender(cloud.mailbox, message) == HELPDESK


def test_on_behalf_of_from_itself_is_a_400(configure: Configure, seed_message: dict[str, Any]) -> None:
    answer = configure().post({**seed_message, "From": {"Address": SENDER}, "OnBehalfOf": {"Address": SENDER}})

    assert answer.status == 400
    assert [e["field"] for e in answer.body["errors"]] == ["OnBehalfOf"]


def test_a_malformed_on_behalf_of_setting_is_named_on_health(configure: Configure) -> None:
    from tests.conftest import invoke

    configure(M365_ON_BEHALF_OF="helpdesk@contoso.com")

    answer = invoke("health", "GET")

    assert answer.status == 503
    assert answer.body["problems"][0]["settings"] == ["M365_ON_BEHALF_OF"]
