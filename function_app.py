"""Azure Functions triggers (v2 programming model). Thin: adapt types, call the core, adapt back."""

from __future__ import annotations

import logging
import os

import azure.functions as func

from m365send.http_api import handle_send
from m365send.wiring import Worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
worker = Worker()
log = logging.getLogger("m365send.function_app")

# Read at indexing time (bindings are static); a %setting% expression would have no default.
QUEUE_NAME = os.environ.get("M365_QUEUE_NAME") or "email-outbox"


@app.function_name("send")
@app.route(route="send", methods=["POST"])
def send(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/send: an email message as JSON → 202, or an RFC 9457 problem."""
    result = handle_send(
        req.get_body(),
        sender=req.params.get("sender"),
        service=worker.service,
        request_id=req.headers.get("client-request-id"),
        idempotency_key=req.headers.get("Idempotency-Key"),
        sends=worker.sends,
    )
    return func.HttpResponse(result.content, status_code=result.status, headers=result.headers)


@app.function_name("outbox")
@app.queue_trigger(arg_name="msg", queue_name=QUEUE_NAME, connection="AzureWebJobsStorage")
def outbox(msg: func.QueueMessage) -> None:
    """One outbox message: sent once, dead-lettered with a reason, or handed back with a delay.

    Raising (only for the unexpected, such as storage being down) lets the host retry the message
    and move it to ``<queue>-poison`` after ``maxDequeueCount`` tries.
    """
    result = worker.outbox().process(msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 0)
    log.info("outbox message %s", result.outcome, extra={"idempotency_key": result.key, "outcome": result.outcome})
