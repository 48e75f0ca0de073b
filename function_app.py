"""Azure Functions triggers (v2 programming model). Thin: adapt types, call the core, adapt back."""

from __future__ import annotations

import azure.functions as func

from m365send.http_api import handle_send
from m365send.wiring import Worker

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
worker = Worker()


@app.function_name("send")
@app.route(route="send", methods=["POST"])
def send(req: func.HttpRequest) -> func.HttpResponse:
    """POST /api/send: an email message as JSON → 202, or an RFC 9457 problem."""
    result = handle_send(
        req.get_body(),
        sender=req.params.get("sender"),
        service=worker.service,
        request_id=req.headers.get("client-request-id"),
    )
    return func.HttpResponse(result.content, status_code=result.status, headers=result.headers)
