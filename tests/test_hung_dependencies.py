"""A dependency that hangs (accepts the request, never answers) never holds an HTTP send past 30 s.

Power Automate gives up on a request after 120 s and its retries then start from scratch, so every
answer must come well before: 503 with Retry-After before Graph took the message, 202 with a
warning after it. Each case runs with the production defaults (no timeout setting is lowered),
through a relay that stops forwarding bytes (``standins.hang``), as a stalled service does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import function_app
from standins.azurite import Azurite
from standins.cloud import LocalCloud
from standins.hang import HangingRelay
from tests.conftest import Answer, Configure

BUDGET = 30.0  # seconds: the promise in docs/delivery.md


@pytest.fixture
def hanging_tables(azurite: Azurite) -> Iterator[HangingRelay]:
    relay = HangingRelay(azurite.ports["table"])
    yield relay
    relay.close()


@pytest.fixture
def hanging_vault(cloud: LocalCloud) -> Iterator[HangingRelay]:
    relay = HangingRelay(int(cloud.vault.url.rsplit(":", 1)[1]))
    yield relay
    relay.close()


@pytest.fixture
def api_over_hanging_tables(
    configure: Configure, storage_settings: dict[str, str], azurite: Azurite, hanging_tables: HangingRelay
) -> Any:
    """The HTTP trigger on a worker whose Table storage is reached through the relay."""
    table = storage_settings["M365Storage"].replace(
        azurite.endpoint("table"), f"{hanging_tables.url()}/devstoreaccount1"
    )
    return configure(**{**storage_settings, "M365Storage": table, "M365_SEND_LEASE_SECONDS": "300"})


def _timed_post(api: Any, message: dict[str, Any], key: str) -> tuple[Answer, float]:
    started = time.monotonic()
    answer = api.post(message, headers={"Idempotency-Key": key})
    return answer, time.monotonic() - started


def test_table_storage_hanging_before_the_send_answers_503_within_the_budget_and_sends_nothing(
    api_over_hanging_tables: Any, hanging_tables: HangingRelay, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    hanging_tables.pause()

    answer, took = _timed_post(api_over_hanging_tables, seed_message, "hang-before")

    assert answer.status == 503, answer.body
    assert took < BUDGET
    assert cloud.graph.sent == []


def test_table_storage_hanging_after_graph_accepted_answers_202_with_a_warning_within_the_budget(
    api_over_hanging_tables: Any,
    hanging_tables: HangingRelay,
    cloud: LocalCloud,
    seed_message: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api = api_over_hanging_tables
    mail = function_app.current_worker().parts().mail
    real_send = mail.send_mail

    def accepted_then_storage_hangs(**kwargs: Any) -> Any:
        receipt = real_send(**kwargs)
        hanging_tables.pause()
        return receipt

    monkeypatch.setattr(mail, "send_mail", accepted_then_storage_hangs)

    answer, took = _timed_post(api, seed_message, "hang-after")

    assert answer.status == 202, answer.body
    assert "warning" in answer.body
    assert took < BUDGET
    assert len(cloud.graph.sent) == 1


def test_key_vault_hanging_answers_two_concurrent_cold_sends_503_within_the_budget(
    configure: Configure, hanging_vault: HangingRelay, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    api = configure(KEY_VAULT_URL=hanging_vault.url("https"))
    hanging_vault.pause()
    answers: list[tuple[Answer, float]] = []

    def send() -> None:
        started = time.monotonic()
        answers.append((api.post(seed_message), time.monotonic() - started))

    callers = [threading.Thread(target=send) for _ in range(2)]
    for caller in callers:
        caller.start()
        time.sleep(0.2)  # the second arrives while the first reads the vault
    for caller in callers:
        caller.join(timeout=BUDGET * 3)

    assert len(answers) == 2
    assert [a.status for a, _ in answers] == [503, 503], [a.body for a, _ in answers]
    assert max(took for _, took in answers) < BUDGET
    assert cloud.graph.sent == []
