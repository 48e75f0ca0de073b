"""Send records: one per scoped idempotency key, so a key is sent at most once while its record lives.

A record is reserved (with a lease) before the Graph call, its lease renewed while the send runs,
and it is marked sent, failed or unknown afterwards, each write conditional on the record being
the one this attempt holds. What to do with an existing record is decided here, purely;
``m365send.tables`` stores records.

    no record / expired   ─▶ NEW            send
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

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

__all__ = ["Decision", "Reservation", "Scope", "SendLog", "SendRecord", "SendStatus", "decide", "scoped_key"]


class Scope(StrEnum):
    """Where a key comes from. Keys of different scopes never meet: each scope is its own namespace."""

    HTTP = "http"
    QUEUE = "queue"


def scoped_key(scope: Scope, key: str) -> str:
    """The key as send records store it: ``http:invoice-1`` and ``queue:invoice-1`` are different keys."""
    return f"{scope.value}:{key}"


class SendStatus(StrEnum):
    RESERVED = "reserved"
    SENT = "sent"
    FAILED = "failed"
    UNKNOWN = "unknown"


class Decision(StrEnum):
    NEW = "new"
    TAKE_OVER = "take-over"
    ALREADY_SENT = "already-sent"
    ALREADY_FAILED = "already-failed"
    IN_FLIGHT = "in-flight"
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
    if existing.status is SendStatus.RESERVED and existing.lease_until > now:
        return Decision.IN_FLIGHT
    return Decision.TAKE_OVER


@dataclass(frozen=True)
class Reservation:
    """The outcome of ``SendLog.reserve``: the decision and the record it was made on."""

    decision: Decision
    record: SendRecord

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

    def mark_sent(self, reservation: Reservation, *, graph_request_id: str | None, answer: dict[str, Any]) -> None:
        """Graph accepted the message: the key is done."""
        ...

    def mark_failed(self, reservation: Reservation, *, answer: dict[str, Any]) -> None:
        """The send failed permanently: the key is done, with this problem."""
        ...

    def mark_unknown(self, reservation: Reservation) -> None:
        """Graph may or may not have the message: the next attempt must find out (or flag its resend)."""
        ...

    def release(self, reservation: Reservation) -> None:
        """Graph certainly did not take the message: give the key back for a later attempt."""
        ...
