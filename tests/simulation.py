"""A deterministic simulation of the send-once protocol (FoundationDB's simulation testing, TigerBeetle's VOPR).

Two or three instances of the real engine (``SendOnce``, ``TableSendLog``, ``EmailService``,
``OutboxProcessor``, ``LeaseRenewer``) run over fakes of every port: a Table store with ETags and
``Date`` headers, a Graph mailbox with drafts, asynchronous sends and Sent Items, an at-least-once
queue with dequeue counts and poison, dead letters and completion queues. Time is simulated: each
instance reads its monotonic clock and its (skewed) wall clock from the simulation.

Every actor (an HTTP caller retrying as Power Automate does, each instance's queue pump and lease
renewer) runs in a thread of its own, but only one runs at a time: the simulation hands the turn
from one to the next at each port call, so one stream of choices decides the whole interleaving and
every fault. The choices come from a seed (``random``) or from hypothesis (``st.data()``), whose
shrinking turns a failing schedule into a minimal one. Zero is always the benign choice, so a
shrunk schedule names only the faults it needs.

Faults, per port call: refused before it was applied; applied and its answer lost; a 504 after
the mail went out; a hang until the client's timeout; a slow answer; a pause of the caller longer
than a lease; an unexpected error in a renewal. Per instance: a wall clock skewed by seconds, and a
crash at any step (its actors stop where they are; it restarts with fresh workers). Checked after
every schedule, by ``World.violations``:

- verified delivery: each key delivered at most once, and exactly once unless it was set aside
  (dead letter or poison) or its caller was refused for good;
- standard delivery: a second delivery of a key is always flagged on its record;
- every queued message ends (acknowledged, dead-lettered or poisoned) within the simulated hour;
- the status look-up never says failed or dead-lettered for a delivered email, nor does the last
  completion of its key, and every ended queued message that asked for a completion got one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, TypeVar

from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableEntity

from m365send.attachments import Content
from m365send.drafts import TAG_PROPERTY_ID
from m365send.errors import DependencyUnavailable, OutcomeUnknown
from m365send.leases import LeaseRenewer
from m365send.mailbox import CreatedDraft, GraphReceipt, TaggedMessage, UploadSession
from m365send.models import parse_send_request
from m365send.outbox import OutboxProcessor
from m365send.sendlog import Scope, scoped_key
from m365send.sendonce import DeliveryMode, Failed, Replayed, SendCommand, SendOnce, Sent
from m365send.service import EmailService
from m365send.service_time import ServiceTime
from m365send.status import StatusBook
from m365send.tables import DeadLetter, TableSendLog

T = TypeVar("T")
SENDER = "notifications@contoso.com"
LEASE = 30.0  # seconds: short, so take-overs happen within a schedule
TIMEOUT = 5.0  # a storage or Graph client gives up on a hung call after this long
# Verified delivery's wait for an asynchronous send, as in production. It is also what bounds a
# "zombie": an instance frozen between its last lease check and its request to Graph, which sends
# after its lease ended. Freezes here (PAUSE, 1.5 leases) stay within it; one longer than the settle
# time past a lease's end could send after a take-over (docs/delivery.md says so).
SETTLE = 60.0
HORIZON = 3600.0  # every message must have ended within this much simulated time
VISIBILITY = 30.0  # the Functions host: a failed message is visible again after this long
MAX_DEQUEUE = 5  # ... and poisoned after this many dequeues
EPOCH = 1_900_000_000.0


class Crash(BaseException):
    """The instance died: nothing after this point happens on it."""


class Chooser:
    """Where every decision comes from: a seeded ``random.Random`` or hypothesis's ``data.draw``."""

    def __init__(self, pick: Callable[[int], int]) -> None:
        self._pick = pick
        self.count = 0

    @classmethod
    def seeded(cls, seed: int) -> Chooser:
        rng = random.Random(seed)
        return cls(lambda n: rng.randrange(n))

    @classmethod
    def from_tape(cls, tape: list[int]) -> Chooser:
        """Choices read from a list (hypothesis draws it, and shrinks it towards fewer and smaller
        numbers: fewer faults); past its end every choice is 0, the benign one."""
        position = iter(tape)
        return cls(lambda n: next(position, 0) % n)

    def below(self, n: int) -> int:
        """A number in ``range(n)``; 0 is the benign choice."""
        self.count += 1
        return self._pick(n) if n > 1 else 0

    def rarely(self, one_in: int) -> bool:
        """True once in about ``one_in`` decisions (never, for a shrunk schedule)."""
        return self.below(one_in) == 1


