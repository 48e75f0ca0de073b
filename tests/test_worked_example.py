"""docs/callers.md's worked example runs against the stand-ins and every answer is the one its policy promises."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def example() -> subprocess.CompletedProcess[str]:
    """One run of ``python -m standins.worked_example`` (Azurite and the stand-ins, about ten seconds)."""
    return subprocess.run(
        [sys.executable, "-m", "standins.worked_example"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def test_the_worked_example_gives_each_caller_exactly_its_rights(example: subprocess.CompletedProcess[str]) -> None:
    lines = example.stdout.splitlines()

    assert example.returncode == 0, example.stdout + example.stderr
    assert lines[-1] == "every answer is the one the policy promises"
    assert sum(line.startswith("✓ ") for line in lines) == 9
    assert "    key 'invoices-flow' may not send as mailbox 'payroll@contoso.com' (its rules: Invoices flow)" in lines
    assert (
        "    queue 'billing-outbox' may not send as mailbox 'invoices@contoso.com' (its rules: Billing service)"
        in lines
    )


def test_the_worked_example_in_the_docs_is_the_one_that_runs(example: subprocess.CompletedProcess[str]) -> None:
    docs = (ROOT / "docs" / "callers.md").read_text()

    shown = [line for line in example.stdout.splitlines() if line.startswith(("✓", "✗"))]

    assert len(shown) == 9
    assert [line for line in shown if line not in docs] == []
