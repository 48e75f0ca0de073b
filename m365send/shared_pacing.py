"""Per-mailbox pacing shared by every instance of the app, on the storage account it already has.

Graph counts its mailbox limits per app and mailbox across all instances (4 concurrent requests;
10,000 requests per 10 minutes). Each instance pacing itself lets 40 instances send 40 times too
much; this limiter makes them share one budget:

- **Concurrency**: ``concurrency`` blobs per mailbox, each a slot held by a blob lease for one
  Graph request (the Functions host uses blob leases for its singletons the same way). A crashed
  instance releases nothing; its lease ends by itself after ``lease_seconds``.
- **Rate**: the window is cut into ``BUCKETS`` buckets, counted in one Table entity per mailbox
  (the buckets still counted, as JSON) written ETag-conditionally: one ETag guards the whole sum,
  so two instances can never both take the last request of a window. A request may go while the
  buckets that overlap the last window hold fewer than ``rate`` requests.

If the limiter's storage is slow or down, the worker falls back to its own ``MailboxPacer`` (and
Graph's 429/Retry-After handling) for ``FALLBACK_SECONDS``, and says so in a log line and the
``m365send.pacing.fallbacks`` metric. Costs and maths: ``docs/deploy.md`` and the README.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode
from azure.storage.blob import BlobLeaseClient, ContainerClient

from m365send.azure_errors import azure_errors, first_line
from m365send.errors import DependencyUnavailable
from m365send.pacing import MailboxPacer
from m365send.service_time import ServiceTime
from m365send.storage_options import STORAGE_TIMEOUTS
from m365send.telemetry import PACING_FALLBACKS, THROTTLING_WAIT

__all__ = [
    "ARRIVAL_MARGIN",
    "BUCKETS",
    "FALLBACK_SECONDS",
    "STORAGE_OPTIONS",
    "SharedMailboxLimiter",
    "Window",
    "WindowUse",
    "count_bucket",
    "mailbox_key",
    "window_use",
]

log = logging.getLogger(__name__)

# Buckets per window: a request is counted for between BUCKETS and BUCKETS + 1 buckets' time, so
# the steady rate is at least BUCKETS / (BUCKETS + 1) = 95% of the limit and never above it.
BUCKETS = 20
# A request is counted in the bucket it will be in this long after it is counted: the time it may
# take to reach Graph (the HTTP request's start). Counted earlier, it could leave our window while
# Graph still counts it.
ARRIVAL_MARGIN = 0.25
# A slot handed to a waiting thread must leave it this long before ARRIVAL_MARGIN ends (the request's start).
_HAND_OVER_SLACK = 0.05
# How long a worker paces on its own after the limiter's storage failed, before trying it again.
FALLBACK_SECONDS = 15.0
_WINDOW_ROW = "window"
# The limiter's storage clients fail fast: a slow limiter must not hold a send (the worker paces
# on its own instead).
STORAGE_OPTIONS: dict[str, Any] = {**STORAGE_TIMEOUTS, "retry_total": 0}
# Poll for a free concurrency slot from this wait up to the cap (doubling, with full jitter).
_POLL_FIRST = 0.01
_POLL_CAP = 0.25


def mailbox_key(app_id: str, mailbox: str) -> str:
    """The storage key of one app's budget on one mailbox (a hash: no address in blob or row names)."""
    return hashlib.sha256(f"{app_id.casefold()}\n{mailbox.casefold()}".encode()).hexdigest()[:32]


@dataclass(frozen=True)
class WindowUse:
    """What the counted buckets say: requests in the window, and when the oldest bucket leaves it."""

    used: int
    frees_at: float | None  # when the oldest counted bucket stops counting (None: window empty)


