"""Sending a message too large for one ``sendMail`` request: draft → attachments → send.

Small attachments (under 3 MB) are POSTed to the draft whole; larger ones go through an upload
session, streamed chunk by chunk from their source. If anything fails before Graph has taken the
send, the draft is deleted again, so a failed send leaves nothing behind in the mailbox; a retry
starts afresh with a new draft.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Protocol

from m365send.attachments import Content, ResolvedAttachment
from m365send.errors import DependencyUnavailable, M365SendError
from m365send.graph import GraphReceipt, UploadSession
from m365send.graph_message import attachment_item, content_base64, encode_json, file_attachment, graph_message
from m365send.models import EmailMessage

__all__ = ["DraftMail", "send_through_draft"]

log = logging.getLogger(__name__)


class DraftMail(Protocol):
    """Graph's draft operations (``m365send.graph.GraphMailClient`` implements them)."""

    def create_draft(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> str:
        """Create the draft; its id."""
        ...

    def add_attachment(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        """Attach a small file whole."""
        ...

    def create_upload_session(
        self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str
    ) -> UploadSession:
        """Open an upload session for a large file."""
        ...

    def upload(self, session: UploadSession, content: Content) -> None:
        """Stream the file into the session."""
        ...

    def send_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> GraphReceipt:
        """Send the draft."""
        ...

    def delete_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> None:
        """Delete the draft."""
        ...


def send_through_draft(
    mail: DraftMail,
    *,
    mailbox: str,
    message: EmailMessage,
    attachments: Sequence[ResolvedAttachment],
    token: str,
    client_request_id: str,
) -> GraphReceipt:
    """Create a draft, attach every file, send it; delete the draft if the send does not happen."""
    ids = {"mailbox": mailbox, "token": token, "client_request_id": client_request_id}
    draft = mail.create_draft(body=encode_json(graph_message(message)), **ids)
    try:
        for attachment in attachments:
            if attachment.needs_upload_session:
                session = mail.create_upload_session(
                    message_id=draft, body=encode_json(attachment_item(attachment)), **ids
                )
                mail.upload(session, attachment.content)
            else:
                body = encode_json(file_attachment(attachment, content_base64(attachment)))
                mail.add_attachment(message_id=draft, body=body, **ids)
        receipt = mail.send_draft(message_id=draft, **ids)
    except M365SendError as error:
        # After an ambiguous send the draft may already be on its way: leave it be.
        if not (isinstance(error, DependencyUnavailable) and error.outcome_unknown):
            _discard(mail, draft, ids)
        raise
    log.info(
        "email sent through a draft",
        extra={
            "attachments": len(attachments),
            "upload_sessions": sum(a.needs_upload_session for a in attachments),
            "attachment_bytes": sum(a.size for a in attachments),
        },
    )
    return receipt


def _discard(mail: DraftMail, draft: str, ids: dict[str, str]) -> None:
    try:
        mail.delete_draft(message_id=draft, **ids)
    except M365SendError as error:
        # The original failure is what the caller needs; an orphaned draft is only untidy.
        log.warning("could not delete the unsent draft: %s", error.detail)
