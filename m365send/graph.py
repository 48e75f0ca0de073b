"""Microsoft Graph mail over httpx, honouring throttling (429/503 + ``Retry-After``).

``sendMail`` for a message that fits one request; for larger ones a draft, its attachments (small
ones POSTed, large ones through an upload session, chunk by chunk), then ``send``; and, for
verified delivery, a look-up of messages by a single-value extended property.

A retry is safe only when Graph certainly did not act: a 429, a 5xx that carries ``Retry-After``
(Graph's throttling answers do), or a connection that was never made. A request that may deliver
mail (``sendMail``, a draft's ``send``) whose answer is a 504, another 5xx without ``Retry-After``,
a timeout or a reset after it went out is ambiguous: Graph may have sent the email. That is
``OutcomeUnknown``, never retried here. Other requests retry any 5xx. An upload chunk is different
again: after any transient failure the same chunk is sent again from the session's last
``nextExpectedRanges``, and a session that cannot say where it stands is started afresh.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from m365send.attachments import UPLOAD_CHUNK, Content
from m365send.errors import (
    DependencyUnavailable,
    DraftsDenied,
    GraphRejected,
    MailboxNotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    RecipientsRejected,
    SendAsDenied,
    UploadSessionLost,
)
from m365send.logcontext import add_log_context
from m365send.mailbox import CreatedDraft, GraphReceipt, TaggedMessage, UploadSession
from m365send.pacing import Pacer
from m365send.telemetry import GRAPH_DURATION, THROTTLING_WAIT, tracer

__all__ = ["GraphMailClient", "parse_retry_after"]

log = logging.getLogger(__name__)


class _RedactQueries(logging.Filter):
    """httpx logs every request's URL at INFO, and an upload session's URL carries its ``authtoken``:
    keep the logged URLs, drop their query strings."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, httpx.URL) and a.query for a in record.args):
            record.args = tuple(
                f"{a.copy_with(query=None)}?<redacted>" if isinstance(a, httpx.URL) and a.query else a
                for a in record.args
            )
        return True


logging.getLogger("httpx").addFilter(_RedactQueries())

_RETRY_STATUSES = frozenset({429, 503, 504})  # on requests that cannot deliver mail, with any other 5xx
_RECIPIENT_CODES = frozenset({"ErrorInvalidRecipients", "ErrorInvalidRecipientsFormat", "ErrorRecipientNotFound"})
_SEND_AS_CODES = frozenset({"ErrorSendAsDenied", "ErrorAccessDenied", "ErrorSubmissionQuotaExceeded"})
_MAILBOX_CODES = frozenset({"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotFound", "ResourceNotFound"})
_SIZE_CODES = frozenset({"ErrorMessageSizeExceeded", "RequestEntityTooLarge", "ErrorAttachmentSizeExceeded"})


class _Throttled(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"Graph answered {status}")
        self.status = status
        self.retry_after = retry_after


class _Unreachable(Exception):
    pass


class _SessionGone(Exception):
    """The upload URL answered 404: the session completed, or expired."""


def _ranges(response: httpx.Response) -> int | None:
    """The first of ``nextExpectedRanges`` in an answer, if it has them."""
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not body.get("nextExpectedRanges"):
        return None
    try:
        return _next_offset(body)
    except (TypeError, ValueError):
        return None


def _next_offset(answer: dict[str, Any]) -> int:
    """The start of the first of ``nextExpectedRanges`` (``"2097152"`` or ``"2097152-"``)."""
    ranges = answer.get("nextExpectedRanges") or ["0-"]
    return int(str(ranges[0]).split("-", 1)[0])


class _RetryAfterBeyond(stop_base):
    """Stop when Graph asks for a longer wait than we may sleep: the caller gets the wait instead."""

    def __init__(self, limit: float) -> None:
        self._limit = limit

    def __call__(self, retry_state: RetryCallState) -> bool:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        return isinstance(error, _Throttled) and (error.retry_after or 0.0) > self._limit


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


def _graph_error(response: httpx.Response) -> tuple[str, str]:
    try:
        body: Any = response.json()
    except ValueError:
        body = {}
    # Graph's error body is {"error": {"code", "message"}}; a proxy or a fault may send anything else.
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        error = {}
    return str(error.get("code") or f"HTTP{response.status_code}"), str(error.get("message") or response.reason_phrase)


