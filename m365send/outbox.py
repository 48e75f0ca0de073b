"""The queue use case: one outbox message → sent once, set aside with its reason, or handed back later.

Permanent failures are recorded (send record ``failed`` + a dead letter) and acknowledged, so they
are never retried. Transient failures release the key and hand the message back to the queue with a
visibility delay (``Retry-After`` when Graph gave one, else exponential backoff), so no worker sleeps
through a long wait. Anything unexpected propagates: the Functions host then retries the message and
moves it to ``<queue>-poison`` after ``maxDequeueCount`` tries.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from m365send.envelope import QueuedSend, key_of, parse_queue_message
from m365send.errors import (
    DependencyUnavailable,
    Disposition,
    IdempotencyConflict,
    M365SendError,
    RequestInvalid,
    outcome_of,
)
from m365send.http_api import accepted, problem
from m365send.logcontext import log_context
from m365send.sendlog import Decision, Reservation, SendLog
from m365send.service import EmailService
from m365send.telemetry import FAILURES

__all__ = ["DeadLetterSink", "OutboxProcessor", "QueueResult", "Requeue"]

log = logging.getLogger(__name__)


class Requeue(Protocol):
    """Puts a message back on the outbox queue, invisible for ``delay`` seconds."""

    def requeue(self, body: str, *, delay: float) -> None:
        """Enqueue ``body`` (an envelope as JSON) again."""
        ...


class DeadLetterSink(Protocol):
    """Keeps messages that will not be sent, with why."""

    def add(
        self,
        *,
        key: str,
        kind: str,
        problem: dict[str, Any],
        payload: bytes,
        queue_message_id: str,
        dequeue_count: int,
    ) -> object:
        """Record one dead letter."""
        ...


@dataclass(frozen=True)
class QueueResult:
    """What became of one queue message."""

    outcome: str  # sent | duplicate | dead-lettered | requeued
    key: str
    delay: float | None = None
    detail: str = ""


class OutboxProcessor:
    """Processes outbox messages; one instance per worker."""

    def __init__(
        self,
        *,
        service: EmailService,
        sends: SendLog,
        dead_letters: DeadLetterSink,
        requeue: Requeue,
        max_attempts: int,
        retry_base: float,
        max_delay: float,
    ) -> None:
        self._service = service
        self._sends = sends
        self._dead_letters = dead_letters
        self._requeue = requeue
        self._max_attempts = max_attempts
        self._retry_base = retry_base
        self._max_delay = max_delay

    def process(self, body: bytes, *, message_id: str, dequeue_count: int) -> QueueResult:
        """Handle one queue message body; returns normally unless the message should be retried by the host."""
        with log_context(idempotency_key=key_of(body, queue_message_id=message_id), queue_message_id=message_id):
            return self._process(body, message_id, dequeue_count)

    def _process(self, body: bytes, message_id: str, dequeue_count: int) -> QueueResult:
        try:
            queued = parse_queue_message(body, queue_message_id=message_id)
        except RequestInvalid as error:
            key = key_of(body, queue_message_id=message_id)
            return self._dead_letter(key, "invalid", error, body, message_id, dequeue_count)
        reservation = self._sends.reserve(queued.key, queued.payload_hash)
        decision = reservation.decision
        if decision is Decision.CONFLICT:
            conflict = IdempotencyConflict(
                f"idempotency key '{queued.key}' was already used for a different message; this one was not sent"
            )
            return self._dead_letter(queued.key, "conflict", conflict, body, message_id, dequeue_count)
        if decision in (Decision.ALREADY_SENT, Decision.ALREADY_FAILED):
            log.info("duplicate queue message acknowledged")
            return QueueResult("duplicate", queued.key, detail=decision.value)
        if decision is Decision.IN_FLIGHT:
            delay = reservation.lease_left(datetime.now(UTC)).total_seconds() + 1
            return self._hand_back(queued, queued.attempt, delay, "another attempt holds the key")
        if decision is Decision.TAKE_OVER:
            log.warning(
                "an earlier attempt stopped after reserving this key; Graph may already have the message, "
                "so this send may duplicate it",
                extra={"attempts": reservation.record.attempts},
            )
        return self._send(queued, reservation, body, message_id, dequeue_count)

    def _send(
        self, queued: QueuedSend, reservation: Reservation, body: bytes, message_id: str, dequeue_count: int
    ) -> QueueResult:
        try:
            receipt = self._service.send(queued.request)
        except M365SendError as error:
            if outcome_of(error).disposition is Disposition.RETRY:
                return self._transient(queued, reservation, error, body, message_id, dequeue_count)
            self._sends.mark_failed(reservation, answer=_answer(error, queued))
            return self._dead_letter(queued.key, "permanent", error, body, message_id, dequeue_count)
        answer = accepted(receipt)
        self._sends.mark_sent(
            reservation,
            graph_request_id=receipt.graph_request_id,
            answer=answer.stored(),
        )
        return QueueResult("sent", queued.key)

    def _transient(
        self,
        queued: QueuedSend,
        reservation: Reservation,
        error: M365SendError,
        body: bytes,
        message_id: str,
        dequeue_count: int,
    ) -> QueueResult:
        FAILURES.add(1, {"reason": outcome_of(error).slug, "trigger": "queue", "disposition": "retry"})
        unknown = isinstance(error, DependencyUnavailable) and error.outcome_unknown
        if not unknown:
            self._sends.release(reservation)
        attempt = queued.attempt + 1
        if attempt >= self._max_attempts:
            # The key stays free (or, after an unknown outcome, reserved until its lease ends), so a
            # replay of the dead letter can still send it once.
            return self._dead_letter(queued.key, "exhausted", error, body, message_id, dequeue_count)
        retry_after = getattr(error, "retry_after", None)
        delay = retry_after if retry_after is not None else self._retry_base * 2 ** (attempt - 1)
        if unknown:  # keep the reservation: the retry must find it expired and flag a possible duplicate
            delay = max(delay, reservation.lease_left(datetime.now(UTC)).total_seconds() + 1)
        return self._hand_back(queued, attempt, delay, error.detail)

    def _hand_back(self, queued: QueuedSend, attempt: int, delay: float, why: str) -> QueueResult:
        delay = min(max(delay, 0.0), self._max_delay)
        self._requeue.requeue(queued.envelope_json(attempt=attempt), delay=delay)
        log.info(
            "queue message handed back for later",
            extra={"attempt": attempt, "delay_seconds": delay},
        )
        return QueueResult("requeued", queued.key, delay=delay, detail=why)

    def _dead_letter(
        self, key: str, kind: str, error: M365SendError, body: bytes, message_id: str, dequeue_count: int
    ) -> QueueResult:
        details = problem(error, request_id=message_id).body
        FAILURES.add(1, {"reason": details["type"].rsplit(":", 1)[-1], "trigger": "queue", "disposition": kind})
        self._dead_letters.add(
            key=key, kind=kind, problem=details, payload=body, queue_message_id=message_id, dequeue_count=dequeue_count
        )
        log.warning(
            "queue message dead-lettered: %s",
            error.detail,
            extra={"kind": kind, "problem": details["type"]},
        )
        return QueueResult("dead-lettered", key, detail=error.detail)


def _answer(error: M365SendError, queued: QueuedSend) -> dict[str, Any]:
    result = problem(error, request_id=queued.request.request_id)
    return result.stored()
