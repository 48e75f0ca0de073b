"""The send-once engine: reserve → decide → send → record, for every entry point.

The HTTP trigger, the queue trigger and the CLI turn their input into a ``SendCommand`` and hand
it here; they differ only in how they render the ``Sent``, ``Replayed`` or ``Failed`` it returns.
The rules it keeps, each a test (``tests/test_sendonce.py`` and ``tests/test_fault_matrix.py``):

- After Graph accepted a message nothing answers "retry": a record write that fails is retried,
  and if it still fails the answer is success with a warning, never a resend.
- A lost answer (``OutcomeUnknown``) is never retried blindly. The record is marked unknown and
  the next attempt either asks the mailbox (verified delivery) or resends flagged as a possible
  duplicate (standard delivery).
- The lease covers the whole send: it is renewed while the send runs, every write after the
  reservation is conditional on it, and an attempt that lost it stops before its next Graph step.
- Any exception, expected or not, leaves the record in a state the next attempt can decide on.

A message whose ``SendAt`` is ahead is not sent: its record is marked scheduled and the
outcome is ``Scheduled``, for the queue to hand the message back until it is due (the HTTP
trigger puts it on the queue). A repeat before then is ``Scheduled`` again; once due it sends.

Verified delivery (``M365_DELIVERY_MODE=verified``) sends every keyed message as a draft tagged
with a digest of its key. When an earlier attempt's outcome is unknown, the mailbox decides: the
tagged message found sent → recorded as sent, nothing is sent; found as a draft → that draft is
sent; not found → sent afresh. That is exactly once while the send record lives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from m365send.answers import HttpResult, problem
from m365send.drafts import SendTag
from m365send.envelope import payload_hash
from m365send.errors import (
    DependencyUnavailable,
    Disposition,
    FieldProblem,
    IdempotencyConflict,
    LeaseLost,
    M365SendError,
    MailboxNotFound,
    OutcomeUnknown,
    RequestInvalid,
    SendInProgress,
    outcome_of,
)
from m365send.leases import HeldLease, LeaseRenewer
from m365send.mailbox import TaggedMessage
from m365send.message import SendRequest
from m365send.sendlog import Decision, Reservation, Scope, SendLog, SendRecord, SendStatus, scoped_key
from m365send.service import EmailService, SendReceipt
from m365send.telemetry import FAILURES

__all__ = [
    "MAX_SCHEDULE_AHEAD",
    "DeliveryMode",
    "Failed",
    "Outcome",
    "Replayed",
    "Scheduled",
    "SendCommand",
    "SendOnce",
    "Sent",
    "schedule_problem",
]

log = logging.getLogger(__name__)

# A SendAt further ahead is far more likely a mistake (a wrong year) than a plan.
MAX_SCHEDULE_AHEAD = timedelta(days=90)
# A SendAt this close is due: the queue's delay is counted in whole seconds anyway.
_DUE_MARGIN = timedelta(seconds=1)


class DeliveryMode(StrEnum):
    """``standard``: at most once per key, at least once after a lost answer (flagged); ``verified``: exactly once."""

    STANDARD = "standard"
    VERIFIED = "verified"


@dataclass(frozen=True)
class SendCommand:
    """One request to send: the validated message, where it came from, and its idempotency key if any.

    ``can_wait``: the caller holds the message until its SendAt (the queue, or a caller that puts it
    there); a message due later is refused otherwise. ``owner``: the caller's key namespace
    (``m365send.callers.Caller.owner``), so one caller's key never meets another's.
    """

    request: SendRequest
    scope: Scope
    key: str | None = None
    can_wait: bool = False
    owner: str = ""


@dataclass(frozen=True)
class Sent:
    """Graph has the message (this attempt sent it, or verified delivery found it already sent)."""

    request: SendRequest
    mailbox: str
    key: str | None
    graph_request_id: str | None = None
    possible_duplicate: bool = False
    found_in_mailbox: bool = False
    warning: str | None = None
    internet_message_id: str | None = None

    def answer(self) -> HttpResult:
        """The ``202 Accepted`` answer."""
        body: dict[str, Any] = {
            "status": "accepted",
            "requestId": self.request.request_id,
            "mailbox": self.mailbox,
            "graphRequestId": self.graph_request_id,
        }
        if self.internet_message_id:
            body["internetMessageId"] = self.internet_message_id
        if self.key is not None:
            body["idempotencyKey"] = self.key
        if self.possible_duplicate:
            body["possibleDuplicate"] = True
        if self.found_in_mailbox:
            body["verified"] = "found in the mailbox, already sent by an earlier attempt"
        if self.warning:
            body["warning"] = self.warning
        return HttpResult.json(202, body)


@dataclass(frozen=True)
class Replayed:
    """The key was finished before: the first answer, to give again."""

    stored: dict[str, Any]
    status: SendStatus
    record: SendRecord | None = None  # the key's record, which the first attempt finished

    def answer(self) -> HttpResult:
        """The first answer, marked as a replay."""
        return HttpResult.replayed(self.stored)


@dataclass(frozen=True)
class Scheduled:
    """The message waits for its ``SendAt``; nothing was sent. The key's record says so."""

    request: SendRequest
    key: str
    send_at: datetime

    def delay(self, now: datetime) -> float:
        """Seconds until the message is due."""
        return max((self.send_at - now).total_seconds(), 0.0)

    def answer(self) -> HttpResult:
        """The ``202 Accepted`` answer of a scheduled send, with where to ask after it."""
        body = {
            "status": "scheduled",
            "requestId": self.request.request_id,
            "idempotencyKey": self.key,
            "sendAt": self.send_at.isoformat().replace("+00:00", "Z"),
            "statusUrl": f"/api/messages/{quote(self.key, safe='')}",
        }
        return HttpResult.json(202, body)


