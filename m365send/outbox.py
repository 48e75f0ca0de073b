"""The queue trigger's translator: one outbox message → a ``SendCommand`` → ack, dead letter or hand-back.

The send-once engine decides; this module only says what its outcome means for a queue message:

- sent, or a repeat of a finished key → acknowledged;
- a permanent failure or a conflict → a dead letter with its reason, acknowledged;
- a transient failure, a key in flight, an unknown outcome, Table storage down → handed back: the
  producer's bytes re-enqueued with a visibility delay (``Retry-After`` when there is one, else
  exponential backoff) and an attempt count, so no worker sleeps through a wait and no dequeue is
  burnt on an outage;
- a message whose SendAt is ahead → handed back invisible until then (at most the queue's 7 days
  at a time, so a later time takes a few hand-backs); waiting is not an attempt;
- anything unexpected → raised after the engine made the record safe; the Functions host retries
  it and moves it to ``<queue>-poison`` after ``maxDequeueCount`` tries (``m365send poison replay``).

A producer that named a ``notify`` queue (one of ``M365_COMPLETION_QUEUES``) gets a completion
message there when the send finishes, sent or dead-lettered, shaped like the status look-up.

Every delivery counts: hand-backs plus the host's dequeue count never exceed
``M365_QUEUE_MAX_ATTEMPTS``; a message past it is dead-lettered as exhausted, never sent again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from m365send.answers import problem
from m365send.callers import DEFAULT_CALLER, Caller
from m365send.envelope import (
    MAX_QUEUE_MESSAGE,
    QueuedSend,
    encoded_size,
    key_of,
    original_of,
    parse_queue_message,
    queue_payload,
)
from m365send.errors import (
    DependencyUnavailable,
    FieldProblem,
    IdempotencyConflict,
    M365SendError,
    RequestInvalid,
    SenderNotAllowed,
)
from m365send.logcontext import log_context
from m365send.policy import SenderPolicy
from m365send.sendlog import Scope, letter_key
from m365send.sendonce import Failed, Scheduled, SendCommand, SendOnce, Sent
from m365send.status import SendState, send_state
from m365send.telemetry import FAILURES

__all__ = [
    "MAX_VISIBILITY_DELAY",
    "Completions",
    "DeadLetterSink",
    "HandBackFailed",
    "OutboxProcessor",
    "QueueResult",
    "Requeue",
]

# Azure Storage hides a message for at most 7 days; a minute less leaves room for clock skew.
MAX_VISIBILITY_DELAY = 7 * 24 * 3600 - 60

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


class Completions(Protocol):
    """Puts completion messages on a producer's queue."""

    def notify(self, queue: str, body: bytes) -> None:
        """Enqueue ``body`` on ``queue``; ``DependencyUnavailable`` when it cannot."""
        ...


class HandBackFailed(Exception):
    """A hand-back could not be enqueued (too close to 64 KiB, or the queue refused): the host retries instead."""


