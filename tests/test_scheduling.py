"""SendAt: a message scheduled for later waits on the outbox queue, is sent once when due, and says so meanwhile.

The queue holds it (visibility delays of at most 7 days at a time, chained for later times), so it
needs storage; the HTTP trigger and the CLI put a scheduled message on the queue themselves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import function_app
from m365send import cli
from m365send.outbox import MAX_VISIBILITY_DELAY
from m365send.sendlog import Scope, SendStatus, scoped_key
from standins.cloud import LocalCloud
from standins.queue_host import QueueHost
from tests.conftest import Configure, SendApi, status_of

Host = Callable[..., QueueHost]


def at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_a_queued_message_due_later_is_not_sent_until_then_and_then_once(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    host.producer.enqueue({**seed_message, "SendAt": at(3)}, key="reminder-1")

    host.run_once()
    waiting = status_of("reminder-1").body
    assert cloud.graph.sent == []
    host.drain()

    assert waiting["status"] == "scheduled"
    assert len(cloud.graph.sent) == 1
    assert status_of("reminder-1").body["status"] == "sent"
    assert "SendAt" not in json.dumps(cloud.graph.sent[0].message)


def test_waiting_for_send_at_is_not_an_attempt(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_QUEUE_MAX_ATTEMPTS="1")
    host.producer.enqueue({**seed_message, "SendAt": at(2)}, key="reminder-2")

    host.drain()

    assert len(cloud.graph.sent) == 1
    assert status_of("reminder-2").body["attempts"] == 1


def test_a_send_at_beyond_the_queues_seven_days_waits_seven_days_at_a_time(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    outcome = function_app.current_worker().outbox()
    body = json.dumps({"id": "renewal-1", "message": {**seed_message, "SendAt": at(30 * 86400)}}).encode()

    result = outcome.process(body, message_id="m-1", dequeue_count=1)

    assert (result.outcome, result.delay) == ("scheduled", MAX_VISIBILITY_DELAY)
    assert host.waiting() == 1  # the real queue took a 7-day visibility delay (and no time-to-live)
    assert cloud.graph.sent == []


def test_a_send_at_already_past_sends_now(queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    host = queue_host()
    host.producer.enqueue({**seed_message, "SendAt": at(-3600)}, key="late-1")

    host.drain()

    assert len(cloud.graph.sent) == 1


def test_a_send_at_more_than_90_days_ahead_is_a_400_naming_send_at(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(**storage_settings)

    answer = api.post({**seed_message, "SendAt": at(91 * 86400)})

    assert answer.status == 400
    assert [(e["field"], e["code"]) for e in answer.body["errors"]] == [("SendAt", "too_far")]
    assert cloud.graph.sent == []


@pytest.mark.parametrize(
    ("value", "code"),
    [("2026-12-01T08:00:00", "invalid_time"), ("tomorrow", "invalid_time"), (1764576000, "invalid_time")],
)
def test_a_send_at_without_a_zone_or_not_a_time_is_a_400(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], value: Any, code: str
) -> None:
    answer = configure().post({**seed_message, "sendAt": value})

    assert answer.status == 400
    assert [(e["field"], e["code"]) for e in answer.body["errors"]] == [("SendAt", code)]


def test_over_http_a_scheduled_message_is_answered_202_scheduled_and_waits_on_the_queue(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()  # configures the worker the HTTP trigger shares

    answer = SendApi().post({**seed_message, "SendAt": at(2)}, headers={"Idempotency-Key": "digest-1"})
    repeat = SendApi().post({**seed_message, "SendAt": answer.body["sendAt"]}, headers={"Idempotency-Key": "digest-1"})

    assert answer.status == 202
    assert answer.body["status"] == "scheduled"
    assert answer.body["statusUrl"] == "/api/messages/digest-1"
    assert repeat.status == 202
    assert status_of("digest-1").body["status"] == "scheduled"
    assert cloud.graph.sent == []
    host.drain()
    assert len(cloud.graph.sent) == 1  # two copies waited; the key was sent once
    record = function_app.current_worker().sends().get(scoped_key(Scope.HTTP, "digest-1"))
    assert record is not None
    assert record.status is SendStatus.SENT


def test_over_http_a_scheduled_key_repeated_after_its_send_at_is_one_send_not_two(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    message = {**seed_message, "SendAt": at(2.5)}
    first = SendApi().post(message, headers={"Idempotency-Key": "lost-answer-1"})
    time.sleep(3)  # SendAt passes; the caller lost the first answer and repeats the request

    repeat = SendApi().post(message, headers={"Idempotency-Key": "lost-answer-1"})
    host.drain()

    assert first.body["status"] == "scheduled"
    assert repeat.status == 202
    assert len(cloud.graph.sent) == 1  # the queued copy found the key sent
    assert not repeat.body.get("possibleDuplicate")


def test_over_http_a_scheduled_key_reused_for_another_message_is_a_conflict(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    queue_host()
    SendApi().post({**seed_message, "SendAt": at(600)}, headers={"Idempotency-Key": "reused-1"})

    other = SendApi().post({**seed_message, "Subject": "Another"}, headers={"Idempotency-Key": "reused-1"})

    assert other.status == 409
    assert cloud.graph.sent == []


def test_the_status_of_a_key_scheduled_over_http_says_http(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    queue_host()
    SendApi().post({**seed_message, "SendAt": at(600)}, headers={"Idempotency-Key": "where-1"})

    status = status_of("where-1").body

    assert (status["status"], status["via"]) == ("scheduled", "http")


def test_over_http_without_a_key_the_answer_names_the_key_to_ask_about(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    queue_host()

    answer = SendApi().post({**seed_message, "SendAt": at(600)})

    key = answer.body["idempotencyKey"]
    assert answer.status == 202
    assert status_of(key).body["status"] == "scheduled"


def test_over_http_a_sender_that_may_not_send_is_told_at_once_not_when_due(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()

    answer = SendApi().post({**seed_message, "From": {"Address": "ceo@contoso.com"}, "SendAt": at(600)})

    assert answer.status == 403
    assert host.waiting() == 0


def test_over_http_without_storage_a_scheduled_message_is_refused_naming_the_setting(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    answer = api.post({**seed_message, "SendAt": at(600)})

    assert answer.status == 500
    assert "M365Storage" in answer.body["detail"]
    assert cloud.graph.sent == []


def test_the_cli_schedules_through_the_queue(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], tmp_path: Any, capsys: Any
) -> None:
    host = queue_host()
    path = tmp_path / "later.json"
    path.write_text(json.dumps(seed_message))

    code = cli.main(["send", str(path), "--send-at", at(4), "--key", "cli-later"], worker=function_app.current_worker())

    assert code == 0
    assert "scheduled for" in capsys.readouterr().out
    assert cloud.graph.sent == []
    host.drain()
    assert len(cloud.graph.sent) == 1


def test_a_queued_message_whose_sender_may_not_send_is_dead_lettered_at_once_not_when_due(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    host.producer.enqueue({**seed_message, "From": {"Address": "ceo@contoso.com"}, "SendAt": at(86400)}, key="r-3")

    host.drain(timeout=10)

    assert status_of("r-3").body["status"] == "dead-lettered"
    assert cloud.graph.sent == []
