"""Mapping a validated message to Graph's JSON (sendMail, drafts, upload sessions), and its exact size. Pure."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from m365send.attachments import ResolvedAttachment, resolve_attachments
from m365send.errors import PayloadTooLarge
from m365send.graph_message import (
    GRAPH_REQUEST_LIMIT,
    attachment_item,
    encode_send_mail,
    send_mail_body,
    send_mail_size,
)
from m365send.models import EmailMessage, parse_send_request


def inline(message: EmailMessage) -> list[ResolvedAttachment]:
    return resolve_attachments(message.attachments, containers=frozenset(), blobs=None)


def encode(seed_message: dict[str, Any]) -> bytes:
    message = parse_send_request(seed_message).message
    return encode_send_mail(message, inline(message))


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

    [attachment] = json.loads(encode(seed_message))["message"]["attachments"]

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

    encoded = encode(seed_message)

    assert json.loads(encoded)["message"]["subject"] == "Grüße"
    assert "Grüße".encode() in encoded


def test_request_over_graphs_4mb_limit_is_refused_with_sizes(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [
        {"Name": "big.bin", "ContentBytes": base64.b64encode(b"\0" * (3 * 1024 * 1024 + 1)).decode()}
    ]

    with pytest.raises(PayloadTooLarge) as caught:
        encode(seed_message)

    assert f"{GRAPH_REQUEST_LIMIT:,}" in caught.value.detail


def test_request_just_under_the_limit_is_accepted(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [
        {"Name": "big.bin", "ContentBytes": base64.b64encode(b"\0" * (3 * 1024 * 1024 - 4096)).decode()}
    ]

    assert len(encode(seed_message)) <= GRAPH_REQUEST_LIMIT


@pytest.mark.parametrize("sizes", [[], [0], [1, 2, 3], [1000, 4097, 70_000]])
def test_size_of_the_send_mail_request_is_exact_without_encoding_it(
    seed_message: dict[str, Any], sizes: list[int]
) -> None:
    seed_message["Subject"] = "Größe"
    seed_message["Attachments"] = [
        {"Name": f"f{n}.bin", "ContentBytes": base64.b64encode(bytes(n)).decode(), "ContentId": f"c{n}"} for n in sizes
    ]
    message = parse_send_request(seed_message).message

    assert send_mail_size(message, inline(message)) == len(encode_send_mail(message, inline(message)))


def test_attachment_type_is_guessed_from_the_name_when_not_given(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Name": "report.pdf", "ContentBytes": "JVBERg=="}]

    [attachment] = json.loads(encode(seed_message))["message"]["attachments"]

    assert attachment["contentType"] == "application/pdf"


def test_upload_session_item_describes_the_file_without_its_content(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [
        {"Name": "logo.png", "ContentBytes": "iVBORw0KGgo=", "IsInline": True, "ContentId": "logo"}
    ]
    message = parse_send_request(seed_message).message

    assert attachment_item(inline(message)[0]) == {
        "AttachmentItem": {
            "attachmentType": "file",
            "name": "logo.png",
            "size": 8,
            "contentType": "image/png",
            "isInline": True,
            "contentId": "logo",
        }
    }