@dataclass(frozen=True)
class QueueResult:
    """What became of one queue message."""

    outcome: str  # sent | duplicate | dead-lettered | requeued | scheduled
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
        completions: Completions | None = None,
        completion_queues: Iterable[str] = (),
        caller: Caller = DEFAULT_CALLER,
        policy: SenderPolicy | None = None,
    ) -> None:
        self._caller = caller
        self._policy = policy
        self._completions = completions
        configured = frozenset(completion_queues)
        self._completion_queues = configured if policy is None else policy.completion_queues(caller, configured)
        self._engine = engine
        self._dead_letters = dead_letters
        self._requeue = requeue
        self._max_attempts = max_attempts
        self._retry_base = retry_base
        self._max_delay = max_delay

    def process(self, body: bytes, *, message_id: str, dequeue_count: int) -> QueueResult:
        """Handle one queue message as the host hands it over (plain JSON or base64 of it); returns
        normally unless the host should retry the message."""
        body = queue_payload(body)
        with log_context(idempotency_key=key_of(body, queue_message_id=message_id), queue_message_id=message_id):
            return self._process(body, message_id, max(dequeue_count, 1))

    def _process(self, body: bytes, message_id: str, dequeue_count: int) -> QueueResult:
        try:
            queued = parse_queue_message(body, queue_message_id=message_id)
        except RequestInvalid as error:
            key = key_of(body, queue_message_id=message_id)
            return self._dead_letter(key, "invalid", error, original_of(body), message_id, dequeue_count)
        if queued.notify is not None and queued.notify not in self._completion_queues:
            refused = RequestInvalid(
                [
                    FieldProblem(
                        "Envelope.notify",
                        "not_allowed",
                        f"queue '{queued.notify}' is not one m365send may notify for {self._caller}; add it to "
                        "M365_COMPLETION_QUEUES (and to the queue rule's completionQueues, if it has them)",
                        "ArgumentException",
                    )
                ]
            )
            return self._dead_letter(
                self._letter_key(queued), "invalid", refused, queued.original, message_id, dequeue_count
            )
        deliveries = queued.attempt + dequeue_count
        if deliveries > self._max_attempts:
            exhausted = M365SendError(f"the message was tried {deliveries - 1} times; it will not be tried again")
            return self._exhausted(queued, exhausted, message_id, dequeue_count)
        not_allowed = self._refusal(queued)
        if isinstance(not_allowed, DependencyUnavailable):
            return self._hand_back(queued, deliveries, not_allowed.retry_after or self._retry_base, not_allowed.detail)
        if not_allowed is not None:
            return self._dead_letter(
                self._letter_key(queued),
                "permanent",
                not_allowed,
                queued.original,
                message_id,
                dequeue_count,
                queued.notify,
            )
        command = SendCommand(queued.request, queued.scope, queued.key, can_wait=True, owner=self._owner(queued))
        outcome = self._engine.handle(command)
        if isinstance(outcome, Sent):
            self._notify(
                queued.notify,
                SendState(
                    key=queued.key,
                    via=Scope.QUEUE,
                    status="sent",
                    detail="Graph accepted the message",
                    updated=datetime.now(UTC),
                    send_at=queued.request.message.send_at,
                    attempts=deliveries,
                    graph_request_id=outcome.graph_request_id,
                    internet_message_id=outcome.internet_message_id,
                    possible_duplicate=outcome.possible_duplicate,
                ),
            )
            return QueueResult(
                "sent", queued.key, detail=outcome.warning or "", possible_duplicate=outcome.possible_duplicate
            )
        if isinstance(outcome, Scheduled):
            # Waiting is not an attempt: the hand-back keeps the attempt count it came with.
            delay = min(outcome.delay(datetime.now(UTC)), MAX_VISIBILITY_DELAY)
            return self._hand_back(queued, queued.attempt, delay, "scheduled", cap=MAX_VISIBILITY_DELAY)
        if not isinstance(outcome, Failed):
            log.info("duplicate queue message acknowledged")
            # The worker that finished the key may have died before its completion left: tell again
            # (completions are at least once, like every queue message).
            state = send_state(queued.key, Scope.QUEUE, outcome.record, None)
            if state is not None:
                self._notify(queued.notify, state)
            return QueueResult("duplicate", queued.key, detail=outcome.status.value)
        cause = outcome.error
        if outcome.permanent:
            kind = "conflict" if isinstance(cause, IdempotencyConflict) else "permanent"
            # A conflict's notify belongs to the other message that holds the key: not told here.
            notify = None if kind == "conflict" else queued.notify
            return self._dead_letter(
                self._letter_key(queued), kind, cause, queued.original, message_id, dequeue_count, notify
            )
        FAILURES.add(1, {"reason": type(cause).__name__, "trigger": "queue", "disposition": "retry"})
        if deliveries >= self._max_attempts:
            # The key keeps its record (free, or unknown), so a replay of the dead letter is decided on it.
            return self._exhausted(queued, cause, message_id, dequeue_count)
        retry_after = outcome.retry_after
        delay = retry_after if retry_after is not None else self._retry_base * 2 ** (deliveries - 1)
        return self._hand_back(queued, deliveries, delay, cause.detail)

    def _exhausted(self, queued: QueuedSend, cause: M365SendError, message_id: str, dequeue_count: int) -> QueueResult:
        """A copy out of attempts: a duplicate if another copy of the message sent the key, else a dead letter.

        (A producer that enqueued twice, or a hand-back whose answer was lost, leaves two copies; the
        one that runs out must not be reported dead for an email the other sent. Found by the
        simulation, seed 3274.)
        """
        sent = self._engine.sent_record(queued.scope, queued.key, self._owner(queued))
        if sent is not None:
            log.info("an exhausted copy of a message another copy sent: acknowledged as a duplicate")
            state = send_state(queued.key, queued.scope, sent, None)
            if state is not None:
                self._notify(queued.notify, state)
            return QueueResult("duplicate", queued.key, detail="sent by another copy")
        return self._dead_letter(
            self._letter_key(queued), "exhausted", cause, queued.original, message_id, dequeue_count, queued.notify
        )

    def _hand_back(
        self, queued: QueuedSend, deliveries: int, delay: float, why: str, *, cap: float | None = None
    ) -> QueueResult:
        delay = min(max(delay, 0.0), self._max_delay if cap is None else cap)
        body = queued.handback(attempt=deliveries)
        if encoded_size(len(body)) > MAX_QUEUE_MESSAGE:
            # Re-enqueueing would not fit: let the host's own retry (visibility timeout, dequeue count) do it.
            raise HandBackFailed(f"a hand-back of this message would exceed {MAX_QUEUE_MESSAGE:,} bytes: {why}")
        try:
            self._requeue.requeue(body, delay=delay)
        except DependencyUnavailable as error:
            raise HandBackFailed(f"the queue refused the hand-back ({error.detail}): {why}") from None
        log.info("queue message handed back for later", extra={"attempt": deliveries, "delay_seconds": delay})
        return QueueResult("scheduled" if cap else "requeued", queued.key, delay=delay, detail=why)

    def _dead_letter(
        self,
        key: str,
        kind: str,
        error: M365SendError,
        payload: bytes,
        message_id: str,
        dequeue_count: int,
        notify: str | None = None,
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
        self._notify(
            notify,
            SendState(
                key=key,
                via=Scope.QUEUE,
                status="dead-lettered",
                detail=f"set aside ({kind}): {error.detail}",
                updated=datetime.now(UTC),
                attempts=dequeue_count,
                problem=details,
            ),
        )
        return QueueResult("dead-lettered", key, detail=error.detail)

    def _notify(self, queue: str | None, state: SendState) -> None:
        """Tell the producer's queue; a completion that cannot be sent is logged, never a reason to resend."""
        if queue is None or self._completions is None:
            return
        try:
            self._completions.notify(queue, json.dumps(state.as_json()).encode())
        except DependencyUnavailable as error:
            FAILURES.add(1, {"reason": "completion-not-sent", "trigger": "queue"})
            log.warning("could not send the completion message: %s", error.detail, extra={"notify_queue": queue})

    def _owner(self, queued: QueuedSend) -> str:
        """The key namespace: the scheduling HTTP caller's, else this queue's producers'."""
        return queued.owner if queued.scope is Scope.HTTP else self._caller.owner

    def _letter_key(self, queued: QueuedSend) -> str:
        """A dead letter's key: the main queue's key as it came, else the key with its scope and owner."""
        return letter_key(queued.scope, queued.key, self._owner(queued))

    def _refusal(self, queued: QueuedSend) -> M365SendError | None:
        """Why this queue's producers may not send this message, if they may not.

        A queue message is checked against its queue's rule. A message an HTTP caller scheduled was
        checked against that caller's rule when it was taken, and is sent only if that caller's
        scheduled record exists: a producer cannot write such a wrapper to borrow an HTTP caller's rights.
        """
        if queued.scope is Scope.HTTP:
            try:
                record = self._engine.record(Scope.HTTP, queued.key, queued.owner)
            except DependencyUnavailable as error:
                return error
            if record is None:
                return SenderNotAllowed(
                    "no HTTP caller scheduled a send with this key (or its record expired): a message in a "
                    "scheduled send's wrapper is not taken from a queue producer",
                    exception="UnauthorizedAccessException",
                )
            return None
        if self._policy is None:
            return None
        try:
            self._policy.check(self._caller, queued.request)
        except SenderNotAllowed as error:
            return error
        return None
