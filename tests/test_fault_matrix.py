"""The delivery promise under every fault, end to end: real triggers, Azurite, the stand-ins.

Each case injects one fault at one point of a send, for each entry point (the HTTP trigger with an
``Idempotency-Key``, retried the way Power Automate's default policy retries; the queue trigger,
driven the way the Functions host drives it) and each delivery mode. What must hold:

- standard delivery: no silent duplicate (a second delivery is always flagged on the record and
  in the answer) and no loop (every message ends sent, dead-lettered or poisoned);
- verified delivery: exactly one delivery, whatever the fault.

With ``M365_FAULT_MATRIX_OUT`` set, each case appends its row (JSON) to that file;
``scripts/fault-matrix`` turns them into the table in ``docs/delivery.md``.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

import function_app
from m365send.errors import DependencyUnavailable
from m365send.sendlog import Scope, SendRecord, scoped_key
from standins.cloud import LocalCloud
from standins.graph import Fault
from standins.https import DROP
from standins.queue_host import QueueHost
from tests.conftest import Answer, Configure, SendApi, indexed_functions

MODES = ["standard", "verified"]
ENTRIES = ["http", "queue"]
KEY = "order-1001"
# Power Automate's default policy: up to 4 retries of 408, 429 and 5xx (waits scaled down here).
PA_RETRIES = 4
PA_RETRY = {408, 429} | set(range(500, 600))


class Crash(Exception):
    """Stands for the worker process dying: from the moment it is raised, the worker writes nothing."""


@dataclass
class World:
    """What one case runs in, and what it saw."""

    cloud: LocalCloud
    mode: str
    entry: str
    dead: bool = False
    answers: list[int] = field(default_factory=list)

    def send_on(self) -> str:
        """The Graph request that delivers: ``sendMail``, or a draft's ``send`` in verified delivery."""
        return "POST /sendMail" if self.mode == "standard" else "POST /send"


def _die(world: World) -> None:
    world.dead = True
    raise Crash


def _dying(world: World, real: Callable[..., Any], *, crash_once: list[bool] | None = None) -> Callable[..., Any]:
    """``real``, unless the worker is dead (then it raises); ``crash_once``: die at the first call."""

    def call(*args: Any, **kwargs: Any) -> Any:
        if world.dead:
            raise Crash
        if crash_once:
            crash_once.clear()
            _die(world)
        return real(*args, **kwargs)

    return call


def _wrap_sends(world: World, monkeypatch: pytest.MonkeyPatch, **crash_at: list[bool]) -> None:
    """Wrap the worker's real send-log instance: a dead worker writes nothing; ``crash_at`` names where it dies."""
    sends = function_app.current_worker().sends()
    for name in ("reserve", "renew", "mark_sent", "mark_failed", "mark_unknown", "release"):
        monkeypatch.setattr(sends, name, _dying(world, getattr(sends, name), crash_once=crash_at.get(name)))


# --- the faults --------------------------------------------------------------------------------
Inject = Callable[[World, pytest.MonkeyPatch], None]


def graph_504_after_delivery(world: World, _: pytest.MonkeyPatch) -> None:
    world.cloud.graph.inject(Fault(504, after=True, on=world.send_on()))


def graph_500_without_retry_after(world: World, _: pytest.MonkeyPatch) -> None:
    world.cloud.graph.inject(Fault(500, on=world.send_on()))


def connection_dropped_after_delivery(world: World, _: pytest.MonkeyPatch) -> None:
    world.cloud.graph.inject(Fault(DROP, after=True, on=world.send_on()))


def timeout_after_delivery(world: World, _: pytest.MonkeyPatch) -> None:
    world.cloud.graph.inject(Fault(504, after=True, delay=3.5, on=world.send_on()))  # M365_HTTP_TIMEOUT is 3 s


def draft_creation_answer_lost(world: World, _: pytest.MonkeyPatch) -> None:
    world.cloud.graph.inject(Fault(DROP, after=True, on="POST /messages"))