# --- the scheduler ---------------------------------------------------------------------------------
@dataclass(eq=False)
class Actor:
    name: str
    run: Callable[[], None]
    instance: Instance | None = None
    wake_at: float = 0.0
    done: bool = False
    thread: threading.Thread | None = None


def _ready_at(actor: Actor) -> float:
    """When an actor may run next: its own wait, and no sooner than its instance thaws."""
    frozen = actor.instance.frozen_until if actor.instance is not None else 0.0
    return max(actor.wake_at, frozen)


class Scheduler:
    """Runs one actor at a time; an actor gives up its turn at every port call (``pause``)."""

    def __init__(self, world: World) -> None:
        self._world = world
        self._cv = threading.Condition()
        self._current: Actor | None = None
        self.actors: list[Actor] = []
        self._local = threading.local()

    def me(self) -> Actor:
        actor: Actor = self._local.actor
        return actor

    def spawn(self, name: str, run: Callable[[], None], instance: Instance | None = None, at: float = 0.0) -> Actor:
        actor = Actor(name, run, instance, wake_at=max(at, self._world.now))
        actor.thread = threading.Thread(target=self._body, args=(actor,), name=f"sim-{name}", daemon=True)
        self.actors.append(actor)
        actor.thread.start()
        return actor

    def _body(self, actor: Actor) -> None:
        self._local.actor = actor
        with self._cv:
            self._cv.wait_for(lambda: self._current is actor)
        try:
            actor.run()
        except Crash:
            pass
        except BaseException as error:
            self._world.escaped.append(f"{actor.name}: {type(error).__name__}: {error}")
        finally:
            with self._cv:
                actor.done = True
                self._current = None
                self._cv.notify_all()

    def pause(self, seconds: float) -> None:
        """The calling actor waits ``seconds`` of simulated time; others run meanwhile."""
        actor = self.me()
        actor.wake_at = self._world.now + max(seconds, 0.0)
        with self._cv:
            self._current = None
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._current is actor)

    def step(self, chooser: Chooser) -> bool:
        """Give one ready actor its turn; False when every actor is done."""
        live = [a for a in self.actors if not a.done]
        if not live:
            return False
        now = self._world.now
        ready = [a for a in live if _ready_at(a) <= now]
        if not ready:
            self._world.now = min(_ready_at(a) for a in live)
            ready = [a for a in live if _ready_at(a) <= self._world.now]
        actor = ready[chooser.below(len(ready))]
        with self._cv:
            self._current = actor
            self._cv.notify_all()
            self._cv.wait_for(lambda: self._current is None)
        self._world.now += chooser.below(3) * 0.05  # time passes between steps too
        return True

    def stop(self) -> None:
        """End every actor still alive (each dies at its next port call)."""
        self._world.stopping = True
        for actor in self.actors:
            while not actor.done:
                with self._cv:
                    self._current = actor
                    self._cv.notify_all()
                    self._cv.wait_for(lambda: self._current is None, timeout=5)


class SimLock:
    """A lock whose waiter gives up its turn (a real lock held by a paused actor would stop the world)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self._held = False

    def __enter__(self) -> SimLock:
        while self._held:
            self._scheduler.pause(0.01)
        self._held = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._held = False


# --- the ports -------------------------------------------------------------------------------------
class Fault:
    NONE, REFUSED, LOST, HANG, SLOW, PAUSE, BUG = range(7)


class _Response:
    """What azure-core's raw_response_hook is handed: only the Date header is read."""

    def __init__(self, date: str) -> None:
        self.http_response = self
        self.headers = {"Date": date}


