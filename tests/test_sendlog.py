"""The pure decision on an existing send record, and the queue envelope. No I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from m365send.envelope import envelope_schema, idempotency_request_id, key_of, parse_queue_message
from m365send.errors import RequestInvalid
from m365send.sendlog import Decision, SendRecord, SendStatus, decide

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def record(status: SendStatus, *, lease: int = 60, expires: int = 3600, payload: str = "h") -> SendRecord:
    return SendRecord(
        key="k",
        status=status,
        payload_hash=payload,
        lease_until=NOW + timedelta(seconds=lease),
        expires_at=NOW + timedelta(seconds=expires),
    )


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        (None, Decision.NEW),
        (record(SendStatus.SENT, expires=-1), Decision.NEW),
        (record(SendStatus.SENT, payload="other"), Decision.CONFLICT),
        (record(SendStatus.SENT), Decision.ALREADY_SENT),
        (record(SendStatus.FAILED), Decision.ALREADY_FAILED),
        (record(SendStatus.RESERVED, lease=30), Decision.IN_FLIGHT),
        (record(SendStatus.RESERVED, lease=-1), Decision.TAKE_OVER),
        (record(SendStatus.RESERVED, payload="other"), Decision.CONFLICT),
    ],
    ids=["none", "expired", "conflict", "sent", "failed", "in-flight", "lease-over", "conflict-in-flight"],
)
def test_decision_on_an_existing_record(existing: SendRecord | None, expected: Decision) -> None:
    assert decide(existing, "h", NOW) is expected


def test_only_new_and_take_over_send() -> None:
    assert {d for d in Decision if d.sends} == {Decision.NEW, Decision.TAKE_OVER}


def test_envelope_and_bare_message_with_the_same_content_hash_alike(seed_message: dict[str, Any]) -> None:
    envelope = parse_queue_message(json.dumps({"id": "k", "message": seed_message}).encode(), queue_message_id="q")
    bare = parse_queue_message(json.dumps(seed_message).encode(), queue_message_id="q")

    assert envelope.key == "k"
    assert bare.key == "q"
    assert envelope.payload_hash == bare.payload_hash


def test_every_attempt_of_a_key_shares_one_client_request_id(seed_message: dict[str, Any]) -> None:
    queued = parse_queue_message(json.dumps({"id": "k", "message": seed_message}).encode(), queue_message_id="q")

    assert queued.request.request_id == idempotency_request_id("k")
    requeued = parse_queue_message(queued.handback(attempt=3), queue_message_id="other")
    assert requeued.request.request_id == queued.request.request_id
    assert requeued.attempt == 3
    assert requeued.payload_hash == queued.payload_hash


def test_a_hand_back_carries_the_producers_bytes_untouched_and_grows_by_a_few_dozen_bytes(
    seed_message: dict[str, Any],
) -> None:
    # Escapes and defaults that a re-serialisation would have changed.
    seed_message["Subject"] = "Caf\u00e9 \u2603 </script>"
    seed_message["To"] = [{"Address": f"r{n}@fabrikam.com"} for n in range(400)]
    original = json.dumps({"id": "k", "message": seed_message}, indent=1).encode()
    queued = parse_queue_message(original, queue_message_id="q")

    handed = parse_queue_message(queued.handback(attempt=11), queue_message_id="other")

    assert handed.original == original
    assert handed.attempt == 11
    assert len(queued.handback(attempt=11)) - len(original) < 64
    assert handed.handback(attempt=12) == queued.handback(attempt=12)


def test_a_handed_back_bare_message_keeps_its_first_queue_message_id_as_key(seed_message: dict[str, Any]) -> None:
    queued = parse_queue_message(json.dumps(seed_message).encode(), queue_message_id="first-id")

    handed = parse_queue_message(queued.handback(attempt=1), queue_message_id="second-id")

    assert handed.key == "first-id"
    assert key_of(queued.handback(attempt=1), queue_message_id="second-id") == "first-id"


def test_unknown_envelope_field_is_named(seed_message: dict[str, Any]) -> None:
    with pytest.raises(RequestInvalid) as caught:
        parse_queue_message(json.dumps({"message": seed_message, "priority": 1}).encode(), queue_message_id="q")

    assert caught.value.problems[0].field == "Envelope.priority"


def test_key_of_an_invalid_message_falls_back_to_the_queue_message_id() -> None:
    assert key_of(b"not json", queue_message_id="q") == "q"
    assert key_of(b'{"id": "k", "message": null}', queue_message_id="q") == "k"


def test_published_schema_matches_the_model() -> None:
    published = Path(__file__).resolve().parent.parent / "schemas" / "queue-envelope.schema.json"

    assert json.loads(published.read_text()) == envelope_schema(), "regenerate: python -m m365send.envelope"


@pytest.mark.parametrize("key", ["bad\nkey", "x" * 257, "\x7f"], ids=["control", "too-long", "delete"])
def test_a_hand_written_hand_back_wrapper_keeps_the_key_rules(key: str, seed_message: dict[str, Any]) -> None:
    body = json.dumps({"m365send": {"attempt": 0, "key": key}, "original": seed_message}).encode()

    with pytest.raises(RequestInvalid, match="hand-back key"):
        parse_queue_message(body, queue_message_id="q")


def test_a_hand_back_keeps_the_scope_of_a_key_an_http_caller_scheduled(seed_message: dict[str, Any]) -> None:
    from m365send.envelope import wrap
    from m365send.sendlog import Scope

    queued = parse_queue_message(
        wrap(json.dumps(seed_message).encode(), key="k", attempt=0, scope=Scope.HTTP), queue_message_id="q"
    )
    again = parse_queue_message(queued.handback(attempt=1), queue_message_id="q2")

    assert (queued.scope, again.scope, again.key, again.attempt) == (Scope.HTTP, Scope.HTTP, "k", 1)