def record_write_fails_after_graph_accepted(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sends = function_app.current_worker().sends()

    def mark_sent(*args: Any, **kwargs: Any) -> None:
        raise DependencyUnavailable("Table storage is unavailable: ServiceRequestError")

    monkeypatch.setattr(sends, "mark_sent", mark_sent)


def table_outage_at_reservation(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sends = function_app.current_worker().sends()
    real, failures = sends.reserve, iter(range(3))

    def reserve(*args: Any, **kwargs: Any) -> Any:
        if next(failures, None) is not None:
            raise DependencyUnavailable("Table storage is unavailable: ServiceRequestError")
        return real(*args, **kwargs)

    monkeypatch.setattr(sends, "reserve", reserve)


def crash_before_graph(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap_sends(world, monkeypatch)
    service = function_app.current_worker().service()
    monkeypatch.setattr(service, "plan", _dying(world, service.plan, crash_once=[True]))


def crash_after_graph_accepted(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    _wrap_sends(world, monkeypatch, mark_sent=[True])


def crash_after_recording(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = function_app.current_worker().engine()
    real, once = engine.handle, [True]

    def handle(*args: Any, **kwargs: Any) -> Any:
        outcome = real(*args, **kwargs)
        if once:
            once.clear()
            raise Crash  # the answer (HTTP) or the acknowledgement (queue) is lost
        return outcome

    monkeypatch.setattr(engine, "handle", handle)


def slow_send_outlives_its_lease(world: World, _: pytest.MonkeyPatch) -> None:
    world.cloud.graph.inject(Fault(200, delay=2.5, on=world.send_on()))  # the lease is 1 s


def record_write_answer_lost(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every record write's answer is lost once and the write retried onto itself (a 412 on its own write)."""
    sends = function_app.current_worker().sends()
    table = sends._table  # the worker's real TableClient
    real = table.update_entity

    def applied_then_retried(*args: Any, **kwargs: Any) -> Any:
        real(*args, **kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(table, "update_entity", applied_then_retried)


def renewal_raises_while_a_slow_send_runs(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    sends = function_app.current_worker().sends()
    real, once = sends.renew, [True]

    def renew(*args: Any, **kwargs: Any) -> Any:
        if once:
            once.clear()
            raise RuntimeError("a bug in a renewal")
        return real(*args, **kwargs)

    monkeypatch.setattr(sends, "renew", renew)
    world.cloud.graph.inject(Fault(200, delay=2.5, on=world.send_on()))  # the lease is 1 s


def draft_creation_504_after_creating(world: World, _: pytest.MonkeyPatch) -> None:
    world.cloud.graph.inject(Fault(504, after=True, on="POST /messages"))


def draft_sent_by_another_attempt_first(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verified: another attempt sent this attempt's draft while it paused; its own /send gets a 404."""
    mail = function_app.current_worker().parts().mail
    real, once = mail.send_draft, [True]

    def send_draft(**ids: Any) -> Any:
        if once:
            once.clear()
            real(**ids)
        return real(**ids)

    monkeypatch.setattr(mail, "send_draft", send_draft)


def unexpected_exception(world: World, _: pytest.MonkeyPatch) -> None:
    """Nothing to inject: the message itself (a lone surrogate in its body) makes the send raise."""


FAULTS: dict[str, Inject] = {
    "Graph answers 504 after delivering": graph_504_after_delivery,
    "Graph answers 500 without Retry-After": graph_500_without_retry_after,
    "connection dropped after delivering": connection_dropped_after_delivery,
    "timeout after delivering": timeout_after_delivery,
    "draft creation's answer lost": draft_creation_answer_lost,
    "record write fails after Graph accepted": record_write_fails_after_graph_accepted,
    "Table storage down at reservation": table_outage_at_reservation,
    "crash before the Graph call": crash_before_graph,
    "crash after Graph accepted, before recording": crash_after_graph_accepted,
    "crash after recording": crash_after_recording,
    "send slower than the lease, repeat meanwhile": slow_send_outlives_its_lease,
    "a record write's answer lost, retried onto itself": record_write_answer_lost,
    "a renewal raises while a send outlives its lease": renewal_raises_while_a_slow_send_runs,
    "draft creation answered 504 after creating it": draft_creation_504_after_creating,
    "draft's send 404: another attempt sent it first": draft_sent_by_another_attempt_first,
    "unexpected exception (lone surrogate in Body)": unexpected_exception,
}


def _message(seed_message: dict[str, Any], fault: str) -> bytes:
    if fault.startswith("unexpected"):
        return json.dumps({**seed_message, "Body": "x\ud800"}).encode()  # escaped as \ud800: valid JSON
    return json.dumps(seed_message).encode()


# --- the two entry points ----------------------------------------------------------------------
def run_http(world: World, api: SendApi, body: bytes, concurrent: bool) -> str:
    """POST with the key, retrying as Power Automate's default policy does; the status sequence."""
    headers = {"Idempotency-Key": KEY}
    if concurrent:  # a second caller repeats the request while the first is still sending
        first: list[Answer] = []
        thread = threading.Thread(target=lambda: first.append(api.post(raw=body, headers=headers)))
        thread.start()
        time.sleep(1.4)
        world.dead = False
        repeat = api.post(raw=body, headers=headers)
        thread.join()
        world.answers += [repeat.status, first[0].status]
        if repeat.status not in PA_RETRY:
            return "done"
    for attempt in range(PA_RETRIES + 1):
        world.dead = False  # the next request reaches a live worker
        answer = api.post(raw=body, headers=headers)
        world.answers.append(answer.status)
        if answer.status not in PA_RETRY or attempt == PA_RETRIES:
            break
        time.sleep(min(float(answer.headers.get("Retry-After", "1")), 1.2))
    return "done"


def run_queue(world: World, host: QueueHost, body: bytes, concurrent: bool) -> str:
    """Enqueue with the key and let the host run until the queue is empty."""
    host.put_raw(json.dumps({"id": KEY, "message": json.loads(body)}).encode())
    if concurrent:
        host.put_raw(json.dumps({"id": KEY, "message": json.loads(body)}).encode())
    real = host._function

    def revive(message: Any) -> None:
        world.dead = False
        real(message)

    host._function = revive
    host.drain(timeout=90, parallel=2 if concurrent else 1)
    return "done"


@dataclass(frozen=True)
class Row:
    fault: str
    mode: str
    entry: str
    deliveries: int
    flagged: bool
    record: str
    caller: str


def _record() -> SendRecord | None:
    scope = Scope.HTTP if os.environ.get("_M365_ENTRY") == "http" else Scope.QUEUE
    return function_app.current_worker().sends().get(scoped_key(scope, KEY))


def _write(row: Row) -> None:
    target = os.environ.get("M365_FAULT_MATRIX_OUT")
    if target:
        with open(target, "a", encoding="utf-8") as out:
            out.write(json.dumps(vars(row)) + "\n")


@pytest.fixture
def world_for(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str, str], tuple[World, SendApi]]:
    def make(mode: str, entry: str) -> tuple[World, SendApi]:
        monkeypatch.setenv("_M365_ENTRY", entry)
        api = configure(
            **storage_settings,
            M365_DELIVERY_MODE=mode,
            M365_HTTP_TIMEOUT="3",
            M365_GRAPH_MAX_ATTEMPTS="2",
            M365_GRAPH_MAX_RETRY_WAIT="1",
            # Scaled down with the lease and the retry waits: verified delivery's wait for an
            # asynchronous send (60 s in production) must fit Power Automate's retries here.
            M365_DRAFT_SETTLE_SECONDS="1",
        )
        worker = function_app.current_worker()
        worker.service()  # warm: the token and the secret are cached before any fault is injected
        worker.engine()
        return World(cloud, mode, entry), api

    return make


@pytest.mark.parametrize("entry", ENTRIES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fault", list(FAULTS))
def test_the_delivery_promise_holds_under_the_fault(
    fault: str,
    mode: str,
    entry: str,
    world_for: Callable[[str, str], tuple[World, SendApi]],
    seed_message: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world, api = world_for(mode, entry)
    host = None
    if entry == "queue":
        outbox = indexed_functions()["outbox"].get_user_function()
        settings = function_app.current_worker().settings()
        assert settings.storage_connection
        host = QueueHost(settings.storage_connection, settings.queue_name, function=outbox)
    FAULTS[fault](world, monkeypatch)
    body = _message(seed_message, fault)
    concurrent = fault.startswith("send slower")

    if host is None:
        run_http(world, api, body, concurrent)
        caller = " ".join(str(s) for s in world.answers)
    else:
        run_queue(world, host, body, concurrent)
        letters = function_app.current_worker().storage().dead_letters.list()
        caller = f"sent {len(world.cloud.graph.sent)}, dead letters {len(letters)}, poisoned {host.poisoned()}"
        assert host.waiting() == 0  # no loop: the message ended

    world.cloud.graph.wait_idle()
    record = _record()
    deliveries = len(world.cloud.graph.sent)
    row = Row(
        fault,
        mode,
        entry,
        deliveries,
        bool(record and record.possible_duplicate),
        f"{record.status.value}{' (possible duplicate)' if record.possible_duplicate else ''}" if record else "none",
        caller,
    )
    _write(row)

    if fault.startswith("unexpected"):
        assert deliveries == 0  # a message that cannot be encoded is never partly sent
        return
    if mode == "verified":
        assert deliveries == 1, row
    else:
        assert 1 <= deliveries <= 2, row
        if deliveries == 2:
            assert row.flagged, f"silent duplicate: {row}"
    if entry == "http":
        assert world.answers[-1] == 202, row  # the caller ends with the 202 it waited for
