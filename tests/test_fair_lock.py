"""The pacing turn's lock: granted in arrival order, with timeouts, like threading.Lock otherwise."""

from __future__ import annotations

import threading
import time

import pytest

from m365send.fair_lock import FairLock


def _queue_up(lock: FairLock, count: int, order: list[int], hold: float = 0.0) -> list[threading.Thread]:
    """Start ``count`` threads that queue for ``lock`` one after another (each has arrived before the next starts)."""
    threads = []
    for n in range(count):

        def take(n: int = n) -> None:
            assert lock.acquire(timeout=10)
            order.append(n)
            time.sleep(hold)
            lock.release()

        thread = threading.Thread(target=take)
        thread.start()
        threads.append(thread)
        deadline = time.monotonic() + 5
        while len(lock._waiters) < n + 1 and time.monotonic() < deadline:
            time.sleep(0.001)
    return threads


def test_waiters_get_the_lock_in_the_order_they_asked() -> None:
    lock = FairLock()
    assert lock.acquire()
    order: list[int] = []
    threads = _queue_up(lock, 20, order)
    lock.release()
    for thread in threads:
        thread.join(10)
    assert order == list(range(20))


def test_a_thread_that_releases_and_asks_again_goes_behind_those_already_waiting() -> None:
    # threading.Lock lets the releasing thread take it straight back: a busy thread starves the others.
    lock = FairLock()
    assert lock.acquire()
    order: list[int] = []
    threads = _queue_up(lock, 3, order)
    lock.release()
    assert lock.acquire(timeout=10)
    order.append(99)
    lock.release()
    for thread in threads:
        thread.join(10)
    assert order == [0, 1, 2, 99]


def test_a_waiter_that_times_out_gives_up_its_place() -> None:
    lock = FairLock()
    assert lock.acquire()
    started = time.monotonic()
    assert not lock.acquire(timeout=0.05)
    assert time.monotonic() - started >= 0.05
    assert not lock._waiters
    lock.release()
    assert lock.acquire(blocking=False)


def test_a_held_lock_is_not_taken_without_blocking() -> None:
    lock = FairLock()
    assert lock.acquire(blocking=False)
    assert not lock.acquire(blocking=False)
    lock.release()
    assert lock.acquire(blocking=False)


def test_releasing_an_unheld_lock_is_an_error() -> None:
    with pytest.raises(RuntimeError):
        FairLock().release()


def test_it_excludes_under_contention() -> None:
    lock = FairLock()
    inside = 0
    most = 0

    def work() -> None:
        nonlocal inside, most
        for _ in range(200):
            if not lock.acquire(timeout=0.001 if _ % 7 == 0 else -1):
                continue
            inside += 1
            most = max(most, inside)
            inside -= 1
            lock.release()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most == 1
    assert lock.acquire(blocking=False)
