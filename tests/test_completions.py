"""A queue producer that names a ``notify`` queue is told there when its send finishes: sent or dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue import BinaryBase64DecodePolicy, QueueClient

import function_app
from standins.cloud import LocalCloud
from standins.queue_host import QueueHost
from tests.conftest import status_of

Host = Callable[..., QueueHost]


def completions(connection_string: str, queue: str) -> list[dict[str, Any]]:
    client = QueueClient.from_connection_string(
        connection_string, queue, message_decode_policy=BinaryBase64DecodePolicy()
    )
    try:
        return [json.loads(m.content) for m in client.receive_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []  # never created: nothing was put there


def envelope(key: str, message: dict[str, Any], notify: str) -> bytes:
    return json.dumps({"id": key, "message": message, "notify": notify}).encode()


def test_a_sent_message_is_announced_on_the_named_queue_in_the_status_shape(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], storage_settings: dict[str, str]
) -> None:
    host = queue_host(M365_COMPLETION_QUEUES="orders-done")
    host.put_raw(envelope("order-1", seed_message, "orders-done"))

    host.drain()

    [done] = completions(storage_settings["M365Storage"], "orders-done")
    status = status_of("order-1").body
    assert (done["idempotencyKey"], done["via"], done["status"]) == ("order-1", "queue", "sent")
    assert done["graphRequestId"] == status["graphRequestId"]
    assert len(cloud.graph.sent) == 1


def test_a_dead_lettered_message_is_announced_with_its_problem(
    queue_host: Host, seed_message: dict[str, Any], storage_settings: dict[str, str]
) -> None:
    host = queue_host(M365_COMPLETION_QUEUES="orders-done2")
    host.put_raw(envelope("order-2", {**seed_message, "From": {"Address": "ceo@contoso.com"}}, "orders-done2"))

    host.drain()

    [done] = completions(storage_settings["M365Storage"], "orders-done2")
    assert done["status"] == "dead-lettered"
    assert done["problem"]["type"].endswith("sender-not-allowed")


def test_a_queue_not_in_the_allow_list_is_dead_lettered_and_nothing_is_sent(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], storage_settings: dict[str, str]
) -> None:
    host = queue_host(M365_COMPLETION_QUEUES="orders-done3")
    host.put_raw(envelope("order-3", seed_message, "someone-elses-queue"))

    host.drain()

    status = status_of("order-3").body
    assert status["status"] == "dead-lettered"
    assert "M365_COMPLETION_QUEUES" in status["detail"]
    assert cloud.graph.sent == []
    assert completions(storage_settings["M365Storage"], "someone-elses-queue") == []


def test_a_completion_that_cannot_be_sent_does_not_resend_the_email(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], azurite: Any
) -> None:
    host = queue_host(M365_COMPLETION_QUEUES="orders-done4")
    # No stand-in refuses one queue's messages: the client is told not to create the missing queue.
    function_app.current_worker().storage().completions._create_missing = False
    host.put_raw(envelope("order-4", seed_message, "orders-done4"))

    host.drain()

    assert len(cloud.graph.sent) == 1
    assert status_of("order-4").body["status"] == "sent"
    assert host.poisoned() == 0


class WorkerDied(Exception):
    """Stands for the worker dying at this point: the host delivers the message again later."""


def test_a_completion_lost_to_a_worker_that_died_after_recording_is_sent_on_redelivery(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], storage_settings: dict[str, str]
) -> None:
    host = queue_host(M365_COMPLETION_QUEUES="orders-done5")
    storage = function_app.current_worker().storage()
    real_notify, calls = storage.notify, []

    def dies_before_notifying(queue: str, body: bytes) -> None:
        calls.append(queue)
        if len(calls) == 1:
            raise WorkerDied  # the record says sent; the completion never left
        real_notify(queue, body)

    storage.notify = dies_before_notifying  # type: ignore[method-assign]
    host.put_raw(envelope("order-5", seed_message, "orders-done5"))

    host.drain()

    [done] = completions(storage_settings["M365Storage"], "orders-done5")
    assert (done["idempotencyKey"], done["status"]) == ("order-5", "sent")
    assert done["graphRequestId"] == status_of("order-5").body["graphRequestId"]
    assert len(cloud.graph.sent) == 1


def test_a_copy_that_runs_out_of_attempts_after_another_copy_sent_the_key_is_a_duplicate_not_a_dead_letter(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], storage_settings: dict[str, str]
) -> None:
    # Found by the simulation (seed 3274): two copies of one message (a producer that enqueued twice,
    # or a hand-back whose answer was lost); the second ran out of attempts after the first sent it.
    host = queue_host(M365_COMPLETION_QUEUES="orders-done6", M365_QUEUE_MAX_ATTEMPTS="3")
    original = envelope("order-6", seed_message, "orders-done6")
    host.put_raw(original)
    host.drain()
    exhausted_copy = b'{"m365send":{"attempt":7,"key":"order-6"},"original":' + original + b"}"

    host.put_raw(exhausted_copy)
    host.drain()

    told = completions(storage_settings["M365Storage"], "orders-done6")
    assert [c["status"] for c in told] == ["sent", "sent"]
    assert function_app.current_worker().storage().dead_letters.list() == []
    assert status_of("order-6").body["status"] == "sent"
    assert len(cloud.graph.sent) == 1
