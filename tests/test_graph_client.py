"""``GraphMailClient`` against ``httpx.MockTransport``: retry rules, waits and error mapping."""

from __future__ import annotations

import email.utils
from collections.abc import Callable

import httpx
import pytest

from m365send.errors import (
    DependencyUnavailable,
    GraphRejected,
    MailboxNotFound,
    PayloadTooLarge,
    RecipientsRejected,
    SendAsDenied,
)
from m365send.graph import GraphMailClient, parse_retry_after

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
        [httpx.Response(503), httpx.Response(504), httpx.Response(503), httpx.Response(202)], max_wait=1.5
    )

    send(graph)

    assert len(sleeps) == 3
    assert all(0 < s <= 1.5 for s in sleeps)


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


def test_read_timeout_is_not_retried_because_the_mail_may_have_been_sent() -> None:
    graph, _, seen = client([httpx.ReadTimeout("slow"), httpx.Response(202)])

    with pytest.raises(DependencyUnavailable, match="may or may not have been sent"):
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
