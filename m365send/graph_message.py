"""Map a validated ``EmailMessage`` to the body of Graph's ``POST /users/{id}/sendMail``. Pure."""

from __future__ import annotations

import json
from typing import Any

from m365send.errors import PayloadTooLarge
from m365send.models import EmailAddress, EmailMessage

__all__ = ["GRAPH_REQUEST_LIMIT", "encode_send_mail", "send_mail_body"]

# Graph refuses sendMail requests over 4 MB; attachments larger than that need an upload session.
GRAPH_REQUEST_LIMIT = 4 * 1024 * 1024


def _recipient(address: EmailAddress) -> dict[str, Any]:
    email: dict[str, Any] = {"address": address.address}
    if address.name:
        email["name"] = address.name
    return {"emailAddress": email}


def send_mail_body(message: EmailMessage) -> dict[str, Any]:
    """The sendMail JSON: recipients, ``from``, ``importance``, ``body.contentType``, attachments."""
    graph_message: dict[str, Any] = {
        "subject": message.subject,
        "importance": message.priority.value,
        "body": {"contentType": message.body_format.value, "content": message.body},
        "from": _recipient(message.from_),
        "toRecipients": [_recipient(a) for a in message.to],
        "ccRecipients": [_recipient(a) for a in message.cc],
        "bccRecipients": [_recipient(a) for a in message.bcc],
    }
    if message.attachments:
        graph_message["attachments"] = [
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": a.name,
                "contentType": a.content_type,
                "contentBytes": a.content_bytes,
                "isInline": a.is_inline,
                **({"contentId": a.content_id} if a.content_id else {}),
            }
            for a in message.attachments
        ]
    return {"message": graph_message, "saveToSentItems": True}


def encode_send_mail(message: EmailMessage) -> bytes:
    """The sendMail request body as UTF-8 JSON; ``PayloadTooLarge`` if Graph would refuse its size."""
    encoded = json.dumps(send_mail_body(message), ensure_ascii=False, separators=(",", ":")).encode()
    if len(encoded) > GRAPH_REQUEST_LIMIT:
        attached = sum(len(a.content_bytes) for a in message.attachments)
        raise PayloadTooLarge(
            f"the Graph request would be {len(encoded):,} bytes ({attached:,} of them base64 attachments); "
            f"Graph accepts at most {GRAPH_REQUEST_LIMIT:,} bytes in one sendMail call",
            exception="ArgumentException",
        )
    return encoded