class GraphMailClient:
    """Sends mail as a mailbox through Graph; one instance (and connection pool) per worker."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        base_url: str,
        max_attempts: int = 4,
        max_retry_wait: float = 30.0,
        pacer: Pacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._max_attempts = max_attempts
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._pacer = pacer
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=max_retry_wait, jitter=0.5)

    def connect(self) -> None:
        """Open the connection to Graph (TCP and TLS) ahead of the first send; the answer does not matter."""
        try:
            self._http.request("GET", f"{self._base_url}/")
        except httpx.TransportError as exc:
            raise DependencyUnavailable(f"Microsoft Graph is unreachable: {type(exc).__name__}") from exc

    # --- the operations ---------------------------------------------------------------------------
    def send_mail(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> GraphReceipt:
        """POST ``/users/{mailbox}/sendMail``; retries throttling within the configured budget.

        Raises a ``GraphRejected`` subclass for Graph's refusals and ``DependencyUnavailable``
        (with ``retry_after``) when Graph stays throttled or unreachable.
        """
        response, attempts = self._call(
            "POST", mailbox, "sendMail", token=token, client_request_id=client_request_id, body=body, sends=True
        )
        return GraphReceipt(response.headers.get("request-id"), client_request_id, attempts)

    def create_draft(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> CreatedDraft:
        """POST ``/users/{mailbox}/messages`` (needs Mail.ReadWrite); the draft's id and internetMessageId."""
        response, attempts = self._call(
            "POST", mailbox, "messages", token=token, client_request_id=client_request_id, body=body, drafts=True
        )
        created = response.json()
        message_id = created.get("internetMessageId")
        internet_message_id = message_id if isinstance(message_id, str) and message_id else None
        return CreatedDraft(str(created["id"]), internet_message_id, attempts)

    def update_draft(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        """PATCH ``/users/{mailbox}/messages/{id}`` (a draft's properties)."""
        self._call(
            "PATCH",
            mailbox,
            f"messages/{quote(message_id, safe='')}",
            token=token,
            client_request_id=client_request_id,
            body=body,
            drafts=True,
        )

    def find_tagged(
        self, *, mailbox: str, property_id: str, value: str, token: str, client_request_id: str
    ) -> list[TaggedMessage]:
        """GET the mailbox's messages (every folder) whose single-value extended property equals ``value``.

        Graph documents this ``$filter`` for extended properties; the value comparison is case-insensitive.
        """
        quoted = value.replace("'", "''")
        query = (
            f"$filter=singleValueExtendedProperties/Any(ep: ep/id eq '{property_id}' and ep/value eq '{quoted}')"
            "&$select=id,isDraft,internetMessageId&$top=10"
        )
        response, _ = self._call(
            "GET", mailbox, f"messages?{query}", token=token, client_request_id=client_request_id, drafts=True
        )
        found = response.json().get("value", [])
        return [
            TaggedMessage(
                id=str(item["id"]),
                is_draft=bool(item.get("isDraft", False)),
                internet_message_id=item.get("internetMessageId"),
            )
            for item in found
            if isinstance(item, dict) and item.get("id")
        ]

    def add_attachment(self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str) -> None:
        """POST a ``fileAttachment`` (under 3 MB) to the draft."""
        self._call(
            "POST",
            mailbox,
            f"messages/{quote(message_id, safe='')}/attachments",
            token=token,
            client_request_id=client_request_id,
            body=body,
            drafts=True,
        )

    def create_upload_session(
        self, *, mailbox: str, message_id: str, body: bytes, token: str, client_request_id: str
    ) -> UploadSession:
        """POST ``attachments/createUploadSession`` for a file of 3 to 150 MB."""
        response, _ = self._call(
            "POST",
            mailbox,
            f"messages/{quote(message_id, safe='')}/attachments/createUploadSession",
            token=token,
            client_request_id=client_request_id,
            body=body,
            drafts=True,
        )
        answer = response.json()
        return UploadSession(url=str(answer["uploadUrl"]), next_offset=_next_offset(answer))

    def send_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> GraphReceipt:
        """POST ``messages/{id}/send``: the draft goes out and moves to Sent Items."""
        response, attempts = self._call(
            "POST",
            mailbox,
            f"messages/{quote(message_id, safe='')}/send",
            token=token,
            client_request_id=client_request_id,
            sends=True,
        )
        return GraphReceipt(response.headers.get("request-id"), client_request_id, attempts)

    def delete_draft(self, *, mailbox: str, message_id: str, token: str, client_request_id: str) -> None:
        """DELETE the draft (one already gone counts as deleted)."""
        try:
            self._call(
                "DELETE",
                mailbox,
                f"messages/{quote(message_id, safe='')}",
                token=token,
                client_request_id=client_request_id,
                drafts=True,
            )
        except MailboxNotFound as exc:
            if exc.graph_status != 404:
                raise

    def upload(self, session: UploadSession, content: Content, *, guard: Callable[[], None] | None = None) -> None:
        """PUT ``content`` to the session chunk by chunk (multiples of 320 KiB, under 4 MB each).

        One chunk is in memory at a time. After a transient failure (throttling, 5xx, a dropped
        connection or a timeout) the same chunk is sent again from where the session last said it
        stood (its ``nextExpectedRanges``), within the same attempt and wait budget as every other
        Graph call; a session that answers it with its own ``nextExpectedRanges`` (the chunk had
        landed) goes on from there. Outlook documents no GET of an upload URL (OneDrive does), so
        none is made: a session that cannot say where it stands raises ``UploadSessionLost`` for the
        caller to start a new one. ``guard`` runs before each chunk (a lost lease stops the upload).
        """
        offset = session.next_offset
        sent_to = 0  # end of the last chunk sent, to recognise a session that completed unseen
        failures = 0
        while True:
            if guard is not None:
                guard()
            length = min(UPLOAD_CHUNK, content.size - offset)
            try:
                sent_to = offset + length
                next_offset = self._put_chunk(session.url, offset, content.read(offset, length), content.size)
            except _SessionGone:
                if failures and sent_to == content.size:
                    return  # the final chunk landed and completed the session; only its answer was lost
                raise UploadSessionLost("the attachment upload session expired before the upload finished") from None
            except (_Throttled, _Unreachable, httpx.TransportError) as exc:
                failures += 1
                retry_after = exc.retry_after if isinstance(exc, _Throttled) else None
                if failures >= self._max_attempts or (retry_after or 0.0) > self._max_retry_wait:
                    raise DependencyUnavailable(
                        f"the attachment upload failed {failures} time(s) in a row ({type(exc).__name__})",
                        retry_after=retry_after,
                    ) from None
                wait = retry_after if retry_after is not None else min(0.5 * 2 ** (failures - 1), self._max_retry_wait)
                log.warning("attachment upload interrupted; resuming", extra={"failures": failures, "wait": wait})
                THROTTLING_WAIT.record(wait)
                self._sleep(wait)
                continue  # the same chunk again, from the session's last nextExpectedRanges
            if next_offset is None:
                return
            if next_offset == offset:  # nothing was taken: do not loop on it
                raise UploadSessionLost("the attachment upload session did not move past the chunk it was sent")
            offset, failures = next_offset, 0

    def cancel_upload(self, session: UploadSession) -> None:
        """DELETE the upload URL (Outlook's documented cancel); one already gone counts as cancelled."""
        try:
            self._http.delete(session.url)
        except httpx.TransportError as exc:
            log.warning("could not cancel an upload session (%s); it expires on its own", type(exc).__name__)

    # --- HTTP -----------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        mailbox: str,
        path: str,
        *,
        token: str,
        client_request_id: str,
        body: bytes | None = None,
        sends: bool = False,
        drafts: bool = False,
    ) -> tuple[httpx.Response, int]:
        """One Graph request on ``/users/{mailbox}/{path}`` with throttling retries and pacing.

        ``sends``: the request may deliver mail, so a timeout after it went out is ambiguous.
        ``drafts``: a 403 means the draft permission (Mail.ReadWrite) is missing.
        """
        url = f"{self._base_url}/users/{quote(mailbox, safe='@')}/{path}"
        headers = {
            "Authorization": f"Bearer {token}",
            "client-request-id": client_request_id,
            "return-client-request-id": "true",
            # Ids that survive a move between folders: verified delivery finds a draft by its tag and
            # sends it by id, and Exchange moves a sent draft to Sent Items (ids change without this).
            "Prefer": 'IdType="ImmutableId"',
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        retrying = Retrying(
            retry=retry_if_exception_type((_Throttled, _Unreachable)),
            stop=stop_any(stop_after_attempt(self._max_attempts), _RetryAfterBeyond(self._max_retry_wait)),
            wait=self._wait,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for attempt in retrying:
                with attempt, self._paced(mailbox):
                    response = self._request(method, url, body, headers, sends=sends, drafts=drafts)
        except _Throttled as exc:
            raise DependencyUnavailable(
                f"Microsoft Graph is throttling or unavailable (HTTP {exc.status}) after "
                f"{retrying.statistics.get('attempt_number', 1)} attempt(s)",
                retry_after=exc.retry_after,
            ) from None
        except _Unreachable as exc:
            raise DependencyUnavailable(f"Microsoft Graph is unreachable: {exc}") from exc.__cause__
        return response, int(retrying.statistics.get("attempt_number", 1))

    @property
    def pacer(self) -> Pacer | None:
        """What keeps this client within Graph's mailbox limits (None: nothing)."""
        return self._pacer

    @contextmanager
    def _paced(self, mailbox: str) -> Iterator[None]:
        if self._pacer is None:
            yield
            return
        with self._pacer.slot(mailbox):
            yield

    def _request(
        self, method: str, url: str, body: bytes | None, headers: dict[str, str], *, sends: bool, drafts: bool
    ) -> httpx.Response:
        started = time.perf_counter()
        try:
            # A span per request: Application Insights keeps it as a dependency with its duration, the
            # dashboard's Graph latency percentiles.
            with tracer.start_as_current_span("m365send.graph.request") as span:
                response = self._http.request(method, url, content=body, headers=headers)
                span.set_attribute("http.response.status_code", response.status_code)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(type(exc).__name__) from exc
        except httpx.PoolTimeout as exc:  # no connection was free: the request never left
            raise _Unreachable(type(exc).__name__) from exc
        except httpx.TransportError as exc:
            # httpx's transport errors carry the socket's complaint, not the URL or headers: keep them.
            if sends:
                raise OutcomeUnknown(
                    f"Microsoft Graph did not answer ({type(exc).__name__}) after the send went out; "
                    "the email may or may not have been sent"
                ) from exc
            raise DependencyUnavailable(f"Microsoft Graph did not answer ({type(exc).__name__})") from exc
        GRAPH_DURATION.record((time.perf_counter() - started) * 1000, {"status": response.status_code})
        add_log_context(graph_request_id=response.headers.get("request-id"))
        if response.is_success:
            return response
        status = response.status_code
        if sends and status >= 500 and (status == 504 or not response.headers.get("Retry-After")):
            # A gateway timeout, or a server error that is not Graph's throttling answer: the send may be done.
            log.warning("Graph's answer to a send leaves its outcome unknown", extra={"graph_status": status})
            raise OutcomeUnknown(
                f"Microsoft Graph answered HTTP {status} to the send; the email may or may not have been sent"
            )
        if status in _RETRY_STATUSES or (status >= 500 and not sends):
            raise self._throttled(response)
        raise self._rejection(response, drafts=drafts)

    @staticmethod
    def _throttled(response: httpx.Response) -> _Throttled:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        log.warning(
            "Graph throttled the request", extra={"graph_status": response.status_code, "retry_after": retry_after}
        )
        return _Throttled(response.status_code, retry_after)

    def _put_chunk(self, url: str, offset: int, data: bytes, total: int) -> int | None:
        """One chunk; the next offset the session expects, or None once the file is complete."""
        # The upload URL is pre-authenticated: an Authorization header would make it fail.
        headers = {
            "Content-Type": "application/octet-stream",
            "Content-Length": str(len(data)),
            "Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{total}",
        }
        try:
            # A one-shot iterator, not the bytes: httpx's response and request stay alive in a
            # reference cycle until the garbage collector runs, and would keep every chunk with them.
            response = self._http.put(url, content=iter((data,)), headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(type(exc).__name__) from None
        status = response.status_code
        if status == 201:
            return None
        if status == 200:
            return _next_offset(response.json())
        if status == 404:
            raise _SessionGone
        if status == 416:
            # The session is not where this chunk starts (an earlier answer was lost): it says where it is.
            ranges = _ranges(response)
            if ranges is None:
                raise UploadSessionLost("the attachment upload session did not say which bytes it expects")
            return ranges
        if status in _RETRY_STATUSES or status >= 500:
            raise self._throttled(response)
        raise self._rejection(response, drafts=True)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        wait = error.retry_after if isinstance(error, _Throttled) and error.retry_after is not None else None
        wait = float(self._backoff(state)) if wait is None else wait
        THROTTLING_WAIT.record(wait)
        return wait

    @staticmethod
    def _rejection(response: httpx.Response, *, drafts: bool = False) -> GraphRejected | PayloadTooLarge:
        code, message = _graph_error(response)
        status = response.status_code
        detail = f"Microsoft Graph refused the email (HTTP {status} {code}): {message}"
        if status == 413 or code in _SIZE_CODES:
            return PayloadTooLarge(detail, exception="ServiceException")
        if code in _RECIPIENT_CODES:
            return RecipientsRejected(detail, code=code, graph_status=status)
        if drafts and status == 403:
            return DraftsDenied(
                f"{detail}. Attachments that do not fit one 4 MB request are sent through a draft, which needs "
                "the Mail.ReadWrite application permission besides Mail.Send (and the mailbox in the app's "
                "access policy or RBAC scope)",
                code=code,
                graph_status=status,
            )
        if code in _SEND_AS_CODES or status == 403:
            return SendAsDenied(detail, code=code, graph_status=status)
        if code in _MAILBOX_CODES or status == 404:
            return MailboxNotFound(detail, code=code, graph_status=status)
        return GraphRejected(detail, code=code, graph_status=status)
