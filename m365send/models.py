"""The email message and send request, as pydantic v2 models, and their validation. Pure: no I/O.

The JSON shape is the seed block's ``EmailMessage``: PascalCase keys (``To``, ``From`` ...),
addresses as ``{"Name": ..., "Address": ...}``. camelCase keys, as Power Automate makers write
them, are accepted too. Every rejection names the field in the seed's spelling and the exception
the seed block threw for the same case.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from m365send.attachments import MAX_ATTACHMENT_BYTES, MAX_ATTACHMENTS, blob_reference_problem, decoded_size
from m365send.errors import FieldProblem, RequestInvalid

__all__ = [
    "MAX_RECIPIENTS",
    "Attachment",
    "BodyFormat",
    "EmailAddress",
    "EmailMessage",
    "Priority",
    "SendRequest",
    "decode_json",
    "fold_address",
    "parse_message_json",
    "parse_send_request",
    "split_recipients",
    "structure_problem",
]

# C0 controls but TAB, DEL, C1 controls (U+0085 among them) and the Unicode line and paragraph
# separators: each can break a header line somewhere between Graph and the recipient's client.
_CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
_MIME_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[\w!#$&^.+-]+")
_SURROGATE = re.compile("[\ud800-\udfff]")
_WHITESPACE = re.compile("[\t\n\x0b\x0c\r ]")
_DROP_WHITESPACE = dict.fromkeys(map(ord, "\t\n\x0b\x0c\r "))
_BASE64 = re.compile(r"[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
# The same rules as JSON Schema patterns (ECMA-262), for the published documents.
CONTROL_CLASS = "\\u0000-\\u0008\\u000a-\\u001f\\u007f-\\u009f\\u2028\\u2029"
TEXT_PATTERN = f"^[^{CONTROL_CLASS}]*$"
BLOB_PATTERN = (
    "^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]"  # the container
    "(?:/(?!\\.\\.?(?:/|$))[^/\\\\\\u0000-\\u001f\\u007f-\\u009f]+)+$"  # then segments: no '', '.', '..'
)
MIME_PATTERN = "^[A-Za-z0-9][\\w!#$&^.+-]*/[\\w!#$&^.+-]+$"
# Exchange Online's limit on recipients per message (To, Cc and Bcc together).
MAX_RECIPIENTS = 500
# Graph refuses more than 5 custom internet headers (InvalidInternetMessageHeaderCollection), and
# only names starting with x-.
MAX_HEADERS = 5
MAX_HEADER_VALUE = 998  # RFC 5322's longest line
MAX_CATEGORIES = 25
_HEADER_NAME = re.compile(r"[xX]-[A-Za-z0-9-]{1,70}")
# JSON nested deeper than this is refused; an email message is four levels deep.
MAX_DEPTH = 64
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_address(address: str) -> str:
    """An address for case-insensitive comparison: ASCII letters lowered, nothing else changed.

    Not ``casefold``: it maps look-alikes together ("ﬁ" to "fi", "K" (Kelvin) to "k"), so an
    allow-list compared that way would pass an address that is not the one it lists.
    """
    return address.translate(_ASCII_LOWER)


def _alias(pascal: str) -> AliasChoices:
    """Accept the seed's PascalCase key and its camelCase twin."""
    return AliasChoices(pascal, pascal[0].lower() + pascal[1:])


def _null(what: str = "value") -> PydanticCustomError:
    return PydanticCustomError("property_null", "{what} must not be null", {"what": what})


def _empty(what: str = "value") -> PydanticCustomError:
    return PydanticCustomError("property_empty", "{what} must not be empty", {"what": what})


def _no_control_characters(value: str) -> str:
    # CR/LF would let a caller smuggle extra headers into the message; NUL truncates them.
    if _CONTROL.search(value):
        raise PydanticCustomError(
            "header_injection", "must not contain control characters or line separators (CR, LF, NUL, ESC, U+2028 ...)"
        )
    return value


class Priority(StrEnum):
    """``EmailMessagePriority``; the value is Graph's ``importance``."""

    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"


class BodyFormat(StrEnum):
    """``EmailMessageBodyFormat``; the value is Graph's ``body.contentType``."""

    TEXT = "text"
    HTML = "html"


