"""What a caller is answered, as data: ``202`` bodies and RFC 9457 problem details. Pure.

Every entry point renders outcomes through here: the HTTP trigger returns them, the queue keeps
problems in its dead letters, send records store answers so a repeat of a key gets the same one,
and the CLI prints them. Problems name the field or dependency, and never echo secrets, tokens
or message bodies.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from m365send.errors import (
    ConfigurationInvalid,
    DependencyUnavailable,
    GraphRejected,
    M365SendError,
    OutcomeUnknown,
    RequestInvalid,
    SendInProgress,
    Unauthenticated,
    outcome_of,
)

__all__ = ["PROBLEM_TYPE_BASE", "HttpResult", "problem"]

PROBLEM_TYPE_BASE = "urn:m365send:problem:"
_JSON = {"Content-Type": "application/json"}


@dataclass(frozen=True)
class HttpResult:
    """Status, JSON body and headers of one answer."""

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
    def json(cls, status: int, body: dict[str, Any]) -> HttpResult:
        """A plain JSON answer."""
        return cls(status, body, dict(_JSON))

    @classmethod
    def replayed(cls, stored: dict[str, Any]) -> HttpResult:
        """A stored answer, marked as a replay."""
        status = int(stored["httpStatus"])
        content_type = "application/json" if status < 400 else "application/problem+json"
        return cls(status, stored["body"], {"Content-Type": content_type, "Idempotent-Replayed": "true"})


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
    if isinstance(error, Unauthenticated):
        # RFC 6750 section 3: the scheme, and why a token was refused; never the token itself.
        reason = f', error="{error.error}", error_description="{_quoted(error.detail)}"' if error.error else ""
        headers["WWW-Authenticate"] = f'Bearer realm="m365send"{reason}'
    if isinstance(error, OutcomeUnknown):
        body["outcomeUnknown"] = True
    if isinstance(error, (DependencyUnavailable, SendInProgress)) and error.retry_after is not None:
        seconds = max(1, math.ceil(error.retry_after))
        body["retryAfter"] = seconds
        headers["Retry-After"] = str(seconds)
    return HttpResult(outcome.status, body, headers)


def _quoted(text: str) -> str:
    """``text`` as an RFC 6750 quoted string: printable ASCII without quotes or backslashes."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "'" if c == '"' else "?" for c in text)
