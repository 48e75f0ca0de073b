"""The Attachment model: a file inline as base64 or a blob reference, never both. Pure."""

from __future__ import annotations

import json
from typing import Any

from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from m365send.attachments import MAX_ATTACHMENT_BYTES, blob_reference_problem, decoded_size
from m365send.fields import (
    BASE64,
    BLOB_PATTERN,
    CONTROL,
    DROP_WHITESPACE,
    MIME_PATTERN,
    MIME_TYPE,
    TEXT_PATTERN,
    WHITESPACE,
    Model,
    alias,
    empty_error,
    no_control_characters,
)

__all__ = ["Attachment"]


class Attachment(Model):
    """A file: inline as base64 (``ContentBytes``) or a reference to a blob (``Blob``), never both.

    Blob references are read with the Function App's identity from the containers allowed by
    ``M365_ATTACHMENT_CONTAINERS``; ``Name`` and ``ContentType`` then default to the blob's own.
    """

    name: str | None = Field(
        default=None,
        validation_alias=alias("Name"),
        title="File name",
        description="Name shown to recipients; for a blob, defaults to the blob's file name.",
        json_schema_extra={"pattern": TEXT_PATTERN, "minLength": 1},
    )
    content_bytes: str | None = Field(
        default=None,
        validation_alias=alias("ContentBytes"),
        title="Content",
        description="The file's content, base64-encoded. Give this or Blob.",
        json_schema_extra={"format": "byte"},
    )
    blob: str | None = Field(
        default=None,
        validation_alias=alias("Blob"),
        title="Blob",
        description="container/path/to/file.pdf of a blob in an allowed container. Give this or ContentBytes.",
        json_schema_extra={"pattern": BLOB_PATTERN, "maxLength": 1088},
    )
    content_type: str | None = Field(
        default=None,
        validation_alias=alias("ContentType"),
        title="Content type",
        description="MIME type, e.g. application/pdf; by default the blob's, or guessed from the name.",
        json_schema_extra={"pattern": MIME_PATTERN},
    )
    is_inline: bool = Field(
        default=False,
        validation_alias=alias("IsInline"),
        title="Inline",
        description="Show inside an HTML body (refer to it as cid:ContentId).",
    )
    content_id: str | None = Field(
        default=None,
        validation_alias=alias("ContentId"),
        title="Content id",
        description='Id an HTML body uses to show an inline image: <img src="cid:logo">.',
        json_schema_extra={"pattern": "^[^\\s<>\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"},
    )

    @field_validator("name", mode="before")
    @classmethod
    def _name(cls, value: Any) -> Any:
        if value == "":
            raise empty_error("Name")
        return no_control_characters(value) if isinstance(value, str) else value

    @field_validator("content_bytes", mode="before")
    @classmethod
    def _content(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        # Checked without decoding or splitting: a 100 MB attachment must not cost another 100 MB
        # (decoded bytes) or 160 MB (one small string per 76-column line) just to be validated.
        # Base64 wrapped at 76 columns: one translate (re.sub would build a string per line, 3x the size).
        compact = value.translate(DROP_WHITESPACE) if WHITESPACE.search(value) else value
        if len(compact) % 4 or not BASE64.fullmatch(compact):
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
            raise empty_error("Blob")
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
        if isinstance(value, str) and not MIME_TYPE.fullmatch(value):
            raise PydanticCustomError(
                "argument", "{value} is not a MIME type such as application/pdf", {"value": json.dumps(value)}
            )
        return value

    @field_validator("content_id", mode="before")
    @classmethod
    def _content_id(cls, value: Any) -> Any:
        if value == "":
            return None
        if isinstance(value, str) and (CONTROL.search(value) or any(c in value for c in " <>")):
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