def window_use(counts: Mapping[int, int], *, now: float, window: float, buckets: int = BUCKETS) -> WindowUse:
    """Sum the buckets that overlap the last ``window`` seconds (``counts``: bucket number → requests).

    Bucket ``b`` covers ``[b·w, (b+1)·w)`` with ``w = window / buckets``. The current bucket, the
    ``buckets`` before it and any ahead of it (see ``ARRIVAL_MARGIN``) are counted: together they
    reach back at least ``window`` seconds, so a request Graph still counts is never forgotten.
    """
    width = window / buckets
    current = int(now // width)
    counted = {b: n for b, n in counts.items() if b >= current - buckets and n > 0}
    if not counted:
        return WindowUse(0, None)
    return WindowUse(sum(counted.values()), (min(counted) + buckets + 1) * width)


def count_bucket(now: float, window: float, buckets: int = BUCKETS) -> int:
    """The bucket a request starting now is counted in: the one it reaches Graph in, at the latest."""
    return int((now + ARRIVAL_MARGIN) // (window / buckets))


@dataclass(frozen=True)
class Window:
    """A mailbox's window as last read: bucket number → requests, and the entity's ETag (None: none yet)."""

    counts: dict[int, int]
    etag: str | None


@dataclass
class _Pool:
    """One mailbox's requests in this worker: the turn, how many wait for it, slots handed over."""

    turn: threading.Lock = field(default_factory=threading.Lock)
    waiting: int = 0
    handed: list[tuple[float, BlobLeaseClient]] = field(default_factory=list)  # (counted at, slot)


class SharedMailboxLimiter:
    """Hands out per-mailbox request slots under limits shared by every instance; see the module."""

    def __init__(
        self,
        *,
        container: ContainerClient,
        table: TableClient,
        app_id: str,
        concurrency: int,
        rate: int,
        window: float,
        lease_seconds: int,
        max_wait: float,
        local: MailboxPacer,
        create_missing: bool = False,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        service_time: ServiceTime | None = None,
    ) -> None:
        self._container = container
        self._table = table
        self._app_id = app_id
        self._concurrency = concurrency
        self._rate = rate
        self._window = window
        self._lease_seconds = lease_seconds
        self._max_wait = max_wait
        self._local = local
        self._create_missing = create_missing
        # The window is counted on this machine's clock kept within Table storage's (which every
        # instance shares): exact when the clock is right, a bounded error when it is not (``clock``: tests).
        self._time = service_time or ServiceTime()
        self._hook: dict[str, Any] = self._time.hooks()
        self._clock = clock or self._time.wall_within_bounds
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pools: dict[str, _Pool] = {}
        self._ready = False
        self._down_until = 0.0
        self._requests: Counter[str] = Counter()

    @classmethod
    def from_connection_string(
        cls, connection_string: str, *, container: str, table: str, **limits: Any
    ) -> SharedMailboxLimiter:
        """A limiter over ``container`` and ``table`` of a storage connection string (Azurite locally)."""
        return cls(
            container=ContainerClient.from_connection_string(connection_string, container, **STORAGE_OPTIONS),
            table=TableClient.from_connection_string(connection_string, table, **STORAGE_OPTIONS),
            **limits,
        )

    @contextmanager
    def slot(self, mailbox: str) -> Iterator[None]:
        """Hold one of the mailbox's request slots (shared by all instances) for one Graph request."""
        if not self.shared:
            PACING_FALLBACKS.add(1, {"reason": "storage-down"})
            with self._local.slot(mailbox):
                yield
            return
        try:
            lease = self._shared_slot(mailbox)
        except AzureError as exc:
            self._fall_back(exc)
            with self._local.slot(mailbox):
                yield
            return
        # The request goes at once: the bucket it was counted in is the one Graph sees it arrive in.
        # (The worker's own pacer would only delay it past its bucket, so it stands by for fallback.)
        try:
            yield
        finally:
            self._release(lease)

    def prepare(self, mailbox: str) -> None:
        """For the warm-up: create what is missing, read the mailbox's window and lease and release one
        of its slots (creating the slot's blob on first use), so the first send finds connections open.

        Nothing is counted in the window, and the slot is held for one round trip only. A storage
        error is raised as ``DependencyUnavailable``, for the warm-up to log.
        """
        key = mailbox_key(self._app_id, mailbox)
        with azure_errors("the shared pacing's storage"):
            self._ensure_ready()
            self._read(key)
            lease = self._try_lease(f"{key}/slot-0")
        if lease is not None:
            self._release(lease)

    @property
    def storage_requests(self) -> dict[str, int]:
        """Storage transactions this limiter has made, by kind (the benchmark's cost per send)."""
        with self._lock:
            return dict(self._requests)

    def _tick(self, kind: str) -> None:
        with self._lock:
            self._requests[kind] += 1

    @property
    def shared(self) -> bool:
        """False while the worker paces on its own because the limiter's storage failed."""
        return self._clock() >= self._down_until

    def _shared_slot(self, mailbox: str) -> BlobLeaseClient:
        """A concurrency slot (blob lease) for a request that is counted in the window.

        One thread per worker and mailbox at a time takes a "turn": it waits for room in the
        window, leases as many free slots as this worker has requests waiting (up to the room
        left), counts exactly that many in one conditional write, and hands the extra slots to the
        waiting threads. Storage sees at most one contender per instance, and a backlog costs one
        read and one write per batch rather than per request. A slot handed over but not taken
        within ``ARRIVAL_MARGIN`` is released, its count left standing (never an undercount).
        """
        key = mailbox_key(self._app_id, mailbox)
        deadline = time.monotonic() + self._max_wait
        with self._lock:
            pool = self._pools.setdefault(key, _Pool())
            pool.waiting += 1
        try:
            if not pool.turn.acquire(timeout=max(deadline - time.monotonic(), 0)):
                raise self._too_long(mailbox, "its limits", self._max_wait)
            try:
                handed = self._handed(pool)
                if handed is not None:
                    return handed
                self._ensure_ready()
                return self._take_turn(pool, key, mailbox, deadline)
            finally:
                pool.turn.release()
        finally:
            with self._lock:
                pool.waiting -= 1

    def _handed(self, pool: _Pool) -> BlobLeaseClient | None:
        """A slot an earlier turn counted and leased for a waiting thread, if one is still fresh."""
        now = self._clock()
        with self._lock:
            fresh = [(t, lease) for t, lease in pool.handed if now - t <= ARRIVAL_MARGIN - _HAND_OVER_SLACK]
            stale = [lease for t, lease in pool.handed if now - t > ARRIVAL_MARGIN - _HAND_OVER_SLACK]
            pool.handed = fresh
            taken = pool.handed.pop()[1] if pool.handed else None
        for lease in stale:
            self._tick("stale")
            self._release(lease)
        return taken

    def _take_turn(self, pool: _Pool, key: str, mailbox: str, deadline: float) -> BlobLeaseClient:
        window, room = self._room(key, mailbox, deadline)
        with self._lock:
            wanted = min(room, max(pool.waiting, 1), self._concurrency)
        leases = self._acquire(key, mailbox, deadline, wanted)
        try:
            while not self._count(key, window, self._clock(), len(leases)):
                # Another instance counted first: read the window again; give back what no longer fits.
                window = self._read(key)
                room = self._rate - window_use(window.counts, now=self._clock(), window=self._window).used
                while len(leases) > max(room, 0):
                    self._tick("given-back")
                    self._release(leases.pop())
                if not leases:
                    window, room = self._room(key, mailbox, deadline)
                    leases = self._acquire(key, mailbox, deadline, min(room, self._concurrency, 1))
        except BaseException:
            for lease in leases:
                self._release(lease)
            raise
        counted_at = self._clock()
        mine = leases.pop()
        with self._lock:
            pool.handed.extend((counted_at, lease) for lease in leases)
        return mine

    # --- rate: one entity per mailbox in Table storage -----------------------------------------
    def _room(self, key: str, mailbox: str, deadline: float) -> tuple[Window, int]:
        """Wait until the window has room; the window as last read, and how many more requests fit."""
        while True:
            window = self._read(key)
            now = self._clock()
            use = window_use(window.counts, now=now, window=self._window)
            if use.used < self._rate:
                return window, self._rate - use.used
            assert use.frees_at is not None  # a full window has a counted bucket
            wait = use.frees_at - now + random.uniform(0, 0.01)  # noqa: S311 (jitter, not a secret)
            if time.monotonic() + wait > deadline:
                raise self._too_long(mailbox, f"{self._rate} requests in {self._window:g} s", wait)
            THROTTLING_WAIT.record(wait, {"source": "shared-pacing"})
            self._sleep(wait)

    def _read(self, key: str) -> Window:
        self._tick("read")
        try:
            entity = self._table.get_entity(key, _WINDOW_ROW, **self._hook)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "TableNotFound":
                raise
            return Window({}, None)
        counts = {int(bucket): int(n) for bucket, n in json.loads(entity["Buckets"]).items()}
        return Window(counts, entity.metadata["etag"])

    def _count(self, key: str, window: Window, now: float, requests: int = 1) -> bool:
        """Add ``requests`` to their bucket; False if another instance changed the window first."""
        bucket = count_bucket(now, self._window)
        oldest = int(now // (self._window / BUCKETS)) - BUCKETS
        # Buckets that no longer count are dropped, so the entity stays small.
        counts = {b: n for b, n in window.counts.items() if b >= oldest}
        counts[bucket] = counts.get(bucket, 0) + requests
        entity = {"PartitionKey": key, "RowKey": _WINDOW_ROW, "Buckets": json.dumps(counts)}
        self._tick("write")
        try:
            if window.etag is None:
                self._table.create_entity(entity, **self._hook)
            else:
                self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=window.etag,
                    match_condition=MatchConditions.IfNotModified,
                    **self._hook,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        return True

    # --- concurrency: blob leases ---------------------------------------------------------------
    def _acquire(self, key: str, mailbox: str, deadline: float, wanted: int = 1) -> list[BlobLeaseClient]:
        """Up to ``wanted`` free slots (at least one, polling until ``deadline``)."""
        pause = _POLL_FIRST
        while True:
            leases: list[BlobLeaseClient] = []
            for index in random.sample(range(self._concurrency), self._concurrency):
                lease = self._try_lease(f"{key}/slot-{index}")
                if lease is not None:
                    leases.append(lease)
                    if len(leases) == wanted:
                        break
            if leases:
                return leases
            wait = random.uniform(0, pause)  # noqa: S311 (jitter, not a secret)
            if time.monotonic() + wait > deadline:
                raise self._too_long(mailbox, f"{self._concurrency} requests in flight", self._max_wait)
            self._sleep(wait)
            pause = min(pause * 2, _POLL_CAP)

    def _try_lease(self, blob: str) -> BlobLeaseClient | None:
        lease = BlobLeaseClient(self._container.get_blob_client(blob))
        for _ in range(2):
            self._tick("lease")
            try:
                lease.acquire(lease_duration=self._lease_seconds)
                return lease
            except ResourceNotFoundError as exc:
                if getattr(exc, "error_code", None) == "ContainerNotFound":
                    raise
                self._create_slot(blob)  # first use of this slot
            except HttpResponseError as exc:
                if exc.status_code == 409:  # LeaseAlreadyPresent: another request holds the slot
                    return None
                raise
        return None

    def _create_slot(self, blob: str) -> None:
        self._tick("create")
        with suppress(ResourceExistsError):  # another instance created it
            self._container.upload_blob(blob, b"", overwrite=False)

    def _release(self, lease: BlobLeaseClient) -> None:
        self._tick("release")
        try:
            lease.release()
        except AzureError as exc:
            # The lease ends by itself after lease_seconds; nothing is lost but that slot's time.
            log.warning("could not release a pacing slot (%s); it frees itself when its lease ends", type(exc).__name__)

    # --- setup and fallback -------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if self._ready or not self._create_missing:
            return
        # Local storage (Azurite) starts empty; in Azure the Bicep creates both and the app's roles
        # are scoped to them, so it could not create them anyway.
        with suppress(ResourceExistsError):
            self._container.create_container()
        with suppress(ResourceExistsError):
            self._table.create_table()
        self._ready = True

    def _fall_back(self, exc: AzureError) -> None:
        self._down_until = self._clock() + FALLBACK_SECONDS
        PACING_FALLBACKS.add(1, {"reason": type(exc).__name__})
        log.warning(
            "shared mailbox pacing is unavailable (%s: %s); this worker paces on its own for %g s",
            type(exc).__name__,
            first_line(exc)[:200],
            FALLBACK_SECONDS,
        )

    @staticmethod
    def _too_long(mailbox: str, limit: str, wait: float) -> DependencyUnavailable:
        return DependencyUnavailable(f"mailbox {mailbox} reached {limit} across instances", retry_after=wait)
