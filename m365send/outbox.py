"""The queue trigger's translator: one outbox message → a ``SendCommand`` → ack, dead letter or hand-back.

The send-once engine decides; this module only says what its outcome means for a queue message:

- sent, or a repeat of a finished key → acknowledged;
- a permanent failure or a conflict → a dead letter with its reason, acknowledged;
- a transient failure, a key in flight, an unknown outcome, Table storage down → handed back: the
  producer's bytes re-enqueued with a visibility delay (``Retry-After`` when there is one, else
  exponential backoff) and an attempt count, so no worker sleeps through a wait and no dequeue is
  burnt on an outage;
- anything unexpected → raised after the engine made the record safe; the Functions host retries
  it and moves it to ``<queue>-poison`` after ``maxDequeueCount`` tries (``m365send poison replay``).

Every delivery counts: hand-backs plus the host's dequeue count never exceed
``M365_QUEUE_MAX_ATTEMPTS``; a message past it is dead-lettered as exhausted, never sent again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

from m365send.answers import problem
from m365send.envelope import MAX_QUEUE_MESSAGE, QueuedSend, encoded_size, key_of, original_of, parse_queue_message
from m365send.errors import (
    DependencyUnavailable,
    IdempotencyConflict,
    M365SendError,
    RequestInvalid,
)
from m365send.logcontext import log_context
from m365send.sendlog import Scope
from m365send.sendonce import Failed, SendCommand, SendOnce, Sent
from m365send.telemetry import FAILURES

__all__ = ["DeadLetterSink", "HandBackFailed", "OutboxProcessor", "QueueResult", "Requeue"]

log = logging.getLogger(__name__)


class Requeue(Protocol):
    """Puts a message back on the outbox queue, invisible for ``delay`` seconds."""

    def requeue(self, body: bytes, *, delay: float) -> None:
        """Enqueue ``body`` again."""
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


class HandBackFailed(Exception):
    """A hand-back could not be enqueued (too close to 64 KiB, or the queue refused): the host retries instead."""


@dataclass(frozen=True)
class QueueResult:
    """What became of one queue message."""

    outcome: str  # sent | duplicate | dead-lettered | requeued
    key: str
    delay: float | None = None
    detail: str = ""
    possible_duplicate: bool = False


class OutboxProcessor:
    """Processes outbox messages; one instance per worker."""

    def __init__(
        self,
        *,
        engine: SendOnce,
        dead_letters: DeadLetterSink,
        requeue: Requeue,
        max_attempts: int,
        retry_base: float,
        max_delay: float,
    ) -> None:
        self._engine = engine
        self._dead_letters = dead_letters
        self._requeue = requeue
        self._max_attempts = max_attempts
        self._retry_base = retry_base
        self._max_delay = max_delay

    def process(self, body: bytes, *, message_id: str, dequeue_count: int) -> QueueResult:
        """Handle one queue message body; returns normally unless the host should retry the message."""
        with log_context(idempotency_key=key_of(body, queue_message_id=message_id), queue_message_id=message_id):
            return self._process(body, message_id, max(dequeue_count, 1))

    def _process(self, body: bytes, message_id: str, dequeue_count: int) -> QueueResult:
        try:
            queued = parse_queue_message(body, queue_message_id=message_id)
        except RequestInvalid as error:
            key = key_of(body, queue_message_id=message_id)
            return self._dead_letter(key, "invalid", error, original_of(body), message_id, dequeue_count)
        deliveries = queued.attempt + dequeue_count
        if deliveries > self._max_attempts:
            exhausted = M365SendError(f"the message was tried {deliveries - 1} times; it will not be tried again")
            return self._dead_letter(queued.key, "exhausted", exhausted, queued.original, message_id, dequeue_count)
        outcome = self._engine.handle(SendCommand(queued.request, Scope.QUEUE, queued.key))
        if isinstance(outcome, Sent):
            return QueueResult(
                "sent", queued.key, detail=outcome.warning or "", possible_duplicate=outcome.possible_duplicate
            )
        if not isinstance(outcome, Failed):
            log.info("duplicate queue message acknowledged")
            return QueueResult("duplicate", queued.key, detail=outcome.status.value)
        cause = outcome.error
        if outcome.permanent:
            kind = "conflict" if isinstance(cause, IdempotencyConflict) else "permanent"
            return self._dead_letter(queued.key, kind, cause, queued.original, message_id, dequeue_count)
        FAILURES.add(1, {"reason": type(cause).__name__, "trigger": "queue", "disposition": "retry"})
        if deliveries >= self._max_attempts:
            # The key keeps its record (free, or unknown), so a replay of the dead letter is decided on it.
            return self._dead_letter(queued.key, "exhausted", cause, queued.original, message_id, dequeue_count)
        retry_after = outcome.retry_after
        delay = retry_after if retry_after is not None else self._retry_base * 2 ** (deliveries - 1)
        return self._hand_back(queued, deliveries, delay, cause.detail)

    def _hand_back(self, queued: QueuedSend, deliveries: int, delay: float, why: str) -> QueueResult:
        delay = min(max(delay, 0.0), self._max_delay)
        body = queued.handback(attempt=deliveries)
        if encoded_size(len(body)) > MAX_QUEUE_MESSAGE:
            # Re-enqueueing would not fit: let the host's own retry (visibility timeout, dequeue count) do it.
            raise HandBackFailed(f"a hand-back of this message would exceed {MAX_QUEUE_MESSAGE:,} bytes: {why}")
        try:
            self._requeue.requeue(body, delay=delay)
        except DependencyUnavailable as error:
            raise HandBackFailed(f"the queue refused the hand-back ({error.detail}): {why}") from None
        log.info("queue message handed back for later", extra={"attempt": deliveries, "delay_seconds": delay})
        return QueueResult("requeued", queued.key, delay=delay, detail=why)

    def _dead_letter(
        self, key: str, kind: str, error: M365SendError, payload: bytes, message_id: str, dequeue_count: int
    ) -> QueueResult:
        details = problem(error, request_id=message_id).body
        FAILURES.add(1, {"reason": details["type"].rsplit(":", 1)[-1], "trigger": "queue", "disposition": kind})
        self._dead_letters.add(
            key=key,
            kind=kind,
            problem=details,
            payload=payload,
            queue_message_id=message_id,
            dequeue_count=dequeue_count,
        )
        log.warning("queue message dead-lettered: %s", error.detail, extra={"kind": kind, "problem": details["type"]})
        return QueueResult("dead-lettered", key, detail=error.detail)
