"""The local mailbox: every message the Graph stand-in received, in the browser, as a recipient sees it.

Served by the local run at ``/_mailbox`` (a WSGI app beside the Functions stand-in host). The page
(``mailbox.html``, no dependencies) polls a small JSON API and renders:

- the messages, newest first, with their headers, the way they went (one ``sendMail``, or a draft
  with its attachments and upload sessions) and the send record of their idempotency key;
- a message's HTML body in a sandboxed frame (``sandbox`` without scripts, and a CSP of its own
  that allows no script and no request: ``cid:`` images are resolved into ``data:`` URLs here),
  a text body as text, and each attachment for download, byte for byte;
- the send records, dead letters and poison messages of the local storage, with their problems.

API (JSON unless said otherwise):
``GET /_mailbox/api/messages`` (summaries, newest first), ``GET /_mailbox/api/messages/{id}`` (one
message with its body), ``GET /_mailbox/api/records`` (send records, dead letters, poison messages),
``GET /_mailbox/messages/{id}/body`` (the HTML body document for the frame), and
``GET /_mailbox/messages/{id}/attachments/{n}`` (the attachment's bytes, as a download).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from m365send.attachments import decoded_size
from m365send.envelope import idempotency_request_id, key_of
from m365send.sendlog import SendRecord, unscoped
from standins.graph import GraphStandIn, SentMail

__all__ = ["PREFIX", "MailboxPage", "StorageView"]

PREFIX = "/_mailbox"
_PAGE = (Path(__file__).with_name("mailbox.html")).read_bytes()
# The body frame: no script, no request of any kind; inline styles and data: images only.
_BODY_POLICY = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:"
_NOTHING: dict[str, list[Any]] = {"records": [], "deadLetters": [], "poison": []}
_CID = re.compile(r"""(["'(])cid:([^"')\s>]+)""", re.IGNORECASE)

StartResponse = Callable[..., Any]


@dataclass(frozen=True)
class _Attachment:
    name: str
    content_type: str
    is_inline: bool
    content_id: str | None
    size: int
    uploaded: bool
    data: Callable[[], bytes]


@dataclass(frozen=True)
class StorageView:
    """What the local storage holds, as the page shows it (each part read through the app's own adapters)."""

    records: Callable[[], list[SendRecord]]
    dead_letters: Callable[[], list[Any]]
    poison: Callable[[], list[Any]]


def _address(entry: Any) -> str:
    email = (entry or {}).get("emailAddress") or {}
    address, name = str(email.get("address") or ""), str(email.get("name") or "")
    return f"{name} <{address}>" if name else address


def _addresses(entries: Iterable[Any] | None) -> list[str]:
    return [_address(entry) for entry in entries or []]


def _posted(item: dict[str, Any]) -> _Attachment:
    encoded = str(item.get("contentBytes") or "")
    return _Attachment(
        name=str(item.get("name") or "attachment"),
        content_type=str(item.get("contentType") or "application/octet-stream"),
        is_inline=bool(item.get("isInline")),
        content_id=item.get("contentId"),
        size=decoded_size(encoded),  # the page polls the list: decode only for a download or a cid: image
        uploaded=False,
        data=lambda: base64.b64decode(encoded),
    )


def _attachments(mail: SentMail) -> list[_Attachment]:
    found = [_posted(item) for item in mail.message.get("attachments") or []]
    found += [
        _Attachment(a.name, a.content_type, a.is_inline, a.content_id, a.size, a.uploaded, a.data)
        for a in mail.attachments
    ]
    return found


def _time(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="seconds")


class MailboxPage:
    """The WSGI app at ``/_mailbox``, over the Graph stand-in and (optionally) the local storage."""

    def __init__(self, graph: GraphStandIn, storage: Callable[[], StorageView | None]) -> None:
        self._graph = graph
        self._storage = storage

    # --- data ----------------------------------------------------------------------------------
    def _records_by_request_id(self) -> dict[str, SendRecord]:
        view = self._storage()
        if view is None:
            return {}
        try:
            records = view.records()
        except Exception:  # storage down must not take the mailbox with it
            return {}
        found: dict[str, SendRecord] = {}
        for record in records:
            # A queued send's client-request-id derives from its key; a sent record keeps the request-id
            # of Graph's 202, which the stand-in keeps with the message too.
            for key in {record.key, unscoped(record.key)[1]}:
                found[idempotency_request_id(key)] = record
            if record.graph_request_id:
                found[record.graph_request_id] = record
        return found

    def _summary(self, mail: SentMail, records: dict[str, SendRecord]) -> dict[str, Any]:
        message = mail.message
        attachments = _attachments(mail)
        record = records.get(mail.request_id or "") or records.get(mail.client_request_id or "")
        way = "sendMail"
        if mail.via_draft:
            way = "draft, upload session" if any(a.uploaded for a in attachments) else "draft"
        return {
            "id": mail.id,
            "time": _time(mail.sent_at),
            "mailbox": mail.mailbox,
            "from": _address(message.get("from")) or mail.mailbox,
            "sender": mail.sender or mail.mailbox,
            "to": _addresses(message.get("toRecipients")),
            "cc": _addresses(message.get("ccRecipients")),
            "bcc": _addresses(message.get("bccRecipients")),
            "replyTo": _addresses(message.get("replyTo")),
            "subject": str(message.get("subject") or ""),
            "importance": str(message.get("importance") or "normal"),
            "categories": list(message.get("categories") or []),
            "readReceipt": bool(message.get("isReadReceiptRequested")),
            "deliveryReceipt": bool(message.get("isDeliveryReceiptRequested")),
            "headers": [
                {"name": str(h.get("name")), "value": str(h.get("value"))}
                for h in message.get("internetMessageHeaders") or []
            ],
            "way": way,
            "savedToSentItems": mail.save_to_sent_items,
            "attachments": [
                {
                    "index": n,
                    "name": a.name,
                    "contentType": a.content_type,
                    "size": a.size,
                    "isInline": a.is_inline,
                    "contentId": a.content_id,
                    "uploaded": a.uploaded,
                    "url": f"{PREFIX}/messages/{quote(mail.id)}/attachments/{n}",
                }
                for n, a in enumerate(attachments)
            ],
            "record": None
            if record is None
            else {
                "key": record.key,
                "status": record.status.value,
                "attempts": record.attempts,
                "possibleDuplicate": record.possible_duplicate,
            },
        }

    def messages(self) -> list[dict[str, Any]]:
        """Every received message, newest first."""
        records = self._records_by_request_id()
        return [self._summary(mail, records) for mail in reversed(list(self._graph.sent))]

    def _find(self, message_id: str) -> SentMail | None:
        return next((mail for mail in self._graph.sent if mail.id == message_id), None)

    def message(self, message_id: str) -> dict[str, Any] | None:
        """One message with its body."""
        mail = self._find(message_id)
        if mail is None:
            return None
        body = mail.message.get("body") or {}
        return {
            **self._summary(mail, self._records_by_request_id()),
            "body": {
                "contentType": str(body.get("contentType") or "text").lower(),
                "content": str(body.get("content") or ""),
            },
            "bodyUrl": f"{PREFIX}/messages/{quote(mail.id)}/body",
        }

    def body_document(self, mail: SentMail) -> bytes:
        """The HTML body with its ``cid:`` images as ``data:`` URLs (the frame may fetch nothing)."""
        body = mail.message.get("body") or {}
        content = str(body.get("content") or "")
        if str(body.get("contentType") or "text").lower() != "html":
            return f"<pre>{html.escape(content)}</pre>".encode()
        inline = {a.content_id: a for a in _attachments(mail) if a.content_id}

        def resolve(match: re.Match[str]) -> str:
            found = inline.get(match.group(2))
            if found is None:
                return match.group(0)
            encoded = base64.b64encode(found.data()).decode()
            return f"{match.group(1)}data:{found.content_type};base64,{encoded}"

        return _CID.sub(resolve, content).encode()

    def records(self) -> dict[str, Any]:
        """Send records, dead letters and poison messages, or why they cannot be read."""
        view = self._storage()
        if view is None:
            return {"available": False, "detail": "no storage configured (M365Storage)", **_NOTHING}
        try:
            records = view.records()
            letters = view.dead_letters()
            poison = view.poison()
        except Exception as error:  # shown on the page, never a traceback
            detail = getattr(error, "detail", None) or type(error).__name__
            return {"available": False, "detail": str(detail), **_NOTHING}
        return {
            "available": True,
            "records": [
                {
                    "key": r.key,
                    "status": r.status.value,
                    "attempts": r.attempts,
                    "possibleDuplicate": r.possible_duplicate,
                    "updated": r.updated_at.isoformat(timespec="seconds") if r.updated_at else None,
                    "sendAt": r.send_at.isoformat(timespec="seconds") if r.send_at else None,
                    "problem": (r.answer or {}).get("detail") if r.status.value == "failed" else None,
                }
                for r in records
            ],
            "deadLetters": [
                {
                    "id": d.id,
                    "key": d.key,
                    "kind": d.kind,
                    "reason": d.reason,
                    "problem": d.problem.get("detail") or d.problem.get("title"),
                    "errors": d.problem.get("errors") or [],
                    "recorded": d.recorded_at.isoformat(timespec="seconds"),
                }
                for d in letters
            ],
            "poison": [
                {
                    "id": m.id,
                    "key": key_of(m.body, queue_message_id=m.id),
                    "dequeueCount": m.dequeue_count,
                    "bytes": len(m.body),
                    "inserted": m.inserted_on.isoformat(timespec="seconds") if m.inserted_on else None,
                }
                for m in poison
            ],
        }

    # --- WSGI ----------------------------------------------------------------------------------
    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterator[bytes]:
        path = str(environ.get("PATH_INFO") or "").removeprefix(PREFIX).rstrip("/")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return self._reply(start_response, "405 Method Not Allowed", b"", "text/plain")
        parts = [p for p in path.split("/") if p]
        if not parts:
            return self._reply(start_response, "200 OK", _PAGE, "text/html; charset=utf-8")
        if parts == ["api", "messages"]:
            return self._json(start_response, {"messages": self.messages()})
        if parts == ["api", "records"]:
            return self._json(start_response, self.records())
        if len(parts) == 3 and parts[:2] == ["api", "messages"]:
            found = self.message(parts[2])
            return self._json(start_response, found) if found else self._missing(start_response)
        if len(parts) >= 3 and parts[0] == "messages":
            mail = self._find(parts[1])
            if mail is None:
                return self._missing(start_response)
            if parts[2:] == ["body"]:
                return self._reply(
                    start_response,
                    "200 OK",
                    self.body_document(mail),
                    "text/html; charset=utf-8",
                    [("Content-Security-Policy", _BODY_POLICY)],
                )
            if len(parts) == 4 and parts[2] == "attachments" and parts[3].isdigit():
                attachments = _attachments(mail)
                index = int(parts[3])
                if index < len(attachments):
                    attachment = attachments[index]
                    disposition = f"attachment; filename*=UTF-8''{quote(attachment.name)}"
                    return self._reply(
                        start_response,
                        "200 OK",
                        attachment.data(),
                        attachment.content_type,
                        [("Content-Disposition", disposition)],
                    )
        return self._missing(start_response)

    @staticmethod
    def _reply(
        start_response: StartResponse,
        status: str,
        body: bytes,
        content_type: str,
        extra: list[tuple[str, str]] | None = None,
    ) -> Iterator[bytes]:
        headers = [
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *(extra or []),
        ]
        start_response(status, headers)
        return iter([body])

    def _json(self, start_response: StartResponse, data: Any) -> Iterator[bytes]:
        return self._reply(start_response, "200 OK", json.dumps(data).encode(), "application/json")

    def _missing(self, start_response: StartResponse) -> Iterator[bytes]:
        return self._reply(start_response, "404 Not Found", b'{"error": "not found"}', "application/json")
