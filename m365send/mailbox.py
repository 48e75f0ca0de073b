"""What the core asks of a mailbox, as Protocols and value types; ``m365send.graph`` implements them over httpx.

The use cases (``service``, ``drafts``, ``sendonce``) import these, never the HTTP client, so the
core stays free of SDK imports and its unit tests use small fakes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from m365send.attachments import Content

__all__ = [
    "CreatedDraft",
    "DraftMail",
    "GraphReceipt",
    "MailSender",
    "MailboxSearch",
    "TaggedMessage",
    "UploadSession",
]


@dataclass(frozen=True)
class GraphReceipt:
    """Graph's identifiers for an accepted send, for correlation with Graph's own logs."""

    request_id: str | None
    client_request_id: str
    attempts: int
    internet_message_id: str | None = None  # known for a message sent through a draft


@dataclass(frozen=True)
class CreatedDraft:
    """A draft Graph created: its id, and the Message-ID header Exchange gave it."""

    id: str
    internet_message_id: str | None = None
    attempts: int = 1  # more than one: an earlier try may have created a draft of its own


@dataclass(frozen=True)
class UploadSession:
    """An attachment upload session: its pre-authenticated URL and the first byte it expects."""

    url: str
    next_offset: int


@dataclass(frozen=True)
class TaggedMessage:
    """A message found by its send-once tag: a draft not yet sent, or the sent item."""

    id: str
    is_draft: bool
    internet_message_id: str | None = None


class MailSender(Protocol):
    """Posts a prepared ``sendMail`` body to Graph as ``mailbox``."""

    def send_mail(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> GraphReceipt:
        """Send, or raise an ``M365SendError``."""
        ...


class MailboxSearch(Protocol):
    """Finds a mailbox's messages by a single-value extended property (verified delivery, draft clean-up)."""

    def find_tagged(
        self, *, mailbox: str, property_id: str, value: str, token: str, client_request_id: str
    ) -> list[TaggedMessage]:
        """Every message (draft or sent) whose property ``property_id`` equals ``value``."""
        ...


class DraftMail(MailboxSearch, Protocol):
    """Graph's draft operations."""

    def create_draft(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> CreatedDraft:
        """Create the draft; its id and internetMessageId."""
        ...

    def update_draft(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        """PATCH the draft (its send-once tag, once every attachment is on it)."""
        ...

    def add_attachment(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        """Attach a small file whole."""
        ...

    def create_upload_session(
        self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str
    ) -> UploadSession:
        """Open an upload session for a large file."""
        ...

    def upload(self, session: UploadSession, content: Content, *, guard: Callable[[], None] | None = None) -> None:
        """Stream the file into the session; ``guard`` runs before each chunk and may stop the upload.

        ``UploadSessionLost`` when the session cannot go on (the caller starts a new one).
        """
        ...

    def cancel_upload(self, session: UploadSession) -> None:
        """Cancel an upload session that will not be finished."""
        ...

    def send_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> GraphReceipt:
        """Send the draft."""
        ...

    def delete_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> None:
        """Delete the draft."""
        ...
