"""Attachments as the send path sees them: limits, blob references, byte sources and upload chunks. Pure.

An attachment's bytes come from a ``Content``: inline base64 from the request (``InlineContent``)
or a blob read range by range (``m365send.blobs``). Either is read in pieces, so a large file
flows to Graph's upload session one chunk at a time and is never held whole.
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from m365send.errors import AttachmentNotAllowed, PayloadTooLarge

__all__ = [
    "MAX_ATTACHMENTS",
    "MAX_ATTACHMENT_BYTES",
    "UPLOAD_CHUNK",
    "UPLOAD_SESSION_MIN",
    "BlobContent",
    "BlobOpener",
    "Content",
    "InlineContent",
    "RequestedAttachment",
    "ResolvedAttachment",
    "blob_reference_problem",
    "check_limits",
    "chunk_ranges",
    "decoded_size",
    "guess_content_type",
    "is_container_name",
    "resolve_attachments",
    "split_blob_reference",
]

MB = 1024 * 1024
# Graph attaches files of up to 150 MB to a message (through an upload session).
MAX_ATTACHMENT_BYTES = 150 * MB
# Exchange Online's limit on attachments per message.
MAX_ATTACHMENTS = 250
# Graph refuses upload sessions for files under 3 MB (ErrorAttachmentSizeShouldNotBeLessThanMinimumSize):
# those are POSTed to the draft's attachments whole.
UPLOAD_SESSION_MIN = 3 * MB
# Each PUT of an upload session carries at most 4 MB, in multiples of 320 KiB but for the last.
# 9 x 320 KiB (2.8 MiB) is also a multiple of 3, so an inline attachment's base64 splits into whole chunks.
UPLOAD_CHUNK = 9 * 320 * 1024

_CONTAINER = re.compile(r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_MAX_BLOB_NAME = 1024


class Content(Protocol):
    """The bytes of one attachment, readable by range."""

    @property
    def size(self) -> int:
        """Length in bytes."""
        ...

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes from ``offset`` (fewer only at the end)."""
        ...


def decoded_size(encoded: str) -> int:
    """Bytes that valid, unwrapped base64 ``encoded`` decodes to."""
    # Not rstrip("="): that copies the whole string (100 MB for a large attachment) on every call.
    padding = 2 if encoded.endswith("==") else 1 if encoded.endswith("=") else 0
    return len(encoded) * 3 // 4 - padding


