"""What every field of a message shares: text rules, limits, the two enums and the base model. Pure."""

from __future__ import annotations

import json
import re
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict
from pydantic_core import PydanticCustomError

__all__ = [
    "BASE64",
    "BLOB_PATTERN",
    "CONTROL",
    "CONTROL_CLASS",
    "DROP_WHITESPACE",
    "HEADER_NAME",
    "ISO_TIME",
    "MAX_CATEGORIES",
    "MAX_DEPTH",
    "MAX_HEADERS",
    "MAX_HEADER_VALUE",
    "MAX_RECIPIENTS",
    "MIME_PATTERN",
    "MIME_TYPE",
    "SURROGATE",
    "TEXT_PATTERN",
    "WHITESPACE",
    "BodyFormat",
    "Model",
    "Priority",
    "alias",
    "empty_error",
    "no_control_characters",
    "null_error",
    "parse_enum",
]

# C0 controls but TAB, DEL, C1 controls (U+0085 among them) and the Unicode line and paragraph
# separators: each can break a header line somewhere between Graph and the recipient's client.
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
MIME_TYPE = re.compile(r"[A-Za-z0-9][\w!#$&^.+-]*/[\w!#$&^.+-]+")
SURROGATE = re.compile("[\ud800-\udfff]")
WHITESPACE = re.compile("[\t\n\x0b\x0c\r ]")
DROP_WHITESPACE = dict.fromkeys(map(ord, "\t\n\x0b\x0c\r "))
BASE64 = re.compile(r"[A-Za-z0-9+/]*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
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
HEADER_NAME = re.compile(r"[xX]-[A-Za-z0-9-]{1,70}")
# JSON nested deeper than this is refused; an email message is four levels deep.
MAX_DEPTH = 64


ISO_TIME = "must be an ISO 8601 time with its zone, e.g. 2026-12-01T08:00:00Z"


def alias(pascal: str) -> AliasChoices:
    """Accept the seed's PascalCase key and its camelCase twin."""
    return AliasChoices(pascal, pascal[0].lower() + pascal[1:])


def null_error(what: str = "value") -> PydanticCustomError:
    return PydanticCustomError("property_null", "{what} must not be null", {"what": what})


def empty_error(what: str = "value") -> PydanticCustomError:
    return PydanticCustomError("property_empty", "{what} must not be empty", {"what": what})


def no_control_characters(value: str) -> str:
    # CR/LF would let a caller smuggle extra headers into the message; NUL truncates them.
    if CONTROL.search(value):
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


def parse_enum(enum: type[Priority] | type[BodyFormat], seed_name: str, value: Any) -> Any:
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


class Model(BaseModel):
    # Each model's validator is built on its first use, not at import: a send validates the request
    # model alone (which holds the others), so their own validators are never built at all.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, defer_build=True)
