"""Any producer, any encoding: the outbox takes the envelope as plain JSON text or as base64 of it.

host.json has ``messageEncoding: none``, so the host hands the message text over as it is, and the
app decides from the bytes. The Azure SDKs for Python, JavaScript and .NET send plain text by
default; m365send's own client (and the host's output bindings) send base64.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from azure.storage.queue import QueueClient

import function_app
from m365send import cli
from m365send.envelope import queue_payload
from m365send.sendlog import Scope, scoped_key
from standins.cloud import LocalCloud
from standins.graph import Fault
from standins.queue_host import HOST_JSON, QueueHost

Host = Callable[..., QueueHost]
ROOT = Path(__file__).resolve().parent.parent
ENVELOPE = b'{"id": "order-7", "message": {"To": "ann@fabrikam.com"}}'


# --- the decision, from the bytes ----------------------------------------------------------------


def test_plain_json_is_taken_as_it_is() -> None:
    assert queue_payload(ENVELOPE) == ENVELOPE


def test_base64_of_json_is_decoded() -> None:
    assert queue_payload(base64.b64encode(ENVELOPE)) == ENVELOPE


def test_whitespace_around_either_form_does_not_change_the_decision() -> None:
    assert queue_payload(b"\n  " + ENVELOPE) == b"\n  " + ENVELOPE
    assert queue_payload(b" " + base64.b64encode(ENVELOPE) + b"\n") == ENVELOPE


def test_json_with_a_byte_order_mark_is_taken_as_it_is() -> None:
    marked = b"\xef\xbb\xbf" + ENVELOPE

    assert queue_payload(marked) == marked


def test_text_that_is_neither_is_left_for_the_json_decoder_to_name() -> None:
    assert queue_payload(b"hello, world") == b"hello, world"


def test_the_host_hands_the_text_over_undecoded() -> None:
    assert HOST_JSON["extensions"]["queues"]["messageEncoding"] == "none"


# --- producers with their SDKs' defaults -------------------------------------------------------------


def _envelope(key: str, message: dict[str, Any]) -> str:
    return json.dumps({"id": key, "message": message})


def test_a_python_producer_with_the_sdks_defaults_is_sent(
    queue_host: Host, cloud: LocalCloud, storage_settings: dict[str, str], seed_message: dict[str, Any]
) -> None:
    host = queue_host()
    producer = QueueClient.from_connection_string(
        storage_settings["M365Storage"], storage_settings["M365_QUEUE_NAME"]
    )  # no encode policy: the text goes on the queue as it is

    producer.send_message(_envelope("py-plain-1", seed_message))
    host.drain()

    assert len(cloud.graph.sent) == 1
    record = function_app.current_worker().sends().get(scoped_key(Scope.QUEUE, "py-plain-1"))
    assert record is not None


def test_a_nodejs_producer_with_the_sdks_defaults_is_sent(
    queue_host: Host, cloud: LocalCloud, storage_settings: dict[str, str], seed_message: dict[str, Any]
) -> None:
    node = shutil.which("node")
    assert node, "Node.js is installed with Azurite"
    host = queue_host()

    produced = subprocess.run(
        [
            node,
            str(ROOT / "tests" / "producers" / "send.mjs"),
            storage_settings["M365Storage"],
            storage_settings["M365_QUEUE_NAME"],
            _envelope("node-plain-1", seed_message),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    [raw] = host.queue.peek_messages()
    assert raw.content.startswith("{")  # the SDK sent plain text
    host.drain()

    assert len(cloud.graph.sent) == 1
    assert function_app.current_worker().sends().get(scoped_key(Scope.QUEUE, "node-plain-1")) is not None


def test_m365sends_own_client_still_sends_base64(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()

    host.producer.enqueue(seed_message, key="b64-1")
    [raw] = host.queue.peek_messages()
    host.drain()

    assert not raw.content.startswith("{")
    assert len(cloud.graph.sent) == 1


def test_a_plain_message_handed_back_is_sent_later(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host(M365_GRAPH_MAX_ATTEMPTS="1")
    cloud.graph.inject(Fault(429, retry_after="1"))

    host.put_text(_envelope("plain-handback-1", seed_message))
    host.drain(timeout=30)

    assert len(cloud.graph.sent) == 1
    record = function_app.current_worker().sends().get(scoped_key(Scope.QUEUE, "plain-handback-1"))
    assert record is not None
    assert record.attempts == 2


def test_an_invalid_plain_message_is_dead_lettered_under_its_own_key(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    host = queue_host()

    host.put_text(_envelope("plain-invalid-1", {**seed_message, "To": []}))
    host.drain()

    [letter] = function_app.current_worker().storage().dead_letters.list()
    assert letter.key == "plain-invalid-1"
    assert "To" in json.dumps(letter.problem)
    assert cloud.graph.sent == []


def test_a_plain_message_on_the_poison_queue_is_listed_and_replayed(
    queue_host: Host, cloud: LocalCloud, seed_message: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    host = queue_host()
    worker = function_app.current_worker()
    # The host moves a message's text to <queue>-poison as it is: here, a plain producer's.
    host.poison.create_queue()
    host.poison.send_message(_envelope("plain-poisoned-1", seed_message))

    assert cli.main(["poison", "list", "--json"], worker=worker) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["key"] == "plain-poisoned-1"
    assert cli.main(["poison", "replay", "--all"], worker=worker) == 0
    host.drain()

    assert len(cloud.graph.sent) == 1
