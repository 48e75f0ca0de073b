"""Queue-triggered sends through the real ``outbox`` function, with Azurite and the stand-ins.

Guarantee under test: every valid message is sent once per idempotency key; permanent failures are
dead-lettered with a reason after one attempt; transient ones are handed back to the queue; a crash
between Graph's 202 and the record update can resend, and such a resend is flagged, never silent.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable
from typing import Any

import pytest

import function_app
from m365send import cli
from m365send.errors import PayloadTooLarge, RequestInvalid
from m365send.outbox import OutboxProcessor
from m365send.sendlog import Scope, scoped_key
from m365send.tables import TableSendLog
from standins.cloud import CLIENT_SECRET_NAME, SENDER, LocalCloud
from standins.graph import Fault
from standins.queue_host import QueueHost
from tests.conftest import AttachmentStore, SendApi

Host = Callable[..., QueueHost]
SEND_PATH = f"/v1.0/users/{SENDER}/sendMail"


class Crash(Exception):
    """Stands for the worker process dying at this point."""


def dead_letters() -> list[Any]:
    return function_app.current_worker().storage().dead_letters.list()


def message_to(address: str, seed_message: dict[str, Any]) -> dict[str, Any]:
    return {**seed_message, "To": [{"Address": address}]}


def test_n_distinct_messages_are_n_sends(queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    host = queue_host()
    for n in range(20):
        host.producer.enqueue(message_to(f"r{n}@fabrikam.com", seed_message), key=f"order-{n}")

    host.drain()

    assert sorted(s.message["toRecipients"][0]["emailAddress"]["address"] for s in cloud.graph.sent) == sorted(
        f"r{n}@fabrikam.com" for n in range(20)
    )
    assert dead_letters() == []


def test_the_same_message_delivered_twice_is_sent_once(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    host.producer.enqueue(seed_message, key="invoice-42")
    host.producer.enqueue(seed_message, key="invoice-42")

    host.drain()

    assert len(cloud.graph.sent) == 1
    assert dead_letters() == []
    record = function_app.current_worker().sends().get(scoped_key(Scope.QUEUE, "invoice-42"))
    assert record is not None
    assert record.status == "sent"


def test_a_bare_message_is_keyed_by_its_queue_message_id(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    host.put_raw(json.dumps(seed_message).encode())

    host.drain()

    assert len(cloud.graph.sent) == 1


def test_a_429_storm_with_retry_after_sends_everything_and_dead_letters_nothing(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_GRAPH_MAX_RETRY_WAIT="0.5")
    cloud.graph.inject(*[Fault(429, retry_after="1")] * 8)
    for n in range(5):
        host.producer.enqueue(message_to(f"r{n}@fabrikam.com", seed_message), key=f"storm-{n}")

    host.drain()

    assert len(cloud.graph.sent) == 5
    assert dead_letters() == []
    assert host.poisoned() == 0


def test_503_then_success_is_one_send(queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    host = queue_host()
    cloud.graph.inject(Fault(503))
    host.producer.enqueue(seed_message, key="k")

    host.drain()

    assert len(cloud.graph.sent) == 1
    assert cloud.graph.requests[SEND_PATH] == 2


def test_graph_down_longer_than_the_retry_budget_returns_the_message_to_the_queue(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_GRAPH_MAX_ATTEMPTS="2", M365_QUEUE_RETRY_BASE_SECONDS="1")
    cloud.graph.inject(Fault(503), Fault(503), Fault(503))
    host.producer.enqueue(seed_message, key="k")

    host.run_once()

    assert cloud.graph.sent == []
    assert host.waiting() == 1  # handed back, invisible for a while: not lost
    assert dead_letters() == []
    host.drain()
    assert len(cloud.graph.sent) == 1


def test_a_long_retry_after_hands_the_message_back_instead_of_sleeping(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_GRAPH_MAX_RETRY_WAIT="5")
    cloud.graph.inject(Fault(429, retry_after="120"))
    host.producer.enqueue(seed_message, key="k")

    host.run_once()

    assert cloud.graph.requests[SEND_PATH] == 1
    assert host.waiting() == 1
    assert list(host.queue.peek_messages()) == []  # invisible: it comes back in about two minutes


@pytest.mark.parametrize(
    ("case", "prepare"),
    [
        ("validation", lambda c, m: m.update(To=[])),
        ("sender-not-allowed", lambda c, m: m["From"].update(Address="ceo@contoso.com")),
        ("recipients-rejected", lambda c, m: c.graph.unresolvable.add("recipient@outlook.com")),
        ("send-as-denied", lambda c, m: c.graph.app_scope.update({c.app.client_id: set()})),
        ("credential", lambda c, m: c.vault.set_secret(CLIENT_SECRET_NAME, "wrong-secret")),
    ],
)
def test_each_permanent_failure_is_one_attempt_and_a_dead_letter_with_its_reason(
    queue_host: Host,
    cloud: LocalCloud,
    seed_message: dict[str, Any],
    case: str,
    prepare: Callable[[LocalCloud, dict[str, Any]], object],
) -> None:
    host = queue_host()
    prepare(cloud, seed_message)
    host.put_raw(json.dumps({"id": "k1", "message": seed_message}).encode())

    host.drain()

    assert cloud.graph.requests[SEND_PATH] <= 1
    assert cloud.graph.sent == []
    [letter] = dead_letters()
    assert letter.key == "k1"
    assert letter.problem["type"] == f"urn:m365send:problem:{case}"
    assert letter.reason
    assert host.poisoned() == 0
    assert host.failures == []


@pytest.mark.parametrize("body", [b"this is not json", b"\xff\xfe\x00", b"[1, 2]", b'{"id": "", "message": {}}'])
def test_an_undecodable_message_is_dead_lettered_not_retried(queue_host: Host, body: bytes) -> None:
    host = queue_host()
    host.put_raw(body)

    host.drain()

    [letter] = dead_letters()
    assert letter.kind == "invalid"
    assert letter.payload == body
    assert host.failures == []


def test_same_key_with_a_different_payload_is_a_conflict_and_not_sent(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    host.producer.enqueue(seed_message, key="k")
    host.drain()
    host.producer.enqueue({**seed_message, "Subject": "Something else"}, key="k")

    host.drain()

    assert [s.message["subject"] for s in cloud.graph.sent] == ["Example email subject"]
    [letter] = dead_letters()
    assert letter.kind == "conflict"
    assert letter.problem["status"] == 409


# --- crash points ---------------------------------------------------------------------------------


def test_crash_before_the_graph_call_ends_in_exactly_one_send(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = queue_host()
    host.producer.enqueue(seed_message, key="k")
    service = function_app.current_worker().service()
    real_send = service.send
    crashes = iter([True])
    monkeypatch.setattr(
        service,
        "send",
        lambda r, **kw: (_ for _ in ()).throw(Crash()) if next(crashes, False) else real_send(r, **kw),
    )

    host.drain()

    assert len(cloud.graph.sent) == 1
    assert isinstance(host.failures[0], Crash)
    record = function_app.current_worker().sends().get(scoped_key(Scope.QUEUE, "k"))
    assert record is not None
    assert record.status == "sent"


def test_crash_after_graph_accepted_resends_once_and_flags_it(
    queue_host: Host,
    cloud: LocalCloud,
    seed_message: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = queue_host()
    host.producer.enqueue(seed_message, key="k")
    real_mark_sent = TableSendLog.mark_sent
    crashes = iter([True])

    def mark_sent(self: TableSendLog, *args: Any, **kwargs: Any) -> None:
        if next(crashes, False):
            raise Crash
        real_mark_sent(self, *args, **kwargs)

    monkeypatch.setattr(TableSendLog, "mark_sent", mark_sent)

    with caplog.at_level(logging.WARNING):
        host.drain()

    # At-least-once: the message may go out twice, but the second send is flagged, never silent.
    assert len(cloud.graph.sent) == 2
    record = function_app.current_worker().sends().get(scoped_key(Scope.QUEUE, "k"))
    assert record is not None
    assert record.status == "sent"
    assert record.possible_duplicate
    assert record.attempts == 2
    assert any("may duplicate" in r.getMessage() for r in caplog.records)


def test_crash_after_recording_the_send_is_acknowledged_without_a_second_send(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = queue_host()
    host.producer.enqueue(seed_message, key="k")
    real_process = OutboxProcessor.process
    crashes = iter([True])

    def process(self: OutboxProcessor, *args: Any, **kwargs: Any) -> Any:
        result = real_process(self, *args, **kwargs)
        if next(crashes, False):
            raise Crash
        return result

    monkeypatch.setattr(OutboxProcessor, "process", process)

    host.drain()

    assert len(cloud.graph.sent) == 1
    assert len(host.failures) == 1


def test_storage_failures_go_to_the_poison_queue_after_max_dequeue_count(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    host = queue_host()
    host.producer.enqueue(seed_message, key="k")
    monkeypatch.setattr(OutboxProcessor, "process", lambda *a, **k: (_ for _ in ()).throw(Crash()))

    host.drain()

    assert host.poisoned() == 1
    assert len(host.failures) == host.max_dequeue_count


# --- producers and operators ----------------------------------------------------------------------


def test_the_producer_client_refuses_an_invalid_message_before_enqueueing(
    queue_host: Host, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    seed_message["To"] = None

    with pytest.raises(RequestInvalid):
        host.producer.enqueue(seed_message)

    assert host.waiting() == 0


def test_the_producer_client_refuses_a_message_too_big_for_a_queue(
    queue_host: Host, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    seed_message["Body"] = "x" * 60_000

    with pytest.raises(PayloadTooLarge, match="64"):
        host.producer.enqueue(seed_message)


def test_dead_letters_are_listed_and_replayed_once_the_cause_is_fixed(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    host = queue_host()
    cloud.graph.unresolvable.add("recipient@outlook.com")
    host.producer.enqueue(seed_message, key="k")
    host.drain()
    assert cli.main(["deadletters", "list", "--json"], worker=function_app.current_worker()) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["key"] == "k"
    assert "ErrorInvalidRecipients" in listed["reason"]

    cloud.graph.unresolvable.clear()  # the cause is fixed
    assert cli.main(["deadletters", "replay", listed["id"]], worker=function_app.current_worker()) == 0
    host.drain()

    assert len(cloud.graph.sent) == 1
    assert dead_letters() == []


def test_a_conflict_dead_letter_is_not_replayed(
    queue_host: Host, seed_message: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    host = queue_host()
    host.producer.enqueue(seed_message, key="k")
    host.producer.enqueue({**seed_message, "Subject": "other"}, key="k")
    host.drain()
    [letter] = dead_letters()

    assert cli.main(["deadletters", "replay", letter.id], worker=function_app.current_worker()) == 1
    assert "new id" in capsys.readouterr().err


def test_messages_processed_in_parallel_are_each_sent_once(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    for n in range(24):
        host.producer.enqueue(message_to(f"r{n}@fabrikam.com", seed_message), key=f"p-{n}")
    host.producer.enqueue(message_to("r0@fabrikam.com", seed_message), key="p-0")  # a duplicate, in the same batch

    host.drain(parallel=8)

    assert len(cloud.graph.sent) == 24
    assert dead_letters() == []


def test_a_queued_message_with_a_large_blob_attachment_is_sent_through_a_draft(
    queue_host: Host, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    data = os.urandom(6 * 1024 * 1024)  # far over the 64 KiB a queue message may carry
    host = queue_host(M365_ATTACHMENT_CONTAINERS=attachment_store.container)
    host.producer.enqueue(
        {**seed_message, "Attachments": [{"Blob": attachment_store.put("scan.pdf", data)}]}, key="scan-1"
    )

    host.drain()

    [sent] = cloud.graph.sent
    assert sent.via_draft
    assert sent.attachments[0].data() == data
    assert dead_letters() == []


def test_a_queued_message_whose_blob_is_missing_is_dead_lettered_naming_the_blob(
    queue_host: Host, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_ATTACHMENT_CONTAINERS=attachment_store.container)
    missing = f"{attachment_store.container}/not-uploaded-yet.pdf"
    host.producer.enqueue({**seed_message, "Attachments": [{"Blob": missing}]}, key="scan-2")

    host.drain()

    [letter] = dead_letters()
    assert letter.problem["type"] == "urn:m365send:problem:attachment-not-found"
    assert letter.problem["errors"][0]["field"] == "Attachments[0].Blob"
    assert cloud.graph.sent == []


# --- the bound, the key namespaces, the queue's size limit (send-once rules) -----------------------


def test_a_key_stuck_in_flight_ends_as_an_exhausted_dead_letter_not_a_loop(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_QUEUE_MAX_ATTEMPTS="4", M365_SEND_LEASE_SECONDS="0.3")
    sends = function_app.current_worker().sends()
    from m365send.envelope import payload_hash
    from m365send.models import parse_send_request

    # Another attempt holds the key and keeps renewing it for the whole test (a stuck sender).
    held = sends.reserve(scoped_key(Scope.QUEUE, "stuck"), payload_hash(parse_send_request(seed_message)))
    stop = threading.Event()

    def keep_renewing() -> None:
        current = held
        while not stop.wait(0.05):
            current = sends.renew(current)

    renewer = threading.Thread(target=keep_renewing)
    renewer.start()
    try:
        host.producer.enqueue(seed_message, key="stuck")
        host.drain(timeout=30)
    finally:
        stop.set()
        renewer.join()

    [letter] = dead_letters()
    assert letter.kind == "exhausted"
    assert cloud.graph.sent == []
    assert host.poisoned() == 0


def test_an_http_key_and_a_queue_id_spelled_like_it_never_collide(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    api = SendApi()
    assert api.post(seed_message, headers={"Idempotency-Key": "invoice-1"}).status == 202

    host.producer.enqueue({**seed_message, "Subject": "another message"}, key="http:invoice-1")
    host.drain()

    assert [s.message["subject"] for s in cloud.graph.sent] == ["Example email subject", "another message"]
    assert dead_letters() == []


def test_a_message_just_under_the_queue_limit_is_handed_back_whole_and_sent_later(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_GRAPH_MAX_ATTEMPTS="1")
    seed_message["Body"] = "Line of the monthly report.\n" * 1_640  # about 47 KB: 64 KB once base64-encoded
    key = host.producer.enqueue(seed_message, key="big-1")  # the producer leaves room for the hand-back
    [first] = host.queue.peek_messages()
    assert len(first.content) > 60_000
    cloud.graph.inject(Fault(429, retry_after="1"))

    host.drain(timeout=30)

    assert len(cloud.graph.sent) == 1
    assert host.poisoned() == 0
    assert dead_letters() == []
    assert key == "big-1"
