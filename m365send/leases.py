"""Keeps an attempt's lease on its send record alive while the send runs (one thread per worker).

A send that takes longer than a lease (a slow Graph, a large upload session) must not let another
attempt take the key over while it is still sending. Each held lease is renewed a third of the way
through it; an attempt whose lease was taken over, or lapsed while renewals failed, learns it at
its next ``check`` and stops before its next Graph step. A worker that dies renews nothing, so its
lease ends at most one lease period later and another attempt can take over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import timedelta
from types import TracebackType
from typing import Any

from m365send.errors import DependencyUnavailable, LeaseLost
from m365send.sendlog import Reservation, SendLog

__all__ = ["HeldLease", "LeaseRenewer"]

log = logging.getLogger(__name__)


class HeldLease:
    """One attempt's lease, renewed in the background until the attempt ``release``s it.

    Time here is this process's monotonic clock: how long the lease holds was judged by the store
    on its own clock (``Reservation.held_until``), so no wall clock, skewed or stepped, decides it.
    """

    def __init__(self, renewer: LeaseRenewer, reservation: Reservation, clock: Callable[[], float]) -> None:
        self._renewer = renewer
        self._clock = clock
        self._current = reservation
        self._lost = False
        self._done = False
        self.due = clock() + renewer.interval
        self.lock = renewer.new_lock()  # held while a renewal is under way

    @property
    def current(self) -> Reservation:
        """The reservation as last renewed (its etag is what the final write must match)."""
        return self._current

    def check(self) -> None:
        """Raise ``LeaseLost`` if another attempt may hold the key now."""
        if self._lost or self._clock() >= self._current.held_until:
            raise LeaseLost("this attempt's lease on the idempotency key ended; another attempt holds it")

    def renew(self) -> None:
        """Renew once (called by the renewer's thread)."""
        with self.lock:
            if self._done or self._lost:
                return
            try:
                self._current = self._renewer.sends.renew(self._current)
            except LeaseLost:
                self._lost = True
                log.warning("the lease on an idempotency key was taken over while sending")
            except DependencyUnavailable as error:
                log.warning("could not renew a lease; trying again: %s", error.detail)
            except Exception as error:  # a bug in one renewal must not end every later one
                log.error("a lease renewal failed unexpectedly (%s); trying again", type(error).__name__)
            self.due = self._clock() + self._renewer.interval

    def rewrite(self, change: Callable[[Reservation], Reservation]) -> None:
        """Renew now with ``change`` applied to the record (``LeaseLost``, ``DependencyUnavailable`` as ``renew``)."""
        with self.lock:
            self.check()
            self._current = self._renewer.sends.renew(change(self._current))
            self.due = self._clock() + self._renewer.interval

    def release(self) -> Reservation:
        """Stop renewing (waiting for a renewal under way); the reservation to write the outcome on."""
        with self.lock:
            self._done = True
        self._renewer.drop(self)
        return self._current

    def __enter__(self) -> HeldLease:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.release()


class LeaseRenewer:
    """Renews every lease this worker holds; its thread starts with the first lease and idles between."""

    def __init__(
        self,
        *,
        sends: SendLog,
        lease: timedelta,
        clock: Callable[[], float] = time.monotonic,
        background: bool = True,
        lock: Callable[[], AbstractContextManager[Any]] = threading.Lock,
    ) -> None:
        """``background``: renew on a thread of its own; without, whoever drives it calls ``renew_due``.

        ``lock`` makes each held lease's lock (the simulation's cooperative one; a real one otherwise).
        """
        self.new_lock = lock
        self.sends = sends
        self.interval = lease.total_seconds() / 3
        self._clock = clock
        self._background = background
        self._held: set[HeldLease] = set()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None

    def hold(self, reservation: Reservation) -> HeldLease:
        """Start renewing ``reservation``'s lease."""
        held = HeldLease(self, reservation, self._clock)
        with self._changed:
            self._held.add(held)
            if not self._background:
                return held
            if self._thread is None or not self._thread.is_alive():  # started once; restarted should it die
                self._thread = threading.Thread(target=self._run, name="m365send-leases", daemon=True)
                self._thread.start()
            self._changed.notify()
        return held

    def drop(self, held: HeldLease) -> None:
        """Stop renewing ``held``."""
        with self._changed:
            self._held.discard(held)

    def _run(self) -> None:
        while True:
            with self._changed:
                if not self._held:
                    self._changed.wait()  # idle until a send holds a lease
                    continue
                now = self._clock()
                due = [h for h in self._held if h.due <= now]
                if not due:
                    nearest = min(h.due for h in self._held)
                    self._changed.wait(timeout=max(nearest - now, 0.01))
                    continue
            self._renew(due)

    def renew_due(self) -> float | None:
        """Renew every lease that is due now; when the next one is due (None: none held)."""
        with self._changed:
            now = self._clock()
            due = [h for h in self._held if h.due <= now]
        self._renew(due)
        with self._changed:
            return min((h.due for h in self._held), default=None)

    @staticmethod
    def _renew(due: list[HeldLease]) -> None:
        for held in due:
            try:
                held.renew()
            except Exception:  # the renewer renews every lease of the worker: it must not die
                log.exception("the lease renewer caught an unexpected error")
