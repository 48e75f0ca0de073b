"""Attachments end to end: the real HTTP function, Graph's draft and upload-session path, blobs in Azurite."""

from __future__ import annotations

import base64
import hashlib
import os
from typing import Any

import pytest

from m365send.attachments import UPLOAD_CHUNK
from standins.azurite import Azurite
from standins.cloud import SENDER, LocalCloud
from standins.graph import Fault, UploadFault
from tests.conftest import AttachmentStore, Configure, SendApi

MB = 1024 * 1024


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


@pytest.fixture
def api(configure: Configure, attachment_store: AttachmentStore) -> SendApi:
    """The HTTP trigger, allowed to read attachments from the test's container."""
    return configure(**attachment_store.settings)


def inline(name: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"Name": name, "ContentBytes": base64.b64encode(data).decode(), **extra}


# --- what fits one sendMail ------------------------------------------------------------------------


def test_small_inline_attachment_goes_in_one_send_mail(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    seed_message["Attachments"] = [inline("notes.txt", b"hello")]

    answer = api.post(seed_message)

    assert answer.status == 202
    [sent] = cloud.graph.sent
    assert not sent.via_draft
    [attachment] = sent.message["attachments"]
    assert (attachment["name"], attachment["contentType"]) == ("notes.txt", "text/plain")
    assert base64.b64decode(attachment["contentBytes"]) == b"hello"


def test_small_blob_attachment_is_read_and_sent_in_one_send_mail(
    api: SendApi, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    data = random_bytes(200_000)
    reference = attachment_store.put("reports/2026/q3.pdf", data, "application/pdf")
    seed_message["Attachments"] = [{"Blob": reference}]

    answer = api.post(seed_message)

    assert answer.status == 202
    [attachment] = cloud.graph.sent[0].message["attachments"]
    assert (attachment["name"], attachment["contentType"]) == ("q3.pdf", "application/pdf")
    assert base64.b64decode(attachment["contentBytes"]) == data


def test_inline_image_from_a_blob_is_shown_by_its_content_id(
    api: SendApi, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    reference = attachment_store.put("logo.png", b"\x89PNG\r\n\x1a\n", "image/png")
    seed_message.update(BodyFormat="Html", Body='<p><img src="cid:logo"></p>')
    seed_message["Attachments"] = [{"blob": reference, "isInline": True, "contentId": "logo"}]

    assert api.post(seed_message).status == 202

    [attachment] = cloud.graph.sent[0].message["attachments"]
    assert (attachment["isInline"], attachment["contentId"]) == (True, "logo")


# --- the draft path --------------------------------------------------------------------------------


def test_mixed_small_inline_small_blob_and_large_blob_go_through_one_draft(
    api: SendApi, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    small_blob, large_blob = random_bytes(50_000), random_bytes(5 * MB)
    seed_message["Attachments"] = [
        inline("inline.txt", b"inline text"),
        {"Blob": attachment_store.put("small.bin", small_blob)},
        {"Blob": attachment_store.put("large.bin", large_blob), "Name": "Large file.bin"},
    ]

    answer = api.post(seed_message)

    assert answer.status == 202
    [sent] = cloud.graph.sent
    assert sent.via_draft
    assert [(a.name, a.data()) for a in sent.attachments] == [
        ("inline.txt", b"inline text"),
        ("small.bin", small_blob),
        ("Large file.bin", large_blob),
    ]
    assert cloud.graph.drafts.drafts == {}  # sent, not left behind


@pytest.mark.parametrize("size", [int(3.5 * MB), 40 * MB], ids=["3.5MB", "40MB"])
def test_large_blob_attachment_arrives_byte_for_byte_through_an_upload_session(
    api: SendApi, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any], size: int
) -> None:
    data = random_bytes(size)
    seed_message["Attachments"] = [{"Blob": attachment_store.put("big.bin", data)}]

    answer = api.post(seed_message)

    assert answer.status == 202
    [attachment] = cloud.graph.sent[0].attachments
    assert attachment.size == size
    assert attachment.sha256() == hashlib.sha256(data).hexdigest()
    chunks = cloud.graph.drafts.chunks
    assert len(chunks) == -(-size // UPLOAD_CHUNK)
    assert all(c % (320 * 1024) == 0 and c <= 4 * MB for c in chunks[:-1])


def test_large_inline_attachment_goes_through_an_upload_session_too(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    data = random_bytes(int(3.5 * MB))
    seed_message.update(BodyFormat="Html", Body='<img src="cid:photo">')
    seed_message["Attachments"] = [inline("photo.jpg", data, IsInline=True, ContentId="photo")]

    assert api.post(seed_message).status == 202

    [attachment] = cloud.graph.sent[0].attachments
    assert attachment.data() == data
    assert (attachment.content_type, attachment.is_inline, attachment.content_id) == ("image/jpeg", True, "photo")


@pytest.mark.parametrize("commit", [False, True], ids=["chunk-lost", "answer-lost"])
def test_a_chunk_failing_once_is_resumed_and_the_file_arrives_intact(
    api: SendApi,
    cloud: LocalCloud,
    attachment_store: AttachmentStore,
    seed_message: dict[str, Any],
    commit: bool,
) -> None:
    data = random_bytes(10 * MB)
    seed_message["Attachments"] = [{"Blob": attachment_store.put("big.bin", data)}]
    cloud.graph.drafts.faults.append(UploadFault(put=2, status=503, commit=commit))

    answer = api.post(seed_message)

    assert answer.status == 202
    assert cloud.graph.sent[0].attachments[0].data() == data
    assert cloud.graph.drafts.puts == 5  # 4 chunks, plus the one sent again (refused with 416 if it had landed)
    assert cloud.graph.requests["upload"] == cloud.graph.drafts.puts  # PUTs only: no GET of the session


def test_a_draft_whose_send_fails_is_deleted_and_nothing_is_sent(
    api: SendApi, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    seed_message["Attachments"] = [{"Blob": attachment_store.put("big.bin", random_bytes(4 * MB))}]
    cloud.graph.unresolvable.add("recipient@outlook.com")  # Exchange refuses it when the draft is sent

    answer = api.post(seed_message)

    assert answer.status == 400
    assert answer.body["type"] == "urn:m365send:problem:recipients-rejected"
    assert cloud.graph.sent == []
    assert cloud.graph.drafts.drafts == {}
    assert len(cloud.graph.drafts.deleted) == 1


def test_a_draft_left_throttled_is_deleted_and_the_send_may_be_retried(
    configure: Configure, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    api = configure(**attachment_store.settings, M365_GRAPH_MAX_ATTEMPTS="2")
    seed_message["Attachments"] = [inline("a.bin", random_bytes(4 * MB))]
    path = f"/v1.0/users/{SENDER}/messages/"
    original = cloud.graph.handle

    def throttle_send(request: Any) -> Any:  # the draft's send answers 503, everything else works
        if request.path.startswith(path) and request.path.endswith("/send"):
            cloud.graph.inject(Fault(503, retry_after="0"))
        return original(request)

    cloud.graph.handle = throttle_send  # type: ignore[method-assign]

    answer = api.post(seed_message)

    assert answer.status == 503
    assert cloud.graph.sent == []
    assert cloud.graph.drafts.drafts == {}


def test_without_mail_readwrite_a_large_message_fails_saying_so(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.app.roles[cloud.graph.resource] = ["Mail.Send"]
    seed_message["Attachments"] = [inline("a.bin", random_bytes(4 * MB))]

    answer = api.post(seed_message)

    assert answer.status == 403
    assert answer.body["type"] == "urn:m365send:problem:drafts-denied"
    assert "Mail.ReadWrite" in answer.body["detail"]
    assert cloud.graph.sent == []


def test_without_mail_readwrite_small_messages_still_go(
    api: SendApi, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    cloud.app.roles[cloud.graph.resource] = ["Mail.Send"]
    seed_message["Attachments"] = [inline("a.bin", b"small")]

    assert api.post(seed_message).status == 202


# --- refusals before anything is sent --------------------------------------------------------------


def test_a_missing_blob_is_a_clear_error_and_nothing_is_sent(
    api: SendApi, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    seed_message["Attachments"] = [
        {"Blob": attachment_store.put("here.txt", b"x")},
        {"Blob": f"{attachment_store.container}/gone.pdf"},
    ]

    answer = api.post(seed_message)

    assert answer.status == 400
    assert answer.body["type"] == "urn:m365send:problem:attachment-not-found"
    assert answer.body["exception"] == "FileNotFoundException"
    assert answer.body["errors"][0]["field"] == "Attachments[1].Blob"
    assert sum(cloud.graph.requests.values()) == 0
    assert sum(cloud.entra.token_requests.values()) == 0


def test_a_container_not_on_the_allow_list_is_refused_before_any_read(
    api: SendApi, cloud: LocalCloud, azurite: Azurite, seed_message: dict[str, Any]
) -> None:
    seed_message["Attachments"] = [{"Blob": "other-container/secret.txt"}]

    answer = api.post(seed_message)

    assert answer.status == 403
    assert answer.body["type"] == "urn:m365send:problem:attachment-not-allowed"
    assert answer.body["exception"] == "UnauthorizedAccessException"
    assert "M365_ATTACHMENT_CONTAINERS" in answer.body["detail"]
    assert sum(cloud.graph.requests.values()) == 0


def test_blob_attachments_are_refused_when_no_container_is_allowed(
    configure: Configure, cloud: LocalCloud, seed_message: dict[str, Any]
) -> None:
    seed_message["Attachments"] = [{"Blob": "attachments/a.pdf"}]

    answer = configure().post(seed_message)

    assert answer.status == 403
    assert "blob attachments are off" in answer.body["detail"]


def test_a_blob_the_identity_may_not_read_is_access_denied(
    configure: Configure, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    reference = attachment_store.put("private.pdf", b"%PDF")
    api = configure(**attachment_store.list_only_settings())
    seed_message["Attachments"] = [{"Blob": reference}]

    answer = api.post(seed_message)

    assert answer.status == 403
    assert answer.body["type"] == "urn:m365send:problem:attachment-access-denied"
    assert answer.body["exception"] == "UnauthorizedAccessException"
    assert "Storage Blob Data Reader" in answer.body["detail"]
    assert sum(cloud.graph.requests.values()) == 0


def test_attachments_over_the_message_limit_are_refused(
    configure: Configure, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    api = configure(**attachment_store.settings, M365_MESSAGE_MAX_MB="5")
    seed_message["Attachments"] = [{"Blob": attachment_store.put(f"{n}.bin", bytes(2 * MB))} for n in range(3)]

    answer = api.post(seed_message)

    assert answer.status == 413
    assert "M365_MESSAGE_MAX_MB" in answer.body["detail"]
    assert sum(cloud.graph.requests.values()) == 0


def test_validate_only_finds_a_missing_blob_without_sending(
    api: SendApi, cloud: LocalCloud, attachment_store: AttachmentStore, seed_message: dict[str, Any]
) -> None:
    seed_message["Attachments"] = [{"Blob": f"{attachment_store.container}/gone.pdf"}]

    answer = api.post(seed_message, function="validate")

    assert answer.status == 400
    assert answer.body["type"] == "urn:m365send:problem:attachment-not-found"
    assert sum(cloud.graph.requests.values()) == 0
