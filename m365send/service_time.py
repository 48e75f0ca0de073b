"""The storage service's clock, the one clock every instance shares, as its answers' ``Date`` headers tell it.

Leases on send records and the shared pacing window are judged by several instances at once; judged
on each instance's wall clock, one instance whose clock runs ahead takes over a live lease (a second
delivery) or counts in a window the others have not reached. Each answer from Azure Storage carries
the service's time in its ``Date`` header (whole seconds, taken before the answer was sent), so at
the moment an answer arrives the service's time is at least that ``Date``. ``ServiceTime`` keeps the
tightest such lower bound and advances it with this process's monotonic clock:

- a taker that sees ``now() >= lease_until`` knows the lease has truly ended (a lower bound never
  runs ahead of the service);
- a holder stamps its lease from an upper bound of the service's time (a request's departure and
  its answer's Date plus the second a Date may lag: ``latest``) and counts it down on its monotonic
  clock from that same bound (``held_until``), so it stops before any taker may start, and a loose
  bound makes takers wait a little longer rather than holders stop early.

Before its first answer an instance has no bounds: the send records ask once before their first
lease, and the pacing window uses the wall clock until the first answer.
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
    """Bounds on the storage service's time; ``observe_request`` and ``observe`` are its clients' hooks.

    Each answer bounds the service's time from both sides: it was at least the answer's Date when
    the answer arrived, and at most Date plus a second when the request left. The lower bound is
    what a taker judges by; the upper bound is what a holder counts its lease down by. Both tighten
    as answers come in (the second of a Date's resolution shrinks to about one round trip).
    """

    def __init__(
        self, *, monotonic: Callable[[], float] = time.monotonic, fallback: Callable[[], datetime] = _wall
    ) -> None:
        self._monotonic = monotonic
        self._fallback = fallback
        self._low: float | None = None  # service epoch seconds minus monotonic seconds: at least this
        self._high: float | None = None  # ... and at most this
        self._lock = threading.Lock()
        self._local = threading.local()  # when this thread's request left

    def observe_request(self, request: Any = None) -> None:
        """A request is leaving (azure-core's ``raw_request_hook``)."""
        self._local.sent = self._monotonic()

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
        self.learn(date, sent=getattr(self._local, "sent", None))

    def learn(self, date: float, *, sent: float | None = None) -> None:
        """An answer dated ``date`` (epoch seconds) arrived now, for a request that left at ``sent`` (monotonic)."""
        low = date - self._monotonic()
        high = date + DATE_RESOLUTION - sent if sent is not None else None
        with self._lock:
            self._low = low if self._low is None else max(self._low, low)
            if high is not None:
                self._high = high if self._high is None else min(self._high, high)

    def hooks(self) -> dict[str, Any]:
        """The keyword arguments that make an azure-core call teach this clock."""
        return {"raw_request_hook": self.observe_request, "raw_response_hook": self.observe}

    def now(self) -> datetime:
        """The service's time, never ahead of it (the wall clock until the first answer)."""
        return self._at(lambda: self._low)

    def wall_within_bounds(self) -> float:
        """This machine's wall clock (epoch seconds), moved inside the service's bounds when it is outside.

        For counting, not for leases: a machine whose clock is right keeps its exact time (the bounds
        are a second wide until answers tighten them), and one whose clock is off is off by no more
        than the bounds' width.
        """
        wall = self._fallback().timestamp()
        with self._lock:
            low, high = self._low, self._high
        if low is None:
            return wall
        now = self._monotonic()
        latest = high + now if high is not None else low + now + DATE_RESOLUTION
        return min(max(wall, low + now), latest)

    @property
    def bounded(self) -> bool:
        """Whether an answer has bounded the service's time from above yet."""
        with self._lock:
            return self._high is not None

    def latest(self) -> datetime:
        """The latest the service's time may be now (the wall clock until an answer bounds it)."""
        return self._at(lambda: self._high)

    def _at(self, bound: Callable[[], float | None]) -> datetime:
        with self._lock:
            base = bound()
        return self._fallback() if base is None else datetime.fromtimestamp(base + self._monotonic(), UTC)

    def held_until(self, lease_until: datetime) -> float | None:
        """The monotonic moment the service's time may reach ``lease_until``: until then a lease surely holds.

        None before an answer bounds the service's time.
        """
        with self._lock:
            high = self._high
        return None if high is None else lease_until.timestamp() - high
