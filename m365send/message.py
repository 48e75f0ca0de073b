"""The email message and the send request, as pydantic v2 models. Pure: no I/O.

The JSON shape is the seed block's ``EmailMessage``: PascalCase keys (``To``, ``From`` ...),
addresses as ``{"Name": ..., "Address": ...}``. camelCase keys, as Power Automate makers write
them, are accepted too.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import Field, field_validator
from pydantic_core import PydanticCustomError

from m365send.addresses import EmailAddress, address_problem, split_recipients
from m365send.attachment_model import Attachment
from m365send.attachments import MAX_ATTACHMENTS
from m365send.fields import (
    HEADER_NAME,
    ISO_TIME,
    MAX_CATEGORIES,
    MAX_HEADER_VALUE,
    MAX_HEADERS,
    MAX_RECIPIENTS,
    TEXT_PATTERN,
    BodyFormat,
    Model,
    Priority,
    alias,
    empty_error,
    no_control_characters,
    null_error,
    parse_enum,
)
from m365send.names import is_object_id

__all__ = ["EmailMessage", "SendRequest"]


class EmailMessage(Model):
    """The seed block's ``EmailMessage``: To and From are required, everything else has a default."""

    to: list[EmailAddress] = Field(
        validation_alias=alias("To"),
        title="To",
        description="Recipients; at least one. To, Cc and Bcc hold at most 500 together.",
        json_schema_extra={"minItems": 1, "maxItems": MAX_RECIPIENTS},
    )
    from_: EmailAddress = Field(
        validation_alias=alias("From"),
        title="From",
        description="The sender: the mailbox or an address it may send as.",
    )
    cc: list[EmailAddress] = Field(
        default_factory=list,
        validation_alias=alias("Cc"),
        title="Cc",
        description="Copy recipients.",
        json_schema_extra={"maxItems": MAX_RECIPIENTS},
    )
    bcc: list[EmailAddress] = Field(
        default_factory=list,
        validation_alias=alias("Bcc"),
        title="Bcc",
        description="Blind copy recipients.",
        json_schema_extra={"maxItems": MAX_RECIPIENTS},
    )
    priority: Priority = Field(
        default=Priority.NORMAL,
        validation_alias=alias("Priority"),
        title="Priority",
        description="Low, Normal or High; empty means Normal.",
    )
    subject: str = Field(
        default="",
        validation_alias=alias("Subject"),
        title="Subject",
        description="Subject line.",
        json_schema_extra={"pattern": TEXT_PATTERN},
    )
    body_format: BodyFormat = Field(
        default=BodyFormat.TEXT,
        validation_alias=alias("BodyFormat"),
        title="Body format",
        description="Text or Html; empty means Text.",
    )
    body: str = Field(default="", validation_alias=alias("Body"), title="Body", description="The message body.")
    attachments: list[Attachment] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS,
        validation_alias=alias("Attachments"),
        title="Attachments",
        description="Files to attach, inline (base64) or blob references; up to 150 MB each.",
    )

    reply_to: list[EmailAddress] = Field(
        default_factory=list,
        validation_alias=alias("ReplyTo"),
        title="Reply to",
        description="Where replies go instead of From; a list, or addresses separated by semicolons.",
        json_schema_extra={"maxItems": MAX_RECIPIENTS},
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=alias("Headers"),
        title="Headers",
        description=f"Custom internet headers, name to value; names start with x- (at most {MAX_HEADERS}).",
        json_schema_extra={
            "maxProperties": MAX_HEADERS,
            "additionalProperties": {"type": "string", "pattern": TEXT_PATTERN, "maxLength": MAX_HEADER_VALUE},
        },
    )
    categories: list[str] = Field(
        default_factory=list,
        validation_alias=alias("Categories"),
        title="Categories",
        description="Outlook categories to set on the sent message.",
        json_schema_extra={"maxItems": MAX_CATEGORIES, "items": {"type": "string", "pattern": TEXT_PATTERN}},
    )
    request_read_receipt: bool = Field(
        default=False,
        validation_alias=alias("RequestReadReceipt"),
        title="Request read receipt",
        description="Ask recipients' mail apps to confirm when the email is read.",
    )
    request_delivery_receipt: bool = Field(
        default=False,
        validation_alias=alias("RequestDeliveryReceipt"),
        title="Request delivery receipt",
        description="Ask for a report when the email is delivered.",
    )
    save_to_sent_items: bool = Field(
        default=True,
        validation_alias=alias("SaveToSentItems"),
        title="Save to sent items",
        description="Keep a copy in the mailbox's Sent Items (a message sent through a draft always is).",
    )
    on_behalf_of: EmailAddress | None = Field(
        default=None,
        validation_alias=alias("OnBehalfOf"),
        title="On behalf of",
        description=(
            "Send as From on behalf of this address (Exchange's Send on Behalf): recipients see "
            "'From on behalf of OnBehalfOf'. M365_ON_BEHALF_OF must allow the pair."
        ),
    )
    send_at: datetime | None = Field(
        default=None,
        validation_alias=alias("SendAt"),
        title="Send at",
        description=(
            "When to send: an ISO 8601 time with its zone (2026-12-01T08:00:00Z), at most 90 days ahead. "
            "The message waits on the outbox queue until then; a time already past sends now."
        ),
    )

    @field_validator("send_at", mode="before")
    @classmethod
    def _send_at(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, str):
            raise PydanticCustomError("time_type", ISO_TIME)
        return value

    @field_validator("send_at")
    @classmethod
    def _send_at_in_utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise PydanticCustomError(
                "naive_time", "has no time zone: add Z for UTC or an offset such as +01:00 (2026-12-01T08:00:00Z)"
            )
        return value.astimezone(UTC)

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        if value is None:
            return {}
        if not isinstance(value, dict):
            return value  # pydantic's own type error names the type
        if len(value) > MAX_HEADERS:
            raise PydanticCustomError(
                "too_long",
                "holds {count} headers; Graph accepts at most {limit}",
                {"count": len(value), "limit": MAX_HEADERS},
            )
        for name, text in value.items():
            if not HEADER_NAME.fullmatch(name):
                raise PydanticCustomError(
                    "header_name",
                    "{name} is not a custom header name: it must start with x- and hold only letters, digits and -",
                    {"name": json.dumps(name)[:80]},
                )
            if isinstance(text, str):
                no_control_characters(text)
                if len(text) > MAX_HEADER_VALUE:
                    raise PydanticCustomError(
                        "too_large",
                        "header {name} is longer than {limit} characters",
                        {"name": name, "limit": MAX_HEADER_VALUE},
                    )
        return value

    @field_validator("categories", mode="before")
    @classmethod
    def _categories(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    no_control_characters(item)
        return value

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: Any) -> Any:
        if value is None:
            raise null_error("To")
        value = split_recipients(value)
        if value == []:
            raise empty_error("To")
        return value

    @field_validator("from_", mode="before")
    @classmethod
    def _from(cls, value: Any) -> Any:
        if value is None:
            raise null_error("From")
        return value

    @field_validator("cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _optional_recipients(cls, value: Any) -> Any:
        return [] if value is None else split_recipients(value)

    @field_validator("attachments", mode="before")
    @classmethod
    def _null_list_isempty_error(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        return Priority.NORMAL if value is None else parse_enum(Priority, "EmailMessagePriority", value)

    @field_validator("body_format", mode="before")
    @classmethod
    def _body_format(cls, value: Any) -> Any:
        return BodyFormat.TEXT if value is None else parse_enum(BodyFormat, "EmailMessageBodyFormat", value)

    @field_validator("subject", mode="before")
    @classmethod
    def _subject(cls, value: Any) -> Any:
        if value is None:
            return ""
        return no_control_characters(value) if isinstance(value, str) else value

    @field_validator("body", mode="before")
    @classmethod
    def _body(cls, value: Any) -> Any:
        return "" if value is None else value


class SendRequest(Model):
    """One send: the message, and optionally the mailbox to send through (else ``M365_SENDER``)."""

    message: EmailMessage
    sender: str | None = None
    request_id: str = Field(default_factory=lambda: str(uuid.uuid4()))

    @field_validator("sender", mode="before")
    @classmethod
    def _sender(cls, value: Any) -> Any:
        if value is None or not isinstance(value, str):
            return value
        if value == "":
            raise empty_error("sender")
        no_control_characters(value)
        if not is_object_id(value) and address_problem(value):
            raise PydanticCustomError("invalid_address", "must be a mailbox's object id or user principal name")
        return value
