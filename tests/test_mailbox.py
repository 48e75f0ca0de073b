"""The local mailbox page's API: what the Graph stand-in received, as a recipient sees it, over WSGI.

The browser drives the same page in ``tests/test_mailbox_browser.py``; here each behaviour is one call.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote
from wsgiref.util import setup_testing_defaults

import pytest

import function_app
from m365send.errors import DependencyUnavailable
from standins.cloud import LocalCloud
from standins.local_run import _storage_view
from standins.mailbox import MailboxPage, StorageView
from standins.queue_host import QueueHost
from tests.conftest import Configure

Answer = tuple[int, dict[str, str], bytes]


def png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (15, 108, 189)) -> bytes:
    """A real PNG image of one colour."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def get(app: MailboxPage, path: str) -> Answer:
    environ: dict[str, Any] = {}
    setup_testing_defaults(environ)
    environ.update(PATH_INFO=unquote(path), REQUEST_METHOD="GET")  # as a WSGI server hands it over
    answered: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answered.update(status=int(status[:3]), headers=dict(headers))

    body = b"".join(app(environ, start_response))
    return answered["status"], answered["headers"], body


def get_json(app: MailboxPage, path: str) -> Any:
    status, _, body = get(app, path)
    assert status == 200, body
    return json.loads(body)


@pytest.fixture
def mailbox(cloud: LocalCloud) -> MailboxPage:
    return MailboxPage(cloud.graph, lambda: _storage_view(function_app.current_worker()))


RICH = {
    "To": [{"Address": "ann@fabrikam.com"}, {"Address": "bob@fabrikam.com", "Name": "Bob"}],
    "Cc": "carol@fabrikam.com",
    "Bcc": "audit@contoso.com",
    "ReplyTo": "help@contoso.com",
    "From": {"Address": "notifications@contoso.com"},
    "Subject": "Quarterly report",
    "BodyFormat": "Html",
    "Body": '<p id="victim">original</p><img src="cid:logo"><script>document.title="ran"</script>',
    "Priority": "High",
    "Categories": ["Billing"],
    "Headers": {"X-Ticket": "INC-42"},
    "RequestReadReceipt": True,
    "Attachments": [
        {"Name": "logo.png", "ContentBytes": base64.b64encode(png()).decode(), "IsInline": True, "ContentId": "logo"},
        {"Name": "report.pdf", "ContentBytes": base64.b64encode(b"%PDF-1.7 q3 numbers").decode()},
    ],
}


def test_messages_are_listed_newest_first(configure: Configure, mailbox: MailboxPage) -> None:
    api = configure()
    assert api.post({**RICH, "Subject": "first"}).status == 202
    assert api.post({**RICH, "Subject": "second"}).status == 202

    listed = get_json(mailbox, "/_mailbox/api/messages")["messages"]

    assert [m["subject"] for m in listed] == ["second", "first"]


def test_a_message_shows_every_header_a_recipient_or_sender_cares_about(
    configure: Configure, mailbox: MailboxPage
) -> None:
    assert configure().post(RICH).status == 202

    [message] = get_json(mailbox, "/_mailbox/api/messages")["messages"]

    assert message["from"] == "notifications@contoso.com"
    assert message["to"] == ["ann@fabrikam.com", "Bob <bob@fabrikam.com>"]
    assert message["cc"] == ["carol@fabrikam.com"]
    assert message["bcc"] == ["audit@contoso.com"]
    assert message["replyTo"] == ["help@contoso.com"]
    assert message["importance"] == "high"
    assert message["categories"] == ["Billing"]
    assert message["readReceipt"] is True
    assert message["headers"] == [{"name": "X-Ticket", "value": "INC-42"}]
    assert message["way"] == "sendMail"


def test_the_html_body_has_its_cid_images_inline_and_a_policy_that_runs_no_script(
    configure: Configure, mailbox: MailboxPage
) -> None:
    assert configure().post(RICH).status == 202
    [message] = get_json(mailbox, "/_mailbox/api/messages")["messages"]

    status, headers, body = get(mailbox, f"/_mailbox/messages/{message['id']}/body")

    assert status == 200
    assert f'src="data:image/png;base64,{base64.b64encode(png()).decode()}"' in body.decode()
    policy = headers["Content-Security-Policy"]
    assert policy.startswith("sandbox;")
    assert "default-src 'none'" in policy
    assert "script-src" not in policy


