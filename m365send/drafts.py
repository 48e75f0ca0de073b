"""Sending through a draft: draft → attachments → send, optionally tagged for verified delivery.

A message too large for one ``sendMail`` request goes this way: small attachments (under 3 MB)
are POSTed to the draft whole; larger ones go through an upload session, streamed chunk by chunk.
In verified delivery mode every message goes this way, and its draft carries a send-once tag (a
single-value extended property) so that the mailbox itself can later say whether it went out.
A draft is tagged only once it is complete: a message with attachment uploads is created with a
``.partial`` tag and PATCHed to the real one after the last upload, so a found tagged draft is
always safe to send.

If anything fails before Graph has taken the send, the draft is deleted again, so a failed send
leaves nothing behind in the mailbox. After an ambiguous answer to the send it is left alone: it
may be on its way, and verified delivery looks it up.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from m365send.attachments import ResolvedAttachment
from m365send.errors import M365SendError, MailboxNotFound, OutcomeUnknown, UploadSessionLost
from m365send.graph_message import attachment_item, content_base64, encode_json, file_attachment, graph_message
from m365send.mailbox import DraftMail, GraphReceipt
from m365send.message import EmailMessage

__all__ = ["TAG_PROPERTY_ID", "SendTag", "send_through_draft"]

log = logging.getLogger(__name__)

# A named MAPI property in m365send's own property set: Graph filters messages on it (verified delivery).
TAG_PROPERTY_ID = "String {6d5e2b1c-3f0a-4c8e-9b7d-1a2c3e4f5a6b} Name m365send-idempotency"
_PARTIAL = ".partial"


@dataclass(frozen=True)
class SendTag:
    """The send-once tag of one idempotency key: a digest, so the key itself never reaches the mailbox."""

    value: str

    @classmethod
    def for_key(cls, scoped_key: str) -> SendTag:
        """The tag of ``scoped_key`` (scope and key, as the send record stores them)."""
        return cls(hashlib.sha256(scoped_key.encode()).hexdigest()[:40])

    def property(self, *, partial: bool = False) -> list[dict[str, str]]:
        """Graph's ``singleValueExtendedProperties`` value that carries the tag."""
        return [{"id": TAG_PROPERTY_ID, "value": self.value + (_PARTIAL if partial else "")}]


def send_through_draft(
    mail: DraftMail,
    *,
    mailbox: str,
    message: EmailMessage,
    attachments: Sequence[ResolvedAttachment],
    token: str,
    client_request_id: str,
    inline: bool = False,
    tag: SendTag | None = None,
    guard: Callable[[], None] | None = None,
) -> GraphReceipt:
    """Create a draft, attach every file, send it; delete the draft if the send certainly did not happen.

    ``inline``: every attachment fits the create request (verified delivery of a small message).
    ``guard`` runs before each step that follows the draft's creation and may stop the send.
    """
    ids = {"mailbox": mailbox, "token": token, "client_request_id": client_request_id}
    steps = not inline and bool(attachments)
    draft_json: dict[str, Any] = graph_message(message)
    if inline and attachments:
        draft_json["attachments"] = [file_attachment(a, content_base64(a)) for a in attachments]
    # Without a send-once tag the draft still carries one of its own, so that a draft whose creation
    # answer was lost can be found and deleted rather than left in the mailbox.
    marker = tag or SendTag(f"attempt-{uuid.uuid4().hex}")
    partial = steps or tag is None
    draft_json["singleValueExtendedProperties"] = marker.property(partial=partial)
    try:
        created = mail.create_draft(body=encode_json(draft_json), **ids)
    except Exception:
        if partial:  # a complete tagged draft is verified delivery's to find and send: never deleted here
            _discard_lost(mail, marker.value + _PARTIAL, ids)
        raise
    draft = created.id
    if created.attempts > 1:
        # A retried creation (after a 504, say) may have created a draft on an earlier try as well.
        _discard_lost(mail, marker.value + (_PARTIAL if partial else ""), ids, keep=draft)
    try:
        if steps:
            for attachment in attachments:
                if guard is not None:
                    guard()
                if attachment.needs_upload_session:
                    _upload(mail, draft, attachment, ids, guard)
                else:
                    body = encode_json(file_attachment(attachment, content_base64(attachment)))
                    mail.add_attachment(message_id=draft, body=body, **ids)
            if tag is not None:
                mail.update_draft(
                    message_id=draft, body=encode_json({"singleValueExtendedProperties": tag.property()}), **ids
                )
        if guard is not None:
            guard()
        receipt = _send_draft(mail, draft, ids, tagged=tag is not None)
    except OutcomeUnknown:
        raise  # the draft may already be on its way: leave it be
    except Exception:
        _discard(mail, draft, ids)
        raise
    log.info(
        "email sent through a draft",
        extra={
            "attachments": len(attachments),
            "upload_sessions": sum(a.needs_upload_session for a in attachments) if steps else 0,
            "attachment_bytes": sum(a.size for a in attachments),
        },
    )
    return replace(receipt, internet_message_id=created.internet_message_id)


def _upload(
    mail: DraftMail,
    draft: str,
    attachment: ResolvedAttachment,
    ids: dict[str, str],
    guard: Callable[[], None] | None,
) -> None:
    """One attachment through an upload session; a session that is lost is cancelled and one fresh session tried."""
    body = encode_json(attachment_item(attachment))
    session = mail.create_upload_session(message_id=draft, body=body, **ids)
    try:
        mail.upload(session, attachment.content, guard=guard)
    except UploadSessionLost as error:
        log.warning("an attachment upload session was lost (%s); starting a new one", error.detail)
        mail.cancel_upload(session)
        fresh = mail.create_upload_session(message_id=draft, body=body, **ids)
        mail.upload(fresh, attachment.content, guard=guard)


def _send_draft(mail: DraftMail, draft: str, ids: dict[str, str], *, tagged: bool) -> GraphReceipt:
    try:
        return mail.send_draft(message_id=draft, **ids)
    except MailboxNotFound as error:
        if not tagged or error.graph_status != 404:
            raise
        # The draft existed a moment ago. A tagged draft is one another attempt can find and send (it
        # took the key over while this one paused): gone may well mean sent, so verified delivery looks.
        raise OutcomeUnknown("the draft was gone when it was to be sent; another attempt may have sent it") from None


def _discard_lost(mail: DraftMail, value: str, ids: dict[str, str], *, keep: str | None = None) -> None:
    """Delete the drafts a failed (or retried) creation may have left, found by their tag; not ``keep``."""
    try:
        for found in mail.find_tagged(property_id=TAG_PROPERTY_ID, value=value, **ids):
            if found.is_draft and found.id != keep:
                mail.delete_draft(message_id=found.id, **ids)
                log.warning("deleted a draft whose creation's answer was lost")
    except M365SendError as error:
        log.warning("could not look for a draft whose creation failed: %s", error.detail)


def _discard(mail: DraftMail, draft: str, ids: dict[str, str]) -> None:
    try:
        mail.delete_draft(message_id=draft, **ids)
    except M365SendError as error:
        # The original failure is what the caller needs; an orphaned draft is only untidy.
        log.warning("could not delete the unsent draft: %s", error.detail)
