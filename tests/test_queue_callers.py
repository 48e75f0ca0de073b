"""The queue is the identity: each outbox queue has its own sender rule, and a producer cannot borrow an
HTTP caller's. Driven through the real queue functions over Azurite, as the Functions host would."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import function_app
from m365send.envelope import wrap
from m365send.sendlog import Scope
from standins.cloud import TENANT_ID, LocalCloud
from standins.examples import SENDER
from standins.queue_host import QueueHost
from tests.conftest import Configure, invoke, status_of

API = "api://m365send-tests"
BILLING = "billing@contoso.com"
CRM_APP = str(uuid.uuid4())


@pytest.fixture
def billing_queue(storage_settings: dict[str, str]) -> str:
    return f"billing-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def hosts(
    configure: Configure, cloud: LocalCloud, storage_settings: dict[str, str], billing_queue: str
) -> tuple[QueueHost, QueueHost]:
    """The main outbox (default rule: M365_SENDER) and a billing service's own queue (BILLING only)."""
    cloud.graph.add_mailbox(BILLING)
    cloud.graph.add_mailbox("crm@contoso.com")
    policy = {
        "callers": [
            {"name": "Billing service", "queue": billing_queue, "senders": [BILLING]},
            {"name": "CRM", "objectId": CRM_APP, "senders": ["crm@contoso.com"]},
        ]
    }
    configure(
        **storage_settings,
        M365_OUTBOX_QUEUES=billing_queue,
        M365_SENDER_POLICY=json.dumps(policy),
        M365_API_AUDIENCE=API,
    )
    connection = storage_settings["M365Storage"]
    main = QueueHost(
        connection,
        storage_settings["M365_QUEUE_NAME"],
        function=lambda msg: function_app._process(msg, None),
    )
    billing = QueueHost(connection, billing_queue, function=lambda msg: function_app._process(msg, billing_queue))
    return main, billing


def message(sender: str, **extra: Any) -> dict[str, Any]:
    return {
        "To": [{"Address": "a@example.org"}],
        "From": {"Address": sender},
        "Subject": "Invoice",
        "Body": "b",
        **extra,
    }


def letters(kind: str | None = None) -> list[Any]:
    found = function_app.current_worker().storage().dead_letters.list(limit=50)
    return [letter for letter in found if kind is None or letter.kind == kind]


def test_a_service_sends_as_its_queues_sender(hosts: tuple[QueueHost, QueueHost], cloud: LocalCloud) -> None:
    _, billing = hosts
    billing.producer.enqueue(message(BILLING), key="inv-1", sender=BILLING)

    billing.drain()

    assert [mail.mailbox for mail in cloud.graph.sent] == [BILLING]


def test_a_service_is_refused_a_sender_its_queue_may_not_use_and_the_reason_names_the_queue(
    hosts: tuple[QueueHost, QueueHost], cloud: LocalCloud, billing_queue: str
) -> None:
    _, billing = hosts
    billing.producer.enqueue(message(SENDER), key="inv-2")

    billing.drain()

    assert cloud.graph.sent == []
    [letter] = letters()
    assert letter.kind == "permanent"
    assert f"queue '{billing_queue}' may not send as mailbox '{SENDER}'" in letter.problem["detail"]


def test_the_main_queue_keeps_the_default_rule(hosts: tuple[QueueHost, QueueHost], cloud: LocalCloud) -> None:
    main, _ = hosts
    main.producer.enqueue(message(SENDER), key="n-1")
    main.producer.enqueue(message(BILLING), key="n-2", sender=BILLING)

    main.drain()

    assert [mail.mailbox for mail in cloud.graph.sent] == [SENDER]
    assert [letter.kind for letter in letters()] == ["permanent"]


def test_two_queues_keys_are_their_own(
    hosts: tuple[QueueHost, QueueHost], cloud: LocalCloud, billing_queue: str
) -> None:
    main, billing = hosts
    main.producer.enqueue(message(SENDER), key="same-key")
    billing.producer.enqueue(message(BILLING), key="same-key", sender=BILLING)

    main.drain()
    billing.drain()

    assert sorted(mail.mailbox for mail in cloud.graph.sent) == [BILLING, SENDER]
    book = function_app.current_worker().status()
    main_state = book.look_up("same-key", Scope.QUEUE)
    billing_state = book.look_up("same-key", Scope.QUEUE, owner=f"queue.{billing_queue}")
    assert main_state is not None
    assert billing_state is not None
    assert main_state.graph_request_id != billing_state.graph_request_id


