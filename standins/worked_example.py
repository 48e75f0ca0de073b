"""The worked example of docs/callers.md: two flows, one service and three senders, each with its own rights.

Starts the stand-ins and Azurite, deploys one sender policy, and runs every call through the real
decorated functions: the invoices flow with a named function key, the HR flow as its maker's Entra ID
connection (a user token with an app role), and the billing service through its own outbox queue.
Prints what each was answered; exit status 0 when every answer is the one the policy promises.

    python -m standins.worked_example
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
import uuid
from dataclasses import dataclass
from typing import Any

import azure.functions as func

from standins.azurite import Azurite
from standins.cloud import TENANT_ID, LocalCloud

API = "api://m365send-example"
INVOICES, PAYROLL, BILLING = "invoices@contoso.com", "payroll@contoso.com", "billing@contoso.com"
HR_DIRECTOR = "hr-director@contoso.com"
BILLING_QUEUE = "billing-outbox"
MAKER = "3f1c2b4a-5d6e-4f70-8a9b-0c1d2e3f4a5b"  # the HR flow's maker (a user of the tenant)


@dataclass(frozen=True)
class Step:
    who: str
    what: str
    expected: int
    got: int
    detail: str

    @property
    def as_promised(self) -> bool:
        return self.expected == self.got


def policy(invoices_key: str) -> dict[str, Any]:
    """The sender policy of the example (M365_SENDER_POLICY); the key appears only as its SHA-256."""
    from m365send.callers import key_digest

    return {
        "functionKeys": {"invoices-flow": key_digest(invoices_key)},
        "callers": [
            {"name": "Invoices flow", "key": "invoices-flow", "senders": [INVOICES]},
            {
                "name": "HR approvals",
                "role": "Mail.Send.HR",
                "senders": [PAYROLL],
                "onBehalfOf": [f"{PAYROLL}>{HR_DIRECTOR}"],
            },
            {"name": "Billing service", "queue": BILLING_QUEUE, "senders": [BILLING]},
        ],
        "default": {"senders": []},
    }


def _message(sender: str, **extra: Any) -> bytes:
    body = {"To": [{"Address": "customer@example.org"}], "From": {"Address": sender}, "Subject": "Hello", **extra}
    return json.dumps({**body, "Body": "example"}).encode()


def _call(function: str, *, body: bytes = b"", key: str = "", headers: dict[str, str], **params: str) -> Any:
    import function_app

    route = {"key": key} if key else {}
    request = func.HttpRequest(
        "GET" if function == "status" else "POST",
        f"https://func-m365send.azurewebsites.net/api/{function}",
        body=body,
        params=params,
        route_params=route,
        headers=headers,
    )
    response = function_app.__dict__[function](request)
    return response.status_code, json.loads(response.get_body() or b"{}")


def run(cloud: LocalCloud, azurite: Azurite) -> list[Step]:
    """Deploy the example's settings into this process and make every call; what each was answered."""
    invoices_key = secrets.token_urlsafe(32)
    for address in (INVOICES, BILLING):
        cloud.graph.add_mailbox(address)
    cloud.graph.add_mailbox(PAYROLL).send_on_behalf.add(HR_DIRECTOR)
    suffix = uuid.uuid4().hex[:8]
    os.environ.update(
        {
            **cloud.env(),
            "M365Storage": azurite.connection_string,
            "M365_QUEUE_NAME": f"email-outbox-{suffix}",
            "M365_SEND_TABLE": f"sends{suffix}",
            "M365_API_AUDIENCE": API,
            "M365_OUTBOX_QUEUES": BILLING_QUEUE,
            "M365_SENDER_POLICY": json.dumps(policy(invoices_key)),
        }
    )
    import function_app
    from m365send.wiring import Worker
    from standins.queue_host import QueueHost

    function_app.worker = Worker()
    key = {"x-functions-key": invoices_key}
    maker = cloud.entra.api_token(
        tenant_id=TENANT_ID,
        audience=API,
        object_id=MAKER,
        client_id=str(uuid.uuid4()),
        roles=("Mail.Send.HR",),
        user=True,
    )
    hr = {"Authorization": f"Bearer {maker}"}
    steps: list[Step] = []

    def http(who: str, what: str, expected: int, answer: tuple[int, dict[str, Any]]) -> None:
        status, body = answer
        steps.append(Step(who, what, expected, status, body.get("detail") or body.get("status", "")))

    invoices = "Invoices flow (named function key)"
    keyed = {**key, "Idempotency-Key": "inv-1001"}
    http(invoices, f"send as {INVOICES}", 202, _call("send", body=_message(INVOICES), headers=keyed, sender=INVOICES))
    http(invoices, f"send as {PAYROLL}", 403, _call("send", body=_message(PAYROLL), headers=key, sender=PAYROLL))
    hr_flow = "HR approvals (maker's Entra ID connection)"
    on_behalf = _message(PAYROLL, OnBehalfOf={"Address": HR_DIRECTOR})
    answer = _call("send", body=on_behalf, headers=hr, sender=PAYROLL)
    http(hr_flow, f"send as {PAYROLL} on behalf of {HR_DIRECTOR}", 202, answer)
    http(hr_flow, f"send as {BILLING}", 403, _call("send", body=_message(BILLING), headers=hr, sender=BILLING))
    http(hr_flow, "status of the invoices flow's key inv-1001", 404, _call("status", key="inv-1001", headers=hr))
    http(invoices, "status of its key inv-1001", 200, _call("status", key="inv-1001", headers=key))
    unnamed = {"x-functions-key": "a-host-function-key"}
    answer = _call("send", body=_message(INVOICES), headers=unnamed, sender=INVOICES)
    http("A function key the policy does not name", f"send as {INVOICES}", 401, answer)

    queue = QueueHost(
        azurite.connection_string, BILLING_QUEUE, function=lambda m: function_app._process(m, BILLING_QUEUE)
    )
    sent_before = len(cloud.graph.sent)
    queue.producer.enqueue(json.loads(_message(BILLING)), key="bill-1", sender=BILLING)
    queue.producer.enqueue(json.loads(_message(INVOICES)), key="bill-2", sender=INVOICES)
    queue.drain()
    letters = function_app.current_worker().storage().dead_letters.list(limit=10)
    sent = [m.mailbox for m in cloud.graph.sent[sent_before:]]
    service = f"Billing service (its own queue {BILLING_QUEUE})"
    steps.append(Step(service, f"send as {BILLING}", 202, 202 if BILLING in sent else 0, "sent"))
    refused = next((x for x in letters if x.key.endswith("bill-2")), None)
    why = refused.problem["detail"] if refused else "not refused"
    steps.append(Step(service, f"send as {INVOICES}", 403, 403 if refused and INVOICES not in sent else 0, why))
    return steps


def main(argv: list[str] | None = None) -> int:
    """Run the example and print one line per call."""
    logging.basicConfig(level=logging.ERROR)
    del argv
    try:
        azurite = Azurite()
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        with LocalCloud() as cloud:
            steps = run(cloud, azurite)
    finally:
        azurite.close()
    for step in steps:
        mark = "✓" if step.as_promised else "✗"
        print(f"{mark} {step.who}: {step.what} → {step.got}")
        if step.got >= 400:
            print(f"    {step.detail}")
    promised = all(step.as_promised for step in steps)
    print("every answer is the one the policy promises" if promised else "some answers differ from the policy")
    return 0 if promised else 1


if __name__ == "__main__":
    raise SystemExit(main())
