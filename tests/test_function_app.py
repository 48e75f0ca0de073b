"""The Function App indexes as the Functions host will see it, and the core stays free of azure.functions."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import indexed_functions


def test_send_is_an_http_post_on_api_send_with_function_keys() -> None:
    send = indexed_functions()["send"]
    [trigger] = [b for b in send.get_bindings() if b.type == "httpTrigger"]

    assert trigger.route == "send"
    assert [str(m.value if hasattr(m, "value") else m) for m in trigger.methods] == ["POST"]
    assert str(getattr(trigger.auth_level, "value", trigger.auth_level)).lower() == "function"


def test_indexing_the_app_reads_no_settings_and_imports_none_of_the_core() -> None:
    code = (
        "import os, sys\n"
        "for k in list(os.environ):\n"
        "    k.startswith('M365_') and os.environ.pop(k)\n"
        "import function_app\n"
        "names = sorted(f.get_function_name() for f in function_app.app.get_functions())\n"
        "assert not [m for m in sys.modules if m.startswith('m365send')], 'indexing imported the core'\n"
        "print(names)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['health', 'openapi', 'outbox', 'purge', 'send', 'status', 'validate', 'warmup']"


def test_outbox_is_a_queue_trigger_on_the_configured_queue_over_the_host_storage() -> None:
    outbox = indexed_functions()["outbox"]
    [trigger] = [b for b in outbox.get_bindings() if b.type == "queueTrigger"]

    assert trigger.queue_name == "email-outbox"
    assert trigger.connection == "M365Storage"


def test_the_core_imports_no_azure_functions() -> None:
    code = (
        "import sys\n"
        "import m365send.wiring, m365send.http_api, m365send.outbox, m365send.cli\n"
        "assert 'azure.functions' not in sys.modules, 'the core imported azure.functions'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)

    assert result.returncode == 0, result.stderr


def test_warmup_is_a_warmup_trigger() -> None:
    warmup = indexed_functions()["warmup"]

    assert [b.type for b in warmup.get_bindings()] == ["warmupTrigger"]
