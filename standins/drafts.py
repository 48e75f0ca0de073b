"""Drafts, their attachments and attachment upload sessions, for the Graph stand-in.

Checked the way Graph and Outlook check them: ``createUploadSession`` only for files of 3 to 150 MB
(``ErrorAttachmentSizeShouldNotBeLessThanMinimumSize`` below), PUTs to the pre-authenticated upload
URL without an ``Authorization`` header, ``Content-Range: bytes start-end/total`` starting exactly
where the session stands, at most 4 MB a chunk and every chunk but the last a multiple of 320 KiB,
``200`` with ``nextExpectedRanges`` until the final chunk's ``201`` with a ``Location``. Received
bytes are written to files, so a large attachment does not sit in the stand-in's memory and tests
can compare them byte for byte.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from standins.https import Reply, Request, graph_error, json_reply

__all__ = ["CHUNK_MULTIPLE", "Draft", "DraftStore", "ReceivedAttachment", "UploadFault"]

MB = 1024 * 1024
UPLOAD_SESSION_MIN = 3 * MB
ATTACHMENT_MAX = 150 * MB
CHUNK_MAX = 4 * MB
CHUNK_MULTIPLE = 320 * 1024
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


@dataclass(frozen=True)
class ReceivedAttachment:
    """An attachment as the stand-in stored it; its bytes are in ``path``."""

    name: str
    content_type: str
    is_inline: bool
    content_id: str | None
    size: int
    path: Path
    uploaded: bool = False  # came through an upload session (files of 3 MB and more)

    def data(self) -> bytes:
        """The attachment's bytes."""
        return self.path.read_bytes()

    def sha256(self) -> str:
        """Hex SHA-256 of the bytes, read a MiB at a time."""
        digest = hashlib.sha256()
        with self.path.open("rb") as handle:
            while block := handle.read(MB):
                digest.update(block)
        return digest.hexdigest()


@dataclass
class Draft:
    """A draft in a mailbox."""

    id: str
    mailbox_upn: str
    app_id: str
    message: dict[str, Any]
    attachments: list[ReceivedAttachment] = field(default_factory=list)
    # Sent, but Exchange has not moved it to Sent Items yet (monotonic time it leaves Drafts).
    submitted_until: float | None = None

    @property
    def internet_message_id(self) -> str:
        """The Message-ID Exchange gives a draft when it is created (kept when it is sent)."""
        return f"<{self.id}@{self.mailbox_upn.split('@')[-1]}>"

    @property
    def attachment_bytes(self) -> int:
        """Total size of the attachments."""
        return sum(a.size for a in self.attachments)


@dataclass(frozen=True)
class UploadFault:
    """Answer the ``put``-th upload PUT with ``status``; ``commit`` keeps its bytes (a lost answer)."""

    put: int
    status: int = 503
    commit: bool = False


@dataclass
class _Session:
    id: str
    token: str
    draft: Draft
    item: dict[str, Any]
    path: Path
    expires: datetime
    received: int = 0

    @property
    def size(self) -> int:
        return int(self.item["size"])

    def status(self) -> dict[str, Any]:
        return {
            "expirationDateTime": self.expires.isoformat().replace("+00:00", "Z"),
            "nextExpectedRanges": [f"{self.received}-"],
        }


