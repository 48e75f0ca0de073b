"""The HTTP API as pure functions: request bytes in, ``HttpResult`` out. The trigger only adapts types.

Failures are RFC 9457 problem details (``application/problem+json``) built from the error table in
``m365send.errors``; they name the field or dependency, and never echo secrets, tokens or bodies.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from m365send.envelope import MAX_KEY_LENGTH, payload_hash
from m365send.errors import (
    ConfigurationInvalid,
    DependencyUnavailable,
    Disposition,
    FieldProblem,
    GraphRejected,
    IdempotencyConflict,
    M365SendError,
    RequestInvalid,
    SendInProgress,
    outcome_of,
)
from m365send.logcontext import log_context
from m365send.models import SendRequest, parse_message_json
from m365send.sendlog import Decision, SendLog
from m365send.service import EmailService, SendReceipt
from m365send.settings import Settings
from m365send.telemetry import FAILURES

__all__ = ["HttpResult", "accepted", "handle_send", "health", "problem"]

log = logging.getLogger(__name__)

PROBLEM_TYPE_BASE = "urn:m365send:problem:"
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class HttpResult:
    """Status, JSON body and headers of one HTTP answer."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def content(self) -> bytes:
        """The body as UTF-8 JSON."""
        return json.dumps(self.body, ensure_ascii=False).encode()

    def stored(self) -> dict[str, Any]:
        """The form kept in a send record, so a repeat of the key can be answered the same way."""
        return {"httpStatus": self.status, "body": self.body}

    @classmethod
    def replayed(cls, stored: dict[str, Any]) -> HttpResult:
        """A stored answer, marked as a replay."""
        status = int(stored["httpStatus"])
        content_type = "application/json" if status < 400 else "application/problem+json"
        return cls(status, stored["body"], {"Content-Type": content_type, "Idempotent-Replayed": "true"})


def accepted(receipt: SendReceipt, *, idempotency_key: str | None = None) -> HttpResult:
    """``202 Accepted``: Graph took the message for delivery."""
    body: dict[str, Any] = {
        "status": "accepted",
        "requestId": receipt.request_id,
        "mailbox": receipt.mailbox,
        "graphRequestId": receipt.graph_request_id,
    }
    if idempotency_key is not None:
        body["idempotencyKey"] = idempotency_key
    return HttpResult(202, body, {"Content-Type": "application/json"})


def problem(error: M365SendError, *, request_id: str) -> HttpResult:
    """The problem-details answer for ``error``, as the error table says."""
    outcome = outcome_of(error)
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + outcome.slug,
        "title": outcome.title,
        "status": outcome.status,
        "detail": error.detail,
        "instance": f"urn:uuid:{request_id}",
        "requestId": request_id,
    }
    if error.exception:
        body["exception"] = error.exception
    headers = {"Content-Type": "application/problem+json"}
    if isinstance(error, RequestInvalid):
        body["errors"] = [
            {"field": p.field, "code": p.code, "message": p.message, "exception": p.exception} for p in error.problems
        ]
    if isinstance(error, ConfigurationInvalid):
        body["settings"] = list(error.settings)
    if isinstance(error, GraphRejected):
        body["graphCode"] = error.code
        body["graphStatus"] = error.graph_status
    if isinstance(error, (DependencyUnavailable, SendInProgress)) and error.retry_after is not None:
        seconds = max(1, math.ceil(error.retry_after))
        body["retryAfter"] = seconds
        headers["Retry-After"] = str(seconds)
    return HttpResult(outcome.status, body, headers)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def handle_send(
    raw: bytes,
    *,
    sender: str | None,
    service: Callable[[], EmailService],
    request_id: str | None = None,
    idempotency_key: str | None = None,
    sends: Callable[[], SendLog] | None = None,
    validate_only: bool = False,
) -> HttpResult:
    """Validate ``raw`` (an email message as JSON), then send it through the worker's service.

    With an ``Idempotency-Key``, the first answer for the key is stored and replayed for repeats of
    the same message; a different message under the same key is 409, and so is a repeat that
    arrives while the first is still being sent.
    """
    # Graph wants a GUID for client-request-id; a caller's other value is not trusted to be one.
    request_id = request_id if request_id and _is_uuid(request_id) else str(uuid.uuid4())
    with log_context(request_id=request_id, idempotency_key=idempotency_key):
        try:
            request = parse_message_json(raw, sender=sender, request_id=request_id)
            if validate_only:
                mailbox = service().check(request)
                return HttpResult(200, {"status": "valid", "requestId": request_id, "mailbox": mailbox}, _JSON)
            if idempotency_key is None or sends is None:
                return accepted(service().send(request))
            return _send_once(request, idempotency_key, service, sends())
        except M365SendError as error:
            outcome = outcome_of(error)
            FAILURES.add(1, {"reason": outcome.slug, "trigger": "http"})
            log.warning("send refused: %s", error.detail, extra={"problem": outcome.slug, "status": outcome.status})
            return problem(error, request_id=request_id)
        except Exception:
            FAILURES.add(1, {"reason": "internal", "trigger": "http"})
            log.exception("send failed unexpectedly")
            return problem(
                M365SendError("an unexpected error occurred; see the logs for this request id"), request_id=request_id
            )


def _send_once(request: SendRequest, key: str, service: Callable[[], EmailService], sends: SendLog) -> HttpResult:
    if not key or len(key) > MAX_KEY_LENGTH or any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise RequestInvalid(
            [
                FieldProblem(
                    "Idempotency-Key",
                    "argument",
                    f"must be 1 to {MAX_KEY_LENGTH} printable characters",
                    "ArgumentException",
                )
            ]
        )
    reservation = sends.reserve(f"http:{key}", payload_hash(request))
    decision = reservation.decision
    if decision is Decision.CONFLICT:
        raise IdempotencyConflict(f"Idempotency-Key '{key}' was already used for a different message")
    if decision is Decision.IN_FLIGHT:
        left = reservation.lease_left(datetime.now(UTC)).total_seconds()
        raise SendInProgress(f"a send with Idempotency-Key '{key}' is in progress", retry_after=max(left, 1.0))
    if decision in (Decision.ALREADY_SENT, Decision.ALREADY_FAILED) and reservation.record.answer:
        return HttpResult.replayed(reservation.record.answer)
    try:
        receipt = service().send(request)
    except M365SendError as error:
        if outcome_of(error).disposition is Disposition.RETRY:
            if not (isinstance(error, DependencyUnavailable) and error.outcome_unknown):
                sends.release(reservation)
        else:
            failed = problem(error, request_id=request.request_id)
            sends.mark_failed(reservation, answer=failed.stored())
        raise
    result = accepted(receipt, idempotency_key=key)
    sends.mark_sent(
        reservation,
        graph_request_id=receipt.graph_request_id,
        answer=result.stored(),
    )
    return result


def health(settings: Callable[[], Settings]) -> HttpResult:
    """Configuration health: 200 when the settings are usable, 503 naming each bad setting (never a value)."""
    try:
        current = settings()
    except ConfigurationInvalid as error:
        body = {"status": "unhealthy", "problems": [{"settings": list(error.settings), "detail": error.detail}]}
        return HttpResult(503, body, _JSON)
    storage = bool(current.storage_connection or (current.queue_service_uri and current.table_service_uri))
    checks = {
        "settings": "ok",
        "credential": "certificate" if current.certificate_name else "client secret",
        "storage": "ok" if storage else "not configured: queued and idempotent sends are unavailable",
    }
    return HttpResult(200, {"status": "healthy" if storage else "degraded", "checks": checks}, _JSON)
