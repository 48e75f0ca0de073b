"""Azure Functions triggers (v2 programming model). Thin: adapt types, call the core, adapt back."""

from __future__ import annotations

import json
import logging
import os
from urllib.parse import urlsplit

import azure.functions as func

from m365send.http_api import HttpResult, handle_send, health
from m365send.openapi import swagger
from m365send.telemetry import configure_from_environment
from m365send.wiring import Worker

configure_from_environment()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
worker = Worker()
log = logging.getLogger("m365send.function_app")

# Read at indexing time (bindings are static); a %setting% expression would have no default.
QUEUE_NAME = os.environ.get("M365_QUEUE_NAME") or "email-outbox"


def _response(result: HttpResult) -> func.HttpResponse:
    return func.HttpResponse(result.content, status_code=result.status, headers=result.headers)


def _send(req: func.HttpRequest, *, validate_only: bool) -> func.HttpResponse:
    return _response(
        handle_send(
            req.get_body(),
            sender=req.params.get("sender"),
            service=worker.service,
            request_id=req.headers.get("client-request-id"),
            idempotency_key=req.headers.get("Idempotency-Key"),
            sends=worker.sends,
            validate_only=validate_only,
        )
    )


@app.function_name("send")
@app.route(route="send", methods=["POST"])
def send(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/send: an email message as JSON → 202, or an RFC 9457 problem. ?validate=true sends nothing."""
    return _send(req, validate_only=req.params.get("validate", "").lower() == "true")


@app.function_name("validate")
@app.route(route="validate", methods=["POST"])
def validate(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/validate: check a message and the sender permission without sending."""
    return _send(req, validate_only=True)


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the Swagger 2.0 document for a Power Automate custom connector."""
    host = urlsplit(req.url).netloc or None
    document = swagger(host=host) if host else swagger()
    return func.HttpResponse(json.dumps(document), status_code=200, mimetype="application/json")


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health: configuration problems by setting name, never their values."""
    return _response(health(worker.settings))


@app.function_name("outbox")
@app.queue_trigger(arg_name="msg", queue_name=QUEUE_NAME, connection="AzureWebJobsStorage")
def outbox(msg: func.QueueMessage) -> None:
    """One outbox message: sent once, dead-lettered with a reason, or handed back with a delay.

    Raising (only for the unexpected, such as storage being down) lets the host retry the message
    and move it to ``<queue>-poison`` after ``maxDequeueCount`` tries.
    """
    result = worker.outbox().process(msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 0)
    log.info("outbox message %s", result.outcome, extra={"idempotency_key": result.key, "outcome": result.outcome})
