"""The status look-up: ``GET /api/messages/{key}`` and ``m365send status KEY``, for every state a send can be in.

The pure mapping (record + dead letter → state) is specified first; then the real functions, over
Azurite and the stand-ins, show each state as a caller meets it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import function_app
from m365send import cli
from m365send.sendlog import Scope, SendRecord, SendStatus
from m365send.status import StatusBook, send_state
from standins.cloud import LocalCloud
from standins.graph import Fault
from standins.queue_host import QueueHost
from tests.conftest import Configure, status_of

Host = Callable[..., QueueHost]
NOW = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def record(status: SendStatus, **changes: Any) -> SendRecord:
    base: dict[str, Any] = {
        "key": "queue:k",
        "status": status,
        "payload_hash": "h",
        "lease_until": NOW,
        "expires_at": NOW + timedelta(days=7),
        "created_at": NOW - timedelta(minutes=5),
        "updated_at": NOW - timedelta(minutes=1),
    }
    return SendRecord(**{**base, **changes})


@dataclass(frozen=True)
class Letter:
    kind: str = "permanent"
    reason: str = "Graph refused a recipient"
    problem: dict[str, Any] = field(default_factory=lambda: {"type": "urn:m365send:problem:recipients-rejected"})
    recorded_at: datetime = NOW
    dequeue_count: int = 1


# --- the mapping ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [SendStatus.RESERVED, SendStatus.PENDING, SendStatus.UNKNOWN])
def test_a_send_still_to_finish_is_pending(status: SendStatus) -> None:
    state = send_state("k", Scope.QUEUE, record(status, attempts=2), None)

    assert state is not None
    assert (state.status, state.attempts) == ("pending", 2)


def test_a_sent_record_is_sent_with_graphs_ids() -> None:
    sent = record(SendStatus.SENT, graph_request_id="g-1", internet_message_id="<m@contoso.com>")

    body = send_state("k", Scope.HTTP, sent, None).as_json()  # type: ignore[union-attr]

    assert body["status"] == "sent"
    assert (body["graphRequestId"], body["internetMessageId"]) == ("g-1", "<m@contoso.com>")
    assert body["firstSeen"] == "2026-11-30T07:55:00Z"


def test_a_scheduled_record_is_scheduled_with_its_send_at_and_no_attempts() -> None:
    body = send_state("k", Scope.QUEUE, record(SendStatus.SCHEDULED, send_at=NOW + timedelta(days=1)), None).as_json()  # type: ignore[union-attr]

    assert (body["status"], body["sendAt"], body["attempts"]) == ("scheduled", "2026-12-01T08:00:00Z", 0)


def test_a_permanent_failure_is_failed_over_http_and_dead_lettered_on_the_queue() -> None:
    answer = {"httpStatus": 403, "body": {"type": "urn:x", "title": "t", "detail": "d", "requestId": "r"}}
    failed = record(SendStatus.FAILED, answer=answer)

    over_http = send_state("k", Scope.HTTP, failed, None)
    queued = send_state("k", Scope.QUEUE, failed, None)

    assert over_http is not None
    assert queued is not None
    assert (over_http.status, queued.status) == ("failed", "dead-lettered")
    assert over_http.problem == {"type": "urn:x", "title": "t", "detail": "d"}


def test_a_dead_letter_newer_than_the_record_wins() -> None:
    state = send_state("k", Scope.QUEUE, record(SendStatus.PENDING), Letter(kind="exhausted"))

    assert state is not None
    assert state.status == "dead-lettered"
    assert "exhausted" in state.detail


def test_a_dead_letter_without_a_record_is_dead_lettered() -> None:
    state = send_state("k", Scope.QUEUE, None, Letter(kind="invalid", dequeue_count=1))

    assert state is not None
    assert (state.status, state.attempts) == ("dead-lettered", 1)


def test_a_record_newer_than_the_dead_letter_wins_after_a_replay() -> None:
    sent_later = record(SendStatus.SENT, updated_at=NOW + timedelta(minutes=1))

    state = send_state("k", Scope.QUEUE, sent_later, Letter())

    assert state is not None
    assert state.status == "sent"


def test_nothing_known_is_none() -> None:
    assert send_state("k", Scope.HTTP, None, None) is None


def test_without_via_the_book_answers_the_latest_of_both_ways() -> None:
    class Records:
        def get(self, key: str) -> SendRecord | None:
            older = record(SendStatus.SENT, key="http:k", updated_at=NOW - timedelta(hours=1))
            newer = record(SendStatus.PENDING, key="queue:k", updated_at=NOW)
            return {"http:k": older, "queue:k": newer}.get(key)

    class NoDeadLetters:
        def latest_for(self, key: str) -> None:
            return None

    book = StatusBook(records=Records(), dead_letters=NoDeadLetters())

    latest = book.look_up("k")
    over_http = book.look_up("k", Scope.HTTP)

    assert latest is not None
    assert over_http is not None
    assert (latest.via, latest.status) == (Scope.QUEUE, "pending")
    assert (over_http.via, over_http.status) == (Scope.HTTP, "sent")


# --- the real functions -----------------------------------------------------------------------------


@pytest.fixture
def with_storage(configure: Configure, storage_settings: dict[str, str]) -> Configure:
    def _configure(**overrides: str | None) -> Any:
        return configure(**{**storage_settings, **overrides})

    return _configure


def test_an_http_send_with_a_key_is_sent_with_its_graph_request_id(
    with_storage: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = with_storage()
    sent = api.post(seed_message, headers={"Idempotency-Key": "order-7"})

    answer = status_of("order-7")

    assert sent.status == 202
    assert answer.status == 200
    assert answer.body["status"] == "sent"
    assert answer.body["via"] == "http"
    assert answer.body["graphRequestId"] == sent.body["graphRequestId"]
    assert answer.body["attempts"] == 1
    assert "Body" not in json.dumps(answer.body)


def test_a_message_sent_through_a_draft_has_its_internet_message_id(
    with_storage: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = with_storage(M365_DELIVERY_MODE="verified")

    api.post(seed_message, headers={"Idempotency-Key": "order-8"})
    answer = status_of("order-8")

    assert answer.body["status"] == "sent"
    assert answer.body["internetMessageId"] == f"<{cloud.graph.sent[0].id}@contoso.com>"


def test_an_unknown_key_is_a_404_problem(with_storage: Configure) -> None:
    with_storage()

    answer = status_of("never-sent")

    assert answer.status == 404
    assert answer.body["type"].endswith("send-not-found")
    assert "never-sent" in answer.body["detail"]


def test_a_via_other_than_http_or_queue_is_a_400_naming_via(with_storage: Configure) -> None:
    with_storage()

    answer = status_of("k", via="smtp")

    assert answer.status == 400
    assert answer.body["errors"][0]["field"] == "via"


def test_a_queued_send_that_failed_transiently_is_pending_with_its_attempts(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_QUEUE_RETRY_BASE_SECONDS="60")
    cloud.graph.inject(Fault(503, retry_after="60"))
    host.producer.enqueue(seed_message, key="invoice-9")

    host.run_once()
    answer = status_of("invoice-9", via="queue")

    assert answer.body["status"] == "pending"
    assert answer.body["attempts"] == 1
    assert cloud.graph.sent == []


def test_a_queued_send_refused_for_good_is_dead_lettered_with_its_problem(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    host.producer.enqueue({**seed_message, "From": {"Address": "ceo@contoso.com"}}, key="invoice-10")

    host.drain()
    answer = status_of("invoice-10")

    assert answer.body["status"] == "dead-lettered"
    assert answer.body["problem"]["type"].endswith("sender-not-allowed")


def test_an_invalid_queued_message_is_dead_lettered_though_it_has_no_record(
    queue_host: Host, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    host.put_raw(json.dumps({"id": "invoice-11", "message": {**seed_message, "To": []}}).encode())

    host.drain()
    answer = status_of("invoice-11")

    assert answer.body["status"] == "dead-lettered"
    assert "invalid" in answer.body["detail"]


def test_the_cli_prints_the_state_and_exits_1_for_an_unknown_key(
    with_storage: Configure, seed_message: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    api = with_storage()
    api.post(seed_message, headers={"Idempotency-Key": "order-12"})

    known = cli.main(["status", "order-12"], worker=function_app.current_worker())
    printed = capsys.readouterr().out
    unknown = cli.main(["status", "nope"], worker=function_app.current_worker())
    error = capsys.readouterr().err

    assert known == 0
    assert printed.startswith("order-12 (http): sent")
    assert "Graph request id" in printed
    assert unknown == 1
    assert error.count("\n") == 1
    assert error.startswith("error: no send with idempotency key 'nope'")


def test_the_cli_json_is_the_http_body(with_storage: Configure, seed_message: dict[str, Any], capsys: Any) -> None:
    api = with_storage()
    api.post(seed_message, headers={"Idempotency-Key": "order-13"})

    cli.main(["status", "order-13", "--json"], worker=function_app.current_worker())

    assert json.loads(capsys.readouterr().out) == status_of("order-13").body


def test_an_http_send_refused_for_good_is_failed_with_the_problem_it_answered(
    with_storage: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = with_storage(M365_ALLOWED_SENDERS="boss@contoso.com")  # allowed here, but Exchange says no
    refused = api.post(
        {**seed_message, "From": {"Address": "boss@contoso.com"}}, headers={"Idempotency-Key": "order-14"}
    )

    answer = status_of("order-14", via="http")

    assert refused.status == 403
    assert answer.body["status"] == "failed"
    assert answer.body["problem"]["type"] == refused.body["type"]
    assert answer.body["problem"]["detail"] == refused.body["detail"]


def test_an_http_send_in_flight_is_pending(
    with_storage: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = with_storage(M365_SEND_LEASE_SECONDS="30")
    cloud.graph.inject(Fault(202, delay=1.5, after=True))
    sending = threading.Thread(target=api.post, args=(seed_message,), kwargs={"headers": {"Idempotency-Key": "o-15"}})
    sending.start()
    try:
        deadline = time.monotonic() + 5
        while status_of("o-15").status == 404 and time.monotonic() < deadline:
            time.sleep(0.05)
        answer = status_of("o-15")
    finally:
        sending.join()

    assert answer.body["status"] == "pending"
    assert answer.body["detail"] == "an attempt is sending it now"
    assert status_of("o-15").body["status"] == "sent"
