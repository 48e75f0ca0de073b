"""The cost table's arithmetic (bench/cost.py): measured quantities per email, priced per million."""

from __future__ import annotations

import pytest

from bench.cost import PRICES, dollars_per_million, per_email

ROW = {
    "sent": 2000,
    "workers": 3,
    "seconds": 120.0,
    "executions": 2010,
    "mailboxes": 1,
    "sends_per_second": 16.0,
    "storage_by_resource": {"table:sends": 4000, "table:mailboxpacing": 3000, "queue:outbox": 9999},
}


def test_instances_busy_for_the_whole_drain_are_billed_for_every_email_they_waited_on() -> None:
    quantities = per_email(ROW)

    assert quantities["gb_seconds"] == pytest.approx(2.0 * 3 * 120.0 / 2000)  # 2 GB instances, 3 of them
    assert quantities["executions"] == pytest.approx(1.005)
    # The app's own requests; the queue's come from the host's documented batching, not the stand-in.
    assert quantities["table_requests"] == pytest.approx(3.5)
    assert quantities["queue_requests"] == pytest.approx(2 + 1 / 16)


def test_a_million_emails_are_priced_at_each_published_rate() -> None:
    cost = dollars_per_million({"gb_seconds": 0.1, "executions": 1.0, "table_requests": 4.0, "queue_requests": 2.0})

    assert cost["compute"] == pytest.approx(0.1 * 1e6 * PRICES["execution_time"].usd)
    assert cost["executions"] == pytest.approx(PRICES["executions"].usd)
    assert cost["table"] == pytest.approx(4.0 * 1e6 * PRICES["table_transactions"].usd / 10_000)
    assert cost["total"] == pytest.approx(cost["compute"] + cost["executions"] + cost["table"] + cost["queue"])
