"""Map a validated ``EmailMessage`` to Graph's JSON: the ``sendMail`` body, a draft, its attachments. Pure."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from m365send.addresses import EmailAddress
from m365send.attachments import InlineContent, ResolvedAttachment
from m365send.errors import PayloadTooLarge
from m365send.message import EmailMessage

__all__ = [
    "GRAPH_REQUEST_LIMIT",
    "attachment_item",
    "content_base64",
    "encode_json",
    "encode_send_mail",
    "file_attachment",
    "graph_message",
    "send_mail_body",
    "send_mail_size",
]

# Graph refuses requests over 4 MB; a message whose attachments do not fit goes through a draft.
GRAPH_REQUEST_LIMIT = 4 * 1024 * 1024


def _recipient(address: EmailAddress) -> dict[str, Any]:
    email: dict[str, Any] = {"address": address.address}
    if address.name:
        email["name"] = address.name
    return {"emailAddress": email}


def encode_json(value: Any) -> bytes:
    """Compact UTF-8 JSON, as every request body is sent."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def graph_message(message: EmailMessage) -> dict[str, Any]:
    """Graph's ``message``: recipients, ``from``, ``importance``, ``body.contentType``, and the optional
    ``replyTo``, ``internetMessageHeaders``, ``categories`` and receipt flags; no attachments."""
    graph: dict[str, Any] = {
        "subject": message.subject,
        "importance": message.priority.value,
        "body": {"contentType": message.body_format.value, "content": message.body},
        "from": _recipient(message.from_),
        "toRecipients": [_recipient(a) for a in message.to],
        "ccRecipients": [_recipient(a) for a in message.cc],
        "bccRecipients": [_recipient(a) for a in message.bcc],
    }
    if message.on_behalf_of is not None:
        # Graph's from is who the message is from; sender is who sent it. Exchange shows
        # "sender on behalf of from" when the mailbox has Send on Behalf rights on from.
        graph["from"] = _recipient(message.on_behalf_of)
        graph["sender"] = _recipient(message.from_)
    # Only what the caller set: a plain message stays exactly as it was.
    if message.reply_to:
        graph["replyTo"] = [_recipient(a) for a in message.reply_to]
    if message.headers:
        graph["internetMessageHeaders"] = [{"name": k, "value": v} for k, v in message.headers.items()]
    if message.categories:
        graph["categories"] = list(message.categories)
    if message.request_read_receipt:
        graph["isReadReceiptRequested"] = True
    if message.request_delivery_receipt:
        graph["isDeliveryReceiptRequested"] = True
    return graph


def file_attachment(attachment: ResolvedAttachment, content_bytes: str) -> dict[str, Any]:
    """A ``fileAttachment`` with its base64 content."""
    return {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": attachment.name,
        "contentType": attachment.content_type,
        "contentBytes": content_bytes,
        "isInline": attachment.is_inline,
        **({"contentId": attachment.content_id} if attachment.content_id else {}),
    }


def attachment_item(attachment: ResolvedAttachment) -> dict[str, Any]:
    """The ``AttachmentItem`` of ``createUploadSession`` for a large file."""
    item: dict[str, Any] = {
        "attachmentType": "file",
        "name": attachment.name,
        "size": attachment.size,
        "contentType": attachment.content_type,
        "isInline": attachment.is_inline,
    }
    if attachment.content_id:
        item["contentId"] = attachment.content_id
    return {"AttachmentItem": item}


def send_mail_body(message: EmailMessage, attachments: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The ``sendMail`` JSON, with the given ``fileAttachment`` objects."""
    body = graph_message(message)
    if attachments:
        body["attachments"] = list(attachments)
    return {"message": body, "saveToSentItems": message.save_to_sent_items}


def _base64_length(size: int) -> int:
    return 4 * -(-size // 3)


def send_mail_size(message: EmailMessage, attachments: Sequence[ResolvedAttachment]) -> int:
    """Exact bytes of the ``sendMail`` request with every attachment inline, without encoding any content."""
    skeleton = send_mail_body(message, [file_attachment(a, "") for a in attachments])
    return len(encode_json(skeleton)) + sum(_base64_length(a.size) for a in attachments)


def encode_send_mail(message: EmailMessage, attachments: Sequence[ResolvedAttachment]) -> bytes:
    """The ``sendMail`` request with every attachment read and inlined; only for a message that fits.

    ``PayloadTooLarge`` is a last guard: callers check ``send_mail_size`` before reading any content.
    """
    encoded = encode_json(send_mail_body(message, [file_attachment(a, content_base64(a)) for a in attachments]))
    if len(encoded) > GRAPH_REQUEST_LIMIT:
        raise PayloadTooLarge(
            f"the sendMail request would be {len(encoded):,} bytes; Graph accepts at most {GRAPH_REQUEST_LIMIT:,}",
            exception="ArgumentException",
        )
    return encoded


def content_base64(attachment: ResolvedAttachment) -> str:
    """The attachment's whole content as base64 (inline content is already base64: no round trip)."""
    if isinstance(attachment.content, InlineContent):
        return attachment.content.encoded
    return base64.b64encode(attachment.content.read(0, attachment.size)).decode()