def _parse_enum(enum: type[Priority] | type[BodyFormat], seed_name: str, value: Any) -> Any:
    """Read ``"Normal"``, ``"normal"`` or ``"EmailMessagePriority.Normal"``; null means the default."""
    if value is None or isinstance(value, enum):
        return value
    choices = ", ".join(member.name.capitalize() for member in enum)
    if isinstance(value, str):
        name = value.strip()
        if name.lower().startswith(seed_name.lower() + "."):
            name = name[len(seed_name) + 1 :]
        for member in enum:
            if member.value == name.lower():
                return member
    # Numbers are rejected too: the original product's numeric values are not documented.
    raise PydanticCustomError(
        "argument",
        "{value} is not a defined {enum} value; use one of {choices}",
        {"value": json.dumps(value), "enum": seed_name, "choices": choices},
    )


@functools.lru_cache(maxsize=4096)
def address_problem(address: str) -> str | None:
    """Why ``address`` is not a valid RFC 5321 mailbox, or None.

    Cached: senders and frequent recipients recur, and this check is the costliest part of validation.
    """
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return str(exc)
    return None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EmailAddress(_Model):
    """A mailbox: ``Address`` is required and must be a valid RFC 5321 address."""

    name: str | None = Field(
        default=None,
        validation_alias=_alias("Name"),
        title="Name",
        description="Display name, e.g. Ann Smith.",
        json_schema_extra={"pattern": TEXT_PATTERN},
    )
    address: str = Field(
        validation_alias=_alias("Address"),
        title="Address",
        description="Email address (RFC 5321), e.g. ann@contoso.com.",
        json_schema_extra={"format": "email", "minLength": 1, "maxLength": 254},
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        return _no_control_characters(value) if isinstance(value, str) else value

    @field_validator("address", mode="before")
    @classmethod
    def _address(cls, value: Any) -> Any:
        if value is None:
            raise _null("Address")
        if not isinstance(value, str):
            return value  # pydantic's own type error names the type
        if value == "":
            raise _empty("Address")
        _no_control_characters(value)
        reason = address_problem(value)
        if reason:
            raise PydanticCustomError(
                "invalid_address",
                "{address} is not a valid RFC 5321 email address: {reason}",
                {"address": json.dumps(value), "reason": reason},
            )
        return value


class Attachment(_Model):
    """A file: inline as base64 (``ContentBytes``) or a reference to a blob (``Blob``), never both.

    Blob references are read with the Function App's identity from the containers allowed by
    ``M365_ATTACHMENT_CONTAINERS``; ``Name`` and ``ContentType`` then default to the blob's own.
    """

    name: str | None = Field(
        default=None,
        validation_alias=_alias("Name"),
        title="File name",
        description="Name shown to recipients; for a blob, defaults to the blob's file name.",
        json_schema_extra={"pattern": TEXT_PATTERN, "minLength": 1},
    )
    content_bytes: str | None = Field(
        default=None,
        validation_alias=_alias("ContentBytes"),
        title="Content",
        description="The file's content, base64-encoded. Give this or Blob.",
        json_schema_extra={"format": "byte"},
    )
    blob: str | None = Field(
        default=None,
        validation_alias=_alias("Blob"),
        title="Blob",
        description="container/path/to/file.pdf of a blob in an allowed container. Give this or ContentBytes.",
        json_schema_extra={"pattern": BLOB_PATTERN, "maxLength": 1088},
    )
    content_type: str | None = Field(
        default=None,
        validation_alias=_alias("ContentType"),
        title="Content type",
        description="MIME type, e.g. application/pdf; by default the blob's, or guessed from the name.",
        json_schema_extra={"pattern": MIME_PATTERN},
    )
    is_inline: bool = Field(
        default=False,
        validation_alias=_alias("IsInline"),
        title="Inline",
        description="Show inside an HTML body (refer to it as cid:ContentId).",
    )
    content_id: str | None = Field(
        default=None,
        validation_alias=_alias("ContentId"),
        title="Content id",
        description='Id an HTML body uses to show an inline image: <img src="cid:logo">.',
        json_schema_extra={"pattern": "^[^\\s<>\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"},
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if value == "":
            raise _empty("Name")
        return _no_control_characters(value) if isinstance(value, str) else value

    @field_validator("content_bytes", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        # Checked without decoding or splitting: a 100 MB attachment must not cost another 100 MB
        # (decoded bytes) or 160 MB (one small string per 76-column line) just to be validated.
        # Base64 wrapped at 76 columns: one translate (re.sub would build a string per line, 3x the size).
        compact = value.translate(_DROP_WHITESPACE) if _WHITESPACE.search(value) else value
        if len(compact) % 4 or not _BASE64.fullmatch(compact):
            raise PydanticCustomError("invalid_base64", "is not valid base64")
        if decoded_size(compact) > MAX_ATTACHMENT_BYTES:
            raise PydanticCustomError(
                "too_large",
                "is {size} bytes; an attachment may be at most {limit} bytes (150 MB)",
                {"size": f"{decoded_size(compact):,}", "limit": f"{MAX_ATTACHMENT_BYTES:,}"},
            )
        return compact

    @field_validator("blob", mode="before")
    @classmethod
    def _blob(cls, value: Any) -> Any:
        if value == "":
            raise _empty("Blob")
        if isinstance(value, str):
            problem = blob_reference_problem(value)
            if problem:
                raise PydanticCustomError("invalid_blob", "{problem}", {"problem": problem})
        return value

    @field_validator("content_type", mode="before")
    @classmethod
    def _content_type(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, str) and not _MIME_TYPE.fullmatch(value):
            raise PydanticCustomError(
                "argument", "{value} is not a MIME type such as application/pdf", {"value": json.dumps(value)}
            )
        return value

    @field_validator("content_id", mode="before")
    @classmethod
    def _content_id(cls, value: Any) -> Any:
        if value == "":
            return None
        if isinstance(value, str) and (_CONTROL.search(value) or any(c in value for c in " <>")):
            raise PydanticCustomError("argument", "must not contain spaces, angle brackets or line breaks")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Attachment:
        if self.content_bytes is None and self.blob is None:
            raise PydanticCustomError(
                "property_null", "give ContentBytes (the file, base64-encoded) or Blob (container/path of a blob)"
            )
        if self.content_bytes is not None and self.blob is not None:
            raise PydanticCustomError("argument", "give ContentBytes or Blob, not both")
        if self.blob is None and self.name is None:
            raise PydanticCustomError("property_null", "Name must not be null when the content is inline")
        if self.is_inline and not self.content_id:
            raise PydanticCustomError(
                "property_null",
                "an inline attachment (IsInline) needs a ContentId for the HTML body to show it as cid:",
            )
        return self

    @property
    def display_name(self) -> str:
        """``Name``, or for a blob reference its file name."""
        if self.name:
            return self.name
        assert self.blob is not None  # the validator guarantees a name or a blob
        return self.blob.rsplit("/", 1)[-1]


def split_recipients(value: Any) -> Any:
    """``"a@contoso.com; b@contoso.com"`` (as Outlook's "Send an email" takes them) → a list of addresses.

    Semicolons and commas separate; blanks around and between them are ignored. Anything that is
    not a string is returned as it is, for the list validation to judge.
    """
    if not isinstance(value, str):
        return value
    return [{"Address": part.strip()} for part in re.split(r"[;,]", value) if part.strip()]


class EmailMessage(_Model):
    """The seed block's ``EmailMessage``: To and From are required, everything else has a default."""

    to: list[EmailAddress] = Field(
        validation_alias=_alias("To"),
        title="To",
        description="Recipients; at least one. To, Cc and Bcc hold at most 500 together.",
        json_schema_extra={"minItems": 1, "maxItems": MAX_RECIPIENTS},
    )
    from_: EmailAddress = Field(
        validation_alias=_alias("From"),
        title="From",
        description="The sender: the mailbox or an address it may send as.",
    )
    cc: list[EmailAddress] = Field(
        default_factory=list,
        validation_alias=_alias("Cc"),
        title="Cc",
        description="Copy recipients.",
        json_schema_extra={"maxItems": MAX_RECIPIENTS},
    )
    bcc: list[EmailAddress] = Field(
        default_factory=list,
        validation_alias=_alias("Bcc"),
        title="Bcc",
        description="Blind copy recipients.",
        json_schema_extra={"maxItems": MAX_RECIPIENTS},
    )
    priority: Priority = Field(
        default=Priority.NORMAL,
        validation_alias=_alias("Priority"),
        title="Priority",
        description="Low, Normal or High; empty means Normal.",
    )
    subject: str = Field(
        default="",
        validation_alias=_alias("Subject"),
        title="Subject",
        description="Subject line.",
        json_schema_extra={"pattern": TEXT_PATTERN},
    )
    body_format: BodyFormat = Field(
        default=BodyFormat.TEXT,
        validation_alias=_alias("BodyFormat"),
        title="Body format",
        description="Text or Html; empty means Text.",
    )
    body: str = Field(default="", validation_alias=_alias("Body"), title="Body", description="The message body.")
    attachments: list[Attachment] = Field(
        default_factory=list,
        max_length=MAX_ATTACHMENTS,
        validation_alias=_alias("Attachments"),
        title="Attachments",
        description="Files to attach, inline (base64) or blob references; up to 150 MB each.",
    )

    reply_to: list[EmailAddress] = Field(
        default_factory=list,
        validation_alias=_alias("ReplyTo"),
        title="Reply to",
        description="Where replies go instead of From; a list, or addresses separated by semicolons.",
        json_schema_extra={"maxItems": MAX_RECIPIENTS},
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=_alias("Headers"),
        title="Headers",
        description=f"Custom internet headers, name to value; names start with x- (at most {MAX_HEADERS}).",
        json_schema_extra={
            "maxProperties": MAX_HEADERS,
            "additionalProperties": {"type": "string", "pattern": TEXT_PATTERN, "maxLength": MAX_HEADER_VALUE},
        },
    )
    categories: list[str] = Field(
        default_factory=list,
        validation_alias=_alias("Categories"),
        title="Categories",
        description="Outlook categories to set on the sent message.",
        json_schema_extra={"maxItems": MAX_CATEGORIES, "items": {"type": "string", "pattern": TEXT_PATTERN}},
    )
    request_read_receipt: bool = Field(
        default=False,
        validation_alias=_alias("RequestReadReceipt"),
        title="Request read receipt",
        description="Ask recipients' mail apps to confirm when the email is read.",
    )
    request_delivery_receipt: bool = Field(
        default=False,
        validation_alias=_alias("RequestDeliveryReceipt"),
        title="Request delivery receipt",
        description="Ask for a report when the email is delivered.",
    )
    save_to_sent_items: bool = Field(
        default=True,
        validation_alias=_alias("SaveToSentItems"),
        title="Save to sent items",
        description="Keep a copy in the mailbox's Sent Items (a message sent through a draft always is).",
    )
    on_behalf_of: EmailAddress | None = Field(
        default=None,
        validation_alias=_alias("OnBehalfOf"),
        title="On behalf of",
        description=(
            "Send as From on behalf of this address (Exchange's Send on Behalf): recipients see "
            "'From on behalf of OnBehalfOf'. M365_ON_BEHALF_OF must allow the pair."
        ),
    )
    send_at: datetime | None = Field(
        default=None,
        validation_alias=_alias("SendAt"),
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
            raise PydanticCustomError("time_type", _ISO_TIME)
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
            if not _HEADER_NAME.fullmatch(name):
                raise PydanticCustomError(
                    "header_name",
                    "{name} is not a custom header name: it must start with x- and hold only letters, digits and -",
                    {"name": json.dumps(name)[:80]},
                )
            if isinstance(text, str):
                _no_control_characters(text)
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
                    _no_control_characters(item)
        return value

    @field_validator("to", mode="before")
    @classmethod
    def _to(cls, value: Any) -> Any:
        if value is None:
            raise _null("To")
        value = split_recipients(value)
        if value == []:
            raise _empty("To")
        return value

    @field_validator("from_", mode="before")
    @classmethod
    def _from(cls, value: Any) -> Any:
        if value is None:
            raise _null("From")
        return value

    @field_validator("cc", "bcc", "reply_to", mode="before")
    @classmethod
    def _optional_recipients(cls, value: Any) -> Any:
        return [] if value is None else split_recipients(value)

    @field_validator("attachments", mode="before")
    @classmethod
    def _null_list_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: Any) -> Any:
        return Priority.NORMAL if value is None else _parse_enum(Priority, "EmailMessagePriority", value)

    @field_validator("body_format", mode="before")
    @classmethod
    def _body_format(cls, value: Any) -> Any:
        return BodyFormat.TEXT if value is None else _parse_enum(BodyFormat, "EmailMessageBodyFormat", value)

    @field_validator("subject", mode="before")
    @classmethod
    def _subject(cls, value: Any) -> Any:
        if value is None:
            return ""
        return _no_control_characters(value) if isinstance(value, str) else value

    @field_validator("body", mode="before")
    @classmethod
    def _body(cls, value: Any) -> Any:
        return "" if value is None else value


_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")


_QUEUE_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?!-)){1,61}[a-z0-9]$")


def is_queue_name(value: str) -> bool:
    """Whether ``value`` is a valid Azure Storage queue name."""
    return bool(_QUEUE_NAME.match(value))


def is_object_id(value: str) -> bool:
    """Whether ``value`` is an Entra object id (a GUID) rather than a UPN or address."""
    return bool(_GUID.match(value))


class SendRequest(_Model):
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
            raise _empty("sender")
        _no_control_characters(value)
        if not is_object_id(value) and address_problem(value):
            raise PydanticCustomError("invalid_address", "must be a mailbox's object id or user principal name")
        return value


_ISO_TIME = "must be an ISO 8601 time with its zone, e.g. 2026-12-01T08:00:00Z"
# How each pydantic error type reads to a user of the original block.
_EXCEPTION_BY_TYPE = {
    "missing": ("PropertyNullException", "null", "is required and must not be null"),
    "property_null": ("PropertyNullException", "null", None),
    "property_empty": ("PropertyEmptyException", "empty", None),
    "invalid_address": ("ServiceException", "invalid_address", None),
    "invalid_base64": ("ArgumentException", "invalid_base64", None),
    "header_injection": ("ArgumentException", "control_characters", None),
    "header_name": ("ArgumentException", "invalid_header", None),
    "extra_forbidden": ("ArgumentException", "unknown_field", "is not a field of EmailMessage"),
    "too_long": ("ArgumentException", "too_many", None),
    "too_large": ("ArgumentException", "too_large", None),
    "invalid_blob": ("ArgumentException", "invalid_blob", None),
    "naive_time": ("ArgumentException", "invalid_time", None),
    "time_type": ("ArgumentException", "invalid_time", None),
    "datetime_from_date_parsing": ("ArgumentException", "invalid_time", _ISO_TIME),
    "datetime_parsing": ("ArgumentException", "invalid_time", _ISO_TIME),
}

_CID = re.compile(r"""cid:([^"'\s>)]+)""", re.IGNORECASE)


def _cross_field_problems(message: EmailMessage) -> list[FieldProblem]:
    """What no single field shows: duplicate ContentIds, and an HTML body showing a cid: nothing provides."""
    problems: list[FieldProblem] = []
    seen: dict[str, int] = {}
    for index, attachment in enumerate(message.attachments):
        if attachment.content_id is None:
            continue
        key = attachment.content_id.casefold()
        if key in seen:
            problems.append(
                FieldProblem(
                    f"Attachments[{index}].ContentId",
                    "duplicate",
                    f"ContentId '{attachment.content_id}' is already used by Attachments[{seen[key]}]",
                    "ArgumentException",
                )
            )
        seen.setdefault(key, index)
    if message.body_format is BodyFormat.HTML:
        for cid in dict.fromkeys(_CID.findall(message.body)):
            if cid.casefold() not in seen:
                problems.append(
                    FieldProblem(
                        "Body",
                        "missing_inline_attachment",
                        f"shows cid:{cid} but no attachment has ContentId '{cid}'",
                        "ArgumentException",
                    )
                )
    if message.on_behalf_of is not None and fold_address(message.on_behalf_of.address) == fold_address(
        message.from_.address
    ):
        problems.append(
            FieldProblem(
                "OnBehalfOf",
                "argument",
                "is From itself; leave OnBehalfOf out to send as From",
                "ArgumentException",
            )
        )
    return problems


def _path(loc: tuple[int | str, ...]) -> str:
    """``('to', 0, 'address')`` → ``To[0].Address``: the seed's spelling whatever case was sent."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            name = part.rstrip("_")
            path += ("." if path else "") + name[:1].upper() + name[1:]
    return path or "EmailMessage"


def _problem(error: ErrorDetails, prefix: tuple[int | str, ...]) -> FieldProblem:
    loc = tuple(error["loc"])
    if loc[: len(prefix)] == prefix:
        loc = loc[len(prefix) :]
    exception, code, message = _EXCEPTION_BY_TYPE.get(
        error["type"], ("ArgumentException", "argument" if error["type"] == "argument" else "type", None)
    )
    return FieldProblem(field=_path(loc), code=code, message=message or error["msg"], exception=exception)


def problems_of(error: ValidationError, *, prefix: tuple[int | str, ...] = ()) -> list[FieldProblem]:
    """Turn a pydantic ``ValidationError`` into one ``FieldProblem`` per bad field."""
    return [_problem(detail, prefix) for detail in error.errors(include_url=False, include_input=False)]


def _not_json(reason: str) -> RequestInvalid:
    return RequestInvalid(
        [FieldProblem("EmailMessage", "invalid_json", f"the body is not valid JSON: {reason}", "ArgumentException")]
    )


def decode_json(raw: bytes | str) -> Any:
    """JSON → Python, refusing what ``json`` itself cannot safely take (``RequestInvalid``, never a crash)."""
    try:
        decoded = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _not_json(str(exc)) from None
    except RecursionError:
        raise _not_json(f"it is nested deeper than {MAX_DEPTH} levels") from None
    except ValueError:  # Python's limit on integer digits (4300)
        raise _not_json("a number has more digits than Python converts (4300)") from None
    return decoded


def _recipients_problem(message: Mapping[str, Any]) -> FieldProblem | None:
    # Counted before any address is validated: 60,000 recipients would otherwise cost seconds of CPU.
    lists = [message.get(k) for k in ("To", "to", "Cc", "cc", "Bcc", "bcc")]
    count = sum(len(v) for v in lists if isinstance(v, list))
    count += sum(v.count(";") + v.count(",") + 1 for v in lists if isinstance(v, str))
    if count <= MAX_RECIPIENTS:
        return None
    return FieldProblem(
        "To",
        "too_many",
        f"To, Cc and Bcc hold {count} recipients; Exchange Online accepts at most {MAX_RECIPIENTS} per message",
        "ArgumentException",
    )


def structure_problem(value: Any) -> FieldProblem | None:
    """Decoded JSON too deep, or a string that is not Unicode text (a lone surrogate): the first such place, named."""
    stack: list[tuple[Any, tuple[int | str, ...]]] = [(value, ())]
    while stack:
        item, loc = stack.pop()
        if len(loc) > MAX_DEPTH:
            return FieldProblem(
                _path(loc[:4]), "too_deep", f"is nested deeper than {MAX_DEPTH} levels", "ArgumentException"
            )
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return FieldProblem(
                    _path(loc),
                    "invalid_text",
                    "holds a lone surrogate (\\ud800-\\udfff): not Unicode text",
                    "ArgumentException",
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return FieldProblem(
                        _path(loc), "invalid_text", "has a key that is not Unicode text", "ArgumentException"
                    )
                stack.append((child, (*loc, key)))
        elif isinstance(item, list):
            stack.extend((child, (*loc, index)) for index, child in enumerate(item))
    return None


def parse_send_request(message: Any, *, sender: str | None = None, request_id: str | None = None) -> SendRequest:
    """Validate a decoded JSON message (and optional sender) into a ``SendRequest``.

    Raises ``RequestInvalid`` listing every problem; nothing is partially accepted.
    """
    if message is None:
        raise RequestInvalid([FieldProblem("EmailMessage", "null", "must not be null", "PropertyNullException")])
    if not isinstance(message, Mapping):
        raise RequestInvalid([FieldProblem("EmailMessage", "type", "must be a JSON object", "ArgumentException")])
    problem = structure_problem(message) or _recipients_problem(message)
    if problem:
        raise RequestInvalid([problem])
    fields: dict[str, Any] = {"message": message, "sender": sender}
    if request_id:
        fields["request_id"] = request_id
    try:
        request = SendRequest.model_validate(fields)
    except ValidationError as exc:
        raise RequestInvalid(problems_of(exc, prefix=("message",))) from None
    problems = _cross_field_problems(request.message)
    if problems:
        raise RequestInvalid(problems)
    return request


def parse_message_json(raw: bytes | str, *, sender: str | None = None, request_id: str | None = None) -> SendRequest:
    """Decode a JSON body and validate it as an email message; see ``parse_send_request``."""
    return parse_send_request(decode_json(raw), sender=sender, request_id=request_id)
