"""Azure Functions triggers (v2 programming model). Thin: adapt types, call the core, adapt back.

Indexing the functions imports nothing but ``azure.functions``: the core (pydantic, msal, the Azure
SDKs) is imported on the first invocation, so a cold instance indexes fast and each function pays
only for what it uses.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import azure.functions as func
from azure.functions.warmup import WarmUpContext  # not re-exported by azure-functions 1.26

if TYPE_CHECKING:
    from collections.abc import Callable

    from m365send.answers import HttpResult
    from m365send.callers import Caller
    from m365send.wiring import Worker

log = logging.getLogger("m365send.function_app")
# Read at indexing time (bindings are static); a %setting% expression would have no default.
QUEUE_NAME = os.environ.get("M365_QUEUE_NAME") or "email-outbox"
# More outbox queues, one per producing service (each its own caller in the sender policy).
OUTBOX_QUEUES = sorted(
    {q.strip() for q in os.environ.get("M365_OUTBOX_QUEUES", "").replace(";", ",").split(",")} - {""}
)
# With Entra ID tokens accepted, a caller with a token has no function key: the host lets every
# request through and m365send authenticates each one (tokens, and the keys its policy names).
API_AUTH = func.AuthLevel.ANONYMOUS if os.environ.get("M365_API_AUDIENCE", "").strip() else func.AuthLevel.FUNCTION
app = func.FunctionApp(http_auth_level=API_AUTH)

worker: Worker | None = None
_worker_lock = threading.Lock()


def current_worker() -> Worker:
    """The worker's clients and caches, created on first use."""
    global worker
    with _worker_lock:
        if worker is None:
            from m365send.telemetry import configure_from_environment
            from m365send.wiring import Worker

            configure_from_environment()
            worker = Worker()
        return worker


def _response(result: HttpResult) -> func.HttpResponse:
    return func.HttpResponse(result.content, status_code=result.status, headers=result.headers)


def _authenticated(req: func.HttpRequest, answer: Callable[[Caller], HttpResult]) -> func.HttpResponse:
    """``answer`` for the request's caller (a bearer token's, a named key's or the default), or a 401."""
    from m365send.http_api import as_caller

    current = current_worker()
    key = req.headers.get("x-functions-key") or req.params.get("code")
    return _response(as_caller(lambda: current.authenticate(req.headers.get("Authorization"), key), answer))


def _send(req: func.HttpRequest, *, validate_only: bool) -> func.HttpResponse:
    from m365send.http_api import handle_send

    current = current_worker()
    return _authenticated(
        req,
        lambda caller: handle_send(
            req.get_body(),
            sender=req.params.get("sender"),
            service=current.service,
            engine=current.engine,
            request_id=req.headers.get("client-request-id"),
            idempotency_key=req.headers.get("Idempotency-Key"),
            validate_only=validate_only,
            outbox=lambda: current.storage().outbox,
            workflow={name: value for name, value in req.headers.items() if name.lower().startswith("x-ms-workflow-")},
            keys_stored=lambda: current.settings().storage_configured,
            caller=caller,
            policy=current.policy,
        ),
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


@app.function_name("status")
@app.route(route="messages/{key}", methods=["GET"])
def status(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/messages/{key}: pending, scheduled, sent, failed or dead-lettered, with times and Graph's ids."""
    from m365send.http_api import handle_status

    book = current_worker().status
    return _authenticated(
        req,
        lambda caller: handle_status(
            req.route_params.get("key", ""), via=req.params.get("via"), book=book, caller=caller
        ),
    )


@app.function_name("openapi")
@app.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/openapi.json: the Swagger 2.0 document for a Power Automate custom connector."""
    from connector_openapi import swagger

    host = urlsplit(req.url).netloc or None
    document = swagger(host=host) if host else swagger()
    return func.HttpResponse(json.dumps(document), status_code=200, mimetype="application/json")


@app.function_name("health")
@app.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_check(req: func.HttpRequest) -> func.HttpResponse:
    """GET /api/health: configuration problems by setting name, never their values."""
    from m365send.http_api import health

    return _response(health(current_worker().settings))


@app.function_name("purge")
@app.timer_trigger(arg_name="timer", schedule="0 30 3 * * *", run_on_startup=False)
def purge(timer: func.TimerRequest) -> None:
    """Daily at 03:30 UTC: delete send records and dead letters older than the idempotency window
    (M365_IDEMPOTENCY_HOURS)."""
    records, letters = current_worker().purge()
    log.info("purged %d expired send records and %d dead letters", records, letters)


@app.function_name("warmup")
@app.warm_up_trigger(arg_name="warmup")
def warmup(warmup: WarmUpContext) -> None:
    """When the host adds an instance (Flex Consumption, Premium): load the core, read the credential,
    get a token and open Graph's connection, so that the instance's first email costs a warm send.

    Never fails the instance: an error is logged and the first send then does the rest lazily.
    """
    try:
        timings = current_worker().warm_up()
    except Exception as error:  # a warm-up that fails must not keep the instance from serving
        log.warning("warm-up incomplete, the first send will finish it: %s", getattr(error, "detail", error))
        return
    log.info("warm-up done", extra={"warmup_ms": timings})


@app.function_name("outbox")
@app.queue_trigger(arg_name="msg", queue_name=QUEUE_NAME, connection="M365Storage")
def outbox(msg: func.QueueMessage) -> None:
    """One outbox message: sent once, dead-lettered with a reason, or handed back with a delay.

    Raising (only for the unexpected, such as storage being down) lets the host retry the message
    and move it to ``<queue>-poison`` after ``maxDequeueCount`` tries.
    """
    _process(msg, None)


def _queue_function(queue: str) -> None:
    """Register the trigger of one more outbox queue (``M365_OUTBOX_QUEUES``)."""

    def process(msg: func.QueueMessage) -> None:
        _process(msg, queue)

    process.__doc__ = f"One message of the outbox queue {queue}, whose producers are its caller in the sender policy."
    name = "outbox_" + queue.replace("-", "_")
    app.function_name(name)(app.queue_trigger(arg_name="msg", queue_name=queue, connection="M365Storage")(process))


for _queue in OUTBOX_QUEUES:
    _queue_function(_queue)


def _process(msg: func.QueueMessage, queue: str | None) -> None:
    try:
        result = (
            current_worker()
            .outbox(queue)
            .process(msg.get_body(), message_id=msg.id or "", dequeue_count=msg.dequeue_count or 0)
        )
    except Exception:
        if (msg.dequeue_count or 0) >= _max_dequeue_count():
            # The host moves it to <queue>-poison now; the dashboard's poison alert counts this line.
            log.error(
                "queue message moved to the poison queue",
                extra={"queue_message_id": msg.id, "dequeue_count": msg.dequeue_count},
            )
        raise
    log.info("outbox message %s", result.outcome, extra={"idempotency_key": result.key, "outcome": result.outcome})


@functools.cache
def _max_dequeue_count() -> int:
    """The host's maxDequeueCount: an app setting's override, else host.json's (read once per worker)."""
    override = os.environ.get("AzureFunctionsJobHost__extensions__queues__maxDequeueCount")  # noqa: SIM112 (the host's name)
    if override and override.isdigit():
        return int(override)
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "host.json"), encoding="utf-8") as handle:
        return int(json.load(handle)["extensions"]["queues"]["maxDequeueCount"])
