"""The README's main command: the demo sends the seed example through the real function."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def demo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "standins.demo", *args], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("credential", ["secret", "certificate"])
def test_demo_sends_the_seed_example_and_shows_what_graph_received(credential: str) -> None:
    result = demo("--credential", credential)

    assert result.returncode == 0, result.stderr
    assert "POST /api/send -> HTTP 202" in result.stdout
    assert '"subject": "Example email subject"' in result.stdout
    assert "Key Vault reads: " in result.stdout


def test_demo_with_the_federated_credential_reads_no_secret() -> None:
    result = demo("--credential", "federated")

    assert result.returncode == 0, result.stderr
    assert "POST /api/send -> HTTP 202" in result.stdout
    assert "managed identity token requests: 1, Key Vault reads: 0" in result.stdout


def test_demo_attaches_a_large_blob_through_a_draft() -> None:
    result = demo("--attach-blob-mb", "5")

    assert result.returncode == 0, result.stderr
    assert "POST /api/send -> HTTP 202" in result.stdout
    assert "attachment demo-5MB.bin: 5,242,880 bytes, matches the blob" in result.stdout
    assert "upload-session chunks: 2" in result.stdout


@pytest.mark.parametrize(
    ("content", "expected"),
    [(None, "error: cannot read --message"), ("{not json", "is not JSON")],
)
def test_a_bad_message_file_is_one_clear_line(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "message.json"
    if content is not None:
        path.write_text(content)

    result = demo("--message", str(path))

    assert result.returncode == 2
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_the_demo_script_reads_the_message_path_from_where_the_user_stands(tmp_path: Path) -> None:
    (tmp_path / "mine.json").write_text('{"To": "ann@fabrikam.com", "From": {"Address": "notifications@contoso.com"}}')

    result = subprocess.run(
        [str(ROOT / "scripts" / "demo"), "--message", "mine.json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert "ann@fabrikam.com" in result.stdout


def test_the_scripts_refuse_another_python_before_installing_anything(tmp_path: Path) -> None:
    fake = tmp_path / "python3.12"
    fake.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "Python 3.12.1"; exit 0; fi\nexit 1\n')
    fake.chmod(0o755)

    result = subprocess.run(
        [str(ROOT / "scripts" / "demo")],
        env={**os.environ, "PYTHON": str(fake)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "error: m365send needs Python 3.11 (the version Azure Functions runs), found: Python 3.12.1. "
        "Install python3.11 and python3.11-venv (or set PYTHON=/path/to/python3.11)."
    ]


def test_the_demo_points_at_the_local_run_next() -> None:
    result = demo()

    assert result.returncode == 0, result.stderr
    assert "Next: ./scripts/local" in result.stdout


def test_a_refused_message_says_graph_received_nothing(tmp_path: Path) -> None:
    path = tmp_path / "message.json"
    path.write_text('{"To": []}', encoding="utf-8")

    result = demo("--message", str(path))

    assert result.returncode == 1
    assert "POST /api/send -> HTTP 400" in result.stdout
    assert "What Graph received:\nnothing: the function refused the message" in result.stdout
