"""``EmailService`` with fakes of its Protocols: the order of checks and what is sent."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from m365send.errors import (
    AttachmentNotAllowed,
    AttachmentNotFound,
    DependencyUnavailable,
    OutcomeUnknown,
    PayloadTooLarge,
    RecipientsRejected,
    SenderNotAllowed,
)
from m365send.models import parse_send_request
from m365send.service import EmailService
from tests.fakes import FakeMail, FakeTokens


class FakeBlob:
    def __init__(self, data: bytes, content_type: str | None = None) -> None:
        self.data = data
        self.content_type = content_type

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset : offset + length]


class FakeBlobs:
    """Blobs by "container/name"; records every lookup."""

    def __init__(self, blobs: dict[str, FakeBlob]) -> None:
        self.blobs = blobs
        self.opened: list[str] = []

    def open(self, container: str, name: str, *, field: str) -> FakeBlob:
        self.opened.append(f"{container}/{name}")
        if f"{container}/{name}" not in self.blobs:
            raise AttachmentNotFound(field, "no such blob")
        return self.blobs[f"{container}/{name}"]


def inline(name: str, data: bytes) -> dict[str, Any]:
    return {"Name": name, "ContentBytes": base64.b64encode(data).decode()}


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


MB = 1024 * 1024


def blob_service(blobs: FakeBlobs) -> tuple[EmailService, FakeTokens, FakeMail]:
    tokens, mail = FakeTokens(), FakeMail()
    service = EmailService(
        tokens=tokens,
        mail=mail,
        default_sender="notifications@contoso.com",
        allowed_senders=[],
        blobs=blobs,
        attachment_containers=["attachments"],
        max_message_bytes=20 * MB,
    )
    return service, tokens, mail


def test_attachments_that_fit_one_request_go_in_one_send_mail(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, _, mail = parts
    seed_message["Attachments"] = [inline("a.txt", b"a" * 1000), inline("b.txt", b"b" * 1000)]

    service.send(parse_send_request(seed_message))

    assert mail.calls == ["send_mail"]
    assert len(mail.sent[0]["body"]["message"]["attachments"]) == 2


def test_message_over_4mb_goes_through_a_draft_with_small_files_posted_and_large_ones_uploaded(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, _, mail = parts
    large = bytes(range(256)) * (14 * 1024)  # 3.5 MB
    seed_message["Attachments"] = [inline("small.txt", b"s" * 1000), inline("large.bin", large)]

    receipt = service.send(parse_send_request(seed_message))

    assert mail.calls == ["create_draft", "add_attachment", "create_upload_session", "upload", "send_draft"]
    assert mail.uploaded["https://upload/large.bin"] == large
    assert receipt.graph_request_id == "graph-2"


@pytest.mark.parametrize("step", ["add_attachment", "create_upload_session", "upload", "send_draft"])
def test_a_draft_whose_send_fails_is_deleted(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any], step: str
) -> None:
    service, _, mail = parts
    seed_message["Attachments"] = [inline("small.txt", b"s"), inline("large.bin", b"L" * (3 * MB + 1))]
    mail.fail[step] = RecipientsRejected("no", code="ErrorInvalidRecipients", graph_status=400)

    with pytest.raises(RecipientsRejected):
        service.send(parse_send_request(seed_message))

    assert mail.calls[-2:] == [step, "delete_draft"]
    assert "send_draft" not in mail.calls[:-2]


def test_a_draft_whose_send_outcome_is_unknown_is_left_alone(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, _, mail = parts
    seed_message["Attachments"] = [inline("large.bin", b"L" * (3 * MB + 1))]
    mail.fail["send_draft"] = OutcomeUnknown("timed out")

    with pytest.raises(OutcomeUnknown):
        service.send(parse_send_request(seed_message))

    assert "delete_draft" not in mail.calls


def test_a_failed_draft_delete_does_not_hide_the_send_failure(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, _, mail = parts
    seed_message["Attachments"] = [inline("large.bin", b"L" * (3 * MB + 1))]
    mail.fail["upload"] = DependencyUnavailable("upload failed")
    mail.fail["delete_draft"] = DependencyUnavailable("delete failed too")

    with pytest.raises(DependencyUnavailable, match="upload failed"):
        service.send(parse_send_request(seed_message))


def test_a_blob_outside_the_allowed_containers_is_refused_before_any_blob_is_opened(
    seed_message: dict[str, Any],
) -> None:
    blobs = FakeBlobs({"attachments/a.pdf": FakeBlob(b"%PDF")})
    service, tokens, mail = blob_service(blobs)
    seed_message["Attachments"] = [{"Blob": "attachments/a.pdf"}, {"Blob": "secrets/keys.txt"}]

    with pytest.raises(AttachmentNotAllowed) as caught:
        service.send(parse_send_request(seed_message))

    assert caught.value.problems[0].field == "Attachments[1].Blob"
    assert caught.value.exception == "UnauthorizedAccessException"
    assert (blobs.opened, tokens.calls, mail.calls) == ([], 0, [])


def test_a_missing_blob_means_no_token_and_no_graph_call(seed_message: dict[str, Any]) -> None:
    blobs = FakeBlobs({"attachments/a.pdf": FakeBlob(b"%PDF")})
    service, tokens, mail = blob_service(blobs)
    seed_message["Attachments"] = [{"Blob": "attachments/a.pdf"}, {"Blob": "attachments/gone.pdf"}]

    with pytest.raises(AttachmentNotFound) as caught:
        service.send(parse_send_request(seed_message))

    assert caught.value.exception == "FileNotFoundException"
    assert (tokens.calls, mail.calls) == (0, [])


def test_a_blob_takes_its_name_and_stored_type_unless_the_request_gives_them(seed_message: dict[str, Any]) -> None:
    blobs = FakeBlobs(
        {"attachments/2026/q3.pdf": FakeBlob(b"%PDF", "application/pdf"), "attachments/raw": FakeBlob(b"x")}
    )
    service, _, mail = blob_service(blobs)
    seed_message["Attachments"] = [
        {"Blob": "attachments/2026/q3.pdf"},
        {"Blob": "attachments/raw", "Name": "notes.txt"},
    ]

    service.send(parse_send_request(seed_message))

    first, second = mail.sent[0]["body"]["message"]["attachments"]
    assert (first["name"], first["contentType"], base64.b64decode(first["contentBytes"])) == (
        "q3.pdf",
        "application/pdf",
        b"%PDF",
    )
    assert (second["name"], second["contentType"]) == ("notes.txt", "text/plain")


def test_a_blob_over_150mb_is_refused_before_a_token(seed_message: dict[str, Any]) -> None:
    class Huge(FakeBlob):
        @property
        def size(self) -> int:
            return 150 * MB + 1

    service, tokens, mail = blob_service(FakeBlobs({"attachments/huge.iso": Huge(b"")}))
    seed_message["Attachments"] = [{"Blob": "attachments/huge.iso"}]

    with pytest.raises(PayloadTooLarge, match="150 MB"):
        service.send(parse_send_request(seed_message))

    assert (tokens.calls, mail.calls) == (0, [])


def test_attachments_over_the_message_limit_are_refused_naming_the_setting(seed_message: dict[str, Any]) -> None:
    blobs = FakeBlobs({f"attachments/{n}.bin": FakeBlob(bytes(8 * MB)) for n in range(3)})
    service, tokens, _ = blob_service(blobs)  # at most 20 MB
    seed_message["Attachments"] = [{"Blob": f"attachments/{n}.bin"} for n in range(3)]

    with pytest.raises(PayloadTooLarge, match="M365_MESSAGE_MAX_MB"):
        service.send(parse_send_request(seed_message))

    assert tokens.calls == 0


def test_validate_only_looks_blobs_up_but_reads_and_sends_nothing(seed_message: dict[str, Any]) -> None:
    class Unreadable(FakeBlob):
        def read(self, offset: int, length: int) -> bytes:
            raise AssertionError("validation must not read blob contents")

    blobs = FakeBlobs({"attachments/a.pdf": Unreadable(b"%PDF")})
    service, tokens, mail = blob_service(blobs)
    seed_message["Attachments"] = [{"Blob": "attachments/a.pdf"}]

    assert service.check(parse_send_request(seed_message)) == "notifications@contoso.com"
    assert (blobs.opened, tokens.calls, mail.calls) == (["attachments/a.pdf"], 0, [])


def test_a_draft_is_deleted_even_when_an_unexpected_error_stops_the_send(
    parts: tuple[EmailService, FakeTokens, FakeMail], seed_message: dict[str, Any]
) -> None:
    service, _, mail = parts
    seed_message["Attachments"] = [inline("large.bin", b"L" * (3 * MB + 1))]
    mail.fail["upload"] = AttributeError("'list' object has no attribute 'get'")

    with pytest.raises(AttributeError):
        service.send(parse_send_request(seed_message))

    assert mail.calls[-1] == "delete_draft"
    assert mail.drafts == {}
