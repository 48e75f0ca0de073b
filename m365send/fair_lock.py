"""A lock granted in the order threads asked for it.

``threading.Lock`` makes no promise of order: under steady contention a thread can lose every
release to newer arrivals. The shared pacing's turn is such a lock (a worker's 24 queue threads
queue for it), and with 72 threads waiting on one mailbox some waited past the 30-s limit and
their messages were handed back, while the average wait was about 4 s.
"""

from __future__ import annotations

import threading
from collections import deque

__all__ = ["FairLock"]


class FairLock:
    """``acquire``/``release`` like ``threading.Lock``, but waiters get it first come, first served."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: deque[threading.Lock] = deque()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        """Take the lock, waiting up to ``timeout`` seconds (-1: for ever); whether it was taken."""
        with self._mutex:
            if not self._held:
                self._held = True
                return True
            if not blocking:
                return False
            waiter = threading.Lock()
            waiter.acquire()
            self._waiters.append(waiter)
        # release() hands the lock over by releasing the oldest waiter's own lock: it stays held throughout.
        if waiter.acquire(timeout=timeout):
            return True
        with self._mutex:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                return False
        return True  # handed over between the timeout and the mutex: this thread holds it now

    def release(self) -> None:
        """Give the lock to the oldest waiter, or free it."""
        with self._mutex:
            if not self._held:
                raise RuntimeError("release of an unheld FairLock")
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False
