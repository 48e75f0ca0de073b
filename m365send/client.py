"""``OutboxClient``: how other services enqueue email for m365send (and how m365send hands messages back).

Messages are the JSON envelope of ``schemas/queue-envelope.schema.json``, base64-encoded as
``host.json`` (``messageEncoding: base64``) expects. The message is validated before it is
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
from collections.abc import Mapping
from typing import Any

from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy

from m365send.envelope import MAX_KEY_LENGTH
from m365send.errors import DependencyUnavailable, FieldProblem, PayloadTooLarge, RequestInvalid
from m365send.models import parse_send_request

__all__ = ["MAX_QUEUE_MESSAGE", "OutboxClient"]

# Azure Storage queue messages are at most 64 KiB, counted after base64 encoding.
MAX_QUEUE_MESSAGE = 64 * 1024


class OutboxClient:
    """Enqueues email envelopes on the outbox queue."""

    def __init__(self, *, queue: QueueClient) -> None:
        self._queue = queue

    @classmethod
    def from_connection_string(cls, connection_string: str, queue_name: str) -> OutboxClient:
        """For Azurite or a connection string (prefer identity-based access in Azure)."""
        return cls(
            queue=QueueClient.from_connection_string(
                connection_string, queue_name, message_encode_policy=TextBase64EncodePolicy()
            )
        )

    @classmethod
    def from_queue_url(cls, queue_url: str, *, credential: TokenCredential) -> OutboxClient:
        """For a queue URL and an Entra credential (the producer needs Storage Queue Data Message Sender)."""
        return cls(
            queue=QueueClient.from_queue_url(
                queue_url, credential=credential, message_encode_policy=TextBase64EncodePolicy()
            )
        )

    def create_queue(self) -> None:
        """Create the queue if it does not exist (local development; Bicep creates it in Azure)."""
        with contextlib.suppress(ResourceExistsError):
            self._queue.create_queue()

    def enqueue(
        self,
        message: Mapping[str, Any],
        *,
        key: str | None = None,
        sender: str | None = None,
    ) -> str:
        """Validate ``message`` and enqueue it; returns the idempotency key (``key``, or a new GUID)."""
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
        body = json.dumps({"id": key, "message": dict(message), "sender": sender})
        encoded_size = 4 * math.ceil(len(body.encode()) / 3)
        if encoded_size > MAX_QUEUE_MESSAGE:
            raise PayloadTooLarge(
                f"the envelope is {encoded_size:,} bytes once base64-encoded; a queue message holds at most "
                f"{MAX_QUEUE_MESSAGE:,}. Send large attachments through the HTTP API",
                exception="ArgumentException",
            )
        self._send(body, delay=None)
        return key

    def requeue(self, body: str, *, delay: float) -> None:
        """Put an envelope back on the queue, invisible for ``delay`` seconds (m365send's own retries)."""
        self._send(body, delay=delay)

    def _send(self, body: str, *, delay: float | None) -> None:
        try:
            self._queue.send_message(body, visibility_timeout=math.ceil(delay) if delay else None)
        except AzureError as exc:
            raise DependencyUnavailable(f"the outbox queue is unavailable: {type(exc).__name__}") from None
