"""The warm-up function: a new instance pays its first send's costs before any request, and never fails."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from azure.functions.warmup import WarmUpContext

from standins.cloud import LocalCloud
from tests.conftest import Configure, indexed_functions


def warm_up() -> None:
    indexed_functions()["warmup"].get_user_function()(WarmUpContext())


def test_after_the_warm_up_the_first_send_reads_no_secret_and_fetches_no_token(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    api = configure()
    with caplog.at_level(logging.INFO):
        warm_up()
    reads, tokens = sum(cloud.vault.reads.values()), len(cloud.entra.issued)

    answer = api.post(seed_message)

    assert answer.status == 202
    assert reads >= 1
    assert tokens >= 1
    assert (sum(cloud.vault.reads.values()), len(cloud.entra.issued)) == (reads, tokens)  # the send needed neither
    assert any(r.getMessage() == "warm-up done" for r in caplog.records)


def test_a_warm_up_with_key_vault_down_logs_and_the_first_send_still_works(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    api = configure()
    cloud.vault.unavailable = 100

    with caplog.at_level(logging.WARNING):
        warm_up()  # does not raise

    assert any("warm-up incomplete" in r.getMessage() for r in caplog.records)
    cloud.vault.unavailable = 0
    assert api.post(seed_message).status == 202


def test_a_warm_up_with_graph_down_logs_and_does_not_fail_the_instance(
    configure: Configure, cloud: LocalCloud, caplog: pytest.LogCaptureFixture
) -> None:
    configure()
    cloud.take_down("graph")

    with caplog.at_level(logging.WARNING):
        warm_up()

    assert any("warm-up incomplete" in r.getMessage() for r in caplog.records)


def test_a_warm_up_with_settings_missing_logs_and_does_not_fail_the_instance(
    configure: Configure, caplog: pytest.LogCaptureFixture
) -> None:
    configure(M365_SENDER=None)

    with caplog.at_level(logging.WARNING):
        warm_up()

    assert any("warm-up incomplete" in r.getMessage() and "M365_SENDER" in r.getMessage() for r in caplog.records)


def test_with_storage_the_warm_up_readies_the_send_records_too(
    configure: Configure, storage_settings: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    import function_app

    configure(**storage_settings)

    with caplog.at_level(logging.INFO):
        warm_up()

    [done] = [r for r in caplog.records if r.getMessage() == "warm-up done"]
    assert {"pacing", "send records"} <= set(done.warmup_ms)  # type: ignore[attr-defined]
    assert function_app.current_worker().sends().get("queue:nothing") is None  # the table exists, and answers


def test_with_storage_down_the_warm_up_still_pays_the_credential_and_token(
    configure: Configure, cloud: LocalCloud, caplog: pytest.LogCaptureFixture
) -> None:
    dead = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        "BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;"
        "TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )
    configure(M365Storage=dead)

    with caplog.at_level(logging.WARNING):
        warm_up()

    assert any("warm-up incomplete" in r.getMessage() for r in caplog.records)
    assert len(cloud.entra.issued) >= 1
