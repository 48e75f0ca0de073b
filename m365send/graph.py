"""Microsoft Graph ``sendMail`` over httpx, honouring throttling (429/503/504 + ``Retry-After``).

A retry is safe only when Graph certainly did not accept the message: a throttling answer, or a
connection that was never made. A timeout after the request went out is ambiguous (the mail may
have been sent), so it is reported as ``DependencyUnavailable`` and not retried here.
"""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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

from m365send.errors import (
    DependencyUnavailable,
    GraphRejected,
    MailboxNotFound,
    PayloadTooLarge,
    RecipientsRejected,
    SendAsDenied,
)
from m365send.logcontext import add_log_context
from m365send.pacing import MailboxPacer
from m365send.telemetry import GRAPH_DURATION, THROTTLING_WAIT

__all__ = ["GraphMailClient", "GraphReceipt", "parse_retry_after"]

log = logging.getLogger(__name__)

_RETRY_STATUSES = frozenset({429, 503, 504})
_RECIPIENT_CODES = frozenset({"ErrorInvalidRecipients", "ErrorInvalidRecipientsFormat", "ErrorRecipientNotFound"})
_SEND_AS_CODES = frozenset({"ErrorSendAsDenied", "ErrorAccessDenied", "ErrorSubmissionQuotaExceeded"})
_MAILBOX_CODES = frozenset({"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI", "MailboxNotFound", "ResourceNotFound"})


@dataclass(frozen=True)
class GraphReceipt:
    """Graph's identifiers for an accepted send, for correlation with Graph's own logs."""

    request_id: str | None
    client_request_id: str
    attempts: int


class _Throttled(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"Graph answered {status}")
        self.status = status
        self.retry_after = retry_after


class _Unreachable(Exception):
    pass


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
        error: Any = response.json().get("error", {})
    except ValueError:
        error = {}
    if not isinstance(error, dict):
        error = {}
    return str(error.get("code") or f"HTTP{response.status_code}"), str(error.get("message") or response.reason_phrase)


class GraphMailClient:
    """Sends a prepared ``sendMail`` body as a mailbox; one instance (and connection pool) per worker."""

    def __init__(
        self,
        *,
        http: httpx.Client,
        base_url: str,
        max_attempts: int = 4,
        max_retry_wait: float = 30.0,
        pacer: MailboxPacer | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._http = http
        self._base_url = base_url.rstrip("/")
        self._max_attempts = max_attempts
        self._max_retry_wait = max_retry_wait
        self._sleep = sleep
        self._pacer = pacer
        self._backoff = wait_exponential_jitter(multiplier=0.5, max=max_retry_wait, jitter=0.5)

    def send_mail(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> GraphReceipt:
        """POST ``/users/{mailbox}/sendMail``; retries throttling within the configured budget.

        Raises a ``GraphRejected`` subclass for Graph's refusals and ``DependencyUnavailable``
        (with ``retry_after``) when Graph stays throttled or unreachable.
        """
        url = f"{self._base_url}/users/{quote(mailbox, safe='@')}/sendMail"
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "client-request-id": client_request_id,
            "return-client-request-id": "true",
        }
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
                    response = self._post(url, body, headers)
        except _Throttled as exc:
            raise DependencyUnavailable(
                f"Microsoft Graph is throttling or unavailable (HTTP {exc.status}) after "
                f"{retrying.statistics.get('attempt_number', 1)} attempt(s)",
                retry_after=exc.retry_after,
            ) from None
        except _Unreachable as exc:
            raise DependencyUnavailable(f"Microsoft Graph is unreachable: {exc}") from None
        return GraphReceipt(
            request_id=response.headers.get("request-id"),
            client_request_id=client_request_id,
            attempts=int(retrying.statistics.get("attempt_number", 1)),
        )

    @contextmanager
    def _paced(self, mailbox: str) -> Iterator[None]:
        if self._pacer is None:
            yield
            return
        with self._pacer.slot(mailbox):
            yield

    def _post(self, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        started = time.perf_counter()
        try:
            response = self._http.post(url, content=body, headers=headers)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise _Unreachable(type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise DependencyUnavailable(
                f"Microsoft Graph did not answer ({type(exc).__name__}); the email may or may not have been sent",
                outcome_unknown=True,
            ) from None
        GRAPH_DURATION.record((time.perf_counter() - started) * 1000, {"status": response.status_code})
        add_log_context(graph_request_id=response.headers.get("request-id"))
        if response.status_code == 202:
            return response
        if response.status_code in _RETRY_STATUSES:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            log.warning(
                "Graph throttled the send",
                extra={"graph_status": response.status_code, "retry_after": retry_after},
            )
            raise _Throttled(response.status_code, retry_after)
        raise self._rejection(response)

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        wait = error.retry_after if isinstance(error, _Throttled) and error.retry_after is not None else None
        wait = float(self._backoff(state)) if wait is None else wait
        THROTTLING_WAIT.record(wait)
        return wait

    @staticmethod
    def _rejection(response: httpx.Response) -> GraphRejected | PayloadTooLarge:
        code, message = _graph_error(response)
        status = response.status_code
        detail = f"Microsoft Graph refused the email (HTTP {status} {code}): {message}"
        if status == 413:
            return PayloadTooLarge(detail, exception="ServiceException")
        if code in _RECIPIENT_CODES:
            return RecipientsRejected(detail, code=code, graph_status=status)
        if code in _SEND_AS_CODES or status == 403:
            return SendAsDenied(detail, code=code, graph_status=status)
        if code in _MAILBOX_CODES or status == 404:
            return MailboxNotFound(detail, code=code, graph_status=status)
        return GraphRejected(detail, code=code, graph_status=status)
