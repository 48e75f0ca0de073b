"""Per-mailbox pacing shared by every instance of the app, on the storage account it already has.

Graph counts its mailbox limits per app and mailbox across all instances (4 concurrent requests;
10,000 requests per 10 minutes). Each instance pacing itself lets 40 instances send 40 times too
much; this limiter makes them share one budget, kept in **one Table entity per mailbox** that every
change rewrites ETag-conditionally (one ETag guards both limits, so two instances can never both
take the last request of a window or the last request in flight):

- **Rate**: the window is cut into ``BUCKETS`` buckets, each holding the requests counted in it.
  A request may go while the buckets that overlap the last window hold fewer than ``rate``.
- **Concurrency**: the requests in flight, each with the time it stops counting
  (``lease_seconds`` after it was taken). A crashed instance removes nothing; its requests stop
  counting by themselves.

Storage round trips are what this costs, so a worker spends few: one thread per worker and
mailbox at a time takes a "turn" (in the order they asked), counting every request its threads
wait for (up to the room left) in one write and handing them out; a finished request is written
off in the next turn's write, or on its own when no turn is coming or when, still listed in
flight, it would leave others less concurrency than the window frees; and the entity as last
written is the base of the next write (no read first, unless another instance wrote since: then
the write fails on its ETag and the entity is read). One request at a time with room in the
window costs two writes.

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
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, UpdateMode

from m365send.azure_errors import azure_errors, first_line
from m365send.errors import DependencyUnavailable
from m365send.fair_lock import FairLock
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
# the steady rate is at least BUCKETS / (BUCKETS + 1) = 98% of the limit and never above it (each
# bucket is 10 s of Graph's 10-minute window).
BUCKETS = 60
# A request is counted in the bucket it will be in this long after it is counted: the time it may
# take to reach Graph (the HTTP request's start). Counted earlier, it could leave our window while
# Graph still counts it.
ARRIVAL_MARGIN = 0.15
# A request handed to a waiting thread must leave it this long before ARRIVAL_MARGIN ends (the request's start).
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
    """The storage key of one app's budget on one mailbox (a hash: no address in the table's keys)."""
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
    """A mailbox's entity as last read or written: bucket → requests counted, request id → when it stops
    being in flight (epoch seconds), and the entity's ETag (None: there is none yet)."""

    counts: dict[int, int]
    in_flight: dict[str, float]
    etag: str | None

    def live(self, now: float, finished: set[str] | frozenset[str] = frozenset()) -> dict[str, float]:
        """The requests still in flight at ``now``, leaving out ``finished`` ones (this worker's, not yet written)."""
        return {r: until for r, until in self.in_flight.items() if until > now and r not in finished}


_EMPTY = Window({}, {}, None)


def _more_than(finished: set[str], weighed: int) -> bool:
    return len(finished) > weighed


@dataclass
class _Pool:
    """One mailbox's requests in this worker: the turn, threads in it or waiting for it, what it handed
    out and what finished since the last write, and the entity as this worker last saw it."""

    turn: FairLock = field(default_factory=FairLock)  # first come, first served: no thread starves
    waiting: int = 0
    handed: list[tuple[float, str]] = field(default_factory=list)  # (counted at, request id)
    mine: set[str] = field(default_factory=set)  # written in flight by this worker, not yet written off
    finished: set[str] = field(default_factory=set)
    seen: Window = _EMPTY
    fresh: bool = False  # ``seen`` was read, not remembered from a write (a stale one may hide room)
    finished_changed: threading.Condition = field(default_factory=threading.Condition)  # on the limiter's lock


