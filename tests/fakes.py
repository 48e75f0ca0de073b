"""Fakes of the core's Protocols (token provider, Graph mailbox, send log), for unit tests without I/O."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from m365send.attachments import Content
from m365send.drafts import TAG_PROPERTY_ID
from m365send.errors import LeaseLost, M365SendError, MailboxNotFound
from m365send.mailbox import CreatedDraft, GraphReceipt, TaggedMessage, UploadSession
from m365send.sendlog import Reservation, SendRecord, decide, successor


class FakeTokens:
    def __init__(self) -> None:
        self.calls = 0

    def token(self) -> str:
        self.calls += 1
        return "token-1"


class FakeMail:
    """Records every Graph operation and keeps drafts and sent items; ``fail`` makes the named one raise.

    ``deliver_then_fail``: the named sending operation delivers the message, then raises (a lost answer).
    """

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.calls: list[str] = []
        self.uploaded: dict[str, bytes] = {}
        self.fail: dict[str, BaseException] = {}
        self.deliver_then_fail: dict[str, M365SendError] = {}
        self.drafts: dict[str, dict[str, Any]] = {}
        self._ids = iter(range(1, 10_000))

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if name in self.fail:
            raise self.fail[name]

    def _delivered(self, name: str) -> None:
        if name in self.deliver_then_fail:
            raise self.deliver_then_fail.pop(name)

    def send_mail(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> GraphReceipt:
        self._call("send_mail")
        self.sent.append({"mailbox": mailbox, "body": json.loads(body), "token": token, "id": client_request_id})
        self._delivered("send_mail")
        return GraphReceipt(request_id="graph-1", client_request_id=client_request_id, attempts=1)

    def create_draft(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> CreatedDraft:
        self._call("create_draft")
        draft_id = f"draft-{next(self._ids)}"
        self.drafts[draft_id] = {"mailbox": mailbox, "message": json.loads(body)}
        return CreatedDraft(draft_id, f"<{draft_id}@contoso.com>")

    def update_draft(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        self._call("update_draft")
        self.drafts[message_id]["message"].update(json.loads(body))

    def add_attachment(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        self._call("add_attachment")

    def create_upload_session(
        self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str
    ) -> UploadSession:
        self._call("create_upload_session")
        return UploadSession(url=f"https://upload/{json.loads(body)['AttachmentItem']['name']}", next_offset=0)

    def upload(self, session: UploadSession, content: Content, *, guard: Callable[[], None] | None = None) -> None:
        self._call("upload")
        if guard is not None:
            guard()
        self.uploaded[session.url] = content.read(0, content.size)

    def cancel_upload(self, session: UploadSession) -> None:
        self._call("cancel_upload")

    def send_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> GraphReceipt:
        self._call("send_draft")
        draft = self.drafts.pop(message_id, None)
        if draft is None:
            raise MailboxNotFound("gone", code="ErrorItemNotFound", graph_status=404)
        self.sent.append(
            {"mailbox": mailbox, "draft": message_id, "message": draft["message"], "id": client_request_id}
        )
        self._delivered("send_draft")
        return GraphReceipt(request_id="graph-2", client_request_id=client_request_id, attempts=1)

    def delete_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> None:
        self._call("delete_draft")
        self.drafts.pop(message_id, None)

    def find_tagged(
        self, *, mailbox: str, property_id: str, value: str, token: str, client_request_id: str
    ) -> list[TaggedMessage]:
        self._call("find_tagged")

        def tagged(message: dict[str, Any]) -> bool:
            return any(
                p["id"] == property_id and p["value"].casefold() == value.casefold()
                for p in message.get("singleValueExtendedProperties", [])
            )

        drafts = [TaggedMessage(i, True) for i, d in self.drafts.items() if tagged(d["message"])]
        sent = [TaggedMessage(s["draft"], False) for s in self.sent if "draft" in s and tagged(s["message"])]
        return drafts + sent

    def tags(self) -> list[str]:
        """The send-once tags on every draft and sent item."""
        messages = [d["message"] for d in self.drafts.values()] + [s["message"] for s in self.sent if "message" in s]
        return [
            p["value"]
            for m in messages
            for p in m.get("singleValueExtendedProperties", [])
            if p["id"] == TAG_PROPERTY_ID
        ]


RETENTION = timedelta(days=7)  # how long the in-memory store keeps a key


class MemorySendLog:
    """``SendLog`` in memory, with the Table adapter's conditional writes; ``fail`` makes a method raise."""

    def __init__(self, *, lease: timedelta = timedelta(seconds=300)) -> None:
        self.records: dict[str, SendRecord] = {}
        self.fail: dict[str, BaseException] = {}
        self.lease = lease
        self._etags = iter(range(1, 1_000_000))
        self._lock = threading.Lock()

    def _maybe_fail(self, name: str) -> None:
        if name in self.fail:
            raise self.fail[name]

    def _stamp(self, record: SendRecord) -> SendRecord:
        stamped = replace(record, etag=str(next(self._etags)))
        self.records[record.key] = stamped
        return stamped

    def get(self, key: str) -> SendRecord | None:
        return self.records.get(key)

    def reserve(self, key: str, payload_hash: str) -> Reservation:
        self._maybe_fail("reserve")
        with self._lock:
            now = datetime.now(UTC)
            existing = self.records.get(key)
            decision = decide(existing, payload_hash, now)
            if not decision.sends:
                assert existing is not None
                return Reservation(decision, existing, decided_at=now)
            fresh = SendRecord.reserved(key, payload_hash, now=now, lease=self.lease, retention=RETENTION)
            held = time.monotonic() + self.lease.total_seconds()
            taken = self._stamp(successor(existing, fresh, decision, now))
            return Reservation(decision, taken, held, decided_at=now)

    def _replace(self, record: SendRecord, etag: str | None) -> SendRecord:
        with self._lock:
            if self.records.get(record.key, record).etag != etag:
                raise LeaseLost()
            return self._stamp(replace(record, updated_at=datetime.now(UTC)))

    def renew(self, reservation: Reservation) -> Reservation:
        self._maybe_fail("renew")
        held = time.monotonic() + self.lease.total_seconds()
        renewed = reservation.record.renewed(now=datetime.now(UTC), lease=self.lease)
        return Reservation(reservation.decision, self._replace(renewed, reservation.record.etag), held)

    def mark_sent(
        self,
        reservation: Reservation,
        *,
        graph_request_id: str | None,
        answer: dict[str, Any],
        internet_message_id: str | None = None,
    ) -> None:
        self._maybe_fail("mark_sent")
        record = reservation.record.sent(
            graph_request_id=graph_request_id, answer=answer, internet_message_id=internet_message_id
        )
        self._replace(record, reservation.record.etag)

    def mark_scheduled(self, reservation: Reservation, *, send_at: datetime) -> None:
        self._maybe_fail("mark_scheduled")
        record = reservation.record.scheduled(send_at=send_at, now=datetime.now(UTC), retention=RETENTION)
        self._replace(record, reservation.record.etag)

    def mark_failed(self, reservation: Reservation, *, answer: dict[str, Any]) -> None:
        self._maybe_fail("mark_failed")
        self._replace(reservation.record.failed(answer=answer), reservation.record.etag)

    def mark_unknown(self, reservation: Reservation, *, may_have_sent: bool = True) -> None:
        self._maybe_fail("mark_unknown")
        record = reservation.record.unknown(now=datetime.now(UTC), may_have_sent=may_have_sent)
        self._replace(record, reservation.record.etag)

    def release(self, reservation: Reservation) -> None:
        with contextlib.suppress(LeaseLost):
            self._replace(reservation.record.pending(now=datetime.now(UTC)), reservation.record.etag)
