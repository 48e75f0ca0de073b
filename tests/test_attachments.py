"""Attachments without I/O: the two sources, blob references, inline images, limits and upload chunks."""

from __future__ import annotations

import base64
import os
from typing import Any

import pytest

from m365send.attachments import (
    MAX_ATTACHMENTS,
    UPLOAD_CHUNK,
    InlineContent,
    blob_reference_problem,
    chunk_ranges,
    decoded_size,
)
from m365send.errors import ConfigurationInvalid, RequestInvalid
from m365send.models import parse_send_request
from m365send.settings import load_settings


def problems(message: dict[str, Any]) -> list[tuple[str, str, str]]:
    with pytest.raises(RequestInvalid) as caught:
        parse_send_request(message)
    return [(p.field, p.code, p.exception) for p in caught.value.problems]


# --- the two sources -------------------------------------------------------------------------------


def test_blob_reference_is_accepted_in_either_spelling(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Blob": "attachments/a.pdf"}, {"blob": "attachments/b.pdf", "name": "B.pdf"}]

    first, second = parse_send_request(seed_message).message.attachments

    assert (first.blob, first.display_name) == ("attachments/a.pdf", "a.pdf")
    assert (second.blob, second.display_name) == ("attachments/b.pdf", "B.pdf")


def test_an_attachment_needs_content_or_a_blob(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Name": "a.txt"}]

    assert problems(seed_message) == [("Attachments[0]", "null", "PropertyNullException")]


def test_an_attachment_cannot_have_both_content_and_a_blob(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Name": "a.txt", "ContentBytes": "YQ==", "Blob": "attachments/a.txt"}]

    assert problems(seed_message) == [("Attachments[0]", "argument", "ArgumentException")]


def test_inline_content_needs_a_name(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"ContentBytes": "YQ=="}]

    assert problems(seed_message) == [("Attachments[0]", "null", "PropertyNullException")]


@pytest.mark.parametrize(
    "reference",
    [
        "https://evil.example/x.pdf",
        "/attachments/a.pdf",
        "attachments",
        "attachments/",
        "Attachments/a.pdf",
        "ab/a.pdf",
        "attachments/../secrets/a.pdf",
        "attachments/./a.pdf",
        "attachments/a//b.pdf",
        "attachments/a\\b.pdf",
        "attachments/a\nb.pdf",
        "attachments/" + "x" * 1025,
    ],
)
def test_a_blob_reference_must_be_container_and_path_and_never_a_url(reference: str) -> None:
    assert blob_reference_problem(reference)


@pytest.mark.parametrize("reference", ["attachments/a.pdf", "my-files/2026/11/report (final).pdf", "a1b/x"])
def test_ordinary_blob_references_are_accepted(reference: str) -> None:
    assert blob_reference_problem(reference) is None


def test_a_bad_blob_reference_is_a_field_error(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Blob": "https://evil.example/x.pdf"}]

    assert problems(seed_message) == [("Attachments[0].Blob", "invalid_blob", "ArgumentException")]


# --- inline images ---------------------------------------------------------------------------------


def test_an_inline_attachment_needs_a_content_id(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Name": "logo.png", "ContentBytes": "iVBORw0KGgo=", "IsInline": True}]

    assert problems(seed_message) == [("Attachments[0]", "null", "PropertyNullException")]


def test_content_ids_must_be_unique(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [
        {"Name": "a.png", "ContentBytes": "YQ==", "IsInline": True, "ContentId": "logo"},
        {"Name": "b.png", "ContentBytes": "YQ==", "IsInline": True, "ContentId": "LOGO"},
    ]

    assert problems(seed_message) == [("Attachments[1].ContentId", "duplicate", "ArgumentException")]


def test_an_html_body_showing_a_cid_nothing_provides_is_refused(seed_message: dict[str, Any]) -> None:
    seed_message.update(BodyFormat="Html", Body='<img src="cid:logo"><img src="cid:banner">')
    seed_message["Attachments"] = [{"Name": "a.png", "ContentBytes": "YQ==", "IsInline": True, "ContentId": "logo"}]

    with pytest.raises(RequestInvalid) as caught:
        parse_send_request(seed_message)

    [problem] = caught.value.problems
    assert (problem.field, problem.code) == ("Body", "missing_inline_attachment")
    assert "cid:banner" in problem.message


def test_an_html_body_showing_its_inline_images_is_accepted(seed_message: dict[str, Any]) -> None:
    seed_message.update(BodyFormat="Html", Body="<p><img src='cid:logo' alt=x></p>")
    seed_message["Attachments"] = [
        {"Blob": "attachments/logo.png", "IsInline": True, "ContentId": "logo"},
    ]

    [attachment] = parse_send_request(seed_message).message.attachments

    assert (attachment.is_inline, attachment.content_id) == (True, "logo")


def test_a_text_body_mentioning_cid_is_not_checked(seed_message: dict[str, Any]) -> None:
    seed_message["Body"] = "see cid:nothing"

    assert parse_send_request(seed_message).message.body == "see cid:nothing"


# --- limits ----------------------------------------------------------------------------------------


def test_more_than_250_attachments_are_refused(seed_message: dict[str, Any]) -> None:
    seed_message["Attachments"] = [{"Name": f"{n}.txt", "ContentBytes": "YQ=="} for n in range(MAX_ATTACHMENTS + 1)]

    assert problems(seed_message) == [("Attachments", "too_many", "ArgumentException")]


def test_decoded_size_counts_padding() -> None:
    for size in range(0, 10):
        assert decoded_size(base64.b64encode(bytes(size)).decode()) == size


# --- reading and chunking --------------------------------------------------------------------------


@pytest.mark.parametrize(("offset", "length"), [(0, 10), (1, 7), (2, 1), (5, 100), (99, 1), (98, 50), (0, 0)])
def test_inline_content_reads_any_range_without_decoding_the_rest(offset: int, length: int) -> None:
    data = os.urandom(100)
    content = InlineContent(base64.b64encode(data).decode())

    assert content.size == 100
    assert content.read(offset, length) == data[offset : offset + length]


def test_upload_chunks_are_320_kib_multiples_but_the_last() -> None:
    size = 7 * UPLOAD_CHUNK + 12_345

    ranges = list(chunk_ranges(size))

    assert UPLOAD_CHUNK % (320 * 1024) == 0
    assert UPLOAD_CHUNK <= 4 * 1024 * 1024
    assert all(length == UPLOAD_CHUNK for _, length in ranges[:-1])
    assert ranges[-1] == (7 * UPLOAD_CHUNK, 12_345)
    assert sum(length for _, length in ranges) == size


def test_upload_chunks_resume_from_any_offset() -> None:
    assert list(chunk_ranges(10, start=7, chunk=4)) == [(7, 3)]


# --- settings --------------------------------------------------------------------------------------


@pytest.fixture
def base_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in {
        "M365_TENANT_ID": "t",
        "M365_CLIENT_ID": "c",
        "KEY_VAULT_URL": "https://v.vault.azure.net",
        "M365_CLIENT_SECRET_NAME": "s",
        "M365_SENDER": "notifications@contoso.com",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("M365Storage", "M365Storage__blobServiceUri", "M365_ATTACHMENT_CONTAINERS"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_attachment_containers_may_name_own_containers_and_other_accounts(base_env: pytest.MonkeyPatch) -> None:
    base_env.setenv("M365Storage__blobServiceUri", "https://own.blob.core.windows.net/")
    base_env.setenv(
        "M365_ATTACHMENT_CONTAINERS", "attachments; https://reports.blob.core.windows.net/monthly, invoices"
    )

    settings = load_settings()

    assert settings.attachment_sources == {
        "attachments": None,
        "monthly": "https://reports.blob.core.windows.net",
        "invoices": None,
    }


def test_own_containers_need_the_hosts_blob_endpoint(base_env: pytest.MonkeyPatch) -> None:
    base_env.setenv("M365_ATTACHMENT_CONTAINERS", "attachments")

    with pytest.raises(ConfigurationInvalid, match="M365Storage__blobServiceUri"):
        load_settings()


@pytest.mark.parametrize(
    "value",
    ["Attachments", "http://reports.blob.core.windows.net/monthly", "a,https://x.blob.core.windows.net/a"],
)
def test_bad_attachment_containers_are_named(base_env: pytest.MonkeyPatch, value: str) -> None:
    base_env.setenv("M365Storage__blobServiceUri", "https://own.blob.core.windows.net/")
    base_env.setenv("M365_ATTACHMENT_CONTAINERS", value)

    with pytest.raises(ConfigurationInvalid) as caught:
        load_settings()

    assert caught.value.settings == ("M365_ATTACHMENT_CONTAINERS",)


def test_no_attachment_containers_means_blob_attachments_are_off(base_env: pytest.MonkeyPatch) -> None:
    assert load_settings().attachment_sources == {}
