"""Microsoft Graph stand-in: ``POST /v1.0/users/{id|upn}/sendMail`` checked the way Graph checks it.

It verifies the bearer token (issued by the Entra stand-in for this Graph, with the ``Mail.Send``
role), resolves the mailbox, applies the app's mailbox scope (an application access policy) and
send-as rights, validates the JSON body's shape (recipients, body, importance, attachments with
``@odata.type``), and records accepted messages. Faults can be queued: 429 with ``Retry-After``,
503, 504, or extra latency.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import jwt

from standins.entra import EntraStandIn
from standins.https import Reply, Request, json_reply

__all__ = ["Fault", "GraphStandIn", "Mailbox", "SentMail"]

REQUEST_LIMIT = 4 * 1024 * 1024
_ADDRESS = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MESSAGE_PROPERTIES = {
    "subject",
    "body",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "from",
    "sender",
    "importance",
    "attachments",
    "internetMessageHeaders",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
}


@dataclass
class Mailbox:
    """A user with an Exchange Online mailbox; ``send_as`` lists other addresses it may send as."""

    object_id: str
    upn: str
    send_as: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class SentMail:
    """One accepted ``sendMail``: the mailbox, the app that sent it, and the Graph message JSON."""

    mailbox: str
    app_id: str
    message: dict[str, Any]
    save_to_sent_items: bool
    client_request_id: str | None


@dataclass(frozen=True)
class Fault:
    """An answer to give instead of processing the next request."""

    status: int
    retry_after: str | None = None
    delay: float = 0.0


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    return json_reply(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())},
            }
        },
        headers,
    )


class _BadBody(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GraphStandIn:
    """Mailboxes, per-app mailbox scope, recorded sends and injectable faults."""

    def __init__(self, *, entra: EntraStandIn) -> None:
        self.url = ""
        self._entra = entra
        self.mailboxes: list[Mailbox] = []
        # An application access policy: app id → mailboxes (object ids) it may use; absent = all.
        self.app_scope: dict[str, set[str]] = {}
        # Addresses Exchange cannot resolve; sendMail answers ErrorInvalidRecipients for them.
        self.unresolvable: set[str] = set()
        self.sent: list[SentMail] = []
        self.requests: Counter[str] = Counter()
        self.faults: deque[Fault] = deque()
        self.latency = 0.0
        # Graph's per-mailbox limits (per app): concurrent requests, and requests per window.
        self.mailbox_concurrency: int | None = None
        self.mailbox_rate: tuple[int, float] | None = None  # (requests, seconds)
        self.throttled = 0
        self._in_flight: Counter[str] = Counter()
        self._admitted: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @property
    def resource(self) -> str:
        """The audience of Graph tokens for this instance (``https://host:port``)."""
        return self.url

    @property
    def base_url(self) -> str:
        """What ``GRAPH_BASE_URL`` should be."""
        return f"{self.url}/v1.0"

    def add_mailbox(self, upn: str, *, object_id: str | None = None) -> Mailbox:
        """Create a user with a mailbox."""
        mailbox = Mailbox(object_id=object_id or str(uuid.uuid4()), upn=upn)
        self.mailboxes.append(mailbox)
        return mailbox

    def inject(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order."""
        with self._lock:
            self.faults.extend(faults)

    def _find(self, key: str) -> Mailbox | None:
        return next((m for m in self.mailboxes if key.casefold() in (m.object_id.casefold(), m.upn.casefold())), None)

    # --- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        with self._lock:
            self.requests[request.path] += 1
            fault = self.faults.popleft() if self.faults else None
            refused = self._admit(request.path)
        if refused:
            return refused
        try:
            return self._answer(request, fault)
        finally:
            with self._lock:
                self._in_flight[request.path] -= 1

    def _admit(self, path: str) -> Reply | None:
        """Apply the mailbox limits (the path names the mailbox); call with the lock held."""
        now = time.monotonic()
        if self.mailbox_concurrency is not None and self._in_flight[path] >= self.mailbox_concurrency:
            self.throttled += 1
            return _error(
                429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.", {"Retry-After": "1"}
            )
        if self.mailbox_rate is not None:
            limit, window = self.mailbox_rate
            stamps = self._admitted.setdefault(path, deque())
            while stamps and stamps[0] <= now - window:
                stamps.popleft()
            if len(stamps) >= limit:
                self.throttled += 1
                wait = max(1, math.ceil(stamps[0] + window - now))
                return _error(
                    429,
                    "ApplicationThrottled",
                    "Application is over its rate limit for this mailbox.",
                    {"Retry-After": str(wait)},
                )
            stamps.append(now)
        self._in_flight[path] += 1
        return None

    def _answer(self, request: Request, fault: Fault | None) -> Reply:
        delay = self.latency + (fault.delay if fault else 0.0)
        if delay:
            time.sleep(delay)
        headers = {"request-id": str(uuid.uuid4())}
        client_request_id = request.header("client-request-id")
        if client_request_id:
            headers["client-request-id"] = client_request_id
        if fault and fault.status != 200:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            code = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(fault.status, "Error")
            return _error(fault.status, code, "Injected fault.", {**headers, **extra})
        reply = self._route(request)
        reply.headers.update(headers)
        return reply

    def _route(self, request: Request) -> Reply:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if (
            request.method != "POST"
            or len(parts) != 4
            or parts[0] != "v1.0"
            or parts[1] != "users"
            or parts[3] != "sendMail"
        ):
            return _error(400, "BadRequest", f"Resource not found for the segment '{parts[-1]}'.")
        authorization = request.header("authorization") or ""
        if not authorization.startswith("Bearer "):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self._entra.verify(authorization.removeprefix("Bearer "), audience=self.resource)
        except jwt.ExpiredSignatureError:
            return _error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        except jwt.InvalidTokenError:
            return _error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if "Mail.Send" not in claims.get("roles", []):
            return _error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        mailbox = self._find(parts[2])
        if mailbox is None:
            return _error(404, "ErrorInvalidUser", f"The requested user '{parts[2]}' is invalid.")
        scope = self.app_scope.get(str(claims.get("appid")))
        if scope is not None and mailbox.object_id not in scope:
            return _error(
                403,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            )
        if len(request.body) > REQUEST_LIMIT:
            return _error(413, "RequestEntityTooLarge", "The request payload is too large.")
        if "application/json" not in (request.header("content-type") or ""):
            return _error(
                415,
                "UnsupportedMediaType",
                "A supported MIME type could not be found that matches the content type of the response.",
            )
        try:
            body = request.json()
            message, save = self._check_body(body)
            self._check_sender(mailbox, message)
        except _BadBody as bad:
            status = 403 if bad.code == "ErrorSendAsDenied" else 400
            return _error(status, bad.code, bad.message)
        except ValueError:
            return _error(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header "
                "is set and payload is of valid JSON format.",
            )
        with self._lock:
            self.sent.append(
                SentMail(mailbox.upn, str(claims.get("appid")), message, save, request.header("client-request-id"))
            )
        return Reply(202)

    # --- what Graph checks in the body ----------------------------------------------------------
    def _check_body(self, body: Any) -> tuple[dict[str, Any], bool]:
        if isinstance(body, dict):
            # Graph binds action parameters case-insensitively: the Graph SDKs send "Message".
            names = {"message": "message", "savetosentitems": "saveToSentItems"}
            body = {names.get(key.lower(), key): value for key, value in body.items()}
        if not isinstance(body, dict) or not isinstance(body.get("message"), dict):
            raise _BadBody("ErrorInvalidParameter", "The value of the parameter 'Message' is empty.")
        extra = set(body) - {"message", "saveToSentItems"}
        if extra:
            raise _BadBody(
                "RequestBodyRead",
                f"The parameter '{sorted(extra)[0]}' in the request payload is not a "
                "valid parameter for the operation 'sendMail'.",
            )
        message = body["message"]
        # OData annotations such as "@odata.type" (the SDKs send them) are not properties.
        unknown = {key for key in message if not key.startswith("@odata.")} - _MESSAGE_PROPERTIES
        if unknown:
            raise _BadBody(
                "RequestBodyRead",
                f"The property '{sorted(unknown)[0]}' does not exist on type "
                "'Microsoft.OutlookServices.Message'. Make sure to only use property "
                "names that are defined by the type or mark the type as open type.",
            )
        recipients = 0
        for key in ("toRecipients", "ccRecipients", "bccRecipients"):
            value = message.get(key, [])
            if not isinstance(value, list):
                raise _BadBody("RequestBodyRead", f"Cannot convert '{key}' to a collection of recipients.")
            for recipient in value:
                self._check_recipient(recipient)
            recipients += len(value)
        if recipients == 0:
            raise _BadBody(
                "ErrorInvalidRecipients",
                "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
            )
        if "from" in message:
            self._check_recipient(message["from"])
        importance = message.get("importance", "normal")
        if not isinstance(importance, str) or importance.lower() not in ("low", "normal", "high"):
            raise _BadBody(
                "RequestBodyRead",
                f"Cannot convert the literal '{importance}' to the expected type "
                "'Microsoft.OutlookServices.Importance'.",
            )
        content = message.get("body", {})
        if not isinstance(content, dict) or str(content.get("contentType", "text")).lower() not in ("text", "html"):
            raise _BadBody(
                "RequestBodyRead",
                "Cannot convert the literal to the expected type 'Microsoft.OutlookServices.BodyType'.",
            )
        for attachment in message.get("attachments", []):
            self._check_attachment(attachment)
        save = body.get("saveToSentItems", True)
        if not isinstance(save, bool):
            raise _BadBody("RequestBodyRead", "Cannot convert 'saveToSentItems' to Edm.Boolean.")
        return message, save

    def _check_recipient(self, recipient: Any) -> None:
        address = recipient.get("emailAddress", {}).get("address") if isinstance(recipient, dict) else None
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise _BadBody(
                "ErrorInvalidRecipients",
                "At least one recipient is not valid., Recipient "
                f"'{address}' is not resolved. All recipients must be resolved "
                "before a message can be submitted.",
            )
        if address.casefold() in self.unresolvable:
            raise _BadBody(
                "ErrorInvalidRecipients",
                f"At least one recipient is not valid., Recipient '{address}' is not resolved.",
            )

    @staticmethod
    def _check_attachment(attachment: Any) -> None:
        if not isinstance(attachment, dict) or "@odata.type" not in attachment:
            raise _BadBody("ErrorInvalidParameter", "An attachment must specify '@odata.type'.")
        if attachment["@odata.type"] != "#microsoft.graph.fileAttachment":
            raise _BadBody(
                "RequestBodyRead", f"A type named '{attachment['@odata.type']}' could not be resolved by the model."
            )
        if not attachment.get("name"):
            raise _BadBody("ErrorRequiredPropertyMissing", "Required property is missing: Name.")
        try:
            base64.b64decode(attachment.get("contentBytes", ""), validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise _BadBody("RequestBodyRead", "Cannot convert the literal to the expected type 'Edm.Binary'.") from None

    @staticmethod
    def _check_sender(mailbox: Mailbox, message: dict[str, Any]) -> None:
        sender = message.get("from", {}).get("emailAddress", {}).get("address")
        if (
            sender
            and sender.casefold() != mailbox.upn.casefold()
            and sender.casefold() not in {a.casefold() for a in mailbox.send_as}
        ):
            raise _BadBody(
                "ErrorSendAsDenied",
                "The user account which was used to submit this request does not "
                "have the right to send mail on behalf of the specified sending "
                "account., Cannot submit message.",
            )