class SharedMailboxLimiter:
    """Hands out per-mailbox request slots under limits shared by every instance; see the module."""

    def __init__(
        self,
        *,
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
        self._took: float | None = None  # seconds a request holds its slot, on average
        self._given_up = 0
        self._fallbacks = 0

    @classmethod
    def from_connection_string(cls, connection_string: str, *, table: str, **limits: Any) -> SharedMailboxLimiter:
        """A limiter over ``table`` of a storage connection string (Azurite locally)."""
        return cls(table=TableClient.from_connection_string(connection_string, table, **STORAGE_OPTIONS), **limits)

    @contextmanager
    def slot(self, mailbox: str) -> Iterator[None]:
        """Hold one of the mailbox's request slots (shared by all instances) for one Graph request."""
        if not self.shared:
            PACING_FALLBACKS.add(1, {"reason": "storage-down"})
            with self._local.slot(mailbox):
                yield
            return
        key = mailbox_key(self._app_id, mailbox)
        try:
            request = self._shared_slot(key, mailbox)
        except AzureError as exc:
            self._fall_back(exc)
            with self._local.slot(mailbox):
                yield
            return
        # The request goes at once: the bucket it was counted in is the one Graph sees it arrive in.
        # (The worker's own pacer would only delay it past its bucket, so it stands by for fallback.)
        started = time.monotonic()
        try:
            yield
        finally:
            self._learn(time.monotonic() - started)
            self._finish(key, [request])

    def _learn(self, took: float) -> None:
        """Keep a moving average of how long a request holds its slot (when to look for a free one)."""
        with self._lock:
            self._took = took if self._took is None else 0.8 * self._took + 0.2 * took

    def prepare(self, mailbox: str) -> None:
        """For the warm-up: create what is missing and read the mailbox's entity, so the first send
        finds the connection open and writes at once. Nothing is counted.

        A storage error is raised as ``DependencyUnavailable``, for the warm-up to log.
        """
        key = mailbox_key(self._app_id, mailbox)
        with azure_errors("the shared pacing's storage"):
            self._ensure_ready()
            window = self._read(key)
        with self._lock:
            pool = self._pool(key)
            pool.seen, pool.fresh = window, True

    @property
    def storage_requests(self) -> dict[str, int]:
        """Storage transactions this limiter has made, by kind (the benchmark's cost per send)."""
        with self._lock:
            return dict(self._requests)

    @property
    def given_up(self) -> int:
        """Requests counted but never sent: handed over too late, or counted by a write that took too long."""
        with self._lock:
            return self._given_up

    @property
    def fallbacks(self) -> int:
        """Times this worker fell back to its own pacing because the limiter's storage failed."""
        with self._lock:
            return self._fallbacks

    def _tick(self, kind: str) -> None:
        with self._lock:
            self._requests[kind] += 1

    @property
    def shared(self) -> bool:
        """False while the worker paces on its own because the limiter's storage failed."""
        return self._clock() >= self._down_until

    def _shared_slot(self, key: str, mailbox: str) -> str:
        """A request counted in the window and written in flight; its id.

        One thread per worker and mailbox at a time takes a "turn": it waits for room, counts as
        many requests as this worker has threads waiting (up to the room left) in one conditional
        write, and hands the extra ones to the waiting threads. Storage sees at most one contender
        per instance. A request handed over but not taken within ``ARRIVAL_MARGIN`` is finished
        unused, its count left standing (never an undercount).
        """
        deadline = time.monotonic() + self._max_wait
        with self._lock:
            pool = self._pool(key)
            pool.waiting += 1
        try:
            if not pool.turn.acquire(timeout=max(deadline - time.monotonic(), 0)):
                raise self._too_long(mailbox, "its limits", self._max_wait)
            try:
                handed = self._handed(key, pool)
                if handed is not None:
                    return handed
                self._ensure_ready()
                return self._take_turn(pool, key, mailbox, deadline)
            finally:
                pool.turn.release()
        finally:
            with self._lock:
                pool.waiting -= 1
            self._write_off_if_idle(key, pool)

    def _pool(self, key: str) -> _Pool:
        """The mailbox's pool (call with the lock held)."""
        if key not in self._pools:
            self._pools[key] = _Pool(finished_changed=threading.Condition(self._lock))
        return self._pools[key]

    def _handed(self, key: str, pool: _Pool) -> str | None:
        """A request an earlier turn counted for a waiting thread, if one is still fresh."""
        now = self._clock()
        with self._lock:
            fresh = [(t, r) for t, r in pool.handed if now - t <= ARRIVAL_MARGIN - _HAND_OVER_SLACK]
            stale = [r for t, r in pool.handed if now - t > ARRIVAL_MARGIN - _HAND_OVER_SLACK]
            pool.handed = fresh
            taken = pool.handed.pop()[1] if pool.handed else None
            pool.finished.update(stale)
            self._given_up += len(stale)
        return taken

    def _take_turn(self, pool: _Pool, key: str, mailbox: str, deadline: float) -> str:
        """Take requests for this worker's waiting threads; the first one's id (the rest are handed over).

        Reads are spent only where they can tell something. Other instances only ever add to the
        window, so a window full as this worker last wrote it is full indeed: it waits, then writes
        from what it knows, and reads only if that write meets another instance's. Requests in flight
        end, though: while some are this worker's own it waits for one of them to end (it knows that
        without a read); otherwise it reads, backing off, no sooner than the earliest should end.
        """
        pause = _POLL_FIRST
        while True:
            now = self._clock()
            with self._lock:
                seen, fresh, finished = pool.seen, pool.fresh, set(pool.finished)
                waiting = max(pool.waiting, 1)
                own = len(pool.mine - pool.finished)
            use = window_use(seen.counts, now=now, window=self._window)
            room = min(self._rate - use.used, self._concurrency - len(seen.live(now, finished)))
            if room > 0:
                taken = [uuid.uuid4().hex[:12] for _ in range(min(room, waiting))]
                if not self._write(pool, key, seen, now, taken=taken, finished=finished):
                    self._remember(pool, self._read(key, "conflict"), fresh=True)  # another instance wrote first
                elif self._clock() - now > ARRIVAL_MARGIN - _HAND_OVER_SLACK:
                    # The write took so long that these requests could reach Graph in a later bucket than
                    # they were counted in: they are given up (their counts stand) and the turn goes on.
                    with self._lock:
                        pool.finished.update(taken)
                        self._given_up += len(taken)
                else:
                    with self._lock:
                        pool.handed.extend((now, r) for r in taken[1:])  # fresh as long as the count is
                    return taken[0]
            elif use.used >= self._rate:
                assert use.frees_at is not None  # a full window has a counted bucket
                wait = use.frees_at - now + random.uniform(0, 0.01)  # noqa: S311 (jitter, not a secret)
                if time.monotonic() + wait > deadline:
                    raise self._too_long(mailbox, f"{self._rate} requests in {self._window:g} s", wait)
                THROTTLING_WAIT.record(wait, {"source": "shared-pacing"})
                self._wait_writing_off(pool, key, wait)
            elif finished & seen.in_flight.keys():
                # Others may be waiting for the slots this worker's finished requests still hold.
                if not self._write(pool, key, seen, now, taken=[], finished=finished):
                    self._remember(pool, self._read(key, "write-off-conflict"), fresh=True)
            else:
                # Backing off, but not looking before the earliest request in flight should end.
                wait = max(random.uniform(0, pause), self._until_one_ends(seen, now, finished))  # noqa: S311
                pause = min(pause * 2, _POLL_CAP)
                if time.monotonic() + wait > deadline:
                    raise self._too_long(mailbox, f"{self._concurrency} requests in flight", self._max_wait)
                if own:
                    if self._own_finish(pool, wait):
                        continue  # one of this worker's requests finished: its slot is free, no read needed
                elif fresh:
                    self._sleep(wait)
                self._remember(pool, self._read(key, "poll" if fresh else "stale"), fresh=True)

    def _wait_writing_off(self, pool: _Pool, key: str, wait: float) -> None:
        """Wait ``wait`` seconds for the window, writing off this worker's requests as they finish where
        that matters: when, listed in flight, they would leave other instances less room for requests
        in flight than the window will have when it frees. Otherwise the next turn's write carries them."""
        until, frees = time.monotonic() + wait, self._clock() + wait
        weighed = 0  # finished requests found not worth a write (those before the wait are weighed at once)
        while (left := until - time.monotonic()) > 0:
            with self._lock:
                if not pool.finished_changed.wait_for(partial(_more_than, pool.finished, weighed), timeout=left):
                    return
                seen, finished = pool.seen, set(pool.finished)
            now = self._clock()
            if not self._holds_back_others(seen, now, frees):
                weighed = len(finished)
                continue
            weighed = 0  # any that finished meanwhile are weighed against the entity as now written
            if not self._write(pool, key, seen, now, taken=[], finished=finished):
                self._remember(pool, self._read(key, "write-off-conflict"), fresh=True)

    def _holds_back_others(self, seen: Window, now: float, frees: float) -> bool:
        """Whether the requests ``seen`` lists in flight leave less concurrency than the window's room at ``frees``."""
        room_then = self._rate - window_use(seen.counts, now=frees, window=self._window).used
        return self._concurrency - len(seen.live(now)) < room_then

    def _until_one_ends(self, seen: Window, now: float, finished: set[str]) -> float:
        """How long until the earliest request in flight should end, judged by how long this worker's own
        requests take (0 when that is not known yet or already past)."""
        if self._took is None:
            return 0.0
        started = min(until - self._lease_seconds for until in seen.live(now, finished).values())
        return max(started + self._took - now, 0.0)

    def _own_finish(self, pool: _Pool, wait: float) -> bool:
        """Wait up to ``wait`` for one of this worker's requests in flight to finish; whether one did."""
        with self._lock:
            before = len(pool.finished)
            return pool.finished_changed.wait_for(lambda: len(pool.finished) > before, timeout=wait)

    def _finish(self, key: str, requests: list[str]) -> None:
        """The requests are done: written off by the next turn's write, or now if no turn is coming."""
        with self._lock:
            pool = self._pools[key]
            pool.finished.update(requests)
            pool.finished_changed.notify_all()
        self._write_off_if_idle(key, pool)

    def _write_off_if_idle(self, key: str, pool: _Pool) -> None:
        """Write this worker's finished requests off now, unless a thread of its own will write soon anyway.

        A thread in the turn or waiting for it will (its write carries them); this runs again when it
        leaves, so the last one out writes them off.
        """
        if not pool.turn.acquire(blocking=False):
            return  # the turn's holder writes them off, or runs this when it leaves
        try:
            while True:
                with self._lock:
                    if pool.waiting or not pool.finished or pool.handed:
                        return
                    seen, finished = pool.seen, set(pool.finished)
                try:
                    if self._write(pool, key, seen, self._clock(), taken=[], finished=finished):
                        return
                    self._remember(pool, self._read(key, "write-off-conflict"), fresh=True)
                except AzureError as exc:
                    # They stop counting by themselves after lease_seconds; nothing is lost but that time.
                    log.warning(
                        "could not write off finished requests (%s); they stop counting when their time ends",
                        type(exc).__name__,
                    )
                    with self._lock:
                        pool.finished -= finished
                    return
        finally:
            pool.turn.release()

    # --- the mailbox's entity in Table storage -----------------------------------------------------
    def _remember(self, pool: _Pool, window: Window, *, fresh: bool) -> None:
        with self._lock:
            pool.seen, pool.fresh = window, fresh

    def _read(self, key: str, why: str = "") -> Window:
        self._tick(f"read-{why}" if why else "read")
        try:
            entity = self._table.get_entity(key, _WINDOW_ROW, **self._hook)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "TableNotFound":
                raise
            return _EMPTY
        counts = {int(bucket): int(n) for bucket, n in json.loads(entity["Buckets"]).items()}
        in_flight = {str(r): float(until) for r, until in json.loads(entity.get("InFlight") or "{}").items()}
        return Window(counts, in_flight, entity.metadata["etag"])

    def _write(self, pool: _Pool, key: str, seen: Window, now: float, *, taken: list[str], finished: set[str]) -> bool:
        """Count ``taken`` in their bucket and in flight, ``finished`` no longer; False if another
        instance changed the entity since ``seen``."""
        oldest = int(now // (self._window / BUCKETS)) - BUCKETS
        # Buckets and requests that no longer count are dropped, so the entity stays small.
        counts = {b: n for b, n in seen.counts.items() if b >= oldest}
        if taken:
            bucket = count_bucket(now, self._window)
            counts[bucket] = counts.get(bucket, 0) + len(taken)
        in_flight = seen.live(now, finished) | dict.fromkeys(taken, now + self._lease_seconds)
        entity = {
            "PartitionKey": key,
            "RowKey": _WINDOW_ROW,
            "Buckets": json.dumps(counts),
            "InFlight": json.dumps(in_flight),
        }
        self._tick("write" if taken else "write-off")
        try:
            if seen.etag is None:
                written = self._table.create_entity(entity, **self._hook)
            else:
                written = self._table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=seen.etag,
                    match_condition=MatchConditions.IfNotModified,
                    **self._hook,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        with self._lock:
            pool.seen, pool.fresh = Window(counts, in_flight, written.get("etag")), False
            pool.mine = (pool.mine | set(taken)) - finished
            pool.finished -= finished
        return True

    # --- setup and fallback -------------------------------------------------------------------
    def _ensure_ready(self) -> None:
        if self._ready or not self._create_missing:
            return
        # Local storage (Azurite) starts empty; in Azure the Bicep creates the table and the app's
        # role is scoped to it, so it could not create it anyway.
        with suppress(ResourceExistsError):
            self._table.create_table()
        self._ready = True

    def _fall_back(self, exc: AzureError) -> None:
        self._down_until = self._clock() + FALLBACK_SECONDS
        with self._lock:
            self._fallbacks += 1
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
