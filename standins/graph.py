"""Microsoft Graph stand-in: ``sendMail`` and the draft path, checked the way Graph checks them.

``POST /v1.0/users/{id|upn}/sendMail``; for large attachments ``POST .../messages`` (a draft),
``.../messages/{id}/attachments``, ``.../attachments/createUploadSession`` with chunked PUTs to the
upload URL (``standins.drafts``), ``PATCH`` and ``DELETE .../messages/{id}``, ``.../messages/{id}/send``;
and ``GET .../messages?$filter=singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…')``
over drafts and sent items, as Graph documents it for extended properties (the property's name is
matched case-sensitively, its value case-insensitively).

It verifies the bearer token (issued by the Entra stand-in for this Graph, with ``Mail.Send``, and
``Mail.ReadWrite`` for drafts), resolves the mailbox, applies the app's mailbox scope (an
application access policy) and send-as rights, validates the JSON body's shape (recipients, body,
importance, attachments with ``@odata.type``), and records accepted messages. Faults can be
queued: 429 with ``Retry-After``, 503, 504, or extra latency, before the request is processed, or
after it (the mail went out, then the answer was an error, a timeout or a dropped connection: the
ambiguous case); upload PUTs fail on request.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import tempfile
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import jwt

from standins.drafts import Draft, DraftStore, ReceivedAttachment, UploadFault
from standins.entra import EntraStandIn
from standins.https import DROP, Reply, Request, graph_error, json_reply

__all__ = ["Fault", "GraphStandIn", "Mailbox", "ReceivedAttachment", "SentMail", "UploadFault"]

REQUEST_LIMIT = 4 * 1024 * 1024
ATTACHMENT_POST_LIMIT = REQUEST_LIMIT + 64 * 1024
# Exchange Online's largest message (the tenant's mailboxes may be set lower, 35 MB by default).
MESSAGE_LIMIT = 150 * 1024 * 1024
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
    "singleValueExtendedProperties",
    "categories",
}
# "String {guid} Name x", or a tagged property "String 0x1234".
_PROPERTY_ID = re.compile(
    r"^(Binary|Boolean|Integer|Long|String|SystemTime|Double|Currency|CLSID|Short|Float) "
    r"(\{[0-9a-fA-F-]{36}\} Name \S.*|\{[0-9a-fA-F-]{36}\} Id 0x[0-9a-fA-F]{1,4}|0x[0-9a-fA-F]{1,4})$"
)
_TAG_FILTER = re.compile(r"^singleValueExtendedProperties/Any\(ep: ep/id eq '(.+?)' and ep/value eq '(.*)'\)$")


@dataclass
class Mailbox:
    """A user with an Exchange Online mailbox; ``send_as`` lists other addresses it may send as,
    ``send_on_behalf`` those it may send on behalf of (Exchange's two mailbox permissions)."""

    object_id: str
    upn: str
    send_as: set[str] = field(default_factory=set)
    send_on_behalf: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class SentMail:
    """One sent message: the mailbox, the app that sent it, and the Graph message JSON.

    A draft that was sent has ``via_draft`` set and its files in ``attachments`` (not in ``message``).
    ``id`` is its id in Sent Items (a sent draft keeps the draft's id).
    """

    mailbox: str
    app_id: str
    message: dict[str, Any]
    save_to_sent_items: bool
    client_request_id: str | None
    attachments: tuple[ReceivedAttachment, ...] = ()
    via_draft: bool = False
    id: str = field(default_factory=lambda: "AAMkAD" + uuid.uuid4().hex)
    sender: str = ""  # who Exchange says sent it: the mailbox when it sent on behalf of from, else from
    in_sent_items_from: float = 0.0  # monotonic time Exchange has moved it to Sent Items (send_delay)
    sent_at: float = field(default_factory=time.time)  # Unix time Graph accepted it
    request_id: str | None = None  # the request-id header of Graph's 202 (send records keep it)


@dataclass(frozen=True)
class Fault:
    """An answer to give instead of processing the next request (``on``: the next one matching it).

    ``after``: process the request first (the mail goes out), wait ``delay``, then answer ``status``;
    ``status`` ``DROP`` closes the connection without an answer. ``on`` is ``"METHOD path-suffix"``,
    for example ``"POST /send"`` (a draft's send) or ``"POST /sendMail"``.
    """

    status: int
    retry_after: str | None = None
    delay: float = 0.0
    after: bool = False
    on: str | None = None

    def matches(self, request: Request) -> bool:
        """Whether this fault is for ``request``."""
        if self.on is None:
            return True
        method, _, suffix = self.on.partition(" ")
        return request.method == method and request.path.endswith(suffix)


# Each route of /v1.0/users/{mailbox}/..., and the application permission it needs.
_ROUTES = {
    ("POST", "sendMail"): "Mail.Send",
    ("POST", "messages"): "Mail.ReadWrite",
    ("GET", "messages"): "Mail.ReadWrite",  # Mail.Read would do too; the apps here have ReadWrite or nothing
    ("POST", "messages", "{id}", "attachments"): "Mail.ReadWrite",
    ("POST", "messages", "{id}", "attachments", "createUploadSession"): "Mail.ReadWrite",
    ("POST", "messages", "{id}", "send"): "Mail.Send",
    ("PATCH", "messages", "{id}"): "Mail.ReadWrite",
    ("DELETE", "messages", "{id}"): "Mail.ReadWrite",
}


class _BadBody(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class GraphStandIn:
    """Mailboxes, per-app mailbox scope, recorded sends and injectable faults."""

    def __init__(self, *, entra: EntraStandIn, workdir: Path | None = None) -> None:
        self._url = ""
        self._entra = entra
        self.drafts = DraftStore(workdir=workdir or Path(tempfile.mkdtemp(prefix="graph-standin-")))
        self.max_message_size = MESSAGE_LIMIT
        self.mailboxes: list[Mailbox] = []
        # An application access policy: app id → mailboxes (object ids) it may use; absent = all.
        self.app_scope: dict[str, set[str]] = {}
        # Addresses Exchange cannot resolve; sendMail answers ErrorInvalidRecipients for them.
        self.unresolvable: set[str] = set()
        self.sent: list[SentMail] = []
        self.requests: Counter[str] = Counter()
        self.faults: deque[Fault] = deque()
        self.latency = 0.0
        # Exchange sends asynchronously: for this long after a draft's /send it is still a draft (and a
        # second /send delivers it again) before it shows in Sent Items. 0: at once.
        self.send_delay = 0.0
        # Mail requests made without ``Prefer: IdType="ImmutableId"`` (ids then change when items move).
        self.without_immutable_ids = 0
        # Graph's per-mailbox limits (per app): concurrent requests, and requests per window.
        self.mailbox_concurrency: int | None = None
        self.mailbox_rate: tuple[int, float] | None = None  # (requests, seconds)
        self.throttled = 0
        self._in_flight: Counter[str] = Counter()
        self._admitted: dict[str, deque[float]] = {}
        self._lock = threading.Lock()
        self._current = threading.local()  # the request each server thread is answering

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``."""
        return self._url

    @url.setter
    def url(self, value: str) -> None:
        self._url = value
        self.drafts.base_url = value

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

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait until no request is being processed (one whose caller gave up may still be)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(self._in_flight.values()):
                    return
            time.sleep(0.02)
        raise AssertionError("the Graph stand-in is still busy")

    def inject(self, *faults: Fault) -> None:
        """Answer the next requests with these faults, in order."""
        with self._lock:
            self.faults.extend(faults)

    def _find(self, key: str) -> Mailbox | None:
        return next((m for m in self.mailboxes if key.casefold() in (m.object_id.casefold(), m.upn.casefold())), None)

    # --- HTTP -----------------------------------------------------------------------------------
    def handle(self, request: Request) -> Reply:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if len(parts) == 3 and parts[:2] == ["upload", "AttachmentSessions"]:
            with self._lock:
                self.requests["upload"] += 1
            return self.drafts.handle_upload(request, parts[2])
        # Graph's limits are per app and mailbox: the mailbox is the third path segment.
        mailbox = parts[2].casefold() if len(parts) > 2 else ""
        with self._lock:
            self.requests[request.path] += 1
            fault = next((f for f in self.faults if f.matches(request)), None)
            if fault is not None:
                self.faults.remove(fault)
            refused = self._admit(mailbox)
        if refused:
            return refused
        try:
            return self._answer(request, fault)
        finally:
            with self._lock:
                self._in_flight[mailbox] -= 1

    def _admit(self, path: str) -> Reply | None:
        """Apply the mailbox limits (``path``: the mailbox's key); call with the lock held."""
        now = time.monotonic()
        if self.mailbox_concurrency is not None and self._in_flight[path] >= self.mailbox_concurrency:
            self.throttled += 1
            return graph_error(
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
                return graph_error(
                    429,
                    "ApplicationThrottled",
                    "Application is over its rate limit for this mailbox.",
                    {"Retry-After": str(wait)},
                )
            stamps.append(now)
        self._in_flight[path] += 1
        return None

    def _answer(self, request: Request, fault: Fault | None) -> Reply:
        before = fault if fault is not None and not fault.after else None
        delay = self.latency + (before.delay if before else 0.0)
        if delay:
            time.sleep(delay)
        headers = {"request-id": str(uuid.uuid4())}
        self._current.request_id = headers["request-id"]  # for the SentMail this request may record
        client_request_id = request.header("client-request-id")
        if client_request_id:
            headers["client-request-id"] = client_request_id
        if before is not None and before.status != 200:
            return self._fault_reply(before, headers)
        reply = self._route(request)
        reply.headers.update(headers)
        if fault is not None and fault.after:
            time.sleep(fault.delay)
            return self._fault_reply(fault, headers)
        return reply

    @staticmethod
    def _fault_reply(fault: Fault, headers: dict[str, str]) -> Reply:
        if fault.status == DROP:
            return Reply(DROP)
        extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
        code = {429: "TooManyRequests", 503: "ServiceUnavailable", 504: "GatewayTimeout"}.get(fault.status, "Error")
        return graph_error(fault.status, code, "Injected fault.", {**headers, **extra})

    def _route(self, request: Request) -> Reply:
        parts = [unquote(p) for p in request.path.strip("/").split("/")]
        if len(parts) < 4 or parts[0] != "v1.0" or parts[1] != "users":
            return graph_error(400, "BadRequest", f"Resource not found for the segment '{parts[-1]}'.")
        route = (request.method, *["{id}" if i == 1 else p for i, p in enumerate(parts[3:])])
        roles = _ROUTES.get(route)
        if roles is None:
            return graph_error(400, "BadRequest", f"Resource not found for the segment '{parts[-1]}'.")
        if 'IdType="ImmutableId"' not in (request.header("prefer") or ""):
            with self._lock:
                self.without_immutable_ids += 1
        authorization = request.header("authorization") or ""
        if not authorization.startswith("Bearer "):
            return graph_error(401, "InvalidAuthenticationToken", "Access token is empty.")
        try:
            claims = self._entra.verify(authorization.removeprefix("Bearer "), audience=self.resource)
        except jwt.ExpiredSignatureError:
            return graph_error(401, "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired.")
        except jwt.InvalidTokenError:
            return graph_error(401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
        if roles not in claims.get("roles", []):
            return graph_error(403, "ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        mailbox = self._find(parts[2])
        if mailbox is None:
            return graph_error(404, "ErrorInvalidUser", f"The requested user '{parts[2]}' is invalid.")
        app_id = str(claims.get("appid"))
        scope = self.app_scope.get(app_id)
        if scope is not None and mailbox.object_id not in scope:
            return graph_error(
                403,
                "ErrorAccessDenied",
                "Access to OData is disabled: [RAOP] : Blocked by tenant configured AppOnly AccessPolicy settings.",
            )
        # Graph takes a file under 3 MB in one attachments POST, whose base64 is a little over 4 MiB.
        limit = ATTACHMENT_POST_LIMIT if route == ("POST", "messages", "{id}", "attachments") else REQUEST_LIMIT
        if len(request.body) > limit:
            return graph_error(413, "RequestEntityTooLarge", "The request payload is too large.")
        if request.body and "application/json" not in (request.header("content-type") or ""):
            return graph_error(
                415,
                "UnsupportedMediaType",
                "A supported MIME type could not be found that matches the content type of the response.",
            )
        draft: Draft | None = None
        if len(parts) > 4:
            draft = self.drafts.find(parts[4], mailbox.upn)
            if draft is None:
                return graph_error(404, "ErrorItemNotFound", "The specified object was not found in the store.")
        try:
            return self._dispatch(route, request, mailbox, app_id, draft)
        except _BadBody as bad:
            status = 403 if bad.code == "ErrorSendAsDenied" else 400
            return graph_error(status, bad.code, bad.message)
        except ValueError:
            return graph_error(
                400,
                "BadRequest",
                "Unable to read JSON request payload. Please ensure Content-Type header "
                "is set and payload is of valid JSON format.",
            )

    def _dispatch(
        self, route: tuple[str, ...], request: Request, mailbox: Mailbox, app_id: str, draft: Draft | None
    ) -> Reply:
        if route == ("POST", "sendMail"):
            message, save = self._check_body(request.json())
            sender = self._check_sender(mailbox, message)
            with self._lock:
                self.sent.append(
                    SentMail(
                        mailbox.upn,
                        app_id,
                        message,
                        save,
                        request.header("client-request-id"),
                        sender=sender,
                        request_id=getattr(self._current, "request_id", None),
                    )
                )
            return Reply(202)
        if route == ("POST", "messages"):
            message = request.json()
            if not isinstance(message, dict):
                raise _BadBody("ErrorInvalidParameter", "The message is empty.")
            self._check_message(message, require_recipients=False)
            for attachment in message.get("attachments", []):
                self._check_attachment(attachment)
            return self.drafts.create(mailbox_upn=mailbox.upn, app_id=app_id, message=message)
        if route == ("GET", "messages"):
            return self._find_tagged(request, mailbox)
        assert draft is not None  # every other route names a draft, found above
        if route == ("PATCH", "messages", "{id}"):
            changes = request.json()
            if not isinstance(changes, dict):
                raise _BadBody("ErrorInvalidParameter", "The message is empty.")
            self._check_message(changes, require_recipients=False)
            return self.drafts.update(draft, changes)
        if route == ("POST", "messages", "{id}", "attachments"):
            attachment = request.json()
            self._check_attachment(attachment)
            return self.drafts.attach(draft, attachment)
        if route == ("POST", "messages", "{id}", "attachments", "createUploadSession"):
            return self.drafts.create_session(draft, request.json())
        if route == ("DELETE", "messages", "{id}"):
            return self.drafts.delete(draft)
        # POST messages/{id}/send
        self._check_message(draft.message, require_recipients=True)
        sender = self._check_sender(mailbox, draft.message)
        size = draft.attachment_bytes + len(json.dumps(draft.message))
        if size > self.max_message_size:
            return graph_error(
                413,
                "ErrorMessageSizeExceeded",
                f"The message exceeds the maximum supported size of {self.max_message_size} bytes.",
            )
        self.drafts.take(draft, after=self.send_delay)
        with self._lock:
            self.sent.append(
                SentMail(
                    mailbox.upn,
                    app_id,
                    draft.message,
                    True,
                    request.header("client-request-id"),
                    attachments=tuple(draft.attachments),
                    via_draft=True,
                    id=draft.id,
                    sender=sender,
                    in_sent_items_from=time.monotonic() + self.send_delay,
                    request_id=getattr(self._current, "request_id", None),
                )
            )
        return Reply(202)

    def _find_tagged(self, request: Request, mailbox: Mailbox) -> Reply:
        """``GET messages?$filter=singleValueExtendedProperties/Any(...)``: drafts and sent items that match."""
        query = (request.query.get("$filter") or [""])[0]
        match = _TAG_FILTER.match(query)
        if match is None:
            return graph_error(
                400, "ErrorInvalidUrlQueryFilter", "The query filter contains one or more invalid nodes."
            )
        property_id, value = match.group(1), match.group(2).replace("''", "'")

        def tagged(message: dict[str, Any]) -> bool:
            return any(
                p.get("id") == property_id and str(p.get("value", "")).casefold() == value.casefold()
                for p in message.get("singleValueExtendedProperties", [])
            )

        self.drafts.settle()
        now = time.monotonic()
        with self._lock:
            drafts = [d for d in self.drafts.drafts.values() if d.mailbox_upn == mailbox.upn and tagged(d.message)]
            sent = [
                m
                for m in self.sent
                if m.mailbox == mailbox.upn
                and m.save_to_sent_items
                and tagged(m.message)
                and m.in_sent_items_from <= now
            ]
        found = [{"id": d.id, "isDraft": True, "internetMessageId": None} for d in drafts] + [
            {"id": m.id, "isDraft": False, "internetMessageId": f"<{m.id}@{mailbox.upn.split('@')[-1]}>"} for m in sent
        ]
        return json_reply(200, {"@odata.context": "messages", "value": found})

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
        self._check_message(message, require_recipients=True)
        for attachment in message.get("attachments", []):
            self._check_attachment(attachment)
        save = body.get("saveToSentItems", True)
        if not isinstance(save, bool):
            raise _BadBody("RequestBodyRead", "Cannot convert 'saveToSentItems' to Edm.Boolean.")
        return message, save

    def _check_message(self, message: dict[str, Any], *, require_recipients: bool) -> None:
        """The message's shape; ``require_recipients`` (a send, not a draft) also resolves each recipient."""
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
                self._check_recipient(recipient, resolve=require_recipients)
            recipients += len(value)
        if recipients == 0 and require_recipients:
            raise _BadBody(
                "ErrorInvalidRecipients",
                "At least one recipient is not valid., A message can't be sent because it contains no recipients.",
            )
        if "from" in message:
            self._check_recipient(message["from"], resolve=False)
        reply_to = message.get("replyTo", [])
        if not isinstance(reply_to, list):
            raise _BadBody("RequestBodyRead", "Cannot convert 'replyTo' to a collection of recipients.")
        for recipient in reply_to:
            self._check_recipient(recipient, resolve=False)
        self._check_headers(message.get("internetMessageHeaders", []))
        categories = message.get("categories", [])
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise _BadBody("RequestBodyRead", "Cannot convert 'categories' to a collection of Edm.String.")
        for flag in ("isReadReceiptRequested", "isDeliveryReceiptRequested"):
            if flag in message and not isinstance(message[flag], bool):
                raise _BadBody("RequestBodyRead", f"Cannot convert '{flag}' to Edm.Boolean.")
        for prop in message.get("singleValueExtendedProperties", []):
            if not isinstance(prop, dict) or not _PROPERTY_ID.match(str(prop.get("id", ""))):
                raise _BadBody("ErrorInvalidProperty", "The extended property id is not valid.")
            if not isinstance(prop.get("value"), str):
                raise _BadBody("RequestBodyRead", "An extended property's value must be a string.")
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

    @staticmethod
    def _check_headers(headers: Any) -> None:
        """Graph's rules for custom internet headers: at most 5, each named x-..., with a string value."""
        if not isinstance(headers, list):
            raise _BadBody("RequestBodyRead", "Cannot convert 'internetMessageHeaders' to a collection.")
        if len(headers) > 5:
            raise _BadBody(
                "InvalidInternetMessageHeaderCollection",
                "Maximum number of headers in one message should be less than or equal to 5.",
            )
        for header in headers:
            name = header.get("name") if isinstance(header, dict) else None
            if not isinstance(name, str) or not name.lower().startswith("x-"):
                raise _BadBody(
                    "InvalidInternetMessageHeader",
                    f"The internet message header name '{name}' should start with 'x-' or 'X-'.",
                )
            if not isinstance(header.get("value"), str):
                raise _BadBody("RequestBodyRead", "An internet message header's value must be a string.")

    def _check_recipient(self, recipient: Any, *, resolve: bool) -> None:
        address = recipient.get("emailAddress", {}).get("address") if isinstance(recipient, dict) else None
        if not isinstance(address, str) or not _ADDRESS.match(address):
            raise _BadBody(
                "ErrorInvalidRecipients",
                "At least one recipient is not valid., Recipient "
                f"'{address}' is not resolved. All recipients must be resolved "
                "before a message can be submitted.",
            )
        if resolve and address.casefold() in self.unresolvable:
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
    def _check_sender(mailbox: Mailbox, message: dict[str, Any]) -> str:
        """Exchange's rule for ``from`` and ``sender``; who the message is sent by.

        ``from`` other than the mailbox needs Send As (then sender is from: no sign of the mailbox)
        or Send on Behalf (then sender is the mailbox: "mailbox on behalf of from"). A ``sender``
        given in the message must be the mailbox actually used (or from itself, under Send As); the
        permission, not the request, decides which one Exchange records.
        """
        denied = _BadBody(
            "ErrorSendAsDenied",
            "The user account which was used to submit this request does not "
            "have the right to send mail on behalf of the specified sending "
            "account., Cannot submit message.",
        )
        upn = mailbox.upn.casefold()
        shown = str(message.get("from", {}).get("emailAddress", {}).get("address") or mailbox.upn).casefold()
        send_as = {a.casefold() for a in mailbox.send_as}
        on_behalf = {a.casefold() for a in mailbox.send_on_behalf}
        if shown != upn and shown not in send_as and shown not in on_behalf:
            raise denied
        effective = shown if shown == upn or shown in send_as else upn
        claimed = message.get("sender", {}).get("emailAddress", {}).get("address")
        if claimed and str(claimed).casefold() not in {upn, effective}:
            raise denied
        return effective
