"""Send records: one per scoped idempotency key, so a key is sent at most once while its record lives.

A record is reserved (with a lease) before the Graph call, its lease renewed while the send runs,
and it is marked sent, failed or unknown afterwards, each write conditional on the record being
the one this attempt holds. What to do with an existing record is decided here, purely;
``m365send.tables`` stores records.

    no record / expired   ─▶ NEW            send
    same payload, pending ─▶ NEW            send (an earlier attempt certainly did not reach Graph)
    scheduled, not due    ─▶ SCHEDULED      nothing is sent yet: hand the message back until it is due
    scheduled, due        ─▶ NEW            send
    same payload, sent    ─▶ ALREADY_SENT   acknowledge, replay the first answer
    same payload, failed  ─▶ ALREADY_FAILED acknowledge, replay the first problem
    reserved, lease live  ─▶ IN_FLIGHT      try again when the lease ends
    reserved, lease over  ─▶ TAKE_OVER      the holder died: Graph may have the message
    unknown               ─▶ TAKE_OVER      Graph's answer was lost: it may have the message
    other payload         ─▶ CONFLICT       nothing is sent

On TAKE_OVER the send-once engine asks the mailbox first (verified delivery) or resends flagged
as a possible duplicate (standard delivery).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

from m365send.callers import QUEUE_OWNER

__all__ = [
    "Decision",
    "Reservation",
    "Scope",
    "SendLog",
    "SendRecord",
    "SendStatus",
    "decide",
    "letter_key",
    "letter_queue",
    "scoped_key",
    "successor",
    "unscoped",
]


class Scope(StrEnum):
    """Where a key comes from. Keys of different scopes never meet: each scope is its own namespace."""

    HTTP = "http"
    QUEUE = "queue"


def scoped_key(scope: Scope, key: str, owner: str = "") -> str:
    """The key as send records store it: ``http:invoice-1`` and ``queue:invoice-1`` are different keys.

    ``owner`` (``m365send.callers.Caller.owner``) gives each identified caller its own keys
    (``http/app.<object id>:invoice-1``): one caller's key never finds, blocks or reveals another's.
    The default caller's keys keep the form they always had, so existing records stay valid.
    """
    return f"{scope.value}:{key}" if not owner else f"{scope.value}/{owner}:{key}"


def letter_key(scope: Scope, key: str, owner: str = "") -> str:
    """A dead letter's key: the main queue's key as it came (``k``), else scoped (``http/key.flow:k``)."""
    return key if scope is Scope.QUEUE and not owner else scoped_key(scope, key, owner)


def letter_queue(key: str) -> tuple[str | None, str]:
    """The producer queue of a dead letter (None: the main one) and its caller's key (``letter_key`` undone)."""
    prefix = f"{Scope.QUEUE.value}/{QUEUE_OWNER}"
    if key.startswith(prefix) and ":" in key:
        queue, _, caller_key = key.removeprefix(prefix).partition(":")
        return queue, caller_key
    return None, key


def unscoped(key: str) -> tuple[Scope, str]:
    """The scope and the caller's key of a stored key (``scoped_key`` undone; owners never hold a colon)."""
    head, _, caller_key = key.partition(":")
    return Scope(head.partition("/")[0]), caller_key


class SendStatus(StrEnum):
    RESERVED = "reserved"  # an attempt holds the lease and is sending
    PENDING = "pending"  # an attempt failed before Graph took the message; another will come
    SCHEDULED = "scheduled"  # waiting for its SendAt; nothing was sent
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Decision(StrEnum):
    NEW = "new"
    TAKE_OVER = "take-over"
    ALREADY_SENT = "already-sent"
    ALREADY_FAILED = "already-failed"
    IN_FLIGHT = "in-flight"
    SCHEDULED = "scheduled"
    CONFLICT = "conflict"

    @property
    def sends(self) -> bool:
        """Whether the holder of this decision goes on to call Graph."""
        return self in (Decision.NEW, Decision.TAKE_OVER)