def test_a_message_a_caller_scheduled_over_http_is_sent_under_its_rule_when_due(
    hosts: tuple[QueueHost, QueueHost], cloud: LocalCloud
) -> None:
    main, _ = hosts
    bearer = {"Authorization": "Bearer " + _token(cloud, CRM_APP), "Idempotency-Key": "later-1"}
    due = (datetime.now(UTC) + timedelta(seconds=2)).isoformat()
    body = json.dumps(message("crm@contoso.com", SendAt=due)).encode()

    answer = invoke("send", body=body, params={"sender": "crm@contoso.com"}, headers=bearer)
    main.drain()

    assert answer.status == 202, answer.body
    assert [mail.mailbox for mail in cloud.graph.sent] == ["crm@contoso.com"]
    assert status_of("later-1", headers=bearer).body["status"] == "sent"
    assert function_app.current_worker().status().look_up("later-1") is None  # not the default caller's key


def test_a_producer_cannot_borrow_an_http_callers_rights_with_a_hand_written_wrapper(
    hosts: tuple[QueueHost, QueueHost], cloud: LocalCloud
) -> None:
    main, _ = hosts
    envelope = json.dumps({"id": "forged", "message": message("crm@contoso.com"), "sender": "crm@contoso.com"})
    main.put_raw(wrap(envelope.encode(), key="forged", attempt=0, scope=Scope.HTTP, owner=f"app.{CRM_APP}"))

    main.drain()

    assert cloud.graph.sent == []
    [letter] = letters()
    assert "no HTTP caller scheduled a send with this key" in letter.problem["detail"]


def _token(cloud: LocalCloud, object_id: str) -> str:
    return cloud.entra.api_token(tenant_id=TENANT_ID, audience=API, object_id=object_id, client_id=str(uuid.uuid4()))


def test_the_app_registers_a_queue_function_per_outbox_queue() -> None:
    from tests.conftest import fresh_python

    code = (
        "import os\n"
        "os.environ['M365_OUTBOX_QUEUES'] = 'billing-outbox, crm-outbox'\n"
        "import function_app\n"
        "for f in function_app.app.get_functions():\n"
        "    for b in f.get_bindings():\n"
        "        if b.type == 'queueTrigger':\n"
        "            print(f.get_function_name(), b.queue_name, b.connection)\n"
    )

    printed = sorted(fresh_python(code).splitlines())

    assert printed == [
        "outbox email-outbox M365Storage",
        "outbox_billing_outbox billing-outbox M365Storage",
        "outbox_crm_outbox crm-outbox M365Storage",
    ]


def test_a_replayed_dead_letter_goes_back_to_the_queue_it_came_from(
    hosts: tuple[QueueHost, QueueHost], billing_queue: str
) -> None:
    from m365send import cli

    main, billing = hosts
    billing.producer.enqueue(message(SENDER), key="inv-3")
    billing.drain()
    [letter] = letters()

    code = cli.main(["deadletters", "replay", letter.id], worker=function_app.current_worker())

    assert code == 0
    assert billing.waiting() == 1
    assert main.waiting() == 0
    assert letters() == []


def test_a_service_may_name_only_its_own_completion_queues(
    configure: Configure, cloud: LocalCloud, storage_settings: dict[str, str], billing_queue: str
) -> None:
    cloud.graph.add_mailbox(BILLING)
    rule = {"name": "Billing", "queue": billing_queue, "senders": [BILLING], "completionQueues": ["billing-done"]}
    configure(
        **storage_settings,
        M365_OUTBOX_QUEUES=billing_queue,
        M365_COMPLETION_QUEUES="billing-done,crm-done",
        M365_SENDER_POLICY=json.dumps({"callers": [rule]}),
    )
    billing = QueueHost(
        storage_settings["M365Storage"], billing_queue, function=lambda msg: function_app._process(msg, billing_queue)
    )
    own = {"id": "b-1", "message": message(BILLING), "sender": BILLING, "notify": "billing-done"}
    other = {"id": "b-2", "message": message(BILLING), "sender": BILLING, "notify": "crm-done"}
    billing.put_text(json.dumps(own))
    billing.put_text(json.dumps(other))

    billing.drain()

    assert [mail.mailbox for mail in cloud.graph.sent] == [BILLING]
    [letter] = letters()
    assert letter.kind == "invalid"
    assert f"queue 'crm-done' is not one m365send may notify for queue '{billing_queue}'" in letter.problem["detail"]
