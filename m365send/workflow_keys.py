"""Send-once for Power Automate and Logic Apps callers that set no ``Idempotency-Key``. Pure.

The workflow engine puts headers on every request its HTTP action makes (captured requests show
``x-ms-workflow-id``, ``x-ms-workflow-name``, ``x-ms-workflow-run-id``,
``x-ms-workflow-operation-name`` and more); its retry policy resends the same action's request,
with the same run and operation. A key derived from them and from the message is therefore the
same for every retry of one action in one run, and new for a resubmitted run (a new run id) or
another action. Headers of the ``x-ms-workflow-repeatitem-`` family (a loop's iteration, where the
engine sends them) are folded in too, so iterations are told apart; identical messages from one
action of one run without them are taken for retries of one send.

Public material does not establish that a custom connector's backend receives these headers (the
connector runtime sits between the flow and the API), so the connector asks for the key instead
(its Idempotency-Key field, e.g. ``guid()``, evaluated once per action and kept across retries).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

__all__ = ["WORKFLOW_PREFIX", "workflow_key"]

WORKFLOW_PREFIX = "x-ms-workflow-"
_REPEAT_PREFIX = "x-ms-workflow-repeatitem-"


def workflow_key(headers: Mapping[str, str], payload_hash: str) -> str | None:
    """The idempotency key of one workflow action's send, or None when the request is not a workflow's.

    ``headers``: the request's ``x-ms-workflow-*`` headers (any case); ``payload_hash``: the message's.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    run = lowered.get("x-ms-workflow-run-id")
    operation = lowered.get("x-ms-workflow-operation-name")
    if not run or not operation:
        return None
    workflow = lowered.get("x-ms-workflow-id") or lowered.get("x-ms-workflow-name") or ""
    repeat = sorted((name, value) for name, value in lowered.items() if name.startswith(_REPEAT_PREFIX))
    material = json.dumps([workflow, run, operation, repeat, payload_hash], separators=(",", ":"))
    return "workflow-" + hashlib.sha256(material.encode()).hexdigest()[:40]