class SimTable:
    """Azure Table storage, as ``TableSendLog`` uses it: ETags, conditional writes, a service clock."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.rows: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        self._etags = iter(range(1, 10**9))

    def _io(self, op: str, apply: Callable[[], T], kwargs: dict[str, Any]) -> T:
        request_hook, response_hook = kwargs.get("raw_request_hook"), kwargs.get("raw_response_hook")

        def applied() -> T:
            if request_hook:
                request_hook(None)
            result = apply()
            if response_hook:
                stamp = datetime.fromtimestamp(int(EPOCH + self._world.now), UTC)
                response_hook(_Response(format_datetime(stamp, usegmt=True)))
            return result

        return self._world.io(
            f"table.{op}",
            applied,
            refused=lambda: ServiceRequestError("connection refused"),
            lost=lambda: ServiceResponseError("the answer never came"),
        )

    def _stored(self, key: tuple[str, str]) -> TableEntity:
        entity, etag = self.rows[key]
        stored = TableEntity(entity)
        stored._metadata = {"etag": etag, "timestamp": None}
        return stored

    def create_entity(self, entity: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            key = (entity["PartitionKey"], entity["RowKey"])
            if key in self.rows:
                raise ResourceExistsError("EntityAlreadyExists")
            self.rows[key] = (dict(entity), f"e{next(self._etags)}")
            return {"etag": self.rows[key][1]}

        return self._io("create", apply, kwargs)

    def get_entity(self, partition_key: str, row_key: str, **kwargs: Any) -> TableEntity:
        def apply() -> TableEntity:
            if (partition_key, row_key) not in self.rows:
                raise ResourceNotFoundError("ResourceNotFound")
            return self._stored((partition_key, row_key))

        return self._io("get", apply, kwargs)

    def update_entity(self, entity: dict[str, Any], *, etag: str | None = None, **kwargs: Any) -> dict[str, Any]:
        def apply() -> dict[str, Any]:
            key = (entity["PartitionKey"], entity["RowKey"])
            if key not in self.rows:
                raise ResourceNotFoundError("ResourceNotFound")
            if etag is not None and self.rows[key][1] != etag:
                raise ResourceModifiedError("UpdateConditionNotSatisfied")
            self.rows[key] = (dict(entity), f"e{next(self._etags)}")
            return {"etag": self.rows[key][1]}

        kwargs.pop("mode", None)
        kwargs.pop("match_condition", None)
        return self._io("update", apply, kwargs)


@dataclass
class SimMessage:
    """A message in the mailbox: a draft, a draft on its way (``sending_until``), or sent."""

    id: str
    subject: str
    tag: str
    draft: bool = True
    sending_until: float | None = None


class SimMail:
    """Graph's mail endpoints, as the engine uses them, with Exchange's asynchronous send."""

    def __init__(self, world: World, send_delay: float) -> None:
        self._world = world
        self._send_delay = send_delay
        self.messages: dict[str, SimMessage] = {}
        self.deliveries: dict[str, int] = {}
        self._ids = iter(range(1, 10**9))

    def _deliver(self, subject: str) -> None:
        self.deliveries[subject] = self.deliveries.get(subject, 0) + 1
        self._world.trace.append(f"{self._world.now:8.2f}   delivered {subject} (#{self.deliveries[subject]})")

    def _io(self, op: str, apply: Callable[[], T], *, sends: bool = False) -> T:
        return self._world.io(
            f"graph.{op}",
            apply,
            refused=lambda: DependencyUnavailable(f"Graph refused {op}"),
            lost=lambda: (OutcomeUnknown if sends else DependencyUnavailable)(f"Graph's answer to {op} was lost"),
        )

    def send_mail(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> GraphReceipt:
        subject = json.loads(body)["message"]["subject"]
        self._io("sendMail", lambda: self._deliver(subject), sends=True)
        return GraphReceipt("graph-1", client_request_id, 1)

    def create_draft(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> CreatedDraft:
        message = json.loads(body)
        tag = message["singleValueExtendedProperties"][0]["value"]

        def apply() -> CreatedDraft:
            draft = SimMessage(f"m{next(self._ids)}", message["subject"], tag)
            self.messages[draft.id] = draft
            return CreatedDraft(draft.id, f"<{draft.id}@contoso.com>")

        return self._io("createDraft", apply)

    def update_draft(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        tag = json.loads(body)["singleValueExtendedProperties"][0]["value"]
        self._io("updateDraft", lambda: setattr(self._found(message_id), "tag", tag))

    def add_attachment(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        self._io("addAttachment", lambda: self._found(message_id))

    def create_upload_session(
        self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str
    ) -> UploadSession:
        return self._io("createUploadSession", lambda: UploadSession(url=f"upload/{message_id}", next_offset=0))

    def upload(self, session: UploadSession, content: Content, *, guard: Callable[[], None] | None = None) -> None:
        self._io("upload", lambda: None)

    def cancel_upload(self, session: UploadSession) -> None:
        self._io("cancelUpload", lambda: None)

    def _found(self, message_id: str) -> SimMessage:
        self._settle()
        found = self.messages.get(message_id)
        if found is None or not found.draft:
            from m365send.errors import MailboxNotFound

            raise MailboxNotFound("gone", code="ErrorItemNotFound", graph_status=404)
        return found

    def _settle(self) -> None:
        for message in self.messages.values():
            if message.sending_until is not None and message.sending_until <= self._world.now:
                message.draft, message.sending_until = False, None

    def send_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> GraphReceipt:
        def apply() -> None:
            draft = self._found(message_id)
            self._deliver(draft.subject)  # a draft still on its way is delivered again: the danger
            draft.sending_until = self._world.now + self._send_delay
            if self._send_delay <= 0:
                draft.draft, draft.sending_until = False, None

        self._io("sendDraft", apply, sends=True)
        return GraphReceipt("graph-2", client_request_id, 1)

    def delete_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> None:
        def apply() -> None:
            self._settle()
            found = self.messages.get(message_id)
            if found is not None and found.draft and found.sending_until is None:
                del self.messages[message_id]

        self._io("deleteDraft", apply)

    def find_tagged(
        self, *, mailbox: str, property_id: str, value: str, token: str, client_request_id: str
    ) -> list[TaggedMessage]:
        assert property_id == TAG_PROPERTY_ID

        def apply() -> list[TaggedMessage]:
            self._settle()
            return [
                TaggedMessage(m.id, m.draft) for m in self.messages.values() if m.tag.casefold() == value.casefold()
            ]

        return self._io("findTagged", apply)


@dataclass
class QueuedMessage:
    id: str
    body: bytes
    visible_at: float
    dequeue_count: int = 0


class SimQueue:
    """An Azure Storage queue as the Functions host drives it: at least once, visibility, poison."""

    def __init__(self, world: World) -> None:
        self._world = world
        self.messages: list[QueuedMessage] = []
        self.poison: list[QueuedMessage] = []
        self._ids = iter(range(1, 10**9))

    def put(self, body: bytes, delay: float = 0.0) -> None:
        self.messages.append(QueuedMessage(f"q{next(self._ids)}", body, self._world.now + delay))

    def requeue(self, body: bytes, *, delay: float) -> None:
        """The processor's hand-back (a port call that can fail like any other)."""
        self._world.io(
            "queue.put",
            lambda: self.put(body, delay),
            refused=lambda: DependencyUnavailable("the queue refused"),
            lost=lambda: DependencyUnavailable("the queue's answer was lost"),
        )

    def take(self) -> QueuedMessage | None:
        for message in sorted(self.messages, key=lambda m: m.visible_at):
            if message.visible_at > self._world.now:
                continue
            if message.dequeue_count >= MAX_DEQUEUE:  # the host moves it to <queue>-poison
                self.messages.remove(message)
                self.poison.append(message)
                continue
            message.dequeue_count += 1
            message.visible_at = self._world.now + VISIBILITY
            return message
        return None

    def next_visible(self) -> float | None:
        return min((m.visible_at for m in self.messages), default=None)