@dataclass(frozen=True)
class Failed:
    """Not sent (or, for ``OutcomeUnknown``, not known to be sent). ``permanent``: do not retry."""

    error: M365SendError

    @property
    def permanent(self) -> bool:
        """Whether retrying cannot help (the error table's disposition)."""
        return outcome_of(self.error).disposition is Disposition.DEAD_LETTER

    @property
    def retry_after(self) -> float | None:
        """The wait the error asks for, if any."""
        return getattr(self.error, "retry_after", None)

    def answer(self, request_id: str) -> HttpResult:
        """The problem-details answer."""
        return problem(self.error, request_id=request_id)


Outcome = Sent | Replayed | Scheduled | Failed

# Record writes after Graph accepted are worth a few quick tries: the alternative is a resend.
_RECORD_TRIES = 3


def _utc_now() -> datetime:
    return datetime.now(UTC)


class SendOnce:
    """Sends each command at most once per key (exactly once in verified mode); one instance per worker."""

    def __init__(
        self,
        *,
        service: EmailService,
        sends: SendLog | None,
        mode: DeliveryMode = DeliveryMode.STANDARD,
        lease: timedelta = timedelta(minutes=5),
        record_wait: float = 0.2,
        draft_settle: timedelta = timedelta(seconds=60),
        clock: Callable[[], datetime] = _utc_now,
        renewer: LeaseRenewer | None = None,
    ) -> None:
        """``clock`` and ``renewer`` are the simulation's: time is a port, and so is who renews leases."""
        self._service = service
        self._sends = sends
        self._mode = mode
        self._draft_settle = draft_settle
        self._leases = renewer or (LeaseRenewer(sends=sends, lease=lease) if sends is not None else None)
        self._record_wait = record_wait
        self._now = clock

    def sent_record(self, scope: Scope, key: str, owner: str = "") -> SendRecord | None:
        """The key's record if it says sent (None otherwise, or when it cannot be read)."""
        if self._sends is None:
            return None
        try:
            record = self._sends.get(scoped_key(scope, key, owner))
        except DependencyUnavailable:
            return None
        return record if record is not None and record.status is SendStatus.SENT else None

    def record(self, scope: Scope, key: str, owner: str = "") -> SendRecord | None:
        """The key's record, whatever it says; ``DependencyUnavailable`` when it cannot be read."""
        return None if self._sends is None else self._sends.get(scoped_key(scope, key, owner))

    @property
    def mode(self) -> DeliveryMode:
        """The delivery mode this engine runs in."""
        return self._mode

    def handle(self, command: SendCommand) -> Outcome:
        """Send ``command`` once; what became of it. Unexpected exceptions propagate after the record is safe."""
        send_at = command.request.message.send_at
        now = self._now()
        too_far = schedule_problem(command.request, now)
        if too_far is not None:
            return Failed(too_far)
        ahead = send_at is not None and send_at - now > _DUE_MARGIN
        if ahead and (command.key is None or not command.can_wait):
            return Failed(_needs_queue())  # only the queue can hold a message until it is due
        if ahead:
            try:
                # A sender that may not send is told now, not when the message comes due.
                self._service.check(command.request)
            except M365SendError as error:
                return Failed(error)
        if command.key is None:
            return self._unrecorded(command)
        if self._sends is None or self._leases is None:
            raise AssertionError("a keyed send needs send records")  # the adapters check the settings first
        key = scoped_key(command.scope, command.key, command.owner)
        try:
            reservation = self._sends.reserve(key, payload_hash(command.request))
        except DependencyUnavailable as error:
            return Failed(error)
        decision = reservation.decision
        if decision is Decision.CONFLICT:
            return Failed(
                IdempotencyConflict(
                    f"idempotency key '{command.key}' was already used for a different message; this one was not sent"
                )
            )
        if decision is Decision.SCHEDULED:
            assert reservation.record.send_at is not None  # decide() only schedules a record with a SendAt
            return Scheduled(command.request, command.key, reservation.record.send_at)
        if decision in (Decision.ALREADY_SENT, Decision.ALREADY_FAILED):
            log.info("idempotency key already finished: answering as the first time", extra={"decision": decision})
            return Replayed(
                _stored_answer(reservation.record, command), reservation.record.status, record=reservation.record
            )
        if decision is Decision.IN_FLIGHT:
            left = reservation.lease_left(self._now()).total_seconds()
            return Failed(
                SendInProgress(f"a send with idempotency key '{command.key}' is in progress", retry_after=left + 1)
            )
        if ahead and send_at is not None:
            return self._schedule(command.request, command.key, reservation, send_at)
        with self._leases.hold(reservation) as held:
            try:
                if decision is Decision.TAKE_OVER:
                    return self._take_over(command, held)
                return self._send(command, held, possible_duplicate=False)
            except BaseException:
                # Unexpected: the send may or may not have reached Graph. Leave the key for the next
                # attempt to decide on (a crash leaves it reserved, which its lease ends the same way).
                resent = decision is Decision.TAKE_OVER and self._mode is DeliveryMode.STANDARD
                self._write_unknown(held, possible_duplicate=resent)
                raise

    def _schedule(self, request: SendRequest, key: str, reservation: Reservation, send_at: datetime) -> Outcome:
        try:
            self._sends_or_fail().mark_scheduled(reservation, send_at=send_at)
        except LeaseLost as error:
            return Failed(error)
        except DependencyUnavailable as error:
            # Nothing was sent; the reservation's lease ends on its own and a retry schedules again.
            return Failed(error)
        log.info("email scheduled", extra={"send_at": send_at.isoformat()})
        return Scheduled(request, key, send_at)

    # --- the send itself ------------------------------------------------------------------------
    def _unrecorded(self, command: SendCommand) -> Outcome:
        try:
            receipt = self._service.send(command.request)
        except M365SendError as error:
            return Failed(error)
        return self._sent(command, receipt)

    def _send(self, command: SendCommand, held: HeldLease, *, possible_duplicate: bool) -> Outcome:
        tag = SendTag.for_key(held.current.record.key) if self._mode is DeliveryMode.VERIFIED else None
        try:
            receipt = self._service.send(command.request, tag=tag, guard=held.check)
        except LeaseLost as error:
            return Failed(error)  # another attempt holds the key: nothing to write
        except OutcomeUnknown as error:
            # A resend's answer lost too: two may be out, and the record says so from now on.
            self._write_unknown(held, possible_duplicate=possible_duplicate)
            return Failed(error)
        except M365SendError as error:
            failed = Failed(error)
            if failed.permanent:
                self._write_failed(held, failed, command)
            elif tag is not None or possible_duplicate:
                # A tagged draft may exist, or an earlier attempt may have delivered: releasing the key
                # would let the next attempt send unflagged. It stays unknown, to be looked up or flagged;
                # this attempt's own send certainly did not go out (Graph did not act on it).
                self._write_unknown(held, may_have_sent=False, possible_duplicate=possible_duplicate)
            else:
                self._sends_or_fail().release(held.release())
            return failed
        return self._record_sent(command, held, self._sent(command, receipt, possible_duplicate=possible_duplicate))

    def _take_over(self, command: SendCommand, held: HeldLease) -> Outcome:
        attempts = held.current.record.attempts
        if self._mode is DeliveryMode.STANDARD:
            log.warning(
                "an earlier attempt's outcome is unknown (it stopped, or Graph's answer was lost); Graph may "
                "already have the message, so this send may duplicate it",
                extra={"attempts": attempts},
            )
            try:
                # The flag goes on the record before the resend: if nothing can be written after it,
                # the record must still say that two may be out (found by the simulation, seed 990).
                held.rewrite(lambda reservation: _flagged(reservation, True))
            except LeaseLost as error:
                return Failed(error)
            except DependencyUnavailable as error:
                self._write_unknown(held, may_have_sent=False)
                return Failed(error)
            return self._send(command, held, possible_duplicate=True)
        tag = SendTag.for_key(held.current.record.key)
        try:
            found = self._service.find_tagged(command.request, tag)
        except M365SendError as error:
            self._write_unknown(held, may_have_sent=False)  # still unknown: the next attempt asks again
            return Failed(error)
        sent = [m for m in found if not m.is_draft]
        drafts = [m for m in found if m.is_draft]
        log.info(
            "verified delivery: asked the mailbox about an earlier attempt",
            extra={"attempts": attempts, "found_sent": len(sent), "found_drafts": len(drafts)},
        )
        if sent:
            self._discard(command, drafts)
            outcome = Sent(
                command.request, self._service.mailbox_of(command.request), command.key, found_in_mailbox=True
            )
            return self._record_sent(command, held, outcome)
        if drafts:
            settling = self._settling(held.current)
            if settling > 0:
                # Exchange sends asynchronously: a draft whose /send went out moments ago can still look
                # like a draft. Sending it again now could deliver it twice; after a while, it is unsent.
                self._write_unknown(held, may_have_sent=False)
                return Failed(
                    SendInProgress(
                        f"an earlier attempt may have sent the email with idempotency key '{command.key}' moments "
                        "ago and the mailbox may not show it yet; asking the mailbox again shortly",
                        retry_after=settling,
                    )
                )
            self._discard(command, drafts[1:])
            return self._send_found_draft(command, held, drafts[0])
        return self._send(command, held, possible_duplicate=False)

    def _send_found_draft(self, command: SendCommand, held: HeldLease, draft: TaggedMessage) -> Outcome:
        try:
            held.check()
            receipt = self._service.send_existing_draft(command.request, draft.id)
        except MailboxNotFound as error:
            if error.graph_status != 404:
                raise
            # Gone between the look-up and the send: most likely it was just sent. Look again next time.
            self._write_unknown(held)
            return Failed(OutcomeUnknown("the draft an earlier attempt left was gone when it was to be sent"))
        except LeaseLost as error:
            return Failed(error)
        except M365SendError as error:
            self._write_unknown(held)
            return Failed(error)
        return self._record_sent(command, held, self._sent(command, receipt))

    def _discard(self, command: SendCommand, drafts: list[TaggedMessage]) -> None:
        for draft in drafts:
            try:
                self._service.discard_draft(command.request, draft.id)
            except M365SendError as error:
                log.warning("could not delete a surplus draft: %s", error.detail)

    def _sent(self, command: SendCommand, receipt: SendReceipt, *, possible_duplicate: bool = False) -> Sent:
        return Sent(
            command.request,
            receipt.mailbox,
            command.key,
            graph_request_id=receipt.graph_request_id,
            possible_duplicate=possible_duplicate,
            internet_message_id=receipt.internet_message_id,
        )

    # --- record writes --------------------------------------------------------------------------
    def _sends_or_fail(self) -> SendLog:
        assert self._sends is not None
        return self._sends

    def _record_sent(self, command: SendCommand, held: HeldLease, sent: Sent) -> Sent:
        reservation = held.release()
        answer = sent.answer().stored()
        try:
            for attempt in Retrying(
                retry=retry_if_exception_type(DependencyUnavailable),
                stop=stop_after_attempt(_RECORD_TRIES),
                wait=wait_exponential(multiplier=self._record_wait, max=2.0),
                reraise=True,
            ):
                with attempt:
                    self._sends_or_fail().mark_sent(
                        _flagged(reservation, sent.possible_duplicate),
                        graph_request_id=sent.graph_request_id,
                        answer=answer,
                        internet_message_id=sent.internet_message_id,
                    )
        except LeaseLost:
            return _warned(sent, "another attempt took this key over while it was sent; it may send it again")
        except DependencyUnavailable as error:
            FAILURES.add(1, {"reason": "record-not-written", "trigger": command.scope.value})
            log.error("Graph accepted the email but its send record could not be written: %s", error.detail)
            return _warned(sent, "the send could not be recorded; a repeat of this key may send it again")
        return sent

    def _write_failed(self, held: HeldLease, failed: Failed, command: SendCommand) -> None:
        reservation = held.release()
        try:
            self._sends_or_fail().mark_failed(reservation, answer=failed.answer(command.request.request_id).stored())
        except M365SendError as error:
            log.warning("could not record a permanent failure: %s", error.detail)

    def _settling(self, reservation: Reservation) -> float:
        """Seconds to wait before a found draft may be taken for unsent (0: it may be sent now)."""
        since = reservation.since_maybe_sent()
        return 0.0 if since is None else max((self._draft_settle - since).total_seconds(), 0.0)

    def _write_unknown(self, held: HeldLease, *, may_have_sent: bool = True, possible_duplicate: bool = False) -> None:
        reservation = _flagged(held.release(), possible_duplicate)
        try:
            self._sends_or_fail().mark_unknown(reservation, may_have_sent=may_have_sent)
        except M365SendError as error:
            # The lease still ends on its own, and the next attempt then treats the key the same way.
            log.warning("could not record an unknown outcome: %s", error.detail)


