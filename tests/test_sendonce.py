"""The send-once engine's rules, with fakes of the mailbox and the send log (no I/O).

The same rules are shown end to end, through the real triggers, Azurite and the stand-ins, in
``tests/test_fault_matrix.py``.
"""

from __future__ import annotations

import base64
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from m365send.drafts import SendTag
from m365send.errors import (
    DependencyUnavailable,
    LeaseLost,
    OutcomeUnknown,
    RecipientsRejected,
    SendInProgress,
)
from m365send.models import parse_send_request
from m365send.sendlog import Scope, SendStatus, scoped_key
from m365send.sendonce import DeliveryMode, Failed, Replayed, SendCommand, SendOnce, Sent
from m365send.service import EmailService
from tests.fakes import FakeMail, FakeTokens, MemorySendLog

MB = 1024 * 1024


class Crash(BaseException):
    """Stands for the worker process dying at this point."""


class Parts:
    def __init__(self, mode: DeliveryMode = DeliveryMode.STANDARD, lease: float = 300.0, settle: float = 0.0) -> None:
        self.mail = FakeMail()
        self.sends = MemorySendLog(lease=timedelta(seconds=lease))
        self.service = EmailService(
            tokens=FakeTokens(), mail=self.mail, default_sender="notifications@contoso.com", allowed_senders=[]
        )
        self.engine = SendOnce(
            service=self.service,
            sends=self.sends,
            mode=mode,
            lease=timedelta(seconds=lease),
            record_wait=0.001,
            draft_settle=timedelta(seconds=settle),  # its own tests below set it
        )

    def command(self, message: dict[str, Any], key: str | None = "k", scope: Scope = Scope.HTTP) -> SendCommand:
        return SendCommand(parse_send_request(message, request_id="r-1"), scope, key)

    def deliveries(self) -> int:
        return len(self.mail.sent)


@pytest.fixture
def standard() -> Parts:
    return Parts()


@pytest.fixture
def verified() -> Parts:
    return Parts(DeliveryMode.VERIFIED)


def test_a_send_without_a_key_is_sent_and_recorded_nowhere(standard: Parts, seed_message: dict[str, Any]) -> None:
    outcome = standard.engine.handle(standard.command(seed_message, key=None))

    assert isinstance(outcome, Sent)
    assert standard.deliveries() == 1
    assert standard.sends.records == {}