class SimDeadLetters:
    def __init__(self, world: World) -> None:
        self._world = world
        self.letters: list[DeadLetter] = []

    def add(self, **fields: Any) -> DeadLetter:
        letter = DeadLetter(
            id=str(len(self.letters)),
            reason=str(fields["problem"].get("detail", "")),
            recorded_at=datetime.fromtimestamp(EPOCH + self._world.now, UTC),
            **fields,
        )
        self.letters.append(letter)
        return letter

    def latest_for(self, key: str) -> DeadLetter | None:
        return next((letter for letter in reversed(self.letters) if letter.key == key), None)


class SimCompletions:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def notify(self, queue: str, body: bytes) -> None:
        self.sent.append(json.loads(body))


class _Tokens:
    def token(self) -> str:
        return "token"


# --- instances -------------------------------------------------------------------------------------
class Instance:
    """One worker process: the real engine over the shared fakes, with its own clocks."""

    def __init__(self, world: World, name: str, skew: float) -> None:
        self.world = world
        self.name = name
        self.dead = False
        self.frozen_until = 0.0
        self.skew = skew
        monotonic = world.monotonic

        def wall() -> datetime:
            return datetime.fromtimestamp(EPOCH + world.now + skew, UTC)

        self.sends = TableSendLog(
            table=world.table,  # type: ignore[arg-type]
            lease=timedelta(seconds=LEASE),
            retention=timedelta(days=7),
            service_time=ServiceTime(monotonic=monotonic, fallback=wall),
            monotonic=monotonic,
        )
        self.renewer = LeaseRenewer(
            sends=self.sends,
            lease=timedelta(seconds=LEASE),
            clock=monotonic,
            background=False,
            lock=lambda: SimLock(world.scheduler),
        )
        service = EmailService(tokens=_Tokens(), mail=world.mail, default_sender=SENDER, allowed_senders=[])
        self.engine = SendOnce(
            service=service,
            sends=self.sends,
            mode=world.mode,
            lease=timedelta(seconds=LEASE),
            record_wait=0.0,
            draft_settle=timedelta(seconds=SETTLE),
            clock=wall,
            renewer=self.renewer,
        )
        self.outbox = OutboxProcessor(
            engine=self.engine,
            dead_letters=world.dead_letters,
            requeue=world.queue,
            max_attempts=12,
            retry_base=2.0,
            max_delay=120.0,
            completions=world.completions,
            completion_queues=["done"],
        )


