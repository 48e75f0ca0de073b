"""Dependencies point inward: the core's use cases and value types import no HTTP client, msal or Azure SDK.

Only the adapters (``graph``, ``keyvault``, ``tokens``, ``tables``, ``blobs``, ``client``), the
composition root (``wiring``) and the CLI may; ``function_app.py`` alone imports ``azure.functions``.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CORE = [
    "m365send.answers",
    "m365send.attachments",
    "m365send.certificates",
    "m365send.credentials",
    "m365send.drafts",
    "m365send.envelope",
    "m365send.errors",
    "m365send.graph_message",
    "m365send.http_api",
    "m365send.leases",
    "m365send.logcontext",
    "m365send.mailbox",
    "m365send.models",
    "m365send.outbox",
    "m365send.pacing",
    "m365send.sendlog",
    "m365send.sendonce",
    "m365send.service",
    "m365send.settings",
]
SDKS = ("httpx", "httpcore", "msal", "requests", "azure", "urllib3")


@pytest.mark.parametrize("module", CORE)
def test_a_core_module_imports_no_sdk(module: str) -> None:
    # A fresh interpreter: what this test process has imported already must not hide an import.
    probe = f"import sys, json; import {module}; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True).stdout)

    offending = [name for name in loaded if name.split(".")[0] in SDKS]

    assert offending == [], f"{module} pulls in {offending[:5]}"
