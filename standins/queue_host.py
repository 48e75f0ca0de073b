"""What the Functions host's queue listener does, for the real decorated queue function.

It receives messages from the queue (Azurite), decodes them as host.json's ``messageEncoding`` says
(``none``: the message text as it is; ``base64``: decoded, a message that is not base64 failing as
it does in the host), calls the function with a real ``QueueMessage``, deletes the message when the
function returns, and when it raises leaves it to reappear, moving it to ``<queue>-poison`` after
``maxDequeueCount`` tries.
``parallel`` functions run at once, as the host runs up to batchSize + newBatchThreshold.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as ReceivedMessage

from m365send.client import OutboxClient

__all__ = ["HOST_JSON", "QueueHost"]

HOST_JSON: dict[str, Any] = json.loads((Path(__file__).resolve().parent.parent / "host.json").read_text())


class QueueHost:
    """Drives one queue function the way the Functions host would."""

    def __init__(self, connection_string: str, queue_name: str, *, function: Callable[[Any], None]) -> None:
        self.queue = QueueClient.from_connection_string(connection_string, queue_name)
        self.poison = QueueClient.from_connection_string(connection_string, f"{queue_name}-poison")
        self.producer = OutboxClient.from_connection_string(connection_string, queue_name)
        self.producer.create_queue()
        self._function = function
        self.max_dequeue_count = int(HOST_JSON["extensions"]["queues"]["maxDequeueCount"])
        self.message_encoding = str(HOST_JSON["extensions"]["queues"].get("messageEncoding", "base64"))
        self.failures: list[BaseException] = []

    def put_raw(self, body: bytes) -> None:
        """Enqueue bytes exactly as a producer using base64 encoding would."""
        self.queue.send_message(base64.b64encode(body).decode())

    def put_text(self, text: str) -> None:
        """Enqueue text as it is, as the Azure SDKs do by default (no encoding policy)."""
        self.queue.send_message(text)

    def _body(self, content: str) -> bytes:
        if self.message_encoding == "none":
            return content.encode()
        return base64.b64decode(content, validate=True)

    def _handle(self, received: ReceivedMessage) -> None:
        try:
            # The concrete class the Python worker hands to queue triggers (it carries dequeue_count).
            message = QueueMessage(  # type: ignore[no-untyped-call]
                id=received.id,
                body=self._body(received.content),
                dequeue_count=received.dequeue_count,
                pop_receipt=received.pop_receipt,
            )
            self._function(message)
        except Exception as exc:
            self.failures.append(exc)
            if (received.dequeue_count or 0) >= self.max_dequeue_count:
                if not self._exists(self.poison):
                    self.poison.create_queue()
                self.poison.send_message(received.content)
                self.queue.delete_message(received)
            else:  # visible again at once: a test need not wait out the host's visibility timeout
                self.queue.update_message(received, visibility_timeout=0)
            return
        self.queue.delete_message(received)

    def run_once(self) -> int:
        """Process every message visible now, one at a time; returns how many were processed."""
        processed = 0
        for received in self.queue.receive_messages(messages_per_page=16, visibility_timeout=30):
            processed += 1
            self._handle(received)
        return processed

    def drain(self, *, timeout: float = 30.0, parallel: int = 1) -> None:
        """Run until the queue is empty (including messages handed back with a delay)."""
        deadline = time.monotonic() + timeout

        def done(running: int) -> bool:
            if time.monotonic() > deadline:
                raise AssertionError("the queue did not drain in time")
            return not running and not self.waiting()

        self._run(done, parallel)

    def serve(self, stop: threading.Event, *, parallel: int = 1) -> None:
        """Run until ``stop`` is set, as the host's listener does while the app is up."""
        self._run(lambda _: stop.is_set(), parallel)

    def _run(self, done: Callable[[int], bool], parallel: int) -> None:
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            running: set[Future[None]] = set()
            while not done(len(running)):
                free = parallel - len(running)
                received = []
                if free > 0:
                    received = list(
                        self.queue.receive_messages(
                            messages_per_page=min(free, 32), max_messages=min(free, 32), visibility_timeout=300
                        )
                    )
                    running |= {pool.submit(self._handle, message) for message in received}
                if running:
                    finished, _ = wait(running, timeout=0.1, return_when=FIRST_COMPLETED)
                    running -= finished
                elif not received:
                    time.sleep(0.1)

    def waiting(self) -> int:
        """Messages still on the queue, visible or not."""
        return int(self.queue.get_queue_properties().approximate_message_count or 0)

    def poisoned(self) -> int:
        """Messages on the poison queue."""
        return (
            int(self.poison.get_queue_properties().approximate_message_count or 0) if self._exists(self.poison) else 0
        )

    @staticmethod
    def _exists(queue: QueueClient) -> bool:
        try:
            queue.get_queue_properties()
        except ResourceNotFoundError:
            return False
        return True
