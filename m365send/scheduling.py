"""Scheduled sends taken over HTTP or the CLI: recorded as scheduled, then put on the outbox queue.

The queue is where a message waits for its ``SendAt`` (see ``m365send.outbox``), so a send that
arrives another way is handed to it: the engine records the key as scheduled (a repeat finds it
so), and a copy goes on the queue, invisible until it is due. Every ``Scheduled`` answer enqueues
one: a repeat after a lost answer or a failed enqueue makes sure a copy waits, and the send-once
engine sends the key once however many copies come due.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

from m365send.errors import M365SendError
from m365send.message import SendRequest
from m365send.outbox import MAX_VISIBILITY_DELAY
from m365send.sendlog import Scope
from m365send.sendonce import Failed, Outcome, Scheduled, SendCommand, SendOnce

__all__ = ["Outbox", "is_ahead", "schedule"]


class Outbox(Protocol):
    """Enqueues a message on the outbox queue (``m365send.client.OutboxClient``)."""

    def enqueue(
        self,
        message: Mapping[str, Any],
        *,
        key: str | None = None,
        sender: str | None = None,
        delay: float | None = None,
        scope: Scope = Scope.QUEUE,
        owner: str = "",
    ) -> str:
        """Validate and enqueue; the key (``scope`` and ``owner``: whose key it is)."""
        ...


def is_ahead(request: SendRequest, now: datetime | None = None) -> bool:
    """Whether the request's ``SendAt`` is still to come (a time already past sends now)."""
    send_at = request.message.send_at
    return send_at is not None and send_at > (now or datetime.now(UTC))


def schedule(
    request: SendRequest, message: Mapping[str, Any], *, key: str, engine: SendOnce, outbox: Outbox, owner: str = ""
) -> Outcome:
    """Record the HTTP caller's ``key`` as scheduled and put ``message`` on the queue until it is due.

    The key stays in the HTTP namespace, queued copy included: a repeat of the request (before or
    after SendAt) is the same key, so one message is sent whichever comes first.
    """
    outcome = engine.handle(SendCommand(request, Scope.HTTP, key, can_wait=True, owner=owner))
    if isinstance(outcome, Scheduled):
        delay = min(outcome.delay(datetime.now(UTC)), MAX_VISIBILITY_DELAY)
        try:
            outbox.enqueue(message, key=key, sender=request.sender, delay=delay, scope=Scope.HTTP, owner=owner)
        except M365SendError as error:
            return Failed(error)  # the record says scheduled: a retry of this request enqueues again
    return outcome
