"""The send use case: validated request → sender check → token → Graph. No cloud SDK imports.

The service depends on two small Protocols, so unit tests use fakes and the composition root
(``m365send.wiring``) plugs in the real Key Vault / msal / httpx adapters once per worker.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from m365send.errors import SenderNotAllowed
from m365send.graph import GraphReceipt
from m365send.graph_message import encode_send_mail
from m365send.logcontext import log_context
from m365send.models import SendRequest
from m365send.telemetry import SENDS, tracer

__all__ = ["EmailService", "MailSender", "SendReceipt", "TokenProvider"]

log = logging.getLogger(__name__)


class TokenProvider(Protocol):
    """Hands out a valid Graph access token, cached while it is valid."""

    def token(self) -> str:
        """A bearer token for Graph."""
        ...


class MailSender(Protocol):
    """Posts a prepared ``sendMail`` body to Graph as ``mailbox``."""

    def send_mail(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> GraphReceipt:
        """Send, or raise an ``M365SendError``."""
        ...


@dataclass(frozen=True)
class SendReceipt:
    """What the caller learns about an accepted send."""

    request_id: str
    mailbox: str
    graph_request_id: str | None
    attempts: int


class EmailService:
    """Sends validated requests as an allowed mailbox; one instance per worker."""

    def __init__(
        self, *, tokens: TokenProvider, mail: MailSender, default_sender: str, allowed_senders: Iterable[str]
    ) -> None:
        self._tokens = tokens
        self._mail = mail
        self._default_sender = default_sender
        self._allowed = frozenset(s.casefold() for s in allowed_senders) | {default_sender.casefold()}

    def check_sender(self, request: SendRequest) -> str:
        """The mailbox to send as; ``SenderNotAllowed`` if it or the From address is not allowed."""
        mailbox = request.sender or self._default_sender
        if mailbox.casefold() not in self._allowed:
            raise SenderNotAllowed(
                f"sending as mailbox '{mailbox}' is not allowed; add it to M365_ALLOWED_SENDERS",
                exception="ServiceException",
            )
        sender_address = request.message.from_.address
        if sender_address.casefold() not in self._allowed:
            raise SenderNotAllowed(
                f"From '{sender_address}' is not an address this service may send as; add it to M365_ALLOWED_SENDERS",
                exception="ServiceException",
            )
        return mailbox

    def check(self, request: SendRequest) -> str:
        """Everything ``send`` checks before it needs the network: sender and size. Returns the mailbox."""
        mailbox = self.check_sender(request)
        encode_send_mail(request.message)
        return mailbox

    def send(self, request: SendRequest) -> SendReceipt:
        """Check the sender, build the Graph body, get a token and send. Nothing is sent on any error."""
        with (
            log_context(
                request_id=request.request_id,
                client_request_id=request.request_id,
                mailbox=request.sender or self._default_sender,
            ),
            tracer.start_as_current_span("m365send.send") as span,
        ):
            span.set_attribute("m365send.request_id", request.request_id)
            mailbox = self.check_sender(request)
            body = encode_send_mail(request.message)
            token = self._tokens.token()
            receipt = self._mail.send_mail(
                mailbox=mailbox, body=body, token=token, client_request_id=request.request_id
            )
            span.set_attribute("m365send.graph_request_id", receipt.request_id or "")
            SENDS.add(1)
            return self._accepted(request, mailbox, receipt)

    def _accepted(self, request: SendRequest, mailbox: str, receipt: GraphReceipt) -> SendReceipt:
        # request_id, mailbox and graph_request_id come from the log context.
        log.info("email accepted by Graph", extra={"attempts": receipt.attempts})
        return SendReceipt(
            request_id=request.request_id,
            mailbox=mailbox,
            graph_request_id=receipt.request_id,
            attempts=receipt.attempts,
        )
