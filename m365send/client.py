"""``OutboxClient``: how other services enqueue email for m365send (and how m365send hands messages back).

Messages are the JSON envelope of ``schemas/queue-envelope.schema.json``, base64-encoded (the queue
function takes plain JSON text too: ``host.json`` has ``messageEncoding: none`` and the app decides
from the bytes). The message is validated before it is
enqueued, so a producer learns about a bad message at once rather than from a dead letter.

    from azure.identity import DefaultAzureCredential
    from m365send.client import OutboxClient

    outbox = OutboxClient.from_queue_url("https://<account>.queue.core.windows.net/email-outbox",
                                         credential=DefaultAzureCredential())
    outbox.enqueue({"To": [{"Address": "a@contoso.com"}], "From": {"Address": "noreply@contoso.com"},
                    "Subject": "Hello", "Body": "Hi"}, key="order-1234-confirmation")
"""

from __future__ import annotations

import contextlib
import json
import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueServiceClient, TextBase64EncodePolicy

from m365send.azure_errors import azure_errors
from m365send.envelope import MAX_KEY_LENGTH, MAX_QUEUE_MESSAGE, encoded_size, handback_size, queue_payload, wrap
from m365send.errors import DependencyUnavailable, FieldProblem, PayloadTooLarge, RequestInvalid
from m365send.parsing import parse_send_request
from m365send.sendlog import Scope
from m365send.storage_options import STORAGE_TIMEOUTS

__all__ = ["MAX_QUEUE_MESSAGE", "CompletionQueues", "OutboxClient", "PeekedMessage"]


def _payload(content: str | bytes) -> bytes:
    """A message's envelope bytes, whichever encoding its producer used."""
    return queue_payload(content if isinstance(content, bytes) else content.encode())


@dataclass(frozen=True)
class PeekedMessage:
    """A message seen on a queue without taking it."""

    id: str
    body: bytes
    dequeue_count: int
    inserted_on: datetime | None


