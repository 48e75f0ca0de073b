"""Dependencies point inward: the core's use cases and value types import no HTTP client, msal or Azure SDK.

Only the adapters (``graph``, ``keyvault``, ``tokens``, ``federated``, ``tables``, ``blobs``,
``client``), the composition root (``wiring``) and the edges may; ``function_app.py`` alone imports
``azure.functions``. Every import goes down the layers below, and no module imports itself back
through others (no import circle, in ``m365send/`` or in ``bench/``).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CORE = [
    "m365send.addresses",
    "m365send.answers",
    "m365send.attachment_model",
    "m365send.attachments",
    "m365send.callers",
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
    "m365send.message",
    "m365send.models",
    "m365send.names",
    "m365send.outbox",
    "m365send.pacing",
    "m365send.parsing",
    "m365send.policy",
    "m365send.fields",
    "m365send.scheduling",
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


# The layers, lowest first. A module imports only modules of its own layer or a lower one; so the
# use cases never reach for an adapter, and nothing of the core reaches for the edges.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "values",
        {
            "errors",
            "fields",
            "names",
            "logcontext",
            "sendlog",
            "service_time",
            "storage_options",
            "fair_lock",
            "telemetry",
            "workflow_keys",
            "answers",
            "azure_errors",
            "callers",
        },
    ),
    (
        "models",
        {
            "addresses",
            "attachments",
            "attachment_model",
            "message",
            "parsing",
            "models",
            "settings",
            "certificates",
            "credentials",
            "status",
            "leases",
            "pacing",
            "mailbox",
            "envelope",
            "policy",
        },
    ),
    ("mapping", {"graph_message", "drafts"}),
    ("use cases", {"service", "sendonce", "outbox", "scheduling"}),
    ("adapters", {"graph", "keyvault", "tokens", "federated", "tables", "blobs", "shared_pacing", "client", "bearer"}),
    ("composition", {"wiring"}),
    ("edges", {"http_api", "cli", "__main__"}),
]


def imports_of(package: str) -> dict[str, set[str]]:
    """Each module of ``package`` → the package's modules it imports anywhere (module level, functions, type checks)."""
    modules = {path.stem: path for path in (ROOT / package).glob("*.py") if path.stem != "__init__"}
    found: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            found[name] |= {
                t.split(".", 1)[1] for t in targets if t.startswith(f"{package}.") and t.split(".", 1)[1] in modules
            }
        found[name].discard(name)
    return found


def circles(imports: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in imports[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while (member := stack.pop()) != module:
                group.append(member)
            group.append(module)
            if len(group) > 1:
                found.append(sorted(group))

    for module in imports:
        if module not in index:
            visit(module)
    return found


@pytest.mark.parametrize("package", ["m365send", "bench"])
def test_no_import_circle(package: str) -> None:
    assert circles(imports_of(package)) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_layer() -> None:
    layered = set().union(*(members for _, members in LAYERS))

    assert set(imports_of("m365send")) == layered


def test_every_import_goes_down_the_layers() -> None:
    layer_of = {module: n for n, (_, members) in enumerate(LAYERS) for module in members}
    upward = [
        f"{module} ({LAYERS[layer_of[module]][0]}) imports {target} ({LAYERS[layer_of[target]][0]})"
        for module, targets in imports_of("m365send").items()
        for target in targets
        if layer_of[target] > layer_of[module]
    ]

    assert upward == []
