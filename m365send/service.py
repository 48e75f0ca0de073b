"""The send use case: validated request → sender check → attachments → token → Graph. No cloud SDK imports.

The service depends on small Protocols, so unit tests use fakes and the composition root
(``m365send.wiring``) plugs in the real Key Vault / msal / httpx / Blob adapters once per worker.
Everything that can refuse a send (sender, allow-list, a missing blob, size limits) is checked
before the first Graph call, so a refused message is never partly sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from m365send.addresses import fold_address
from m365send.attachments import BlobOpener, ResolvedAttachment, check_limits, resolve_attachments
from m365send.drafts import TAG_PROPERTY_ID, SendTag, send_through_draft
from m365send.errors import PayloadTooLarge, SenderNotAllowed
from m365send.graph_message import GRAPH_REQUEST_LIMIT, encode_json, encode_send_mail, send_mail_body, send_mail_size
from m365send.logcontext import log_context
from m365send.mailbox import DraftMail, GraphReceipt, MailboxSearch, MailSender, TaggedMessage
from m365send.message import SendRequest
from m365send.telemetry import SENDS, tracer

__all__ = ["EmailService", "GraphMail", "SendPlan", "SendReceipt", "TokenProvider"]

DEFAULT_MAX_MESSAGE_BYTES = 150 * 1024 * 1024

log = logging.getLogger(__name__)


class TokenProvider(Protocol):
    """Hands out a valid Graph access token, cached while it is valid."""

    def token(self) -> str:
        """A bearer token for Graph."""
        ...


class GraphMail(MailSender, DraftMail, MailboxSearch, Protocol):
    """``sendMail`` for what fits one request, drafts for what does not, and look-ups for verified delivery."""


@dataclass(frozen=True)
class SendPlan:
    """How a checked request will be sent: as which mailbox, with which attachments, in one request or a draft."""

    mailbox: str
    attachments: list[ResolvedAttachment]
    fits_one_request: bool
    body: bytes | None = None  # the sendMail request, already encoded, when there are no attachments


@dataclass(frozen=True)
class SendReceipt:
    """What the caller learns about an accepted send."""

    request_id: str
    mailbox: str
    graph_request_id: str | None
    attempts: int
    internet_message_id: str | None = None


class EmailService:
    """Sends validated requests as an allowed mailbox; one instance per worker."""

    def __init__(
        self,
        *,
        tokens: TokenProvider,
        mail: GraphMail,
        default_sender: str,
        allowed_senders: Iterable[str],
        blobs: BlobOpener | None = None,
        attachment_containers: Iterable[str] = (),
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        on_behalf_of: Iterable[tuple[str, str]] = (),
    ) -> None:
        self._tokens = tokens
        self._mail = mail
        self._default_sender = default_sender
        self._allowed = frozenset(map(fold_address, allowed_senders)) | {fold_address(default_sender)}
        self._blobs = blobs
        self._containers = frozenset(attachment_containers)
        self._max_message_bytes = max_message_bytes
        self._on_behalf = frozenset((fold_address(d), fold_address(p)) for d, p in on_behalf_of)

    def mailbox_of(self, request: SendRequest) -> str:
        """The mailbox a request sends as (its sender, else the default)."""
        return request.sender or self._default_sender

    def check_sender(self, request: SendRequest) -> str:
        """The mailbox to send as; ``SenderNotAllowed`` if it or the From address is not allowed."""
        mailbox = self.mailbox_of(request)
        if fold_address(mailbox) not in self._allowed:
            raise SenderNotAllowed(
                f"sending as mailbox '{mailbox}' is not allowed; add it to M365_ALLOWED_SENDERS",
                exception="ServiceException",
            )
        sender_address = request.message.from_.address
        if fold_address(sender_address) not in self._allowed:
            raise SenderNotAllowed(
                f"From '{sender_address}' is not an address this service may send as; add it to M365_ALLOWED_SENDERS",
                exception="ServiceException",
            )
        principal = request.message.on_behalf_of
        if (
            principal is not None
            and (fold_address(sender_address), fold_address(principal.address)) not in self._on_behalf
        ):
            raise SenderNotAllowed(
                f"From '{sender_address}' may not send on behalf of '{principal.address}'; add "
                f"'{sender_address}>{principal.address}' to M365_ON_BEHALF_OF",
                exception="ServiceException",
            )
        return mailbox

    def plan(self, request: SendRequest) -> SendPlan:
        """Check everything that can refuse the request before Graph is called; how it will be sent."""
        mailbox = self.check_sender(request)
        bare = encode_json(send_mail_body(request.message))
        if len(bare) > GRAPH_REQUEST_LIMIT:
            # Attachments can go through a draft; the message itself cannot be split.
            raise PayloadTooLarge(
                f"the message without attachments is {len(bare):,} bytes as Graph JSON; Graph accepts at most "
                f"{GRAPH_REQUEST_LIMIT:,} bytes per request: send large content as an attachment",
                exception="ArgumentException",
            )
        if not request.message.attachments:
            return SendPlan(mailbox, [], fits_one_request=True, body=bare)
        attachments = resolve_attachments(request.message.attachments, containers=self._containers, blobs=self._blobs)
        check_limits(attachments, max_total=self._max_message_bytes)
        fits = send_mail_size(request.message, attachments) <= GRAPH_REQUEST_LIMIT
        return SendPlan(mailbox, attachments, fits)

    def check(self, request: SendRequest) -> str:
        """Everything ``send`` checks before it needs Graph: sender, attachments (looked up, not read), size.

        Returns the mailbox.
        """
        return self.plan(request).mailbox

    def send(
        self, request: SendRequest, *, tag: SendTag | None = None, guard: Callable[[], None] | None = None
    ) -> SendReceipt:
        """Check, build the Graph request(s), get a token and send. Nothing is sent on any error.

        A message that fits Graph's 4 MB request goes in one ``sendMail``; a larger one through a draft.
        With a ``tag`` (verified delivery) every message goes through a draft that carries it.
        ``guard`` runs before each Graph step that could deliver or commit, and may stop the send.
        """
        with (
            log_context(
                request_id=request.request_id,
                client_request_id=request.request_id,
                mailbox=request.sender or self._default_sender,
            ),
            tracer.start_as_current_span("m365send.send") as span,
        ):
            span.set_attribute("m365send.request_id", request.request_id)
            prepared = self.plan(request)
            mailbox = prepared.mailbox
            if guard is not None:
                guard()
            if prepared.fits_one_request and tag is None:
                body = prepared.body or encode_send_mail(request.message, prepared.attachments)
                token = self._tokens.token()
                receipt = self._mail.send_mail(
                    mailbox=mailbox, body=body, token=token, client_request_id=request.request_id
                )
            else:
                span.set_attribute("m365send.draft", True)
                receipt = send_through_draft(
                    self._mail,
                    mailbox=mailbox,
                    message=request.message,
                    attachments=prepared.attachments,
                    token=self._tokens.token(),
                    client_request_id=request.request_id,
                    inline=prepared.fits_one_request,
                    tag=tag,
                    guard=guard,
                )
            span.set_attribute("m365send.graph_request_id", receipt.request_id or "")
            SENDS.add(1)
            return self._accepted(request, mailbox, receipt)

    def find_tagged(self, request: SendRequest, tag: SendTag) -> list[TaggedMessage]:
        """The request's mailbox's messages (drafts and sent items) that carry ``tag``; the sender is checked first."""
        return self._mail.find_tagged(
            mailbox=self.check_sender(request),
            property_id=TAG_PROPERTY_ID,
            value=tag.value,
            token=self._tokens.token(),
            client_request_id=request.request_id,
        )

    def send_existing_draft(self, request: SendRequest, draft_id: str) -> SendReceipt:
        """Send a complete, tagged draft that an earlier attempt left behind."""
        mailbox = self.check_sender(request)
        with log_context(request_id=request.request_id, client_request_id=request.request_id, mailbox=mailbox):
            receipt = self._mail.send_draft(
                mailbox=mailbox, message_id=draft_id, token=self._tokens.token(), client_request_id=request.request_id
            )
            SENDS.add(1)
            return self._accepted(request, mailbox, receipt)

    def discard_draft(self, request: SendRequest, draft_id: str) -> None:
        """Delete a surplus tagged draft (another attempt's copy of a message already sent)."""
        self._mail.delete_draft(
            mailbox=request.sender or self._default_sender,
            message_id=draft_id,
            token=self._tokens.token(),
            client_request_id=request.request_id,
        )

    def _accepted(self, request: SendRequest, mailbox: str, receipt: GraphReceipt) -> SendReceipt:
        # request_id, mailbox and graph_request_id come from the log context.
        log.info("email accepted by Graph", extra={"attempts": receipt.attempts})
        return SendReceipt(
            request_id=request.request_id,
            mailbox=mailbox,
            graph_request_id=receipt.request_id,
            attempts=receipt.attempts,
            internet_message_id=receipt.internet_message_id,
        )