@dataclass(frozen=True)
class SendRecord:
    """The stored state of one key."""

    key: str
    status: SendStatus
    payload_hash: str
    lease_until: datetime
    expires_at: datetime
    attempts: int = 1
    possible_duplicate: bool = False
    answer: dict[str, Any] | None = None  # the HTTP answer (202 body or problem) to replay
    graph_request_id: str | None = None
    etag: str | None = None
    created_at: datetime | None = None  # when the key was first seen (kept across attempts)
    updated_at: datetime | None = None  # when the record last changed
    send_at: datetime | None = None  # a scheduled message's SendAt
    internet_message_id: str | None = None  # known when the message went through a draft
    # The attempt that holds the record: only it writes with this token, so a write that meets a
    # changed record carrying its own token met its own earlier write (an answer lost and retried).
    holder: str = ""
    # The latest moment an attempt's send request may have reached Graph (verified delivery waits a
    # while after it before it sends a draft it finds: Exchange sends asynchronously).
    maybe_sent_at: datetime | None = None

    # What each step of a send makes of the record, the same for every store (each store writes the
    # result only if the record it holds is still the stored one).
    @classmethod
    def reserved(
        cls, key: str, payload_hash: str, *, now: datetime, lease: timedelta, retention: timedelta
    ) -> SendRecord:
        """A fresh reservation of ``key``, its lease running from ``now``."""
        return cls(
            key=key,
            status=SendStatus.RESERVED,
            payload_hash=payload_hash,
            lease_until=now + lease,
            expires_at=now + retention,
            created_at=now,
            updated_at=now,
            holder=uuid.uuid4().hex,
        )

    def renewed(self, *, now: datetime, lease: timedelta) -> SendRecord:
        """The lease extended by a full period from ``now``."""
        return replace(self, lease_until=now + lease)

    def sent(
        self, *, graph_request_id: str | None, answer: dict[str, Any], internet_message_id: str | None
    ) -> SendRecord:
        """Graph accepted the message."""
        return replace(
            self,
            status=SendStatus.SENT,
            answer=answer,
            graph_request_id=graph_request_id,
            internet_message_id=internet_message_id,
        )

    def failed(self, *, answer: dict[str, Any]) -> SendRecord:
        """Refused for good, with the problem answered."""
        return replace(self, status=SendStatus.FAILED, answer=answer, graph_request_id=None)

    def scheduled(self, *, send_at: datetime, now: datetime, retention: timedelta) -> SendRecord:
        """Waiting for ``send_at``; the lease ends now and the record lives until ``send_at`` plus the window."""
        return replace(
            self,
            status=SendStatus.SCHEDULED,
            send_at=send_at,
            lease_until=now,
            expires_at=max(self.expires_at, send_at + retention),
        )

    def unknown(self, *, now: datetime, may_have_sent: bool = True) -> SendRecord:
        """Graph's answer was lost; the lease ends now, so the next attempt need not wait.

        ``may_have_sent``: this attempt's own send request may have reached Graph just now.
        """
        sent_at = now if may_have_sent else self.maybe_sent_at
        return replace(self, status=SendStatus.UNKNOWN, lease_until=now, maybe_sent_at=sent_at)

    def pending(self, *, now: datetime) -> SendRecord:
        """Graph certainly did not take the message; the lease ends now, for a later attempt."""
        return replace(self, status=SendStatus.PENDING, lease_until=now)


def decide(existing: SendRecord | None, payload_hash: str, now: datetime) -> Decision:
    """What to do with a key whose current record is ``existing``."""
    if existing is None or existing.expires_at <= now:
        return Decision.NEW
    if existing.payload_hash != payload_hash:
        return Decision.CONFLICT
    if existing.status is SendStatus.SENT:
        return Decision.ALREADY_SENT
    if existing.status is SendStatus.FAILED:
        return Decision.ALREADY_FAILED
    if existing.status is SendStatus.PENDING:
        return Decision.NEW
    if existing.status is SendStatus.SCHEDULED:
        return Decision.SCHEDULED if existing.send_at is not None and existing.send_at > now else Decision.NEW
    if existing.status is SendStatus.RESERVED and existing.lease_until > now:
        return Decision.IN_FLIGHT
    return Decision.TAKE_OVER