def schedule_problem(request: SendRequest, now: datetime) -> RequestInvalid | None:
    """What is wrong with the request's SendAt at ``now`` (more than 90 days ahead), if anything."""
    send_at = request.message.send_at
    return _too_far_ahead(send_at) if send_at is not None and send_at - now > MAX_SCHEDULE_AHEAD else None


def _too_far_ahead(send_at: datetime) -> RequestInvalid:
    days = MAX_SCHEDULE_AHEAD.days
    when = send_at.isoformat().replace("+00:00", "Z")
    return RequestInvalid(
        [FieldProblem("SendAt", "too_far", f"{when} is more than {days} days ahead", "ArgumentException")]
    )


def _needs_queue() -> RequestInvalid:
    return RequestInvalid(
        [
            FieldProblem(
                "SendAt",
                "needs_queue",
                "a message scheduled for later waits on the outbox queue: send it with an idempotency key "
                "(POST /api/send does this itself) or enqueue it",
                "ArgumentException",
            )
        ]
    )


def _flagged(reservation: Reservation, possible_duplicate: bool) -> Reservation:
    if not possible_duplicate or reservation.record.possible_duplicate:
        return reservation
    return replace(reservation, record=replace(reservation.record, possible_duplicate=True))


def _warned(sent: Sent, warning: str) -> Sent:
    return replace(sent, warning=warning)


def _stored_answer(record: SendRecord, command: SendCommand) -> dict[str, Any]:
    """The first answer; one rebuilt from the record when it was not stored (never a reason to send)."""
    if record.answer:
        return record.answer
    if record.status is SendStatus.SENT:
        body = {
            "status": "accepted",
            "requestId": command.request.request_id,
            "graphRequestId": record.graph_request_id,
            "idempotencyKey": command.key,
        }
        return HttpResult.json(202, body).stored()
    error = M365SendError(f"idempotency key '{command.key}' failed permanently before; its problem was not kept")
    return problem(error, request_id=command.request.request_id).stored()
