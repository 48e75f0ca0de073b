"""The storage service's clock, the one clock every instance shares, as its answers' ``Date`` headers tell it.

Leases on send records and the shared pacing window are judged by several instances at once; judged
on each instance's wall clock, one instance whose clock runs ahead takes over a live lease (a second
delivery) or counts in a window the others have not reached. Each answer from Azure Storage carries
the service's time in its ``Date`` header (whole seconds, taken before the answer was sent), so at
the moment an answer arrives the service's time is at least that ``Date``. ``ServiceTime`` keeps the
tightest such lower bound and advances it with this process's monotonic clock:

- a taker that sees ``now() >= lease_until`` knows the lease has truly ended (a lower bound never
  runs ahead of the service);
- a holder counts its own lease from the monotonic moment it sent the write, less the second that
  ``Date`` may lag (``held_until``), so it stops before any taker may start.

Before its first answer an instance has no estimate and uses its wall clock; ``lease_until`` values
written then only ever make takers wait longer, never less.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

__all__ = ["DATE_RESOLUTION", "ServiceTime"]

# HTTP dates are whole seconds: the service's time may be up to this much past an answer's Date.
DATE_RESOLUTION = 1.0


def _wall() -> datetime:
    return datetime.now(UTC)


class ServiceTime:
    """A lower bound of the storage service's time; ``observe`` is the storage clients' ``raw_response_hook``."""

    def __init__(
        self, *, monotonic: Callable[[], float] = time.monotonic, fallback: Callable[[], datetime] = _wall
    ) -> None:
        self._monotonic = monotonic
        self._fallback = fallback
        self._base: float | None = None  # service epoch seconds minus monotonic seconds, the largest seen
        self._lock = threading.Lock()
        self._local = threading.local()  # the Date of the last answer this thread received

    def observe(self, response: Any) -> None:
        """Learn from one answer (an azure-core ``PipelineResponse``); answers without a Date teach nothing."""
        headers = getattr(getattr(response, "http_response", response), "headers", {})
        stamp = headers.get("Date") if headers else None
        if not stamp:
            return
        try:
            date = parsedate_to_datetime(stamp).timestamp()
        except (TypeError, ValueError):
            return
        self.learn(date)

    def learn(self, date: float) -> None:
        """The service's time was at least ``date`` (epoch seconds) now."""
        base = date - self._monotonic()
        with self._lock:
            self._base = base if self._base is None else max(self._base, base)
        self._local.date = date

    def now(self) -> datetime:
        """The service's time, never ahead of it (the wall clock until the first answer)."""
        with self._lock:
            base = self._base
        if base is None:
            return self._fallback()
        return datetime.fromtimestamp(base + self._monotonic(), UTC)

    def timestamp(self) -> float:
        """``now()`` in epoch seconds."""
        return self.now().timestamp()

    def forget_last(self) -> None:
        """Before a request whose own answer's Date is wanted (``last_date``)."""
        self._local.date = None

    def last_date(self) -> float | None:
        """The Date of the last answer this thread received since ``forget_last``, if any."""
        date: float | None = getattr(self._local, "date", None)
        return date

    def held_until(self, *, sent_at: float, lease_until: datetime) -> float:
        """The monotonic moment a lease written at ``sent_at`` (monotonic) surely still holds until.

        Taken from the write's own answer: the service's time when the write was sent was at most
        that answer's Date plus its resolution, so the lease runs at least ``lease_until`` minus that.
        """
        date = self.last_date()
        started = date + DATE_RESOLUTION if date is not None else self.now().timestamp()
        return sent_at + (lease_until.timestamp() - started)
