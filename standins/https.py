"""A small threaded HTTPS server that hands each request to a stand-in's ``handle``."""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

__all__ = ["DROP", "HttpsServer", "Reply", "Request", "graph_error", "json_reply"]

# A ``Reply`` status that closes the connection without answering.
DROP = -1


@dataclass(frozen=True)
class Request:
    """One request as a stand-in sees it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def header(self, name: str) -> str | None:
        """A header value, case-insensitively."""
        return self.headers.get(name.lower())

    def json(self) -> Any:
        """The body decoded as JSON (raises ``ValueError`` when it is not)."""
        return json.loads(self.body)


@dataclass
class Reply:
    """One answer: status, body bytes and headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_reply(status: int, body: Any, headers: dict[str, str] | None = None) -> Reply:
    """A JSON answer."""
    return Reply(
        status, json.dumps(body).encode(), {"Content-Type": "application/json; charset=utf-8", **(headers or {})}
    )


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Reply:
    """Microsoft Graph's error body (Outlook's upload URL answers the same way)."""
    return json_reply(
        status,
        {
            "error": {
                "code": code,
                "message": message,
                "innerError": {"date": time.strftime("%Y-%m-%dT%H:%M:%S"), "request-id": str(uuid.uuid4())},
            }
        },
        headers,
    )


class Handler(Protocol):
    def handle(self, request: Request) -> Reply: ...


class HttpsServer:
    """Serves one stand-in on ``https://127.0.0.1:<free port>`` until ``close``."""

    def __init__(self, app: Handler, context: ssl.SSLContext) -> None:
        class _RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the real services do
            # Headers and body go out in two writes: without this, Nagle's algorithm and the client's
            # delayed ACK hold every answer that has a body for 40 ms, which the real services do not.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length) if length else b"",
                )
                reply = app.handle(request)
                if reply.status == DROP:
                    # The connection dies after the request was read: the caller never learns the outcome.
                    self.close_connection = True
                    self.connection.close()
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.body and self.command != "HEAD":
                    self.wfile.write(reply.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _RequestHandler)
        self._server.daemon_threads = True
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"standin {self.url}", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving and free the port (again is harmless)."""
        if not self._thread.is_alive():
            return
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
