"""Table 4b: the federated credential beside the client secret, in one run.

    python -m bench.federated [RUNS]     # or ./bench/run --only federated

For each mode: a fresh process's first email (median wall ms of RUNS processes, and the part after
imports and client set-up: credential, token, sendMail), the warm per-send CPU, and the token
economy: 10,000 sends over 3 simulated hours on 3 workers (``bench.load economy``), counting Graph
tokens, client assertions handed to msal, the stand-ins' managed identity token requests and Key
Vault reads. The federated mode reads no secret: its assertion is the managed identity's token,
cached by azure-identity for most of its day-long life.
"""

from __future__ import annotations

import os
import statistics
import sys
from typing import Any

from bench.harness import measure as run_child
from bench.harness import standins, table

MODES = ("secret", "federated")


def measure_mode(credential: str, runs: int, sends: int, economy_sends: int) -> dict[str, Any]:
    """One mode's figures; stand-ins of their own for the economy, so their counts are the economy's."""
    with standins(apps=1, credential=credential) as settings:
        env = {**os.environ, **settings}
        cold = [run_child("first-send", env) for _ in range(runs)]
        cpu = [run_child("cpu", env, sends) for _ in range(3)]
    counts: dict[str, int] = {}
    with standins(apps=3, credential=credential, counts=counts) as settings:
        economy = run_child("economy", {**os.environ, **settings}, economy_sends, module="bench.load")
    return {"cold": cold, "cpu": cpu, "economy": economy, "standins": counts, "runs": runs, "sends": sends}


def measure(runs: int = 5, sends: int = 500, economy_sends: int = 10_000) -> dict[str, dict[str, Any]]:
    """Both modes, one after the other in the same run."""
    return {credential: measure_mode(credential, runs, sends, economy_sends) for credential in MODES}


def report(results: dict[str, dict[str, Any]]) -> str:
    """The table, one row per mode."""
    rows = []
    for credential, figures in results.items():
        economy = figures["economy"]
        worker_hours = economy["simulated_hours"] * economy["credentials"]

        def per_hour(value: float, hours: float = worker_hours) -> str:
            return f"{value / hours:.2f}"

        cold, cpu = figures["cold"], figures["cpu"]
        rows.append(
            [
                credential,
                f"{statistics.median(r['wall_s'] for r in cold) * 1000:.0f}",
                f"{statistics.median(r['first_call_ms'] for r in cold):.0f}",
                f"{statistics.median(r['cpu_ms_per_send'] for r in cpu):.2f}",
                per_hour(economy["token_requests"]),
                per_hour(economy.get("assertions", 0)),
                per_hour(figures["standins"].get("identity_requests", 0)),
                per_hour(figures["standins"].get("key_vault_reads", 0)),
            ]
        )
    first = next(iter(results.values()))
    economy = first["economy"]
    return table(
        f"4b. The federated credential beside the client secret (first send: median of {first['runs']} fresh "
        f"processes; CPU: {first['sends']} warm sends, median of 3 processes; economy: {economy['sends']:,} sends "
        f"over {economy['simulated_hours']:g} simulated hours on {economy['credentials']} workers, Graph tokens "
        "valid 1 h, identity tokens 24 h)",
        [
            "credential",
            "cold first send, wall ms",
            "of which credential + token + sendMail, ms",
            "warm CPU ms / send",
            "Graph tokens / worker-hour",
            "assertions to msal / worker-hour",
            "identity endpoint requests / worker-hour",
            "Key Vault reads / worker-hour",
        ],
        rows,
    )


if __name__ == "__main__":
    print(report(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 5)))
