"""Send records and dead letters leave the table once their idempotency window has passed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from azure.data.tables import TableServiceClient
from azure.functions.timer import TimerRequest

import function_app
from m365send.tables import TableDeadLetters, TableSendLog
from tests.conftest import Configure, indexed_functions


def eight_days_ago() -> datetime:
    return datetime.now(UTC) - timedelta(days=8)


def test_the_daily_purge_deletes_expired_records_and_dead_letters_and_keeps_live_ones(
    configure: Configure, storage_settings: dict[str, str]
) -> None:
    configure(**storage_settings)
    live = function_app.current_worker().sends()
    live.reserve("new-key", "hash")
    table = TableServiceClient.from_connection_string(storage_settings["M365Storage"]).get_table_client(
        storage_settings["M365_SEND_TABLE"]
    )
    # Written eight days ago with a seven-day window: expired a day ago.
    TableSendLog(table=table, lease=timedelta(minutes=5), retention=timedelta(days=7), clock=eight_days_ago).reserve(
        "old-key", "hash"
    )
    TableDeadLetters(table=table).add(
        key="dl", kind="invalid", problem={"detail": "x"}, payload=b"{}", queue_message_id="q", dequeue_count=1
    )
    TableDeadLetters(table=table, clock=eight_days_ago).add(
        key="old-dl", kind="invalid", problem={"detail": "x"}, payload=b"{}", queue_message_id="q", dequeue_count=1
    )

    indexed_functions()["purge"].get_user_function()(TimerRequest(past_due=False))

    letters = TableDeadLetters(table=table)
    assert live.get("old-key") is None
    assert live.get("new-key") is not None
    assert [letter.key for letter in letters.list()] == ["dl"]  # the one older than the window is gone
    assert letters.latest_for("old-dl") is None
    assert letters.latest_for("dl") is not None


def test_the_purge_runs_daily_on_a_timer() -> None:
    [trigger] = [b for b in indexed_functions()["purge"].get_bindings() if b.type == "timerTrigger"]

    assert trigger.schedule == "0 30 3 * * *"