class DraftStore:
    """Drafts and upload sessions; ``base_url`` is where upload URLs point (the stand-in's own origin)."""

    def __init__(self, *, workdir: Path) -> None:
        self.base_url = ""
        self._workdir = workdir
        self.drafts: dict[str, Draft] = {}
        self.deleted: list[str] = []
        self.chunks: list[int] = []  # sizes of accepted chunks, in order
        self.puts = 0
        self.faults: list[UploadFault] = []
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()

    def _file(self, kind: str) -> Path:
        self._workdir.mkdir(parents=True, exist_ok=True)
        return self._workdir / f"{kind}-{secrets.token_hex(8)}.bin"

    # --- Graph: /users/{id}/messages... (token, roles and mailbox already checked) ----------------
    def create(self, *, mailbox_upn: str, app_id: str, message: dict[str, Any]) -> Reply:
        """``POST /users/{id}/messages``: 201 with the draft; attachments in the body are stored like POSTed ones."""
        inline = message.pop("attachments", [])
        draft = Draft("AAMkAD" + secrets.token_urlsafe(24) + "=", mailbox_upn, app_id, message)
        for attachment in inline:
            self._store(draft, attachment)
        with self._lock:
            self.drafts[draft.id] = draft
        return json_reply(
            201, {**message, "id": draft.id, "isDraft": True, "internetMessageId": draft.internet_message_id}
        )

    def update(self, draft: Draft, changes: dict[str, Any]) -> Reply:
        """``PATCH /users/{id}/messages/{id}``: 200 with the draft; extended properties merge by id."""
        with self._lock:
            for name, value in changes.items():
                if name == "singleValueExtendedProperties":
                    kept = [
                        p
                        for p in draft.message.get(name, [])
                        if p["id"].casefold() not in {v["id"].casefold() for v in value}
                    ]
                    draft.message[name] = kept + list(value)
                else:
                    draft.message[name] = value
        return json_reply(200, {**draft.message, "id": draft.id, "isDraft": True})

    def find(self, draft_id: str, mailbox_upn: str) -> Draft | None:
        """The mailbox's draft with that id."""
        self.settle()
        draft = self.drafts.get(draft_id)
        return draft if draft and draft.mailbox_upn == mailbox_upn else None

    def settle(self) -> None:
        """Drafts whose asynchronous send has finished leave Drafts (they are in Sent Items by now)."""
        now = time.monotonic()
        with self._lock:
            for gone in [d for d in self.drafts.values() if d.submitted_until is not None and d.submitted_until <= now]:
                self.drafts.pop(gone.id, None)

    def attach(self, draft: Draft, attachment: dict[str, Any]) -> Reply:
        """``POST .../attachments`` with a checked ``fileAttachment``: 201."""
        if len(base64.b64decode(attachment.get("contentBytes", ""))) >= UPLOAD_SESSION_MIN:
            return graph_error(413, "RequestEntityTooLarge", "Attach a file of 3 MB or more through an upload session.")
        received = self._store(draft, attachment)
        return json_reply(201, {"id": secrets.token_urlsafe(16), "name": received.name, "size": received.size})

    def _store(self, draft: Draft, attachment: dict[str, Any]) -> ReceivedAttachment:
        data = base64.b64decode(attachment.get("contentBytes", ""))
        path = self._file("attachment")
        path.write_bytes(data)
        received = ReceivedAttachment(
            name=str(attachment["name"]),
            content_type=str(attachment.get("contentType") or "application/octet-stream"),
            is_inline=bool(attachment.get("isInline", False)),
            content_id=attachment.get("contentId"),
            size=len(data),
            path=path,
        )
        with self._lock:
            draft.attachments.append(received)
        return received

    def create_session(self, draft: Draft, body: Any) -> Reply:
        """``POST .../attachments/createUploadSession``: 201 with the upload URL."""
        item = None
        if isinstance(body, dict):
            item = next((v for k, v in body.items() if k.lower() == "attachmentitem"), None)
        if not isinstance(item, dict):
            return graph_error(400, "ErrorInvalidParameter", "The value of the parameter 'AttachmentItem' is empty.")
        if item.get("attachmentType") != "file" or not item.get("name"):
            return graph_error(400, "ErrorInvalidParameter", "AttachmentItem needs attachmentType 'file' and a name.")
        size = item.get("size")
        if not isinstance(size, int) or size < 0:
            return graph_error(400, "ErrorInvalidParameter", "AttachmentItem.size must be a non-negative integer.")
        if size < UPLOAD_SESSION_MIN:
            return graph_error(
                400,
                "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
                "Attachment size should not be less than minimum size: 3 MB.",
            )
        if size > ATTACHMENT_MAX:
            return graph_error(400, "ErrorAttachmentSizeExceeded", "Attachment size exceeds the maximum of 150 MB.")
        session = _Session(
            id=secrets.token_urlsafe(16),
            token=secrets.token_urlsafe(32),
            draft=draft,
            item=item,
            path=self._file("upload"),
            expires=datetime.now(UTC) + timedelta(hours=2),
        )
        session.path.touch()
        with self._lock:
            self._sessions[session.id] = session
        return json_reply(
            201,
            {
                "@odata.context": f"{self.base_url}/v1.0/$metadata#microsoft.graph.uploadSession",
                "uploadUrl": f"{self.base_url}/upload/AttachmentSessions/{session.id}?authtoken={session.token}",
                **session.status(),
            },
        )

    def delete(self, draft: Draft) -> Reply:
        """``DELETE /users/{id}/messages/{id}``: 204; the draft's files go too."""
        with self._lock:
            self.drafts.pop(draft.id, None)
            self.deleted.append(draft.id)
            for session in [s for s in self._sessions.values() if s.draft is draft]:
                del self._sessions[session.id]
                session.path.unlink(missing_ok=True)
        for attachment in draft.attachments:
            attachment.path.unlink(missing_ok=True)
        return Reply(204)

    def take(self, draft: Draft, *, after: float = 0.0) -> None:
        """The draft was sent: it leaves the drafts ``after`` seconds on (its attachments stay for the tests)."""
        with self._lock:
            if after <= 0:
                self.drafts.pop(draft.id, None)
            else:
                draft.submitted_until = time.monotonic() + after

    # --- Outlook: the pre-authenticated upload URL ---------------------------------------------
    def handle_upload(self, request: Request, session_id: str) -> Reply:
        """PUT a chunk, or DELETE (cancel) the session."""
        if request.header("authorization"):
            return graph_error(
                401, "InvalidAuthenticationToken", "The upload URL is pre-authenticated: send no Authorization."
            )
        session = self._sessions.get(session_id)
        if session is None or datetime.now(UTC) > session.expires:
            return graph_error(404, "ErrorItemNotFound", "The upload session was not found or has expired.")
        if request.query.get("authtoken") != [session.token]:
            return graph_error(401, "InvalidAuthenticationToken", "The upload URL's token is not valid.")
        if request.method == "DELETE":
            with self._lock:
                self._sessions.pop(session.id, None)
            session.path.unlink(missing_ok=True)
            return Reply(204)
        if request.method != "PUT":
            # Outlook documents PUT (with nextExpectedRanges in its answers) and DELETE on an upload URL;
            # a GET of the session's state is documented for OneDrive only, so this stand-in has none.
            return graph_error(405, "ErrorInvalidRequest", "Use PUT or DELETE on an upload URL.")
        return self._put(request, session)

    def _put(self, request: Request, session: _Session) -> Reply:
        with self._lock:
            self.puts += 1
            fault = next((f for f in self.faults if f.put == self.puts), None)
        if fault and not fault.commit:
            return graph_error(fault.status, "ServiceUnavailable", "Injected upload fault.")
        if (request.header("content-type") or "").split(";")[0].strip() != "application/octet-stream":
            return graph_error(415, "ErrorInvalidContentType", "Specify Content-Type: application/octet-stream.")
        match = _RANGE.match(request.header("content-range") or "")
        if not match:
            return graph_error(400, "ErrorInvalidContentRange", "Content-Range must be 'bytes {start}-{end}/{total}'.")
        start, end, total = (int(g) for g in match.groups())
        if total != session.size:
            return graph_error(400, "ErrorInvalidContentRange", f"The total size must be {session.size}.")
        if start != session.received:
            return json_reply(
                416,
                {"error": {"code": "InvalidRange", "message": "The range does not start where the session stands."}}
                | session.status(),
            )
        length = end - start + 1
        if length <= 0 or length != len(request.body):
            return graph_error(400, "ErrorInvalidContentRange", "Content-Range does not match the bytes sent.")
        if length > CHUNK_MAX:
            return graph_error(413, "RequestEntityTooLarge", "Upload at most 4 MB per request.")
        final = end + 1 == total
        if not final and length % CHUNK_MULTIPLE:
            return graph_error(
                400,
                "ErrorInvalidChunkSize",
                f"Every chunk but the last must be a multiple of 320 KiB ({CHUNK_MULTIPLE} bytes); got {length}.",
            )
        with session.path.open("ab") as handle:
            handle.write(request.body)
        with self._lock:
            session.received = end + 1
            self.chunks.append(length)
        if fault:  # committed, then the answer was lost
            return graph_error(fault.status, "ServiceUnavailable", "Injected upload fault after the bytes were stored.")
        if not final:
            return json_reply(200, session.status())
        item = session.item
        attachment = ReceivedAttachment(
            name=str(item["name"]),
            content_type=str(item.get("contentType") or "application/octet-stream"),
            is_inline=bool(item.get("isInline", False)),
            content_id=item.get("contentId"),
            size=total,
            path=session.path,
            uploaded=True,
        )
        with self._lock:
            session.draft.attachments.append(attachment)
            self._sessions.pop(session.id, None)
        attachment_id = secrets.token_urlsafe(16)
        draft = session.draft
        location = f"{self.base_url}/v1.0/users/{draft.mailbox_upn}/messages/{draft.id}/attachments/{attachment_id}"
        return Reply(201, b"", {"Location": location})
