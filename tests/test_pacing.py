"""Per-mailbox pacing: a worker stays within Graph's mailbox limits instead of provoking 429s."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from m365send.errors import DependencyUnavailable
from m365send.pacing import MailboxPacer
from standins.cloud import LocalCloud
from tests.conftest import Configure


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def pacer(
    clock: FakeClock, *, concurrency: int = 4, rate: int = 3, window: float = 10.0, max_wait: float = 30.0
) -> MailboxPacer:
    return MailboxPacer(
        concurrency=concurrency, rate=rate, window=window, max_wait=max_wait, clock=clock, sleep=clock.sleep
    )


def test_requests_within_the_rate_go_at_once() -> None:
    clock = FakeClock()
    paced = pacer(clock)

    for _ in range(3):
        with paced.slot("a@contoso.com"):
            clock.now += 1

    assert clock.sleeps == []


def test_the_request_over_the_rate_waits_for_the_window_to_slide() -> None:
    clock = FakeClock()
    paced = pacer(clock)
    for _ in range(3):
        with paced.slot("a@contoso.com"):
            clock.now += 1

    with paced.slot("A@contoso.com"):  # mailboxes match case-insensitively
        pass

    assert clock.sleeps == [8.0]  # it may go 10 s after the first of the three finished (at 101)


def test_mailboxes_are_paced_separately() -> None:
    clock = FakeClock()
    paced = pacer(clock)
    for _ in range(3):
        with paced.slot("a@contoso.com"):
            pass

    with paced.slot("b@contoso.com"):
        pass

    assert clock.sleeps == []


def test_a_wait_longer_than_the_limit_is_handed_back() -> None:
    clock = FakeClock()
    paced = pacer(clock, window=600, max_wait=30)
    for _ in range(3):
        with paced.slot("a@contoso.com"):
            pass

    with pytest.raises(DependencyUnavailable) as caught, paced.slot("a@contoso.com"):
        pass

    assert caught.value.retry_after == 600
    assert clock.sleeps == []


def test_no_more_than_the_concurrency_are_in_flight() -> None:
    paced = MailboxPacer(concurrency=2, rate=100, window=1, max_wait=0.2)
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with paced.slot("a@contoso.com"):
            held.set()
            release.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()
    held.wait(5)

    with pytest.raises(DependencyUnavailable, match="2 requests in flight"), paced.slot("a@contoso.com"):
        pass
    release.set()
    for holder in holders:
        holder.join()


def send_concurrently(configure: Configure, seed_message: dict[str, Any], **settings: str) -> list[int]:
    api = configure(**settings)
    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(lambda _: api.post(seed_message).status, range(30)))


def test_a_paced_worker_provokes_no_429_at_the_mailbox_limits(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.graph.mailbox_concurrency, cloud.graph.mailbox_rate, cloud.graph.latency = 2, (10, 1.0), 0.05

    statuses = send_concurrently(
        configure,
        seed_message,
        M365_GRAPH_MAILBOX_CONCURRENCY="2",
        M365_GRAPH_MAILBOX_RATE="10",
        M365_GRAPH_MAILBOX_WINDOW_SECONDS="1",
    )

    assert statuses == [202] * 30
    assert cloud.graph.throttled == 0


def test_an_unpaced_worker_would_be_throttled_there(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.graph.mailbox_concurrency, cloud.graph.mailbox_rate, cloud.graph.latency = 2, (10, 1.0), 0.05

    send_concurrently(configure, seed_message, M365_GRAPH_MAILBOX_CONCURRENCY="6", M365_GRAPH_MAX_RETRY_WAIT="2")

    assert cloud.graph.throttled > 0
