"""The HTTP trigger's translator: request bytes → a ``SendCommand`` → an ``HttpResult``. No I/O of its own.

The send-once engine decides; this module parses, checks the ``Idempotency-Key`` header, and
renders the engine's outcome: 202 for a send, the stored answer for a repeat, a problem otherwise.

Power Automate's default retry policy resends on 408, 429 and 5xx only, so every answer that
means "ask again" is a 5xx with ``Retry-After``: a repeat that arrives while the first attempt is
still sending is ``503`` with the time its lease has left (the retry then gets the first 202), a
transient failure is ``503``, and a lost Graph answer is ``502`` (a retry with the same key is
decided by the engine, never resent blindly). Permanent refusals are 4xx and are not retried.

A message whose ``SendAt`` is ahead is recorded as scheduled and put on the outbox queue
(``m365send.scheduling``); its ``202`` names the key to ask ``GET /api/messages/{key}`` about.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from m365send.answers import HttpResult, problem
from m365send.callers import DEFAULT_CALLER, Caller
from m365send.envelope import key_problem, payload_hash
from m365send.errors import (
    ConfigurationInvalid,
    FieldProblem,
    M365SendError,
    RequestInvalid,
    SendNotFound,
    outcome_of,
)
from m365send.logcontext import log_context
from m365send.parsing import decode_json, parse_send_request
from m365send.policy import SenderPolicy
from m365send.scheduling import Outbox, is_ahead, schedule
from m365send.sendlog import Scope
from m365send.sendonce import Failed, SendCommand, SendOnce, Sent
from m365send.service import EmailService
from m365send.settings import Settings
from m365send.status import StatusBook
from m365send.telemetry import FAILURES
from m365send.workflow_keys import workflow_key

__all__ = ["HttpResult", "as_caller", "handle_send", "handle_status", "health", "problem"]

log = logging.getLogger(__name__)


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _checked_key(key: str) -> str:
    wrong = key_problem(key)
    if wrong is not None:
        raise RequestInvalid([FieldProblem("Idempotency-Key", "argument", wrong, "ArgumentException")])
    return key


def handle_send(
    raw: bytes,
    *,
    sender: str | None,
    service: Callable[[], EmailService],
    engine: Callable[[bool], SendOnce],
    request_id: str | None = None,
    idempotency_key: str | None = None,
    validate_only: bool = False,
    outbox: Callable[[], Outbox] | None = None,
    workflow: Mapping[str, str] | None = None,
    keys_stored: Callable[[], bool] = lambda: False,
    caller: Caller = DEFAULT_CALLER,
    policy: Callable[[], SenderPolicy] | None = None,
) -> HttpResult:
    """Validate ``raw`` (an email message as JSON), then send it once through the worker's engine.

    ``engine(keyed)`` is the worker's engine; ``keyed`` says whether it needs send records (an
    ``Idempotency-Key`` was given), so an unkeyed send needs no storage settings. ``outbox`` takes
    scheduled messages (``SendAt`` ahead); without it they are refused. ``workflow``: the request's
    ``x-ms-workflow-*`` headers; when a workflow's HTTP action sends no key and ``keys_stored()``
    (send records are configured), the key is derived from them (``m365send.workflow_keys``).
    ``caller`` (``authenticate``) must be allowed the sender by ``policy`` before anything is sent,
    and its keys are its own: another caller's key of the same name is another send.
    """
    # Graph wants a GUID for client-request-id; a caller's other value is not trusted to be one.
    request_id = request_id if request_id and _is_uuid(request_id) else str(uuid.uuid4())
    with log_context(request_id=request_id, idempotency_key=idempotency_key):
        try:
            key = None if idempotency_key is None else _checked_key(idempotency_key)
            message = decode_json(raw)
            request = parse_send_request(message, sender=sender, request_id=request_id)
            if policy is not None:
                policy().check(caller, request)
            if validate_only:
                mailbox = service().check(request)
                return HttpResult.json(200, {"status": "valid", "requestId": request_id, "mailbox": mailbox})
            if key is None and workflow and keys_stored():
                key = workflow_key(workflow, payload_hash(request))
            if is_ahead(request) and outbox is not None:
                outcome = schedule(
                    request, message, key=key or request_id, engine=engine(True), outbox=outbox(), owner=caller.owner
                )
            else:
                outcome = engine(key is not None).handle(SendCommand(request, Scope.HTTP, key, owner=caller.owner))
        except M365SendError as error:
            return _refused(error, request_id)
        except Exception:
            FAILURES.add(1, {"reason": "internal", "trigger": "http"})
            log.exception("send failed unexpectedly")
            return problem(
                M365SendError("an unexpected error occurred; see the logs for this request id"), request_id=request_id
            )
        if isinstance(outcome, Sent):
            return outcome.answer()
        if isinstance(outcome, Failed):
            return _refused(outcome.error, request_id)
        return outcome.answer()


def _refused(error: M365SendError, request_id: str) -> HttpResult:
    outcome = outcome_of(error)
    FAILURES.add(1, {"reason": outcome.slug, "trigger": "http"})
    log.warning("send refused: %s", error.detail, extra={"problem": outcome.slug, "status": outcome.status})
    return problem(error, request_id=request_id)


def handle_status(
    key: str, *, via: str | None, book: Callable[[], StatusBook], caller: Caller = DEFAULT_CALLER
) -> HttpResult:
    """``GET /api/messages/{key}``: what became of ``caller``'s keyed send (``via``: ``http`` or ``queue``,
    else both). Another caller's key is answered 404, exactly like a key nobody used."""
    request_id = str(uuid.uuid4())
    with log_context(request_id=request_id, idempotency_key=key):
        try:
            checked = _checked_key(key)
            scope = _scope(via)
            state = book().look_up(checked, scope, owner=caller.owner)
        except M365SendError as error:
            log.info("status look-up refused: %s", error.detail)
            return problem(error, request_id=request_id)
        if state is None:
            where = f"sent via {scope.value}" if scope else "sent over HTTP or the queue"
            return problem(
                SendNotFound(
                    f"no send with idempotency key '{checked}' {where} is known: it was never sent, its record "
                    "is older than M365_IDEMPOTENCY_HOURS, or it is queued and no worker has taken it yet"
                ),
                request_id=request_id,
            )
        return HttpResult.json(200, state.as_json())