def _message(key: str) -> dict[str, Any]:
    return {"To": "ann@fabrikam.com", "From": {"Address": SENDER}, "Subject": key, "Body": "simulated"}


class World:
    """One schedule: instances, callers, the ports they share, and what each key went through."""

    def __init__(self, chooser: Chooser, *, mode: DeliveryMode, instances: int, http: int, queued: int) -> None:
        self.chooser = chooser
        self.mode = mode
        self.now = 0.0
        self.stopping = False
        self.escaped: list[str] = []
        self.trace: list[str] = []
        self.scheduler = Scheduler(self)
        self.table = SimTable(self)
        self.mail = SimMail(self, send_delay=float(chooser.below(4)))
        self.queue = SimQueue(self)
        self.dead_letters = SimDeadLetters(self)
        self.completions = SimCompletions()
        self.http_answers: dict[str, list[str]] = {}
        self.instances = [self._start(f"i{n}") for n in range(instances)]
        for n in range(http):
            key = f"http-{n}"
            self.scheduler.spawn(f"caller-{key}", self._caller(key), at=chooser.below(5))
        self.queued = [f"queue-{n}" for n in range(queued)]
        for key in self.queued:
            body = {"id": key, "message": _message(key), "notify": "done"}
            self.queue.put(json.dumps(body).encode(), delay=float(chooser.below(5)))
            if chooser.rarely(4):  # a producer that enqueued twice
                self.queue.put(json.dumps(body).encode(), delay=float(chooser.below(5)))

    # --- time and faults ---------------------------------------------------------------------------
    def monotonic(self) -> float:
        return self.now

    def io(
        self,
        op: str,
        apply: Callable[[], T],
        *,
        refused: Callable[[], BaseException],
        lost: Callable[[], BaseException],
    ) -> T:
        """One port call by the current actor: its turn ends, then the chosen fault decides what happens."""
        actor = self.scheduler.me()
        self._alive(actor)
        fault = self._fault(op, actor)
        self.scheduler.pause(0.01 + self.chooser.below(3) * 0.05)
        if fault == Fault.PAUSE:
            # The whole instance stalls (a long GC pause, a frozen VM) for longer than a lease: its
            # renewals stop too. Then it goes on where it was, unaware.
            if actor.instance is not None:
                actor.instance.frozen_until = self.now + LEASE * 1.5
            self.scheduler.pause(LEASE * 1.5)
        self._alive(actor)
        self.trace.append(f"{self.now:8.2f} {actor.name} {op}{'' if not fault else ' ' + _FAULTS[fault]}")
        if fault == Fault.REFUSED:
            raise refused()
        if fault == Fault.HANG:
            self.scheduler.pause(TIMEOUT)
            self._alive(actor)
            raise lost()
        if fault == Fault.BUG:
            raise RuntimeError("a bug in the middle of a renewal")
        result = apply()
        if fault == Fault.LOST:
            raise lost()
        if fault == Fault.SLOW:
            self.scheduler.pause(TIMEOUT * 0.8)
        self._alive(actor)
        return result

    def _alive(self, actor: Actor) -> None:
        if self.stopping or (actor.instance is not None and actor.instance.dead):
            raise Crash

    def _fault(self, op: str, actor: Actor) -> int:
        if self.chooser.below(8) != 1:  # most calls go through untouched
            return Fault.NONE
        if actor.name.startswith("renewer") and op == "table.update" and self.chooser.rarely(3):
            return Fault.BUG
        return 1 + self.chooser.below(5) if op != "table.get" or self.chooser.rarely(2) else Fault.SLOW

    def maybe_crash(self) -> None:
        """Between steps, rarely: an instance dies and, a while later, starts again with fresh workers."""
        if not self.chooser.rarely(60):
            return
        live = [i for i in self.instances if not i.dead]
        if not live:
            return
        victim = live[self.chooser.below(len(live))]
        victim.dead = True
        self.trace.append(f"{self.now:8.2f} {victim.name} CRASH")
        self.instances.append(self._start(victim.name + "'", at=self.now + 1 + self.chooser.below(60)))

    def _start(self, name: str, at: float = 0.0) -> Instance:
        instance = Instance(self, name, skew=float(self.chooser.below(11) - 5))
        self.scheduler.spawn(f"pump-{name}", lambda: self._pump(instance), instance, at=at)
        self.scheduler.spawn(f"renewer-{name}", lambda: self._renew(instance), instance, at=at)
        return instance

    # --- actors ------------------------------------------------------------------------------------
    def _live_instance(self) -> Instance | None:
        live = [i for i in self.instances if not i.dead]
        return live[self.chooser.below(len(live))] if live else None

    def _caller(self, key: str) -> Callable[[], None]:
        return lambda: self._http_caller(key)

    def _http_caller(self, key: str) -> None:
        """A flow's action: up to 5 tries on 5xx or a dropped connection, each on any live instance."""
        answers = self.http_answers.setdefault(key, [])
        actor = self.scheduler.me()
        for _ in range(5):
            instance = self._live_instance()
            if instance is None:
                self.scheduler.pause(10)
                continue
            actor.instance = instance
            request = parse_send_request(_message(key), request_id=_guid(key))
            try:
                outcome = instance.engine.handle(SendCommand(request, Scope.HTTP, key))
            except Crash:
                if self.stopping:
                    raise
                answers.append("dropped")
                self.scheduler.pause(5)
                continue
            finally:
                actor.instance = None
            if isinstance(outcome, Sent):
                answers.append("202-duplicate" if outcome.possible_duplicate else "202")
                return
            if isinstance(outcome, Replayed):
                answers.append(f"replayed-{outcome.status.value}")
                return
            assert isinstance(outcome, Failed)
            answers.append(f"{'4xx' if outcome.permanent else '5xx'}-{type(outcome.error).__name__}")
            if outcome.permanent:
                return
            self.scheduler.pause(min(outcome.retry_after or 7.5, 60))

    def _pump(self, instance: Instance) -> None:
        """The host's queue listener on one instance: take a visible message, run the function, delete it."""
        while self.now < HORIZON:
            self._alive(self.scheduler.me())
            message = self.queue.take()
            if message is None:
                visible = self.queue.next_visible()
                if visible is None and self._callers_done():
                    return
                self.scheduler.pause(max((visible or self.now + 5) - self.now, 0.5))
                continue
            try:
                instance.outbox.process(message.body, message_id=message.id, dequeue_count=message.dequeue_count)
            except Crash:
                raise
            except Exception as error:  # the host retries it after the visibility timeout
                self.trace.append(f"{self.now:8.2f} {instance.name} function failed: {type(error).__name__}")
                continue
            if message in self.queue.messages:
                self.queue.messages.remove(message)

    def _renew(self, instance: Instance) -> None:
        while self.now < HORIZON and not (self._callers_done() and not self.queue.messages):
            self._alive(self.scheduler.me())
            due = instance.renewer.renew_due()
            self.scheduler.pause(max((due or self.now + LEASE / 3) - self.now, 0.5))

    def _callers_done(self) -> bool:
        return all(a.done for a in self.scheduler.actors if a.name.startswith("caller-"))

    # --- running and checking ----------------------------------------------------------------------
    def run(self, max_steps: int = 20_000) -> None:
        """Run the schedule until every actor is done (or the step budget ends), then stop the rest."""
        steps = 0
        while steps < max_steps and self.scheduler.step(self.chooser):
            steps += 1
            self.maybe_crash()
        self.steps = steps
        self.scheduler.stop()

    def violations(self) -> list[str]:
        """Every broken promise of this schedule (empty: it held)."""
        found = list(self.escaped)
        delivered = self.mail.deliveries
        records = {key: self.table_record(scope, key) for scope, key in self._keys()}
        book = StatusBook(records=_RecordReader(self), dead_letters=self.dead_letters)
        for scope, key in self._keys():
            count = delivered.get(key, 0)
            record = records[key]
            if self.mode is DeliveryMode.VERIFIED and count > 1:
                found.append(f"{key}: delivered {count} times in verified delivery")
            if self.mode is DeliveryMode.STANDARD and count > 1 and not (record and record.possible_duplicate):
                found.append(f"{key}: delivered {count} times, the record not flagged")
            set_aside = any(letter.key == key for letter in self.dead_letters.letters) or any(
                key.encode() in m.body for m in self.queue.poison
            )
            answers = self.http_answers.get(key, [])
            refused = any(a.startswith("4xx") for a in answers) or (
                answers and not answers[-1].startswith(("202", "replayed"))
            )
            if self.mode is DeliveryMode.VERIFIED and count == 0 and not set_aside and not refused:
                found.append(f"{key}: never delivered, and nothing says it was set aside ({answers})")
            state = book.look_up(key, scope)
            if count and state is not None and state.status in ("failed", "dead-lettered"):
                found.append(f"{key}: delivered, but its status says {state.status}")
        for key in self.queued:
            told = [c for c in self.completions.sent if c.get("idempotencyKey") == key]
            # Completions are at least once and each tells the state then: an earlier copy of a message
            # set aside while another copy later sent it is superseded by the later "sent". The last
            # word must be right (docs/delivery.md, "What the simulation leaves to the reader").
            if delivered.get(key) and told and told[-1]["status"] != "sent":
                found.append(f"{key}: delivered, but the last completion said {[c['status'] for c in told]}")
            ended = delivered.get(key) or any(letter.key == key for letter in self.dead_letters.letters)
            if ended and not told and not any(key.encode() in m.body for m in self.queue.poison):
                found.append(f"{key}: ended without the completion it asked for")
        if self.queue.messages:
            found.append(f"{len(self.queue.messages)} queued message(s) never ended within {HORIZON:.0f} s")
        return found

    def _keys(self) -> Iterator[tuple[Scope, str]]:
        yield from ((Scope.HTTP, key) for key in self.http_answers)
        yield from ((Scope.QUEUE, key) for key in self.queued)

    def table_record(self, scope: Scope, key: str) -> Any:
        return _RecordReader(self).get(scoped_key(scope, key))


