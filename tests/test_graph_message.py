"""Mapping a validated message to Graph's sendMail body, and Graph's 4 MB request limit. Pure."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from m365send.errors import PayloadTooLarge
from m365send.graph_message import GRAPH_REQUEST_LIMIT, encode_send_mail, send_mail_body
from m365send.models import parse_send_request


def test_priority_and_body_format_map_to_importance_and_content_type(seed_message: dict[str, Any]) -> None:
    seed_message.update(Priority="Low", BodyFormat="Html", Body="<b>hi</b>")

    message = send_mail_body(parse_send_request(seed_message).message)["message"]

    assert message["importance"] == "low"
    assert message["body"] == {"contentType": "html", "content": "<b>hi</b>"}


def test_inline_image_keeps_its_content_id(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [
        {
            "Name": "logo.png",
            "ContentBytes": "iVBORw0KGgo=",
            "ContentType": "image/png",
            "IsInline": True,
            "ContentId": "logo",
        }
    ]

    [attachment] = send_mail_body(parse_send_request(seed_message).message)["message"]["attachments"]

    assert attachment == {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "logo.png",
        "contentType": "image/png",
        "contentBytes": "iVBORw0KGgo=",
        "isInline": True,
        "contentId": "logo",
    }


def test_message_is_saved_to_sent_items(seed_message: dict[str, Any]) -> None:
    assert send_mail_body(parse_send_request(seed_message).message)["saveToSentItems"] is True


def test_encoded_body_is_compact_utf8_json(seed_message: dict[str, Any]) -> None:
    seed_message["Subject"] = "Grüße"

    encoded = encode_send_mail(parse_send_request(seed_message).message)

    assert json.loads(encoded)["message"]["subject"] == "Grüße"
    assert "Grüße".encode() in encoded


def test_request_over_graphs_4mb_limit_is_refused_with_sizes(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [
        {"Name": "big.bin", "ContentBytes": base64.b64encode(b"\0" * (3 * 1024 * 1024 + 1)).decode()}
    ]

    with pytest.raises(PayloadTooLarge) as caught:
        encode_send_mail(parse_send_request(seed_message).message)

    assert f"{GRAPH_REQUEST_LIMIT:,}" in caught.value.detail


def test_request_just_under_the_limit_is_accepted(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [
        {"Name": "big.bin", "ContentBytes": base64.b64encode(b"\0" * (3 * 1024 * 1024 - 4096)).decode()}
    ]

    assert len(encode_send_mail(parse_send_request(seed_message).message)) <= GRAPH_REQUEST_LIMIT
