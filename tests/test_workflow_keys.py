"""Power Automate and Logic Apps callers get send-once without setting a key: it is derived from the
workflow headers their HTTP action sends (the same across the action's retries, new for a new run)."""

from __future__ import annotations

from typing import Any

import pytest

from m365send.workflow_keys import workflow_key
from standins.cloud import LocalCloud
from tests.conftest import Configure

RUN = {
    "x-ms-workflow-id": "fb6f6ffe7cf84df7beee4b7a9f9036ac",
    "x-ms-workflow-name": "a3113776-3e4c-4662-9953-4299d7f2492f",
    "x-ms-workflow-run-id": "08586595201664692962773773294CU82",
    "x-ms-workflow-operation-name": "Send_the_receipt",
}


def test_one_action_of_one_run_has_one_key_whatever_the_header_case() -> None:
    upper = {name.upper(): value for name, value in RUN.items()}

    assert workflow_key(RUN, "h") == workflow_key(upper, "h")
    assert (workflow_key(RUN, "h") or "").startswith("workflow-")


@pytest.mark.parametrize(
    "change",
    [
        {"x-ms-workflow-run-id": "08586595201664692962773773294CU99"},
        {"x-ms-workflow-operation-name": "Send_the_reminder"},
        {"x-ms-workflow-id": "0000"},
        {"x-ms-workflow-repeatitem-index": "3"},
    ],
    ids=["another run", "another action", "another workflow", "another loop iteration"],
)
def test_another_run_action_workflow_or_iteration_is_another_key(change: dict[str, str]) -> None:
    assert workflow_key({**RUN, **change}, "h") != workflow_key(RUN, "h")


def test_another_message_from_the_same_action_is_another_key() -> None:
    assert workflow_key(RUN, "h1") != workflow_key(RUN, "h2")


@pytest.mark.parametrize("missing", ["x-ms-workflow-run-id", "x-ms-workflow-operation-name"])
def test_a_request_without_a_run_and_an_action_is_not_a_workflows(missing: str) -> None:
    assert workflow_key({k: v for k, v in RUN.items() if k != missing}, "h") is None


def test_a_retried_workflow_action_sends_once_and_a_resubmitted_run_sends_again(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(**storage_settings)

    first = api.post(seed_message, headers=RUN)
    retried = api.post(seed_message, headers=RUN)  # the action's retry policy, after a lost answer
    resubmitted = api.post(seed_message, headers={**RUN, "x-ms-workflow-run-id": "08586595201664692962773773294CU83"})

    assert (first.status, retried.status, resubmitted.status) == (202, 202, 202)
    assert retried.body["idempotencyKey"] == first.body["idempotencyKey"]
    assert retried.headers.get("Idempotent-Replayed") == "true"
    assert len(cloud.graph.sent) == 2


def test_a_key_the_caller_gives_wins_over_the_workflow_headers(
    configure: Configure, storage_settings: dict[str, str], seed_message: dict[str, Any]
) -> None:
    api = configure(**storage_settings)

    answer = api.post(seed_message, headers={**RUN, "Idempotency-Key": "mine-1"})

    assert answer.body["idempotencyKey"] == "mine-1"


def test_without_storage_a_workflow_send_is_sent_unkeyed_not_refused(
    api: Any, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    answer = api.post(seed_message, headers=RUN)

    assert answer.status == 202
    assert "idempotencyKey" not in answer.body
    assert len(cloud.graph.sent) == 1