def as_caller(authenticate: Callable[[], Caller], answer: Callable[[Caller], HttpResult]) -> HttpResult:
    """``answer`` for the authenticated caller, or the 401 (or settings problem) that stops the request."""
    try:
        caller = authenticate()
    except M365SendError as error:
        request_id = str(uuid.uuid4())
        with log_context(request_id=request_id):
            log.warning("request not authenticated: %s", error.detail, extra={"problem": outcome_of(error).slug})
        return problem(error, request_id=request_id)
    return answer(caller)


def _scope(via: str | None) -> Scope | None:
    if not via:
        return None
    try:
        return Scope(via.lower())
    except ValueError:
        raise RequestInvalid(
            [FieldProblem("via", "argument", "must be http or queue (or left out: both)", "ArgumentException")]
        ) from None


def health(settings: Callable[[], Settings]) -> HttpResult:
    """Configuration health: 200 when the settings are usable, 503 naming each bad setting (never a value)."""
    try:
        current = settings()
    except ConfigurationInvalid as error:
        # Anonymous: the names only. A setting's value (a container URL, a vault name) is not for everyone.
        names = list(error.settings)
        detail = f"missing or not valid: {', '.join(names)}" if names else "the settings are not valid"
        body = {"status": "unhealthy", "problems": [{"settings": names, "detail": detail}]}
        return HttpResult.json(503, body)
    storage = current.storage_configured
    checks = {
        "settings": "ok",
        "credential": _CREDENTIAL[current.credential_mode],
        "storage": "ok" if storage else "not configured: queued and idempotent sends are unavailable",
        "delivery": current.delivery_mode,
    }
    report: dict[str, Any] = {"status": "healthy" if storage else "degraded", "checks": checks}
    if current.credential_mode == "federated":
        # The steps only: which identity and app are involved is for `m365send check`, not an anonymous probe.
        report["federated_trust"] = [
            f"the Function App's managed identity gets a token for {current.token_exchange_audience}",
            "Entra ID exchanges it for a Graph token of the app registration, which trusts that identity "
            "through a federated identity credential",
            "no client secret or certificate exists; Key Vault is not used for the credential",
        ]
    return HttpResult.json(200, report)


_CREDENTIAL = {
    "secret": "client secret (Key Vault)",
    "certificate": "certificate (Key Vault)",
    "federated": "federated credential (managed identity)",
}
