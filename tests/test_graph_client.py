"""``GraphMailClient`` against ``httpx.MockTransport``: retry rules, waits and error mapping."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import httpx
import pytest

from m365send.attachments import UPLOAD_CHUNK
from m365send.errors import (
    DependencyUnavailable,
    DraftsDenied,
    GraphRejected,
    MailboxNotFound,
    OutcomeUnknown,
    PayloadTooLarge,
    RecipientsRejected,
    SendAsDenied,
    UploadSessionLost,
)
from m365send.graph import GraphMailClient, parse_retry_after
from m365send.mailbox import UploadSession

Script = list[httpx.Response | Exception]


def client(
    script: Script, *, attempts: int = 4, max_wait: float = 30.0
) -> tuple[GraphMailClient, list[float], list[httpx.Request]]:
    sleeps: list[float] = []
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = script.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    graph = GraphMailClient(
        http=httpx.Client(transport=httpx.MockTransport(answer)),
        base_url="https://graph.example/v1.0",
        max_attempts=attempts,
        max_retry_wait=max_wait,
        sleep=sleeps.append,
    )
    return graph, sleeps, seen


def send(graph: GraphMailClient) -> object:
    return graph.send_mail(mailbox="a@contoso.com", body=b"{}", token="t", client_request_id="id-1")


def error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": f"{code} happened"}})


def test_accepted_send_returns_graphs_request_id() -> None:
    graph, sleeps, seen = client([httpx.Response(202, headers={"request-id": "g-1"})])

    receipt = graph.send_mail(mailbox="a@contoso.com", body=b"{}", token="tok", client_request_id="id-1")

    assert receipt.request_id == "g-1"
    assert receipt.attempts == 1
    assert sleeps == []
    assert str(seen[0].url) == "https://graph.example/v1.0/users/a@contoso.com/sendMail"
    assert seen[0].headers["Authorization"] == "Bearer tok"
    assert seen[0].headers["client-request-id"] == "id-1"


def test_retry_after_seconds_are_slept_exactly() -> None:
    graph, sleeps, _ = client([httpx.Response(429, headers={"Retry-After": "3"}), httpx.Response(202)])

    send(graph)

    assert sleeps == [3.0]


def test_without_retry_after_backoff_grows_within_the_cap() -> None:
    graph, sleeps, _ = client(
        [httpx.Response(429), httpx.Response(429), httpx.Response(429), httpx.Response(202)], max_wait=1.5
    )

    send(graph)

    assert len(sleeps) == 3
    assert all(0 < s <= 1.5 for s in sleeps)


@pytest.mark.parametrize(
    "response",
    [httpx.Response(504), httpx.Response(504, headers={"Retry-After": "1"}), httpx.Response(500), httpx.Response(503)],
)
def test_a_gateway_timeout_or_a_5xx_without_retry_after_on_a_send_is_an_unknown_outcome_never_retried(
    response: httpx.Response,
) -> None:
    graph, sleeps, seen = client([response, httpx.Response(202)])

    with pytest.raises(OutcomeUnknown, match="may or may not have been sent"):
        send(graph)

    assert len(seen) == 1
    assert sleeps == []


def test_a_503_with_retry_after_on_a_send_is_throttling_and_retried() -> None:
    graph, sleeps, seen = client([httpx.Response(503, headers={"Retry-After": "1"}), httpx.Response(202)])

    send(graph)

    assert len(seen) == 2
    assert sleeps == [1.0]


def test_a_draft_send_answered_504_is_an_unknown_outcome() -> None:
    graph, _, seen = client([httpx.Response(504), httpx.Response(202)])

    with pytest.raises(OutcomeUnknown):
        graph.send_draft(mailbox="a@contoso.com", message_id="d1", token="t", client_request_id="id-1")

    assert len(seen) == 1


def test_a_5xx_on_a_request_that_cannot_deliver_mail_is_retried() -> None:
    graph, sleeps, seen = client([httpx.Response(500), httpx.Response(201, json={"id": "draft-1"})])

    assert graph.create_draft(mailbox="a@contoso.com", body=b"{}", token="t", client_request_id="id-1").id == "draft-1"
    assert len(seen) == 2
    assert len(sleeps) == 1


def test_retries_stop_after_the_attempt_budget_with_the_last_retry_after() -> None:
    graph, sleeps, seen = client([httpx.Response(429, headers={"Retry-After": "2"})] * 3, attempts=3)

    with pytest.raises(DependencyUnavailable) as caught:
        send(graph)

    assert len(seen) == 3
    assert sleeps == [2.0, 2.0]
    assert caught.value.retry_after == 2.0


def test_retry_after_beyond_the_wait_limit_is_not_slept() -> None:
    graph, sleeps, seen = client([httpx.Response(429, headers={"Retry-After": "600"})], max_wait=30)

    with pytest.raises(DependencyUnavailable) as caught:
        send(graph)

    assert sleeps == []
    assert len(seen) == 1
    assert caught.value.retry_after == 600


def test_connection_refused_is_retried() -> None:
    graph, _, seen = client([httpx.ConnectError("refused"), httpx.Response(202)])

    send(graph)

    assert len(seen) == 2


@pytest.mark.parametrize(
    "failure", [httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("reset"), httpx.ReadError("reset")]
)
def test_a_timeout_or_reset_after_a_send_went_out_is_an_unknown_outcome_never_retried(failure: Exception) -> None:
    graph, _, seen = client([failure, httpx.Response(202)])

    with pytest.raises(OutcomeUnknown, match="may or may not have been sent"):
        send(graph)

    assert len(seen) == 1


@pytest.mark.parametrize(
    ("response", "kind", "code"),
    [
        (error(400, "ErrorInvalidRecipients"), RecipientsRejected, "ErrorInvalidRecipients"),
        (error(403, "ErrorSendAsDenied"), SendAsDenied, "ErrorSendAsDenied"),
        (error(403, "ErrorAccessDenied"), SendAsDenied, "ErrorAccessDenied"),
        (error(404, "ErrorInvalidUser"), MailboxNotFound, "ErrorInvalidUser"),
        (error(404, "MailboxNotEnabledForRESTAPI"), MailboxNotFound, "MailboxNotEnabledForRESTAPI"),
        (error(400, "RequestBodyRead"), GraphRejected, "RequestBodyRead"),
        (httpx.Response(400, text="<html>proxy</html>"), GraphRejected, "HTTP400"),
    ],
)
def test_graph_refusals_map_by_error_code(response: httpx.Response, kind: type[GraphRejected], code: str) -> None:
    graph, _, seen = client([response])

    with pytest.raises(kind) as caught:
        send(graph)

    assert type(caught.value) is kind
    assert caught.value.code == code
    assert len(seen) == 1


def test_request_too_large_is_payload_too_large() -> None:
    graph, _, _ = client([error(413, "RequestEntityTooLarge")])

    with pytest.raises(PayloadTooLarge):
        send(graph)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("5", 5.0), (None, None), ("soon", None), ("0", 0.0)],
)
def test_retry_after_header_forms(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected


def test_retry_after_http_date_is_seconds_from_now() -> None:
    now: Callable[[], float] = lambda: 1_000_000.0  # noqa: E731
    header = email.utils.formatdate(1_000_042.0, usegmt=True)

    assert parse_retry_after(header, now=now) == 42.0


# --- drafts and upload sessions -------------------------------------------------------------------


class FakeSession:
    """An upload URL that keeps the bytes it accepts; ``fail`` maps a PUT number to (status, keep bytes).

    Like Outlook's, it takes PUT and DELETE only, and is gone (404) once the file is complete.
    ``says_where``: a PUT that does not start where it stands is answered with its ``nextExpectedRanges``.
    """

    def __init__(self, size: int, fail: dict[int, tuple[int, bool]] | None = None, *, says_where: bool = True) -> None:
        self.size = size
        self.data = bytearray()
        self.fail = fail or {}
        self.says_where = says_where
        self.puts = 0
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        state = {"nextExpectedRanges": [f"{len(self.data)}-"]}
        if request.method != "PUT":
            return httpx.Response(405 if request.method != "DELETE" else 204)
        if len(self.data) == self.size:
            return httpx.Response(404)
        self.puts += 1
        start = int(request.headers["Content-Range"].split()[1].split("-")[0])
        if start != len(self.data):
            error = {"error": {"code": "InvalidRange", "message": "wrong start"}}
            return httpx.Response(416, json=error | state if self.says_where else error)
        status, keep = self.fail.get(self.puts, (0, True))
        if status and not keep:
            return httpx.Response(status)
        self.data += request.content
        if status:
            return httpx.Response(status)
        if len(self.data) == self.size:
            return httpx.Response(201, headers={"Location": "https://upload/attachments/1"})
        return httpx.Response(200, json={"nextExpectedRanges": [f"{len(self.data)}-"]})


class Bytes:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.reads: list[tuple[int, int]] = []

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        self.reads.append((offset, length))
        return self.data[offset : offset + length]


def uploader(session: FakeSession, *, attempts: int = 4) -> tuple[GraphMailClient, list[float]]:
    sleeps: list[float] = []
    graph = GraphMailClient(
        http=httpx.Client(transport=httpx.MockTransport(session)),
        base_url="https://graph.example/v1.0",
        max_attempts=attempts,
        sleep=sleeps.append,
    )
    return graph, sleeps


DATA = bytes(range(256)) * (UPLOAD_CHUNK * 3 // 256 + 7)  # three whole chunks and a bit


def test_upload_puts_320_kib_multiple_chunks_in_order_without_authorization() -> None:
    session = FakeSession(len(DATA))
    graph, _ = uploader(session)

    graph.upload(UploadSession("https://upload/s?authtoken=x", 0), Bytes(DATA))

    assert bytes(session.data) == DATA
    ranges = [r.headers["Content-Range"] for r in session.requests]
    assert ranges[0] == f"bytes 0-{UPLOAD_CHUNK - 1}/{len(DATA)}"
    assert ranges[-1] == f"bytes {3 * UPLOAD_CHUNK}-{len(DATA) - 1}/{len(DATA)}"
    assert all("authorization" not in r.headers for r in session.requests)
    assert all(r.headers["Content-Type"] == "application/octet-stream" for r in session.requests)


def test_a_chunk_that_fails_is_resumed_where_the_session_stands() -> None:
    session = FakeSession(len(DATA), fail={2: (503, False)})
    graph, sleeps = uploader(session)
    content = Bytes(DATA)

    graph.upload(UploadSession("https://upload/s", 0), content)

    assert bytes(session.data) == DATA
    assert [r.method for r in session.requests] == ["PUT"] * 5  # never a GET: Outlook documents none
    assert content.reads.count((UPLOAD_CHUNK, UPLOAD_CHUNK)) == 2  # the failed chunk, read again
    assert len(sleeps) == 1


def test_a_chunk_whose_answer_was_lost_is_not_stored_twice() -> None:
    session = FakeSession(len(DATA), fail={2: (503, True)})  # stored, but the answer says 503
    graph, _ = uploader(session)

    graph.upload(UploadSession("https://upload/s", 0), Bytes(DATA))

    assert bytes(session.data) == DATA  # the resend met a 416 naming where the session stands
    assert [r.method for r in session.requests] == ["PUT"] * 5


def test_a_session_that_does_not_say_where_it_stands_is_lost_not_guessed() -> None:
    session = FakeSession(len(DATA), fail={2: (503, True)}, says_where=False)
    graph, _ = uploader(session)

    with pytest.raises(UploadSessionLost):
        graph.upload(UploadSession("https://upload/s", 0), Bytes(DATA))


def test_a_final_chunk_whose_answer_was_lost_completes_the_upload() -> None:
    session = FakeSession(len(DATA), fail={4: (503, True)})
    graph, _ = uploader(session)

    graph.upload(UploadSession("https://upload/s", 0), Bytes(DATA))

    assert bytes(session.data) == DATA
    assert [r.method for r in session.requests] == ["PUT"] * 5  # the final chunk again: the session is gone


def test_an_upload_that_keeps_failing_gives_up_after_the_attempt_budget() -> None:
    session = FakeSession(len(DATA), fail=dict.fromkeys(range(2, 10), (503, False)))
    graph, sleeps = uploader(session, attempts=3)

    with pytest.raises(DependencyUnavailable, match="3 time"):
        graph.upload(UploadSession("https://upload/s", 0), Bytes(DATA))

    assert len(sleeps) == 2


def test_a_403_on_a_draft_says_mail_readwrite_is_needed() -> None:
    graph, _, _ = client([error(403, "ErrorAccessDenied")])

    with pytest.raises(DraftsDenied, match=r"Mail\.ReadWrite"):
        graph.create_draft(mailbox="a@contoso.com", body=b"{}", token="t", client_request_id="id-1")


def test_a_draft_already_gone_counts_as_deleted() -> None:
    graph, _, seen = client([error(404, "ErrorItemNotFound")])

    graph.delete_draft(mailbox="a@contoso.com", message_id="AAMk/x=", token="t", client_request_id="id-1")

    assert seen[0].method == "DELETE"
    assert seen[0].url.raw_path == b"/v1.0/users/a@contoso.com/messages/AAMk%2Fx%3D"


def test_a_timeout_creating_a_draft_is_not_an_unknown_send() -> None:
    graph, _, _ = client([httpx.ReadTimeout("slow")])

    with pytest.raises(DependencyUnavailable):
        graph.create_draft(mailbox="a@contoso.com", body=b"{}", token="t", client_request_id="id-1")


@pytest.mark.parametrize("body", ["[1, 2]", '"text"', '{"error": "a string"}', "null"])
def test_an_error_body_that_is_not_graphs_shape_is_still_a_graph_refusal(body: str) -> None:
    graph, _, _ = client([httpx.Response(400, text=body, headers={"Content-Type": "application/json"})])

    with pytest.raises(GraphRejected) as caught:
        send(graph)

    assert caught.value.code == "HTTP400"


def test_a_transport_failure_keeps_its_cause() -> None:
    graph, _, _ = client([httpx.ConnectError("refused")] * 4)

    with pytest.raises(DependencyUnavailable) as caught:
        send(graph)

    assert isinstance(caught.value.__cause__, httpx.ConnectError)
