"""The README's main command: the demo sends the seed example through the real function."""

from __future__ import annotations

import subprocess
import sys

import pytest


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


def test_demo_attaches_a_large_blob_through_a_draft() -> None:
    result = demo("--attach-blob-mb", "5")

    assert result.returncode == 0, result.stderr
    assert "POST /api/send -> HTTP 202" in result.stdout
    assert "attachment demo-5MB.bin: 5,242,880 bytes, matches the blob" in result.stdout
    assert "upload-session chunks: 2" in result.stdout
