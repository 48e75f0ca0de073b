"""The m365send command against the local stand-ins: send, check, enqueue; exit codes and --json."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import function_app
from m365send import cli
from m365send.sendlog import Scope, scoped_key
from m365send.wiring import Worker
from standins.cloud import CLIENT_SECRET_NAME, SENDER, LocalCloud
from standins.queue_host import QueueHost
from tests.conftest import AttachmentStore, Configure, indexed_functions

Run = Any


@pytest.fixture
def run(configure: Configure, capsys: pytest.CaptureFixture[str]) -> Any:
    """Run the CLI in-process on a fresh worker; returns (exit code, stdout, stderr)."""

    def _run(*argv: str, **settings: str | None) -> tuple[int, str, str]:
        configure(**settings)
        code = cli.main(list(argv), worker=Worker())
        out, err = capsys.readouterr()
        return code, out, err

    return _run


def test_send_from_flags(run: Run, cloud: LocalCloud) -> None:
    code, out, _ = run(
        "send", "--to", "ann@fabrikam.com", "--to", "bob@fabrikam.com", "--subject", "Hi", "--body", "Hello"
    )

    assert code == 0
    assert f"sent as {SENDER}" in out
    [sent] = cloud.graph.sent
    assert [r["emailAddress"]["address"] for r in sent.message["toRecipients"]] == [
        "ann@fabrikam.com",
        "bob@fabrikam.com",
    ]
    assert sent.message["body"] == {"contentType": "text", "content": "Hello"}


def test_send_html_with_an_attachment(run: Run, cloud: LocalCloud, tmp_path: Path) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.7 numbers")

    code, _, _ = run("send", "--to", "ann@fabrikam.com", "--html", "<b>See attached</b>", "--attach", str(report))

    assert code == 0
    message = cloud.graph.sent[0].message
    assert message["body"]["contentType"] == "html"
    [attachment] = message["attachments"]
    assert (attachment["name"], attachment["contentType"]) == ("report.pdf", "application/pdf")
    assert base64.b64decode(attachment["contentBytes"]) == b"%PDF-1.7 numbers"


def test_send_with_a_large_blob_attachment_goes_through_a_draft(
    run: Run, cloud: LocalCloud, attachment_store: AttachmentStore
) -> None:
    data = os.urandom(4 * 1024 * 1024)
    reference = attachment_store.put("scans/contract.pdf", data, "application/pdf")

    code, _, _ = run("send", "--to", "ann@fabrikam.com", "--attach-blob", reference, **attachment_store.settings)

    assert code == 0
    [attachment] = cloud.graph.sent[0].attachments
    assert (attachment.name, attachment.content_type, attachment.data()) == ("contract.pdf", "application/pdf", data)


def test_dry_run_of_a_large_message_lists_the_draft_steps(
    run: Run, cloud: LocalCloud, attachment_store: AttachmentStore
) -> None:
    reference = attachment_store.put("big.bin", bytes(7 * 1024 * 1024))

    code, out, _ = run(
        "send", "--to", "ann@fabrikam.com", "--attach-blob", reference, "--dry-run", **attachment_store.settings
    )

    steps = json.loads(out)["draft"]
    assert code == 0
    assert [step["url"].rsplit("/", 1)[-1] for step in steps] == ["messages", "createUploadSession", "send"]
    assert steps[1]["chunks"] == 3
    assert cloud.graph.sent == []
    assert cloud.graph.drafts.drafts == {}


def test_send_a_json_file_with_json_output(
    run: Run, cloud: LocalCloud, tmp_path: Path, seed_message: dict[str, Any]
) -> None:
    path = tmp_path / "message.json"
    path.write_text(json.dumps(seed_message))

    code, out, _ = run("send", str(path), "--json")

    assert code == 0
    assert json.loads(out)["status"] == "accepted"
    assert cloud.graph.sent[0].message["subject"] == "Example email subject"


def test_dry_run_prints_the_graph_request_and_sends_nothing(run: Run, cloud: LocalCloud) -> None:
    code, out, _ = run("send", "--to", "ann@fabrikam.com", "--subject", "Hi", "--dry-run")

    request = json.loads(out)
    assert code == 0
    assert request["method"] == "POST"
    assert request["url"] == f"{cloud.graph.base_url}/users/{SENDER}/sendMail"
    assert request["body"]["message"]["subject"] == "Hi"
    assert cloud.graph.sent == []
    assert sum(cloud.entra.token_requests.values()) == 0


def test_an_invalid_message_exits_1_naming_the_field(run: Run) -> None:
    code, _, err = run("send", "--to", "not-an-address")

    assert code == 1
    assert "To[0].Address" in err


def test_json_errors_are_problem_details(run: Run) -> None:
    code, out, _ = run("send", "--to", "not-an-address", "--json")

    assert code == 1
    assert json.loads(out)["type"] == "urn:m365send:problem:validation"


def test_wrong_usage_exits_2(run: Run) -> None:
    with pytest.raises(SystemExit) as exited:
        run("send", "--priority", "Urgent")

    assert exited.value.code == 2


def test_check_passes_each_step(run: Run) -> None:
    code, out, _ = run("check")

    assert code == 0
    steps = [line.split(":")[0] for line in out.strip().splitlines() if line[:1] in ("✓", "✗")]
    assert steps == ["✓ settings", "✓ key vault", "✓ token", "✓ sender", "✓ sender policy"]


def test_check_shows_the_effective_sender_policy(run: Run, cloud: LocalCloud) -> None:
    policy = {
        "callers": [
            {"name": "HR apps", "role": "Mail.Send.HR", "senders": ["payroll@contoso.com"]},
            {"name": "Billing", "queue": "billing-outbox", "senders": ["billing@contoso.com"]},
        ]
    }

    code, out, _ = run("check", M365_SENDER_POLICY=json.dumps(policy), M365_ALLOWED_SENDERS="ops@contoso.com")

    assert code == 0
    section = out[out.index("sender policy (who may send as whom):") :]
    assert "  HR apps: app role 'Mail.Send.HR'\n    senders: payroll@contoso.com" in section
    assert "  Billing: queue 'billing-outbox'\n    senders: billing@contoso.com" in section
    assert "  default: unnamed function keys" in section
    assert f"senders: {SENDER}, ops@contoso.com" in section or f"senders: ops@contoso.com, {SENDER}" in section


def test_check_reads_the_tenants_signing_keys_when_tokens_are_accepted(run: Run, cloud: LocalCloud) -> None:
    code, out, _ = run("check", "--json", M365_API_AUDIENCE="api://m365send")

    report = json.loads(out)
    [tokens] = [s for s in report["steps"] if s["step"] == "api tokens"]
    assert code == 0
    assert tokens["detail"] == "Entra ID tokens for api://m365send: 1 signing key(s) read"
    assert cloud.entra.key_requests == 1


def test_check_warns_when_the_secret_expires_within_30_days(run: Run, cloud: LocalCloud) -> None:
    cloud.vault.set_secret(CLIENT_SECRET_NAME, cloud.client_secret, expires=int(time.time()) + 10 * 86400)

    code, out, _ = run("check", "--json")

    report = json.loads(out)
    assert code == 0
    [vault] = [s for s in report["steps"] if s["step"] == "key vault"]
    assert vault["warning"] is True
    assert "rotate" in vault["detail"]


def test_check_fails_at_the_token_with_a_fix(run: Run, cloud: LocalCloud) -> None:
    cloud.app.secrets[:] = []

    code, out, _ = run("check")

    assert code == 1
    assert "✗ token: Entra ID refused" in out
    assert "  fix: " in out


def test_check_fails_at_settings(run: Run) -> None:
    code, out, _ = run("check", M365_CLIENT_ID=None)

    assert code == 1
    assert out.startswith("✗ settings: M365_CLIENT_ID is required")


def test_check_names_a_sender_that_is_not_allowed(run: Run) -> None:
    code, out, _ = run("check", "--sender", "ceo@contoso.com")

    assert code == 1
    assert "✗ sender" in out


def test_enqueue_puts_the_message_on_the_outbox(
    configure: Configure, storage_settings: dict[str, str], cloud: LocalCloud, capsys: pytest.CaptureFixture[str]
) -> None:
    configure(**storage_settings)
    host = QueueHost(
        storage_settings["M365Storage"],
        storage_settings["M365_QUEUE_NAME"],
        function=indexed_functions()["outbox"].get_user_function(),
    )

    code = cli.main(["enqueue", "--to", "ann@fabrikam.com", "--subject", "Queued", "--key", "cli-1", "--json"])
    host.drain()

    assert code == 0
    assert json.loads(capsys.readouterr().out)["key"] == "cli-1"
    assert cloud.graph.sent[0].message["subject"] == "Queued"


def test_python_dash_m_runs_the_same_command(cloud: LocalCloud) -> None:
    env = {**os.environ, **cloud.env()}

    result = subprocess.run(
        [sys.executable, "-m", "m365send", "check", "--json"], capture_output=True, text=True, env=env, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["ok"] is True


def test_send_with_a_key_sends_once_and_a_repeat_says_so(
    run: Run, cloud: LocalCloud, storage_settings: dict[str, str]
) -> None:
    flags = ("send", "--to", "ann@fabrikam.com", "--subject", "Hi", "--body", "Hello", "--key", "cli-1")

    first = run(*flags, **storage_settings)
    again = run(*flags, **storage_settings)

    assert first[0] == again[0] == 0
    assert "already sent under key cli-1" in again[2]
    assert len(cloud.graph.sent) == 1


def test_a_send_key_is_the_http_idempotency_key(
    run: Run,
    configure: Configure,
    cloud: LocalCloud,
    storage_settings: dict[str, str],
    seed_message: dict[str, Any],
    tmp_path: Path,
) -> None:
    api = configure(**storage_settings)
    assert api.post(seed_message, headers={"Idempotency-Key": "shared-1"}).status == 202
    message = tmp_path / "message.json"
    message.write_text(json.dumps(seed_message), encoding="utf-8")

    code, _, err = run("send", str(message), "--key", "shared-1", **storage_settings)

    assert code == 0
    assert "not sent again" in err
    assert len(cloud.graph.sent) == 1


def test_poisoned_messages_are_listed_and_replayed_with_their_key(
    queue_host: Any, cloud: LocalCloud, seed_message: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    host: QueueHost = queue_host()
    worker = function_app.current_worker()
    # A message the host gave up on (as after maxDequeueCount failures), handed back once by m365send before.
    poison = worker.storage().outbox.poison()
    poison.create_queue()
    handed_back = json.dumps({"m365send": {"attempt": 4, "key": "poisoned-1"}, "original": seed_message})
    poison.requeue(handed_back.encode(), delay=0)

    assert cli.main(["poison", "list", "--json"], worker=worker) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["key"] == "poisoned-1"
    assert cli.main(["poison", "replay", listed["id"]], worker=worker) == 0
    host.drain()

    assert len(cloud.graph.sent) == 1
    assert poison.peek() == []
    record = worker.sends().get(scoped_key(Scope.QUEUE, "poisoned-1"))
    assert record is not None
    assert record.attempts == 1  # replayed with its attempt count reset, under the same key


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["send", "no-such-message.json"], "cannot read the message file no-such-message.json"),
        (["send", "BAD"], "is not JSON"),
        (["send", "LIST"], "must hold a JSON object"),
        (["send", "--to", "a@fabrikam.com", "--attach", "no-such-file.pdf"], "cannot read the attachment"),
        (["send"], "give a message file, or at least --to"),
    ],
)
def test_ordinary_mistakes_are_one_line_and_exit_2(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, argv: list[str], expected: str
) -> None:
    (tmp_path / "bad.json").write_text("{not json", encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    argv = [{"BAD": "bad.json", "LIST": "list.json"}.get(a, a) for a in argv]

    code, out, err = run(*argv)

    assert code == 2
    assert expected in err
    assert err.count("\n") == 1
    assert "Traceback" not in err + out


def test_dry_run_needs_no_credential_settings(run: Run, cloud: LocalCloud) -> None:
    names = ("M365_TENANT_ID", "M365_CLIENT_ID", "KEY_VAULT_URL", "M365_CLIENT_SECRET_NAME", "M365_SENDER")
    unset = dict.fromkeys(names)

    code, out, err = run("send", "--to", "ann@fabrikam.com", "--from", "ops@contoso.com", "--dry-run", **unset)

    assert code == 0, err
    assert json.loads(out)["url"].endswith("/users/ops@contoso.com/sendMail")
    assert sum(cloud.graph.requests.values()) == 0


def test_dry_run_without_settings_or_a_sender_says_what_to_pass(run: Run) -> None:
    unset = dict.fromkeys(("M365_TENANT_ID", "M365_SENDER", "KEY_VAULT_URL", "M365_CLIENT_SECRET_NAME"))

    code, _, err = run("send", "--to", "ann@fabrikam.com", "--dry-run", **unset)

    assert code == 2
    assert err.strip().splitlines() == [
        "error: --dry-run without the app settings needs the sending mailbox: pass --sender or --from"
    ]


def test_unreachable_storage_names_its_endpoint_and_what_to_check(run: Run) -> None:
    dead = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;" + (
        "QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;TableEndpoint=http://127.0.0.1:9/devstoreaccount1;"
    )

    code, _, err = run("enqueue", "--to", "ann@fabrikam.com", M365Storage=dead)

    assert code == 1
    assert "at http://127.0.0.1:9/devstoreaccount1 is unreachable (connection refused)" in err
    assert "check M365Storage" in err
    assert "Traceback" not in err


def test_a_send_at_without_a_zone_is_one_line_naming_send_at(run: Run) -> None:
    code, out, err = run("send", "--to", "ann@fabrikam.com", "--send-at", "2026-12-01T08:00:00", "--dry-run")

    assert code == 1
    assert err.strip().splitlines() == [
        "error: SendAt: has no time zone: add Z for UTC or an offset such as +01:00 (2026-12-01T08:00:00Z)"
    ]
    assert "Traceback" not in out + err


def test_a_dry_run_of_a_scheduled_message_says_it_waits(run: Run, cloud: LocalCloud) -> None:
    when = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0).isoformat().replace("+00:00", "Z")

    code, out, err = run("send", "--to", "ann@fabrikam.com", "--send-at", when, "--dry-run")

    assert code == 0, err
    assert json.loads(out)["scheduled"] == f"waits on the outbox queue until {when}, then sends this"


def test_a_dry_run_of_a_message_scheduled_too_far_ahead_is_refused_as_the_send_would_be(run: Run) -> None:
    code, _, err = run("send", "--to", "ann@fabrikam.com", "--send-at", "2099-01-01T08:00:00Z", "--dry-run")

    assert code == 1
    assert err.strip().splitlines() == ["error: SendAt: 2099-01-01T08:00:00Z is more than 90 days ahead"]


def test_status_without_storage_settings_is_one_line_naming_the_setting(run: Run) -> None:
    code, out, err = run("status", "order-1")

    assert code == 1
    assert err.count("\n") == 1
    assert "M365Storage" in err
    assert "Traceback" not in out + err


def test_settings_from_a_stopped_local_run_are_one_clear_line(run: Run, tmp_path: Path) -> None:
    gone = tmp_path / "standin-ca.pem"

    code, out, err = run("send", "--to", "a@fabrikam.com", "--dry-run", M365SEND_LOCAL_CA_BUNDLE=str(gone))

    assert code == 2
    assert err.strip().splitlines() == [
        f"error: the local run these settings came from has stopped (M365SEND_LOCAL_CA_BUNDLE names {gone}, which "
        "is gone): start ./scripts/local again and source the settings file it prints"
    ]
    assert "Traceback" not in out + err


def test_the_local_runs_ca_is_trusted_through_its_own_variable(run: Run, cloud: LocalCloud) -> None:
    code, _, err = run(
        "send",
        "--to",
        "a@fabrikam.com",
        REQUESTS_CA_BUNDLE=None,
        SSL_CERT_FILE=None,
        M365SEND_LOCAL_CA_BUNDLE=str(cloud.ca_bundle),
    )

    assert code == 0, err
    assert len(cloud.graph.sent) == 1


def test_missing_settings_come_with_a_hint_to_source_the_local_settings(run: Run) -> None:
    code, _, err = run("status", "some-key", M365_TENANT_ID=None)

    assert code == 1
    assert "M365_TENANT_ID is required" in err
    assert "hint: " in err
    assert "source .local/env" in err


def test_placeholder_settings_are_named_as_placeholders(run: Run) -> None:
    code, out, _ = run("check", M365_TENANT_ID="<tenant id>")

    assert code == 1
    assert "M365_TENANT_ID still holds a placeholder" in out


def test_reply_to_categories_and_headers_have_flags(run: Run, cloud: LocalCloud) -> None:
    code, _, err = run(
        "send",
        "--to",
        "a@fabrikam.com",
        "--reply-to",
        "help@contoso.com",
        "--category",
        "Billing",
        "--header",
        "X-Ticket: INC-42",
    )

    assert code == 0, err
    [sent] = cloud.graph.sent
    assert [r["emailAddress"]["address"] for r in sent.message["replyTo"]] == ["help@contoso.com"]
    assert sent.message["categories"] == ["Billing"]
    assert {"name": "X-Ticket", "value": "INC-42"} in sent.message["internetMessageHeaders"]


def test_a_header_without_a_colon_is_a_usage_error(run: Run) -> None:
    code, _, err = run("send", "--to", "a@fabrikam.com", "--header", "X-Ticket")

    assert code == 2
    assert "must be NAME:VALUE" in err
