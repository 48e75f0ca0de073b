"""Client-side pacing per mailbox, so one worker stays within Graph's mailbox limits instead of
provoking 429s: at most ``concurrency`` requests in flight and ``rate`` requests per ``window``.

Graph counts these limits per app and mailbox across every instance: ``m365send.shared_pacing``
shares them between instances and falls back to this pacer when its storage fails; the 429
handling in ``m365send.graph`` covers whatever is left.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from m365send.errors import DependencyUnavailable
from m365send.telemetry import THROTTLING_WAIT

__all__ = ["MailboxPacer", "Pacer"]


class Pacer(Protocol):
    """Anything that hands out a mailbox's request slots: this worker's, or shared by all instances."""

    def slot(self, mailbox: str) -> AbstractContextManager[None]:
        """Hold one of the mailbox's request slots for the duration of one Graph request."""
        ...

    def prepare(self, mailbox: str) -> None:
        """Make the mailbox's first slot cheap (the warm-up): whatever can be set up without a request."""
        ...


class MailboxPacer:
    """Hands out per-mailbox slots; waits (up to ``max_wait``) rather than exceeding a limit."""

    def __init__(
        self,
        *,
        concurrency: int,
        rate: int,
        window: float,
        max_wait: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._concurrency = concurrency
        self._rate = rate
        self._window = window
        self._max_wait = max_wait
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        # Completion times, not start times: Graph counts a request when it arrives, which is
        # before it completes, so a window measured from completions never undercounts.
        self._finished: dict[str, deque[float]] = {}
        self._pending: dict[str, int] = {}

    def prepare(self, mailbox: str) -> None:
        """Nothing to prepare: this pacer keeps its state in memory."""

    @contextmanager
    def slot(self, mailbox: str) -> Iterator[None]:
        """Hold one of the mailbox's request slots for the duration of a Graph request."""
        key = mailbox.casefold()
        with self._lock:
            semaphore = self._slots.setdefault(key, threading.BoundedSemaphore(self._concurrency))
        if not semaphore.acquire(timeout=self._max_wait):
            raise DependencyUnavailable(
                f"mailbox {mailbox} already has {self._concurrency} requests in flight from this worker",
                retry_after=self._max_wait,
            )
        try:
            self._wait_for_window(key, mailbox)
            try:
                yield
            finally:
                with self._lock:
                    self._pending[key] -= 1
                    self._finished[key].append(self._clock())
        finally:
            semaphore.release()

    def _wait_for_window(self, key: str, mailbox: str) -> None:
        while True:
            with self._lock:
                now = self._clock()
                finished = self._finished.setdefault(key, deque())
                while finished and finished[0] <= now - self._window:
                    finished.popleft()
                pending = self._pending.get(key, 0)
                if len(finished) + pending < self._rate:
                    self._pending[key] = pending + 1
                    return
                # All of the window is still in flight: look again shortly.
                wait = finished[0] + self._window - now if finished else min(self._window, 0.05)
            if wait > self._max_wait:
                raise DependencyUnavailable(
                    f"mailbox {mailbox} reached {self._rate} requests in {self._window:g} s from this worker",
                    retry_after=wait,
                )
            THROTTLING_WAIT.record(wait, {"source": "pacing"})
            self._sleep(wait)
