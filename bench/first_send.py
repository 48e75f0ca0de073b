"""A fresh process's first email, with and without the host's storage configured (issue 14's cold path).

    python -m bench.first_send [RUNS]     # default 7; median wall ms of fresh processes, stand-ins apart

With ``AzureWebJobsStorage`` set (always so in Azure), the first Graph request builds the shared
mailbox limiter, which imports the Blob and Table SDKs; without it, nothing is shared and nothing
of storage is imported. The floor is the mandated libraries alone (see ``bench.children``).
"""

from __future__ import annotations

import os
import statistics
import sys

from bench.bench import measure, standins, table
from standins.azurite import Azurite


def main(runs: int) -> None:
    """Print the table."""
    azurite = Azurite()
    try:
        with standins() as settings:
            base = {**os.environ, **settings}
            with_storage = {**base, "AzureWebJobsStorage": azurite.connection_string}
            cases = (
                ("import azure.functions only", "import-functions", base),
                ("floor: the mandated libraries alone", "first-send-floor", base),
                ("m365send, no storage settings", "first-send", base),
                ("m365send, storage configured (shared pacing)", "first-send", with_storage),
                ("m365send, storage, with an Idempotency-Key", "first-send-keyed", with_storage),
            )
            ms = {
                name: statistics.median(measure(mode, env)["wall_s"] for _ in range(runs)) * 1000
                for name, mode, env in cases
            }
    finally:
        azurite.close()
    functions, floor = ms["import azure.functions only"], ms["floor: the mandated libraries alone"]
    rows = [
        [
            name,
            f"{value:.0f}",
            ""
            if name == "import azure.functions only"
            else f"{(value - functions) / floor:.2f}x"
            if name.startswith("m365send")
            else "1.00x",
        ]
        for name, value in ms.items()
    ]
    print(
        table(
            f"1d. A fresh process's first email (median wall ms of {runs} fresh processes)",
            ["process", "wall ms", "against the floor, without azure.functions's import"],
            rows,
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and not sys.argv[1].isdigit()):
        print("usage: python -m bench.first_send [RUNS]", file=sys.stderr)
        raise SystemExit(2)
    main(int(sys.argv[1]) if len(sys.argv) == 2 else 7)