def test_a_repeat_of_a_sent_key_replays_the_first_answer_without_sending(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    first = standard.engine.handle(standard.command(seed_message))
    again = standard.engine.handle(standard.command(seed_message))

    assert isinstance(first, Sent)
    assert isinstance(again, Replayed)
    assert again.stored["body"] == first.answer().body
    assert standard.deliveries() == 1


def test_a_key_recorded_sent_without_its_answer_is_answered_202_and_never_resent(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.engine.handle(standard.command(seed_message))
    key = scoped_key(Scope.HTTP, "k")
    standard.sends.records[key] = standard.sends.records[key].__class__(
        **{**vars(standard.sends.records[key]), "answer": None}
    )

    again = standard.engine.handle(standard.command(seed_message))

    assert isinstance(again, Replayed)
    assert again.answer().status == 202
    assert standard.deliveries() == 1


def test_the_same_key_from_http_and_from_the_queue_are_different_keys(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.engine.handle(standard.command(seed_message, key="invoice-1", scope=Scope.HTTP))
    other = {**seed_message, "Subject": "another message"}

    outcome = standard.engine.handle(standard.command(other, key="http:invoice-1", scope=Scope.QUEUE))

    assert isinstance(outcome, Sent)
    assert standard.deliveries() == 2


def test_a_lost_answer_is_recorded_unknown_and_never_answered_as_a_plain_retry(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.mail.deliver_then_fail["send_mail"] = OutcomeUnknown("504")

    outcome = standard.engine.handle(standard.command(seed_message))

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, OutcomeUnknown)
    assert outcome.answer("r-1").status == 502
    assert standard.sends.get(scoped_key(Scope.HTTP, "k")).status is SendStatus.UNKNOWN  # type: ignore[union-attr]


def test_standard_delivery_resends_after_a_lost_answer_and_flags_it(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.mail.deliver_then_fail["send_mail"] = OutcomeUnknown("504")
    standard.engine.handle(standard.command(seed_message))

    again = standard.engine.handle(standard.command(seed_message))

    assert isinstance(again, Sent)
    assert again.possible_duplicate
    assert again.answer().body["possibleDuplicate"] is True
    record = standard.sends.get(scoped_key(Scope.HTTP, "k"))
    assert record is not None
    assert record.possible_duplicate
    assert record.attempts == 2
    assert standard.deliveries() == 2  # at least once: flagged, never silent


def test_verified_delivery_sends_every_keyed_message_as_a_tagged_draft(
    verified: Parts, seed_message: dict[str, Any]
) -> None:
    outcome = verified.engine.handle(verified.command(seed_message))

    assert isinstance(outcome, Sent)
    assert verified.mail.calls == ["create_draft", "send_draft"]
    assert verified.mail.tags() == [SendTag.for_key(scoped_key(Scope.HTTP, "k")).value]


def test_verified_delivery_finds_a_message_sent_before_its_answer_was_lost_and_sends_nothing(
    verified: Parts, seed_message: dict[str, Any]
) -> None:
    verified.mail.deliver_then_fail["send_draft"] = OutcomeUnknown("504")
    verified.engine.handle(verified.command(seed_message))

    again = verified.engine.handle(verified.command(seed_message))

    assert isinstance(again, Sent)
    assert again.found_in_mailbox
    assert not again.possible_duplicate
    assert verified.deliveries() == 1
    assert verified.sends.get(scoped_key(Scope.HTTP, "k")).status is SendStatus.SENT  # type: ignore[union-attr]


def test_verified_delivery_sends_the_draft_an_earlier_attempt_left(
    verified: Parts, seed_message: dict[str, Any]
) -> None:
    verified.mail.fail["send_draft"] = Crash()  # the worker dies between creating the draft and sending it
    with pytest.raises(Crash):
        verified.engine.handle(verified.command(seed_message))
    del verified.mail.fail["send_draft"]
    [left] = verified.mail.drafts

    again = verified.engine.handle(verified.command(seed_message))

    assert isinstance(again, Sent)
    assert verified.mail.calls.count("create_draft") == 1
    assert [s["draft"] for s in verified.mail.sent] == [left]


def test_verified_delivery_sends_afresh_when_the_mailbox_has_nothing(
    verified: Parts, seed_message: dict[str, Any]
) -> None:
    verified.mail.fail["create_draft"] = OutcomeUnknown("timeout creating the draft")
    verified.engine.handle(verified.command(seed_message))
    del verified.mail.fail["create_draft"]

    again = verified.engine.handle(verified.command(seed_message))

    assert isinstance(again, Sent)
    assert verified.mail.calls[-3:] == ["find_tagged", "create_draft", "send_draft"]
    assert verified.deliveries() == 1


def test_a_draft_with_uploads_is_tagged_only_once_complete(verified: Parts, seed_message: dict[str, Any]) -> None:
    large = b"L" * (5 * MB)
    seed_message["Attachments"] = [{"Name": "big.bin", "ContentBytes": base64.b64encode(large).decode()}]
    tag = SendTag.for_key(scoped_key(Scope.HTTP, "k"))
    verified.mail.fail["upload"] = DependencyUnavailable("upload broke")

    verified.engine.handle(verified.command(seed_message))

    # The draft was created with a partial tag (a look-up never finds it) and then deleted.
    assert verified.mail.calls[:3] == ["create_draft", "create_upload_session", "upload"]
    assert verified.mail.drafts == {}
    del verified.mail.fail["upload"]
    outcome = verified.engine.handle(verified.command(seed_message))
    assert isinstance(outcome, Sent)
    assert "update_draft" in verified.mail.calls
    assert verified.mail.tags() == [tag.value]


def test_a_record_write_that_fails_after_graph_accepted_answers_success_with_a_warning(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.sends.fail["mark_sent"] = DependencyUnavailable("Table storage is unavailable")

    outcome = standard.engine.handle(standard.command(seed_message))

    assert isinstance(outcome, Sent)
    assert outcome.answer().status == 202
    assert "could not be recorded" in (outcome.warning or "")
    assert standard.deliveries() == 1


def test_a_permanent_refusal_is_recorded_and_replayed(standard: Parts, seed_message: dict[str, Any]) -> None:
    standard.mail.fail["send_mail"] = RecipientsRejected("no", code="ErrorInvalidRecipients", graph_status=400)
    first = standard.engine.handle(standard.command(seed_message))
    del standard.mail.fail["send_mail"]

    again = standard.engine.handle(standard.command(seed_message))

    assert isinstance(first, Failed)
    assert first.permanent
    assert isinstance(again, Replayed)
    assert again.answer().status == 400
    assert standard.deliveries() == 0


def test_a_transient_failure_in_standard_delivery_leaves_the_key_pending_for_the_next_attempt(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.mail.fail["send_mail"] = DependencyUnavailable("throttled", retry_after=3)

    outcome = standard.engine.handle(standard.command(seed_message))

    assert isinstance(outcome, Failed)
    assert outcome.retry_after == 3
    record = standard.sends.get(scoped_key(Scope.HTTP, "k"))
    assert record is not None
    assert record.status is SendStatus.PENDING
    del standard.mail.fail["send_mail"]
    assert isinstance(standard.engine.handle(standard.command(seed_message)), Sent)
    again = standard.sends.get(scoped_key(Scope.HTTP, "k"))
    assert again is not None
    assert (again.status, again.attempts) == (SendStatus.SENT, 2)
    assert again.possible_duplicate is False


def test_an_unexpected_exception_leaves_the_key_unknown_and_propagates(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.mail.fail["send_mail"] = UnicodeEncodeError("utf-8", "x", 0, 1, "surrogates not allowed")

    with pytest.raises(UnicodeEncodeError):
        standard.engine.handle(standard.command(seed_message))

    assert standard.sends.get(scoped_key(Scope.HTTP, "k")).status is SendStatus.UNKNOWN  # type: ignore[union-attr]


def test_a_repeat_while_the_first_attempt_sends_is_told_to_come_back_when_its_lease_ends(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.sends.reserve(scoped_key(Scope.HTTP, "k"), _hash(seed_message))

    outcome = standard.engine.handle(standard.command(seed_message))

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, SendInProgress)
    assert outcome.answer("r-1").status == 503
    assert 290 < (outcome.retry_after or 0) <= 301


def test_the_lease_is_renewed_while_a_slow_send_runs(seed_message: dict[str, Any]) -> None:
    parts = Parts(lease=0.3)
    slow = parts.mail.send_mail

    def send_mail(**kwargs: Any) -> Any:
        time.sleep(1.0)  # more than three leases
        return slow(**kwargs)

    parts.mail.send_mail = send_mail  # type: ignore[method-assign]
    first = threading.Thread(target=parts.engine.handle, args=(parts.command(seed_message),))
    first.start()
    time.sleep(0.6)

    concurrent = parts.engine.handle(parts.command(seed_message))
    first.join()

    assert isinstance(concurrent, Failed)
    assert isinstance(concurrent.error, SendInProgress)
    assert parts.deliveries() == 1


def test_an_attempt_whose_lease_was_taken_over_stops_before_its_next_graph_step(
    verified: Parts, seed_message: dict[str, Any]
) -> None:
    seed_message["Attachments"] = [{"Name": "big.bin", "ContentBytes": base64.b64encode(b"L" * (4 * MB)).decode()}]
    real_upload = verified.mail.upload

    def upload(session: Any, content: Any, *, guard: Any = None) -> None:
        # Another attempt takes the key over while this one uploads.
        key = scoped_key(Scope.HTTP, "k")
        record = verified.sends.records[key]
        verified.sends.records[key] = record.__class__(**{**vars(record), "etag": "someone-else"})
        verified.sends.fail["renew"] = LeaseLost()
        time.sleep(0.05)
        real_upload(session, content, guard=guard)

    verified.mail.upload = upload  # type: ignore[method-assign]
    verified.engine = SendOnce(
        service=verified.service, sends=verified.sends, mode=DeliveryMode.VERIFIED, lease=timedelta(seconds=0.03)
    )

    outcome = verified.engine.handle(verified.command(seed_message))

    assert isinstance(outcome, Failed)
    assert isinstance(outcome.error, LeaseLost)
    assert "send_draft" not in verified.mail.calls
    assert verified.deliveries() == 0


def _hash(message: dict[str, Any]) -> str:
    from m365send.envelope import payload_hash

    return payload_hash(parse_send_request(message, request_id="r-1"))


def test_a_transient_failure_after_a_lost_answer_keeps_the_next_send_flagged(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    standard.mail.deliver_then_fail["send_mail"] = OutcomeUnknown("504")
    standard.engine.handle(standard.command(seed_message))  # delivered, answer lost
    standard.mail.fail["send_mail"] = DependencyUnavailable("throttled", retry_after=1)
    standard.engine.handle(standard.command(seed_message))  # the resend is throttled
    del standard.mail.fail["send_mail"]

    third = standard.engine.handle(standard.command(seed_message))

    assert isinstance(third, Sent)
    assert third.possible_duplicate
    assert standard.deliveries() == 2


def test_verified_delivery_takes_a_404_on_sending_its_draft_for_an_unknown_outcome_not_a_failure(
    verified: Parts, seed_message: dict[str, Any]
) -> None:
    # This attempt paused before its draft's /send; another attempt took the key over, found the
    # draft and sent it. Graph then answers this attempt's /send with 404: the email did go out.
    real_send = verified.mail.send_draft

    def sent_by_another_attempt_first(**ids: Any) -> Any:
        real_send(**ids)
        return real_send(**ids)

    verified.mail.send_draft = sent_by_another_attempt_first  # type: ignore[method-assign]
    first = verified.engine.handle(verified.command(seed_message))
    verified.mail.send_draft = real_send  # type: ignore[method-assign]

    assert isinstance(first, Failed)
    assert isinstance(first.error, OutcomeUnknown)
    assert not first.permanent
    assert verified.sends.get(scoped_key(Scope.HTTP, "k")).status is SendStatus.UNKNOWN  # type: ignore[union-attr]
    again = verified.engine.handle(verified.command(seed_message))
    assert isinstance(again, Sent)
    assert again.found_in_mailbox
    assert verified.deliveries() == 1


def test_the_lease_renewer_survives_an_unexpected_exception_and_keeps_renewing(
    seed_message: dict[str, Any],
) -> None:
    parts = Parts(lease=0.15)
    real_renew = parts.sends.renew
    calls = {"n": 0}

    def renew_once_broken(reservation: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("a bug in a renewal")
        return real_renew(reservation)

    parts.sends.renew = renew_once_broken  # type: ignore[method-assign]
    slow_send = parts.mail.send_mail

    def slow(**kwargs: Any) -> Any:
        time.sleep(0.5)  # more than three lease periods
        return slow_send(**kwargs)

    parts.mail.send_mail = slow  # type: ignore[method-assign]

    first = parts.engine.handle(parts.command(seed_message))
    second = parts.engine.handle(parts.command(seed_message, key="k2"))

    assert isinstance(first, Sent), first
    assert isinstance(second, Sent), second
    assert calls["n"] >= 3


def test_a_holder_stops_when_its_lease_ends_on_the_monotonic_clock_whatever_the_wall_clock_says() -> None:
    from datetime import UTC, datetime

    from m365send.leases import LeaseRenewer
    from m365send.sendlog import Decision, Reservation, SendRecord

    ticks = [100.0]
    far = datetime(2099, 1, 1, tzinfo=UTC)  # as a wall clock stepped back would leave the record
    record = SendRecord(key="k", status=SendStatus.RESERVED, payload_hash="h", lease_until=far, expires_at=far)
    renewer = LeaseRenewer(sends=MemorySendLog(), lease=timedelta(seconds=300), clock=lambda: ticks[0])
    held = renewer.hold(Reservation(Decision.NEW, record, held_until=130.0))
    held.check()  # 30 s of the lease left

    ticks[0] = 130.0

    with pytest.raises(LeaseLost):
        held.check()
    held.release()


def test_an_upload_session_that_is_lost_is_cancelled_and_one_fresh_session_carries_the_file(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    from m365send.errors import UploadSessionLost

    seed_message["Attachments"] = [{"Name": "big.bin", "ContentBytes": base64.b64encode(b"L" * (4 * MB)).decode()}]
    real_upload = standard.mail.upload
    lost = [UploadSessionLost("the session expired")]

    def upload(session: Any, content: Any, *, guard: Any = None) -> None:
        if lost:
            raise lost.pop()
        real_upload(session, content, guard=guard)

    standard.mail.upload = upload  # type: ignore[method-assign]

    outcome = standard.engine.handle(standard.command(seed_message))

    assert isinstance(outcome, Sent)
    calls = [c for c in standard.mail.calls if "upload" in c]
    assert calls == ["create_upload_session", "cancel_upload", "create_upload_session", "upload"]
    assert standard.deliveries() == 1


def test_verified_delivery_does_not_send_a_found_draft_while_an_earlier_send_may_still_be_under_way(
    seed_message: dict[str, Any],
) -> None:
    parts = Parts(DeliveryMode.VERIFIED, settle=0.4)
    parts.mail.fail["send_draft"] = OutcomeUnknown("timeout")  # the /send went out; Exchange still shows a draft
    parts.engine.handle(parts.command(seed_message))
    del parts.mail.fail["send_draft"]

    soon = parts.engine.handle(parts.command(seed_message))
    time.sleep(0.5)
    later = parts.engine.handle(parts.command(seed_message))

    assert isinstance(soon, Failed)
    assert isinstance(soon.error, SendInProgress)
    assert 0 < (soon.retry_after or 0) <= 0.4
    assert isinstance(later, Sent)  # still a draft after the settle time: it was never sent, send it now
    assert parts.deliveries() == 1


def test_a_settle_wait_is_counted_from_the_earlier_send_not_from_the_last_look(seed_message: dict[str, Any]) -> None:
    parts = Parts(DeliveryMode.VERIFIED, settle=0.6)
    parts.mail.fail["send_draft"] = OutcomeUnknown("timeout")
    parts.engine.handle(parts.command(seed_message))
    del parts.mail.fail["send_draft"]

    started, waits = time.monotonic(), 0
    outcome = parts.engine.handle(parts.command(seed_message))
    while not isinstance(outcome, Sent) and time.monotonic() - started < 3:
        waits += 1
        time.sleep(0.25)  # each look comes before the wait is over
        outcome = parts.engine.handle(parts.command(seed_message))

    assert isinstance(outcome, Sent)  # looking again did not restart the wait
    assert time.monotonic() - started < 1.2
    assert waits >= 2


def test_a_flagged_resend_whose_answer_is_lost_too_leaves_the_record_flagged(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    # Found by the simulation (seed 427): the resend after a lost answer went out, its answer was
    # lost as well, and the record said unknown without the possible-duplicate flag.
    standard.mail.deliver_then_fail["send_mail"] = OutcomeUnknown("504")
    standard.engine.handle(standard.command(seed_message))
    standard.mail.deliver_then_fail["send_mail"] = OutcomeUnknown("504 again")

    second = standard.engine.handle(standard.command(seed_message))

    record = standard.sends.get(scoped_key(Scope.HTTP, "k"))
    assert isinstance(second, Failed)
    assert standard.deliveries() == 2
    assert record is not None
    assert record.status is SendStatus.UNKNOWN
    assert record.possible_duplicate


def test_a_resend_after_a_lost_answer_is_flagged_on_the_record_before_it_goes_out(
    standard: Parts, seed_message: dict[str, Any]
) -> None:
    # Found by the simulation (seed 990): the flagged resend went out, then no record write succeeded,
    # and the record never said that two emails may be out.
    standard.mail.deliver_then_fail["send_mail"] = OutcomeUnknown("504")
    standard.engine.handle(standard.command(seed_message))
    standard.sends.fail["mark_sent"] = DependencyUnavailable("Table storage is unavailable")

    second = standard.engine.handle(standard.command(seed_message))

    record = standard.sends.get(scoped_key(Scope.HTTP, "k"))
    assert isinstance(second, Sent)
    assert second.possible_duplicate
    assert second.warning
    assert standard.deliveries() == 2
    assert record is not None
    assert record.possible_duplicate
