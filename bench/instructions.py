"""Instructions a fresh process executes for its first email (valgrind's callgrind): a count that
does not move with the machine's load, for comparing two commits where wall times cannot.

    ./bench/run --only instructions      # or python -m bench.instructions

Wall times of fresh processes on a shared 2-core machine spread by a third from one run to the next,
so a change of a few percent needs a measure that does not: callgrind counts the instructions a
process executes in user space (the same count every run, ``PYTHONHASHSEED`` fixed). It counts no
system call and no wait, so it compares m365send's commits with each other, not with a client whose
imports cost more in file system calls (msgraph-sdk). Every run is ~50 times slower under
valgrind; two run at a time. Needs ``valgrind`` (Debian: ``apt-get install valgrind``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from bench.harness import FIRST_SENDS, app_python, standins, table
from standins.azurite import Azurite


def _count(mode: str, env: dict[str, str]) -> int:
    python = app_python()
    valgrind = shutil.which("valgrind") or "valgrind"
    result = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", python, "-m", "bench.children", mode],
        env={**env, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    if result.returncode != 0 or not found:
        raise RuntimeError(f"{mode} failed under valgrind:\n{result.stderr[-2000:]}")
    return int(found.group(1))


def measure() -> dict[str, int]:
    """Instructions per case (millions are printed)."""
    azurite = Azurite()
    try:
        with standins() as settings:
            base = {**os.environ, **settings}
            with_storage = {**base, "M365Storage": azurite.connection_string}
            _count("first-send-keyed", with_storage)  # creates the tables: every counted run finds them
            # Two at a time without storage; with it, one at a time: two first sends on one mailbox's
            # pacing entity would meet in its ETag and read it again, and the count would vary.
            apart = [(name, mode) for name, mode, storage in FIRST_SENDS if not storage]
            with ThreadPoolExecutor(2) as pool:
                counts = dict(
                    zip([name for name, _ in apart], pool.map(lambda c: _count(c[1], base), apart), strict=True)
                )
            counts |= {name: _count(mode, with_storage) for name, mode, storage in FIRST_SENDS if storage}
            return {name: counts[name] for name, _, _ in FIRST_SENDS}
    finally:
        azurite.close()


def report(counts: dict[str, int]) -> str:
    """Table 1f."""
    functions = counts["import azure.functions only"] - counts["the interpreter alone"]
    floor = counts["floor: the mandated libraries alone"]
    validated = counts["floor with pydantic validating the message"]
    rows = []
    for name, count in counts.items():
        ours = name.startswith("m365send")
        rows.append(
            [
                name,
                f"{count / 1e6:.0f}",
                f"{(count - functions) / floor:.2f}x" if ours else "",
                f"{(count - functions) / validated:.2f}x" if ours else "",
            ]
        )
    return table(
        "1f. Instructions a fresh process executes for its first email (callgrind, millions; the same every run)",
        [
            "process",
            "instructions (M)",
            "against the floor, without azure.functions",
            "against the floor with pydantic",
        ],
        rows,
    )


def main() -> None:
    """Print table 1f, or say what is missing."""
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind); table 1f skipped", file=sys.stderr)
        return
    print(report(measure()))


if __name__ == "__main__":
    main()
