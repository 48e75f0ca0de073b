"""What became of a keyed send, for ``GET /api/messages/{key}`` and ``m365send status``. Pure.

The send record and, for a queued send, its newest dead letter decide the answer:

    reserved, pending, unknown   ─▶ pending        an attempt runs, or another will come
    scheduled                    ─▶ scheduled      waiting for SendAt; nothing was sent
    sent                         ─▶ sent           Graph accepted it (202)
    failed (HTTP)                ─▶ failed         refused for good; the problem says why
    failed (queue) / dead letter ─▶ dead-lettered  set aside with its reason (``m365send dead-letters``)

A dead letter newer than the record wins (a key can be dead-lettered without a record: an
invalid message, or one whose attempts ran out while pending); a record newer than the dead
letter wins too (the dead letter was replayed and sent). Message bodies are never part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from m365send.sendlog import Scope, SendRecord, SendStatus, letter_key, scoped_key

__all__ = ["DeadLetterFacts", "SendState", "StatusBook", "send_state"]


class DeadLetterFacts(Protocol):
    """What a status needs of a dead letter."""

    @property
    def kind(self) -> str: ...
    @property
    def reason(self) -> str: ...
    @property
    def problem(self) -> dict[str, Any]: ...
    @property
    def recorded_at(self) -> datetime: ...
    @property
    def dequeue_count(self) -> int: ...


class Records(Protocol):
    """Reads send records (``m365send.tables.TableSendLog``)."""

    def get(self, key: str) -> SendRecord | None:
        """The record of a scoped key."""
        ...


class DeadLetters(Protocol):
    """Finds a queue key's newest dead letter (``m365send.tables.TableDeadLetters``)."""

    def latest_for(self, key: str) -> DeadLetterFacts | None:
        """The newest dead letter of ``key``."""
        ...


@dataclass(frozen=True)
class SendState:
    """One keyed send's state, as the status look-up answers it."""

    key: str
    via: Scope
    status: str  # pending | scheduled | sent | failed | dead-lettered
    detail: str
    first_seen: datetime | None = None
    updated: datetime | None = None
    send_at: datetime | None = None
    attempts: int = 0
    graph_request_id: str | None = None
    internet_message_id: str | None = None
    possible_duplicate: bool = False
    problem: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        """The JSON body: set fields only, times in ISO 8601 UTC."""
        body: dict[str, Any] = {
            "idempotencyKey": self.key,
            "via": self.via.value,
            "status": self.status,
            "detail": self.detail,
            "attempts": self.attempts,
        }
        for name, value in (
            ("firstSeen", self.first_seen),
            ("updated", self.updated),
            ("sendAt", self.send_at),
        ):
            if value is not None:
                body[name] = value.isoformat().replace("+00:00", "Z")
        for name, text in (("graphRequestId", self.graph_request_id), ("internetMessageId", self.internet_message_id)):
            if text:
                body[name] = text
        if self.possible_duplicate:
            body["possibleDuplicate"] = True
        if self.problem is not None:
            body["problem"] = self.problem
        return body


_PENDING_DETAIL = {
    SendStatus.RESERVED: "an attempt is sending it now",
    SendStatus.PENDING: "an attempt failed before Graph took it; it will be tried again",
    SendStatus.UNKNOWN: "Graph's answer to an attempt was lost; the next attempt finds out before it sends",
}


def _problem_of(answer: dict[str, Any] | None) -> dict[str, Any] | None:
    body = (answer or {}).get("body")
    if not isinstance(body, dict):
        return None
    # The problem as the caller got it, minus nothing secret: problems never carry bodies or tokens.
    return {k: body[k] for k in ("type", "title", "status", "detail", "errors") if k in body}


def _from_record(key: str, via: Scope, record: SendRecord) -> SendState:
    common: dict[str, Any] = {
        "key": key,
        "via": via,
        "first_seen": record.created_at,
        "updated": record.updated_at,
        "send_at": record.send_at,
        "attempts": record.attempts if record.status is not SendStatus.SCHEDULED else 0,
        "possible_duplicate": record.possible_duplicate,
    }
    if record.status is SendStatus.SENT:
        return SendState(
            status="sent",
            detail="Graph accepted the message",
            graph_request_id=record.graph_request_id,
            internet_message_id=record.internet_message_id,
            **common,
        )
    if record.status is SendStatus.SCHEDULED:
        return SendState(status="scheduled", detail="waiting for its SendAt; nothing has been sent", **common)
    if record.status is SendStatus.FAILED:
        status = "dead-lettered" if via is Scope.QUEUE else "failed"
        return SendState(
            status=status, detail="refused for good; not sent", problem=_problem_of(record.answer), **common
        )
    return SendState(status="pending", detail=_PENDING_DETAIL[record.status], **common)


def send_state(
    key: str, via: Scope, record: SendRecord | None, dead_letter: DeadLetterFacts | None
) -> SendState | None:
    """The state of the caller's ``key`` sent ``via`` HTTP or the queue; ``None`` when nothing is known of it."""
    if dead_letter is not None and (
        record is None or record.updated_at is None or dead_letter.recorded_at >= record.updated_at
    ):
        return SendState(
            key=key,
            via=via,
            status="dead-lettered",
            detail=f"set aside ({dead_letter.kind}): {dead_letter.reason}",
            first_seen=record.created_at if record is not None else None,
            updated=dead_letter.recorded_at,
            send_at=record.send_at if record is not None else None,
            attempts=record.attempts if record is not None else dead_letter.dequeue_count,
            possible_duplicate=record.possible_duplicate if record is not None else False,
            problem=dead_letter.problem,
        )
    if record is None:
        return None
    return _from_record(key, via, record)


class StatusBook:
    """Answers the status look-up from the send records and dead letters; one per worker."""

    def __init__(self, *, records: Records, dead_letters: DeadLetters) -> None:
        self._records = records
        self._dead_letters = dead_letters

    def look_up(self, key: str, via: Scope | None = None, owner: str = "") -> SendState | None:
        """The state of ``owner``'s ``key``; without ``via``, the queue's and HTTP's, whichever changed last.

        Only the owner's namespace is read: another caller's key of the same name is not found, so
        the answer is the same as for a key nobody used.
        """
        found = [state for scope in ([via] if via else list(Scope)) if (state := self._state(key, scope, owner))]
        return max(found, key=_last_change, default=None)

    def _state(self, key: str, via: Scope, owner: str) -> SendState | None:
        record = self._records.get(scoped_key(via, key, owner))
        # A message an HTTP caller scheduled waits on the queue, and may be set aside there too.
        dead_letter = self._dead_letters.latest_for(letter_key(via, key, owner))
        return send_state(key, via, record, dead_letter)


def _last_change(state: SendState) -> datetime:
    return state.updated or state.first_seen or datetime.min.replace(tzinfo=UTC)
