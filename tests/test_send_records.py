"""Send records in Table storage (Azurite): conditional writes that know their own echo.

A write whose answer is lost and is then retried meets its own applied write: a 412 (or a 409 for
a create) that says nothing about another attempt. The store tells the two apart by the attempt
token every record carries, so a lost answer is never taken for a take-over.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.data.tables import TableClient, TableServiceClient

from m365send.errors import LeaseLost
from m365send.sendlog import Decision, SendStatus
from m365send.service_time import ServiceTime
from m365send.tables import TableSendLog
from standins.azurite import Azurite


class AnswerLostOnce:
    """A ``TableClient`` whose named write is applied, its answer lost, and retried once (as the SDK does)."""

    def __init__(self, table: TableClient) -> None:
        self._table = table
        self.lose: set[str] = set()

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._table, name)
        if name not in self.lose:
            return real

        def applied_then_retried(*args: Any, **kwargs: Any) -> Any:
            self.lose.discard(name)
            real(*args, **kwargs)  # applied; its answer never arrives
            return real(*args, **kwargs)  # the blind retry meets the write it already made

        return applied_then_retried


@pytest.fixture
def table(azurite: Azurite) -> Iterator[TableClient]:
    service = TableServiceClient.from_connection_string(azurite.connection_string)
    client = service.create_table(f"records{uuid.uuid4().hex[:10]}")
    yield client
    service.delete_table(client.table_name)


def _log(table: Any, *, clock: Any = None) -> TableSendLog:
    extra = {"clock": clock} if clock else {}
    return TableSendLog(table=table, lease=timedelta(seconds=60), retention=timedelta(days=1), **extra)


def test_a_renewal_whose_answer_was_lost_keeps_the_lease(table: TableClient) -> None:
    flaky = AnswerLostOnce(table)
    sends = _log(flaky)
    held = sends.reserve("k", "h")
    flaky.lose.add("update_entity")

    renewed = sends.renew(held)
    sends.mark_sent(renewed, graph_request_id="g", answer={"status": 202})

    assert sends.get("k").status is SendStatus.SENT  # type: ignore[union-attr]


def test_a_final_write_whose_answer_was_lost_is_recorded_not_taken_for_a_take_over(table: TableClient) -> None:
    flaky = AnswerLostOnce(table)
    sends = _log(flaky)
    held = sends.reserve("k", "h")
    flaky.lose.add("update_entity")

    sends.mark_sent(held, graph_request_id="g", answer={"status": 202})

    assert sends.get("k").status is SendStatus.SENT  # type: ignore[union-attr]


def test_a_reservation_whose_answer_was_lost_is_held_not_taken_for_another_attempts(table: TableClient) -> None:
    flaky = AnswerLostOnce(table)
    sends = _log(flaky)
    flaky.lose.add("create_entity")

    held = sends.reserve("k", "h")

    assert held.decision is Decision.NEW
    sends.mark_sent(held, graph_request_id="g", answer={"status": 202})
    assert sends.get("k").status is SendStatus.SENT  # type: ignore[union-attr]


def test_a_write_after_another_attempt_took_the_key_over_still_loses_the_lease(table: TableClient) -> None:
    late = datetime.now(UTC) + timedelta(minutes=2)  # the first lease (60 s) has ended by then
    first = _log(table).reserve("k", "h")
    taken = _log(table, clock=lambda: late).reserve("k", "h")

    assert taken.decision is Decision.TAKE_OVER
    with pytest.raises(LeaseLost):
        _log(table).renew(first)
    with pytest.raises(LeaseLost):
        _log(table).mark_sent(first, graph_request_id="g", answer={})


# --- one clock for every instance: the storage service's ---------------------------------------
def _skewed(seconds: float) -> ServiceTime:
    """The service time of an instance whose own wall clock is ``seconds`` off (used before any answer)."""
    return ServiceTime(fallback=lambda: datetime.now(UTC) + timedelta(seconds=seconds))


def test_an_instance_whose_clock_runs_ahead_does_not_take_over_a_live_lease(table: TableClient) -> None:
    lease = timedelta(seconds=3)
    holder = TableSendLog(table=table, lease=lease, retention=timedelta(days=1))
    ahead = TableSendLog(table=table, lease=lease, retention=timedelta(days=1), service_time=_skewed(2.5))
    holder.reserve("k", "h")
    time.sleep(1.0)  # by the ahead instance's own clock, the 3 s lease ended 0.5 s ago

    seen = ahead.reserve("k", "h")

    assert seen.decision is Decision.IN_FLIGHT


def test_an_instance_whose_clock_runs_behind_still_takes_over_a_lease_that_ended(table: TableClient) -> None:
    lease = timedelta(seconds=1)
    TableSendLog(table=table, lease=lease, retention=timedelta(days=1)).reserve("k", "h")
    behind = TableSendLog(table=table, lease=lease, retention=timedelta(days=1), service_time=_skewed(-30))
    time.sleep(2.2)

    seen = behind.reserve("k", "h")

    assert seen.decision is Decision.TAKE_OVER


def test_a_holder_counts_its_lease_on_the_monotonic_clock_from_the_stores_answer(table: TableClient) -> None:
    sends = TableSendLog(table=table, lease=timedelta(seconds=60), retention=timedelta(days=1))
    before = time.monotonic()

    held = sends.reserve("k", "h")

    # The lease is stamped from the latest the store's time may be, and counted down from that same
    # bound: the holder has it for the full lease from when it stamped it, whatever its wall clock says.
    assert before + 60 <= held.held_until <= time.monotonic() + 61