class OutboxClient:
    """Enqueues email envelopes on the outbox queue."""

    def __init__(self, *, queue: QueueClient) -> None:
        self._queue = queue

    @property
    def queue_name(self) -> str:
        """The queue's name."""
        return str(self._queue.queue_name)

    @property
    def endpoint(self) -> str:
        """The queue's URL, without any SAS token (safe to show)."""
        return str(self._queue.url).split("?", 1)[0]

    def poison(self) -> OutboxClient:
        """The host's poison queue for this queue (``<queue>-poison``), with the same account and credential."""
        return OutboxClient(
            queue=QueueClient(
                account_url=self._queue.url.split("?", 1)[0].rsplit("/", 1)[0],
                queue_name=f"{self.queue_name}-poison",
                credential=self._queue.credential,
                message_encode_policy=TextBase64EncodePolicy(),
                # No decode policy: the host moves a message's text as it is, plain JSON or base64.
                **STORAGE_TIMEOUTS,
            )
        )

    def peek(self, *, limit: int = 32) -> list[PeekedMessage]:
        """Up to 32 messages from the front of the queue, without taking them (none if the queue does not exist)."""
        with azure_errors(f"the queue {self.queue_name}", where=self.endpoint):
            try:
                return [
                    PeekedMessage(str(m.id), _payload(m.content), int(m.dequeue_count or 0), m.inserted_on)
                    for m in self._queue.peek_messages(max_messages=min(limit, 32))
                ]
            except ResourceNotFoundError:
                return []

    def move_to(self, target: OutboxClient, *, body_for: Callable[[bytes], bytes], only: str | None = None) -> int:
        """Move messages (``only`` one id, else all visible) to ``target``, rewritten by ``body_for``; how many."""
        moved = 0
        with azure_errors(f"the queue {self.queue_name}", where=self.endpoint):
            try:
                for message in self._queue.receive_messages(messages_per_page=32, visibility_timeout=60):
                    if only is not None and message.id != only:
                        self._queue.update_message(message, visibility_timeout=0)
                        continue
                    target.requeue(body_for(_payload(message.content)), delay=0)
                    self._queue.delete_message(message)
                    moved += 1
            except ResourceNotFoundError:
                return moved
        return moved

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> OutboxClient:
        """For Azurite or a connection string (prefer identity-based access in Azure)."""
        return cls(
            queue=QueueClient.from_connection_string(
                connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy(), **STORAGE_TIMEOUTS
            )
        )

    @classmethod
    def from_queue_url(cls, queue_url: str, *, credential: TokenCredential) -> OutboxClient:
        """For a queue URL and an Entra credential (the producer needs Storage Queue Data Message Sender)."""
        return cls(
            queue=QueueClient.from_queue_url(
                queue_url, credential=credential, message_encode_policy=TextBase64EncodePolicy(), **STORAGE_TIMEOUTS
            )
        )

    def create_queue(self) -> None:
        """Create the queue if it does not exist (local development; Bicep creates it in Azure)."""
        with (
            azure_errors(f"the queue {self.queue_name}", where=self.endpoint),
            contextlib.suppress(ResourceExistsError),
        ):
            self._queue.create_queue()

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
        """Validate ``message`` and enqueue it (invisible for ``delay`` seconds); the idempotency key
        (``key``, or a new GUID). ``scope`` HTTP: ``key`` is an HTTP caller's (a send it scheduled),
        in ``owner``'s namespace."""
        key = str(uuid.uuid4()) if key is None else key
        if not key or len(key) > MAX_KEY_LENGTH:
            raise RequestInvalid(
                [
                    FieldProblem(
                        "Envelope.id", "argument", f"must be 1 to {MAX_KEY_LENGTH} characters", "ArgumentException"
                    )
                ]
            )
        parse_send_request(message, sender=sender)  # raises RequestInvalid naming each bad field
        body = json.dumps({"id": key, "message": dict(message), "sender": sender}).encode()
        # Room for the hand-back header too: a message that must wait for a retry is re-enqueued with it.
        size = encoded_size(handback_size(body, key, scope, owner))
        if size > MAX_QUEUE_MESSAGE:
            raise PayloadTooLarge(
                f"the envelope is {size:,} bytes once base64-encoded (with room for a retry header); a queue "
                f"message holds at most {MAX_QUEUE_MESSAGE:,}. Send large attachments as blob references",
                exception="ArgumentException",
            )
        wrapped = body if scope is Scope.QUEUE else wrap(body, key=key, attempt=0, scope=scope, owner=owner)
        self._send(wrapped, delay=delay)
        return key

    def requeue(self, body: bytes, *, delay: float) -> None:
        """Put a message back on the queue, invisible for ``delay`` seconds (m365send's own retries)."""
        self._send(body, delay=delay)

    def _send(self, body: bytes, *, delay: float | None) -> None:
        not_there = (
            f"the queue {self.queue_name} does not exist: create it (m365send enqueue --create-queue, or the Bicep)"
        )
        with azure_errors(
            f"the queue {self.queue_name}", where=self.endpoint, not_found=lambda: DependencyUnavailable(not_there)
        ):
            # A message waiting for a later try (or its SendAt) must not expire first: no time-to-live.
            self._queue.send_message(
                body.decode(),
                visibility_timeout=math.ceil(delay) if delay else None,
                time_to_live=-1 if delay else None,
            )


class CompletionQueues:
    """Completion messages on the queues producers name (``M365_COMPLETION_QUEUES``), base64 like the outbox."""

    def __init__(self, *, service: QueueServiceClient, create_missing: bool = False) -> None:
        self._service = service
        self._create_missing = create_missing

    def notify(self, queue: str, body: bytes) -> None:
        """Enqueue ``body`` on ``queue``; ``DependencyUnavailable`` when the queue is missing or unreachable."""
        client = self._service.get_queue_client(queue, message_encode_policy=TextBase64EncodePolicy())
        where = str(client.url).split("?", 1)[0]
        with azure_errors(f"the completion queue {queue}", where=where):
            if self._create_missing:  # local storage (Azurite) starts empty; in Azure the Bicep creates it
                with contextlib.suppress(ResourceExistsError):
                    client.create_queue()
            client.send_message(body.decode())