def successor(existing: SendRecord | None, fresh: SendRecord, decision: Decision, now: datetime) -> SendRecord:
    """The record an attempt that took the key (``decision.sends``) writes over ``existing``.

    A live record's history carries over: when the key was first seen, its SendAt, and the count
    of attempts (a take-over or a retry after a pending attempt is one more; a scheduled message
    coming due is its first).
    """
    if existing is None or existing.expires_at <= now:
        return fresh
    retried = decision is Decision.TAKE_OVER or existing.status is SendStatus.PENDING
    maybe_sent_at = existing.maybe_sent_at
    if existing.status is SendStatus.RESERVED:  # its holder stopped: it may have sent until its lease ended
        maybe_sent_at = max(maybe_sent_at or existing.lease_until, existing.lease_until)
    return replace(
        fresh,
        attempts=existing.attempts + 1 if retried else existing.attempts,
        created_at=existing.created_at or fresh.created_at,
        send_at=existing.send_at,
        expires_at=max(fresh.expires_at, existing.expires_at),
        maybe_sent_at=maybe_sent_at,
    )


@dataclass(frozen=True)
class Reservation:
    """The outcome of ``SendLog.reserve``: the decision and the record it was made on.

    ``held_until``: for a holder, the monotonic moment (``time.monotonic``) until which its lease
    surely holds, judged on the store's clock rather than this machine's wall clock; 0 for none.
    """

    decision: Decision
    record: SendRecord
    held_until: float = 0.0
    decided_at: datetime | None = None  # the store's time when it decided

    def since_maybe_sent(self) -> timedelta | None:
        """How long ago, on the store's clock, an earlier attempt's send may last have reached Graph."""
        if self.decided_at is None or self.record.maybe_sent_at is None:
            return None
        return self.decided_at - self.record.maybe_sent_at

    def lease_left(self, now: datetime) -> timedelta:
        """How long the current holder's lease still runs."""
        return max(self.record.lease_until - now, timedelta(0))


class SendLog(Protocol):
    """Where send records live (Azure Table storage in production).

    Every write after ``reserve`` is conditional on the record this attempt holds, and raises
    ``LeaseLost`` when another attempt has taken the key since.
    """

    def reserve(self, key: str, payload_hash: str) -> Reservation:
        """Decide for ``key``; when the decision sends, the caller now holds a fresh lease."""
        ...

    def get(self, key: str) -> SendRecord | None:
        """The record of ``key``, if any."""
        ...

    def renew(self, reservation: Reservation) -> Reservation:
        """Extend the lease by a full lease period."""
        ...

    def mark_sent(
        self,
        reservation: Reservation,
        *,
        graph_request_id: str | None,
        answer: dict[str, Any],
        internet_message_id: str | None = None,
    ) -> None:
        """Graph accepted the message: the key is done."""
        ...

    def mark_scheduled(self, reservation: Reservation, *, send_at: datetime) -> None:
        """The message waits for ``send_at``; nothing was sent. The lease ends now."""
        ...

    def mark_failed(self, reservation: Reservation, *, answer: dict[str, Any]) -> None:
        """The send failed permanently: the key is done, with this problem."""
        ...

    def mark_unknown(self, reservation: Reservation, *, may_have_sent: bool = True) -> None:
        """Graph may or may not have the message: the next attempt must find out (or flag its resend).

        ``may_have_sent``: this attempt itself may have just asked Graph to send it.
        """
        ...

    def release(self, reservation: Reservation) -> None:
        """Graph certainly did not take the message: the key is pending, for a later attempt to take."""
        ...