class _RecordReader:
    """Reads records straight from the fake table, outside any schedule (no faults, no turns)."""

    def __init__(self, world: World) -> None:
        self._world = world

    def get(self, key: str) -> Any:
        from m365send.tables import _address, _record

        row = self._world.table.rows.get(_address(key))
        return None if row is None else _record(self._world.table._stored(_address(key)))


_FAULTS = {
    Fault.REFUSED: "refused",
    Fault.LOST: "applied, answer lost",
    Fault.HANG: "hung",
    Fault.SLOW: "slow",
    Fault.PAUSE: "instance paused",
    Fault.BUG: "bug",
}


def _guid(key: str) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


@contextmanager
def _quiet() -> Iterator[None]:
    """The engine logs every fault it meets; a thousand schedules need none of it."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)
    try:
        yield
    finally:
        logging.disable(previous)


def simulate(chooser: Chooser) -> World:
    """One schedule: its shape (mode, instances, callers) and everything after it from ``chooser``."""
    mode = DeliveryMode.VERIFIED if chooser.below(2) else DeliveryMode.STANDARD
    world = World(
        chooser, mode=mode, instances=2 + chooser.below(2), http=1 + chooser.below(2), queued=1 + chooser.below(2)
    )
    with _quiet():
        world.run()
    return world


def main(argv: list[str] | None = None) -> int:
    """``./scripts/simulate``: run seeded schedules; print the first failing one's trace and seed."""
    parser = argparse.ArgumentParser(prog="scripts/simulate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedules", type=int, default=1000, help="how many schedules (default 1000)")
    parser.add_argument("--seed", type=int, default=0, help="the first seed; schedule n runs seed + n")
    parser.add_argument("--replay", type=int, help="run this one seed and print its trace")
    args = parser.parse_args(argv)
    seeds = [args.replay] if args.replay is not None else range(args.seed, args.seed + args.schedules)
    started, steps, faults = time.monotonic(), 0, 0
    for seed in seeds:
        world = simulate(Chooser.seeded(seed))
        steps += world.steps
        faults += sum(1 for line in world.trace if line.rstrip().endswith(tuple(_FAULTS.values())) or "CRASH" in line)
        problems = world.violations()
        if args.replay is not None:
            print("\n".join(world.trace))
        if problems:
            print(f"seed {seed}: {len(problems)} violation(s): {problems}", file=sys.stderr)
            print(f"replay: ./scripts/simulate --replay {seed}", file=sys.stderr)
            return 1
    took = time.monotonic() - started
    print(f"{len(seeds)} schedule(s) clean: {steps:,} steps, {faults:,} faults injected, {took:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
