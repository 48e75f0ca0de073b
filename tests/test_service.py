"""``EmailService`` with fakes of its Protocols: the order of checks and what is sent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from m365send.errors import PayloadTooLarge, SenderNotAllowed
from m365send.graph import GraphReceipt
from m365send.models import parse_send_request
from m365send.service import EmailService


class FakeTokens:
    def __init__(self) -> None:
        self.calls = 0

    def token(self) -> str:
        self.calls += 1
        return "token-1"


class FakeMail:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send_mail(self, *, mailbox: str, body: bytes, token: str, client_request_id: str) -> GraphReceipt:
        self.sent.append({"mailbox": mailbox, "body": json.loads(body), "token": token, "id": client_request_id})
        return GraphReceipt(request_id="graph-1", client_request_id=client_request_id, attempts=1)


@pytest.fixture
def parts() -> tuple[EmailService, FakeTokens, FakeMail]:
    tokens, mail = FakeTokens(), FakeMail()
    service = EmailService(
        tokens=tokens, mail=mail, default_sender="notifications@contoso.com", allowed_senders=["Support@contoso.com"]
    )
    return service, tokens, mail


def test_send_uses_the_default_mailbox_and_the_token(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, _, mail = parts

    receipt = service.send(parse_send_request(seed_message, request_id="r-1"))

    assert receipt.mailbox == "notifications@contoso.com"
    assert receipt.graph_request_id == "graph-1"
    assert mail.sent[0]["token"] == "token-1"
    assert mail.sent[0]["id"] == "r-1"


def test_allowed_senders_match_case_insensitively(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, _, mail = parts
    seed_message["From"]["Address"] = "SUPPORT@contoso.com"

    service.send(parse_send_request(seed_message, sender="support@CONTOSO.com"))

    assert mail.sent[0]["mailbox"] == "support@CONTOSO.com"


def test_disallowed_sender_asks_for_no_token(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, tokens, mail = parts

    with pytest.raises(SenderNotAllowed):
        service.send(parse_send_request(seed_message, sender="ceo@contoso.com"))

    assert tokens.calls == 0
    assert mail.sent == []


def test_oversized_message_asks_for_no_token(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, tokens, _ = parts
    seed_message["Body"] = "x" * (5 * 1024 * 1024)

    with pytest.raises(PayloadTooLarge):
        service.send(parse_send_request(seed_message))

    assert tokens.calls == 0
