"""The HTTP half of the Functions host, as a WSGI app: routes ``/api/<route>`` to the app's decorated functions.

It takes ``function_app``'s functions as the host indexes them (``app.get_functions()``, which may run
once per app, so the caller passes its result), checks the function
key on ``FUNCTION``-level routes (``?code=`` or the ``x-functions-key`` header, as the host does),
builds a real ``func.HttpRequest`` and answers with the function's ``func.HttpResponse``. The tests
use it for schemathesis; the functions themselves are the same objects the host would call.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

import azure.functions as func
from azure.functions.decorators.http import HttpTrigger

__all__ = ["FunctionsHttpHost"]

_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


class FunctionsHttpHost:
    """WSGI app over a function app's HTTP functions, with one function key."""

    def __init__(self, functions: Iterable[Any], *, key: str | None = None, prefix: str = "api") -> None:
        self.key = key or secrets.token_urlsafe(24)
        self._prefix = prefix.strip("/")
        self._routes: dict[tuple[str, str], tuple[Callable[[func.HttpRequest], func.HttpResponse], bool]] = {}
        # Templates such as messages/{key}: a {name} matches one path segment, as the host's routing does.
        self._templates: list[tuple[str, re.Pattern[str], str]] = []
        for function in functions:
            trigger = function.get_trigger()
            if not isinstance(trigger, HttpTrigger):
                continue
            anonymous = trigger.auth_level == func.AuthLevel.ANONYMOUS
            for method in trigger.methods or []:
                verb = getattr(method, "value", str(method))
                self._routes[(verb, str(trigger.route))] = (function.get_user_function(), anonymous)
                if "{" in str(trigger.route):
                    pattern = re.sub(r"\\\{(\w+)\\\}", r"(?P<\1>[^/]+)", re.escape(str(trigger.route)))
                    self._templates.append((verb, re.compile(f"^{pattern}$"), str(trigger.route)))

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", "")).lstrip("/")
        method = str(environ.get("REQUEST_METHOD", "GET"))
        route = path.removeprefix(self._prefix + "/")
        params = dict(parse_qsl(str(environ.get("QUERY_STRING", "")), keep_blank_values=True))
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        if environ.get("CONTENT_TYPE"):
            headers["content-type"] = str(environ["CONTENT_TYPE"])
        route_params: dict[str, str] = {}
        for verb, pattern, template in self._templates:
            match = pattern.match(route)
            if verb == method and match:
                route, route_params = template, match.groupdict()
                break
        target = self._routes.get((method, route))
        if target is None or not path.startswith(self._prefix + "/"):
            return self._answer(start_response, 404, b"", {})
        function, anonymous = target
        if not anonymous and self.key not in (params.get("code"), headers.get("x-functions-key")):
            return self._answer(start_response, 401, b"", {})
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        host = headers.get("host", "localhost")
        request = func.HttpRequest(
            method, f"http://{host}/{path}", headers=headers, params=params, route_params=route_params, body=body
        )
        response = function(request)
        return self._answer(start_response, response.status_code, response.get_body(), dict(response.headers))

    @staticmethod
    def _answer(start: Callable[..., Any], status: int, body: bytes, headers: dict[str, str]) -> list[bytes]:
        start(f"{status} {_REASONS.get(status, 'Status')}", [*headers.items(), ("Content-Length", str(len(body)))])
        return [body]
