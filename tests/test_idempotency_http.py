"""``Idempotency-Key`` on POST /api/send: replay the first answer, 409 on conflict, 503 while in flight."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import pytest

from standins.cloud import LocalCloud
from standins.graph import Fault
from tests.conftest import Answer, Configure, SendApi


@pytest.fixture
def api(configure: Configure, storage_settings: dict[str, str]) -> SendApi:
    return configure(**storage_settings)


def test_a_repeat_replays_the_first_answer_without_sending_again(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    first = api.post(seed_message, headers={"Idempotency-Key": "order-7"})
    again = api.post(seed_message, headers={"Idempotency-Key": "order-7"})

    assert first.status == again.status == 202
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.body["idempotencyKey"] == "order-7"
    assert len(cloud.graph.sent) == 1


def test_camel_case_spelling_of_the_same_message_is_the_same_payload(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    camel = {key[0].lower() + key[1:]: value for key, value in seed_message.items()}

    api.post(seed_message, headers={"Idempotency-Key": "k"})
    again = api.post(camel, headers={"Idempotency-Key": "k"})

    assert again.status == 202
    assert len(cloud.graph.sent) == 1


def test_a_different_message_under_the_same_key_is_409_and_not_sent(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api.post(seed_message, headers={"Idempotency-Key": "k"})

    other = api.post({**seed_message, "Subject": "Changed"}, headers={"Idempotency-Key": "k"})

    assert other.status == 409
    assert other.body["type"] == "urn:m365send:problem:idempotency-key-conflict"
    assert len(cloud.graph.sent) == 1


def test_a_repeat_while_the_first_is_still_sending_is_503_with_retry_after_so_power_automate_retries(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api.post(seed_message)  # warm the worker: token and secret cached
    cloud.graph.latency = 1.5
    answers: list[Answer] = []
    first = threading.Thread(target=lambda: answers.append(api.post(seed_message, headers={"Idempotency-Key": "k"})))
    first.start()
    threading.Event().wait(0.5)

    concurrent = api.post(seed_message, headers={"Idempotency-Key": "k"})
    first.join()

    assert concurrent.status == 503
    assert concurrent.body["type"] == "urn:m365send:problem:idempotency-key-in-flight"
    assert "Retry-After" in concurrent.headers
    assert answers[0].status == 202
    assert len(cloud.graph.sent) == 2  # the warm-up and the first keyed send


def test_a_permanent_failure_is_replayed_too(api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]) -> None:
    cloud.graph.unresolvable.add("recipient@outlook.com")
    first = api.post(seed_message, headers={"Idempotency-Key": "k"})
    cloud.graph.unresolvable.clear()

    again = api.post(seed_message, headers={"Idempotency-Key": "k"})

    assert first.status == again.status == 400
    assert again.body == first.body
    assert cloud.graph.requests[f"/v1.0/users/{cloud.mailbox.upn}/sendMail"] == 1


def test_a_transient_failure_frees_the_key_for_a_retry(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(**storage_settings, M365_GRAPH_MAX_ATTEMPTS="1")
    cloud.graph.inject(Fault(503, retry_after="1"))
    first = api.post(seed_message, headers={"Idempotency-Key": "k"})

    again = api.post(seed_message, headers={"Idempotency-Key": "k"})

    assert first.status == 503
    assert again.status == 202
    assert len(cloud.graph.sent) == 1


def test_an_idempotency_key_without_storage_configured_names_the_setting(
    configure: Configure, seed_message: dict[str, Any]
) -> None:
    api = configure()

    answer = api.post(seed_message, headers={"Idempotency-Key": "k"})

    assert answer.status == 500
    assert answer.body["settings"] == ["M365Storage"]


def test_an_overlong_idempotency_key_is_400(api: SendApi, seed_message: dict[str, Any]) -> None:
    answer = api.post(seed_message, headers={"Idempotency-Key": "k" * 300})

    assert answer.status == 400
    assert answer.body["errors"][0]["field"] == "Idempotency-Key"


def test_keyed_sends_load_no_queue_sdk_until_a_message_goes_on_a_queue(storage_settings: dict[str, str]) -> None:
    # The Queue SDK takes about 130 ms to import; send records need only Table storage.
    probe = (
        "import os, sys\n"
        "from m365send.settings import load_settings\n"
        "from m365send.wiring import build_storage\n"
        "settings = load_settings({**os.environ, 'M365_TENANT_ID': 't', 'M365_CLIENT_ID': 'c',"
        " 'KEY_VAULT_URL': 'https://v.vault.azure.net', 'M365_CLIENT_SECRET_NAME': 's',"
        " 'M365_SENDER': 'a@contoso.com'})\n"
        "storage = build_storage(settings)\n"
        "print('azure.storage.queue' in sys.modules, end=' ')\n"
        "storage.outbox.create_queue()\n"
        "print('azure.storage.queue' in sys.modules)"
    )
    env = {**os.environ, **storage_settings}
    result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=False)

    assert result.stdout.split() == ["False", "True"], result.stderr
