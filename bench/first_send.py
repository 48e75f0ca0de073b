"""A fresh process's first email, with and without the host's storage configured (issue 14's cold path).

    ./bench/run --only first-send [--runs N]   # or python -m bench.first_send [RUNS] (default 7)

Median wall ms of fresh processes, stand-ins apart; ``./bench/run`` runs them with the app's pins
alone (``bench/requirements-app.txt``). With ``M365Storage`` set (always so in Azure), the first
Graph request builds the shared mailbox limiter, which imports the Table SDK; without it, nothing
is shared and nothing of storage is imported. The floor is the mandated libraries alone, and
beside it the floor with pydantic validating the message (see ``bench.children``).
"""

from __future__ import annotations

import os
import statistics
import sys

from bench.harness import FIRST_SENDS, measure, standins, table
from standins.azurite import Azurite


def main(runs: int) -> None:
    """Print the table."""
    azurite = Azurite()
    try:
        with standins() as settings:
            base = {**os.environ, **settings}
            with_storage = {**base, "M365Storage": azurite.connection_string}
            # msgraph-sdk's first send is table 1c's, beside its own tables.
            cases = [
                (name, mode, with_storage if storage else base)
                for name, mode, storage in FIRST_SENDS
                if mode != "first-send-sdk"
            ]
            walls: dict[str, list[float]] = {name: [] for name, _, _ in cases}
            warm_cases = (("no storage settings", base), ("storage configured", with_storage))
            warmed: dict[str, list[dict[str, float]]] = {name: [] for name, _ in warm_cases}
            for _ in range(runs):  # interleaved: the machine's drift falls on every case alike
                for name, mode, env in cases:
                    walls[name].append(measure(mode, env)["wall_s"])
                for name, env in warm_cases:
                    warmed[name].append(measure("first-send-warmup", env))
            ms = {name: statistics.median(values) * 1000 for name, values in walls.items()}
    finally:
        azurite.close()
    # azure.functions's import, not the interpreter's start (every process compared pays that).
    functions = ms["import azure.functions only"] - ms["the interpreter alone"]
    floor, validated = ms["floor: the mandated libraries alone"], ms["floor with pydantic validating the message"]
    rows = [
        [
            name,
            f"{value:.0f}",
            f"{(value - functions) / floor:.2f}x" if name.startswith("m365send") else "",
            f"{(value - functions) / validated:.2f}x" if name.startswith("m365send") else "",
        ]
        for name, value in ms.items()
    ]
    print(
        table(
            f"1d. A fresh process's first email (median wall ms of {runs} fresh processes)",
            [
                "process",
                "wall ms",
                "against the floor, without azure.functions's import",
                "against the floor with pydantic, the same",
            ],
            rows,
        )
    )

    def med(results: list[dict[str, float]], key: str) -> float:
        return float(statistics.median(r[key] for r in results))

    print(
        table(
            f"1e. The first email after the warm-up function (median of {runs} fresh processes)",
            ["settings", "warm-up ms", "first send ms", "warm send ms", "first / warm"],
            [
                [
                    name,
                    f"{med(results, 'warmup_ms'):.0f}",
                    f"{med(results, 'first_after_warmup_ms'):.1f}",
                    f"{med(results, 'warm_send_ms'):.1f}",
                    f"{med(results, 'first_after_warmup_ms') / med(results, 'warm_send_ms'):.2f}x",
                ]
                for name, results in warmed.items()
            ],
        )
    )


if __name__ == "__main__":
    if len(sys.argv) > 2 or (len(sys.argv) == 2 and not sys.argv[1].isdigit()):
        print("usage: python -m bench.first_send [RUNS]", file=sys.stderr)
        raise SystemExit(2)
    main(int(sys.argv[1]) if len(sys.argv) == 2 else 7)