@dataclass(frozen=True)
class InlineContent:
    """Base64 from the request, decoded a slice at a time rather than whole."""

    encoded: str

    @property
    def size(self) -> int:
        """Decoded length in bytes."""
        return decoded_size(self.encoded)

    def read(self, offset: int, length: int) -> bytes:
        """Decode only the base64 quanta that cover ``offset`` to ``offset + length``."""
        first = offset // 3
        last = -(-min(offset + length, self.size) // 3)
        decoded = base64.b64decode(self.encoded[first * 4 : last * 4])
        start = offset - first * 3
        return decoded[start : start + length]


@dataclass(frozen=True)
class ResolvedAttachment:
    """An attachment ready to send: what Graph needs to know, and where its bytes come from."""

    field: str  # "Attachments[2]", for errors
    name: str
    content_type: str
    is_inline: bool
    content_id: str | None
    content: Content

    @property
    def size(self) -> int:
        """Length in bytes."""
        return self.content.size

    @property
    def needs_upload_session(self) -> bool:
        """Whether Graph takes this file only through an upload session."""
        return self.size >= UPLOAD_SESSION_MIN


def is_container_name(name: str) -> bool:
    """Whether ``name`` is a valid storage container name."""
    return bool(_CONTAINER.match(name))


def split_blob_reference(reference: str) -> tuple[str, str]:
    """``"container/path/file.pdf"`` → ``("container", "path/file.pdf")`` (the reference must be valid)."""
    container, _, name = reference.partition("/")
    return container, name


def blob_reference_problem(reference: str) -> str | None:
    """Why ``reference`` is not a ``container/path`` of a blob, or None. URLs are refused: no arbitrary fetches."""
    if "://" in reference or reference.startswith("/"):
        return "must be container/path/to/file of a blob in an allowed container, not a URL or an absolute path"
    container, slash, name = reference.partition("/")
    if not slash or not name:
        return "must be container/path/to/file: a container name, a slash, then the blob's name"
    if not is_container_name(container):
        return f"'{container}' is not a storage container name (3-63 lowercase letters, digits and single hyphens)"
    if len(name) > _MAX_BLOB_NAME:
        return f"the blob name is longer than {_MAX_BLOB_NAME} characters"
    if _CONTROL.search(name) or "\\" in name:
        return "the blob name must not contain control characters or backslashes"
    if any(part in ("", ".", "..") for part in name.split("/")):
        return "the blob name must not contain empty, '.' or '..' path segments"
    return None


def guess_content_type(name: str) -> str:
    """The MIME type a file name suggests, else ``application/octet-stream``."""
    return mimetypes.guess_type(name, strict=False)[0] or "application/octet-stream"


def check_limits(attachments: Sequence[ResolvedAttachment], *, max_total: int) -> None:
    """``PayloadTooLarge`` when one attachment exceeds 150 MB or all of them exceed ``max_total`` bytes."""
    for attachment in attachments:
        if attachment.size > MAX_ATTACHMENT_BYTES:
            raise PayloadTooLarge(
                f"{attachment.field} ('{attachment.name}') is {attachment.size:,} bytes; "
                f"Graph attaches at most {MAX_ATTACHMENT_BYTES:,} bytes (150 MB) per file",
                exception="ArgumentException",
            )
    total = sum(a.size for a in attachments)
    if total > max_total:
        raise PayloadTooLarge(
            f"the attachments add up to {total:,} bytes; this service sends at most {max_total:,} bytes per "
            "message (M365_MESSAGE_MAX_MB; Exchange Online's own limit for the mailbox may be lower)",
            exception="ArgumentException",
        )


def chunk_ranges(size: int, *, start: int = 0, chunk: int = UPLOAD_CHUNK) -> Iterator[tuple[int, int]]:
    """``(offset, length)`` of each upload chunk from ``start`` to the end of a ``size``-byte file."""
    offset = start
    while offset < size:
        length = min(chunk, size - offset)
        yield offset, length
        offset += length


class BlobContent(Content, Protocol):
    """A blob's bytes, and the content type stored with it."""

    @property
    def content_type(self) -> str | None:
        """The blob's ``Content-Type``, if it has one."""
        ...


class RequestedAttachment(Protocol):
    """An attachment as the request gives it (``attachment_model.Attachment``): its source and names."""

    @property
    def blob(self) -> str | None: ...
    @property
    def content_bytes(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def is_inline(self) -> bool: ...
    @property
    def content_id(self) -> str | None: ...
    @property
    def display_name(self) -> str: ...


class BlobOpener(Protocol):
    """Looks up referenced blobs (their size and type; the bytes are read later, by range)."""

    def open(self, container: str, name: str, *, field: str) -> BlobContent:
        """The blob, or ``AttachmentNotFound`` / ``AttachmentAccessDenied`` / ``DependencyUnavailable``."""
        ...


_GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})


def resolve_attachments(
    attachments: Sequence[RequestedAttachment], *, containers: frozenset[str], blobs: BlobOpener | None
) -> list[ResolvedAttachment]:
    """Each attachment with its source, name and type. Every blob reference is checked against the
    allowed ``containers`` before any blob is read, and every blob is looked up before anything is sent.
    """
    for index, attachment in enumerate(attachments):
        if attachment.blob is not None:
            container, _ = split_blob_reference(attachment.blob)
            if container not in containers or blobs is None:
                allowed = ", ".join(sorted(containers)) or "none: blob attachments are off"
                raise AttachmentNotAllowed(
                    f"Attachments[{index}].Blob",
                    f"container '{container}' is not one this service reads attachments from "
                    f"(M365_ATTACHMENT_CONTAINERS: {allowed})",
                )
    resolved: list[ResolvedAttachment] = []
    for index, attachment in enumerate(attachments):
        name = attachment.display_name
        content: Content
        if attachment.blob is not None:
            assert blobs is not None  # checked above
            blob = blobs.open(*split_blob_reference(attachment.blob), field=f"Attachments[{index}].Blob")
            stored = blob.content_type if blob.content_type not in _GENERIC_TYPES else None
            content_type = attachment.content_type or stored or guess_content_type(name)
            content = blob
        else:
            assert attachment.content_bytes is not None  # the model guarantees one source
            content_type = attachment.content_type or guess_content_type(name)
            content = InlineContent(attachment.content_bytes)
        resolved.append(
            ResolvedAttachment(
                field=f"Attachments[{index}]",
                name=name,
                content_type=content_type,
                is_inline=attachment.is_inline,
                content_id=attachment.content_id,
                content=content,
            )
        )
    return resolved