def test_a_text_body_is_served_as_text(configure: Configure, mailbox: MailboxPage) -> None:
    assert configure().post({**RICH, "BodyFormat": "Text", "Body": "<b>not markup</b>"}).status == 202
    [message] = get_json(mailbox, "/_mailbox/api/messages")["messages"]

    detail = get_json(mailbox, f"/_mailbox/api/messages/{message['id']}")
    _, _, body = get(mailbox, f"/_mailbox/messages/{message['id']}/body")

    assert detail["body"] == {"contentType": "text", "content": "<b>not markup</b>"}
    assert body == b"<pre>&lt;b&gt;not markup&lt;/b&gt;</pre>"


def test_each_attachment_downloads_byte_for_byte(configure: Configure, mailbox: MailboxPage) -> None:
    assert configure().post(RICH).status == 202
    [message] = get_json(mailbox, "/_mailbox/api/messages")["messages"]
    [logo, report] = message["attachments"]

    _, logo_headers, logo_bytes = get(mailbox, logo["url"])
    _, report_headers, report_bytes = get(mailbox, report["url"])

    assert (logo_bytes, report_bytes) == (png(), b"%PDF-1.7 q3 numbers")
    assert report_headers["Content-Disposition"] == "attachment; filename*=UTF-8''report.pdf"
    assert logo_headers["Content-Type"] == "image/png"


def test_a_large_message_shows_its_draft_and_upload_session(configure: Configure, mailbox: MailboxPage) -> None:
    large = os.urandom(5 * 1024 * 1024)
    scan = {"Name": "scan.bin", "ContentBytes": base64.b64encode(large).decode()}
    logo: dict[str, Any] = RICH["Attachments"][0]  # type: ignore[index]
    assert configure().post({**RICH, "Attachments": [logo, scan]}).status == 202

    [message] = get_json(mailbox, "/_mailbox/api/messages")["messages"]
    uploaded = next(a for a in message["attachments"] if a["name"] == "scan.bin")
    _, _, downloaded = get(mailbox, uploaded["url"])

    assert message["way"] == "draft, upload session"
    assert uploaded["uploaded"] is True
    assert downloaded == large


def test_a_keyed_send_shows_its_send_record(
    configure: Configure, mailbox: MailboxPage, storage_settings: dict[str, str]
) -> None:
    api = configure(**storage_settings)

    assert api.post(RICH, headers={"Idempotency-Key": "invoice-7"}).status == 202

    [message] = get_json(mailbox, "/_mailbox/api/messages")["messages"]
    records = get_json(mailbox, "/_mailbox/api/records")
    assert message["record"]["key"] == "http:invoice-7"
    assert message["record"]["status"] == "sent"
    assert [r["key"] for r in records["records"]] == ["http:invoice-7"]


def test_dead_letters_and_poison_messages_are_listed_with_their_problems(
    queue_host: Callable[..., QueueHost], mailbox: MailboxPage
) -> None:
    host = queue_host()
    host.put_text(json.dumps({"id": "order-9", "message": {**RICH, "To": []}}))
    host.drain()
    host.poison.create_queue()
    host.poison.send_message(json.dumps({"id": "order-10", "message": RICH}))

    records = get_json(mailbox, "/_mailbox/api/records")

    [letter] = records["deadLetters"]
    assert letter["key"] == "order-9"
    assert any(error["field"].startswith("To") for error in letter["errors"])
    assert [p["key"] for p in records["poison"]] == ["order-10"]


def test_storage_that_is_down_is_said_on_the_page_not_raised(cloud: LocalCloud) -> None:
    def down() -> list[Any]:
        raise DependencyUnavailable("Table storage at http://127.0.0.1:9 is unreachable")

    page = MailboxPage(cloud.graph, lambda: StorageView(records=down, dead_letters=down, poison=down))

    records = get_json(page, "/_mailbox/api/records")

    assert records["available"] is False
    assert "unreachable" in records["detail"]


def test_an_unknown_message_is_404(mailbox: MailboxPage) -> None:
    assert get(mailbox, "/_mailbox/api/messages/AAMkADnothing")[0] == 404
    assert get(mailbox, "/_mailbox/messages/AAMkADnothing/body")[0] == 404


def test_the_page_itself_is_served(mailbox: MailboxPage) -> None:
    status, headers, body = get(mailbox, "/_mailbox")

    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b"m365send local mailbox" in body
