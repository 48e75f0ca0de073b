"""Benchmarks: cold start and per-send CPU next to the Microsoft Graph SDK, throughput at Graph's
mailbox limits, token / Key Vault economy, memory sending a large attachment, and what verified
delivery costs per send. Prints tables.

    ./bench/run            # or: python -m bench.bench --runs 5 --sends 500; --only send|memory|delivery

Every measured process is fresh; the stand-ins run in a process of their own, so their CPU is not
counted. Wall times include the Python interpreter's own start.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from typing import Any

from bench.harness import measure, standins, table
from m365send.shared_pacing import FALLBACK_SECONDS


def main() -> None:
    """Run the benchmarks and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per cold-start figure (median)")
    parser.add_argument("--sends", type=int, default=500, help="sends per per-send CPU measurement")
    parser.add_argument("--messages", type=int, default=2000, help="queue messages for the throughput run")
    parser.add_argument("--economy-sends", type=int, default=10_000, help="sends over the simulated 3 hours")
    parser.add_argument("--attachment-mb", type=int, default=100, help="size of the blob attachment for table 5")
    parser.add_argument("--body-mb", type=int, default=100, help="size of the request body for table 5b")
    parser.add_argument("--delivery-sends", type=int, default=200, help="keyed sends per row of table 6")
    parser.add_argument(
        "--only",
        choices=["send", "first-send", "instructions", "federated", "scaleout", "memory", "delivery"],
        help="send: tables 1-4 (cold start, CPU, throughput, economy); first-send: tables 1d and 1e (a fresh "
        "process's first email with storage and keyed, and after the warm-up); instructions: table 1f (the same "
        "first emails counted in instructions by valgrind, steady from run to run); federated: table 4b (the federated "
        "credential beside the client secret); scaleout: table 3b (3 workers, shared pacing); memory: tables 5 "
        "and 5b; delivery: table 6 (verified delivery's cost); default: all",
    )
    args = parser.parse_args()
    print(
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.platform()}\n"
    )

    if args.only in (None, "send"):
        send_tables(args)
    if args.only in (None, "first-send"):
        from bench import first_send

        first_send.main(args.runs)
    if args.only in (None, "instructions"):
        from bench import instructions

        instructions.main()
    if args.only in (None, "federated"):
        from bench import federated

        print(federated.report(federated.measure(args.runs, args.sends, args.economy_sends)))
    if args.only in (None, "scaleout"):
        print(scaleout_table(args.messages))
    if args.only in (None, "memory"):
        from bench import body_memory
        from bench.memory import measure, report

        print(report(measure(args.attachment_mb)))
        print(body_memory.report(body_memory.measure(args.body_mb)))
    if args.only in (None, "delivery"):
        # A fresh process of its own: it imports function_app and runs Azurite and the stand-ins.
        subprocess.run([sys.executable, "-m", "bench.delivery", str(args.delivery_sends)], check=True, timeout=1200)


def scaleout_table(messages: int) -> str:
    """Table 3b (three worker processes drain one queue, per-worker pacing against the shared limiter) and
    table 7 (what a million emails cost, from the same rows)."""
    from bench import cost

    result = subprocess.run(
        [sys.executable, "-m", "bench.scaleout", str(messages)],
        capture_output=True,
        text=True,
        check=False,
        timeout=3600,
    )
    if result.returncode != 0:
        raise RuntimeError(f"bench.scaleout failed:\n{result.stderr[-3000:]}")
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    overhead = next(row for row in rows if "overhead_ms_median" in row)
    drains = [row for row in rows if row is not overhead]
    lines = []
    for row in drains:
        pacing, records = storage_per_send(row)
        lines.append(
            [
                f"{row['pacing']}, {row['mailboxes']} mailbox{'es' if row['mailboxes'] > 1 else ''}, "
                f"{row['workers']} worker{'s' if row['workers'] > 1 else ''}",
                f"{row['sends_per_second']:.2f}",
                f"{row['ceiling_per_second']:.2f}",
                f"{row['ratio']:.0%}",
                f"{row['throttled_429']} of {row['graph_requests']} "
                f"({row['throttled_429'] / row['graph_requests']:.1%})"
                + (
                    f"; the limiter's storage failed {row['pacing_fallbacks']} time(s), "
                    f"{FALLBACK_SECONDS:g} s of per-worker pacing each"
                    if row.get("pacing_fallbacks")
                    else ""
                ),
                str(row["lost"]),
                str(row["sent_twice"]),
                str(row["dead_lettered"]),
                f"{pacing + records:.1f} ({pacing:.1f} + {records:.1f})",
                f"{row['seconds']:.0f}",
            ]
        )
    return (
        table(
            f"3b. Scale-out: worker processes sharing one storage account (Azurite, a process per service), "
            f"{messages} queue messages (stand-in: 4 concurrent, 100 per 6 s per mailbox, 50 ms latency)",
            [
                "pacing",
                "sends/s",
                "ceiling/s",
                "ratio",
                "Graph requests answered 429",
                "lost",
                "sent twice",
                "dead-lettered",
                "storage requests / send (pacing + send records)",
                "seconds",
            ],
            lines,
        )
        + f"\nWith room in the window, the shared limiter adds {overhead['overhead_ms_median']:.1f} ms (median; "
        f"95th percentile {overhead['overhead_ms_p95']:.1f} ms) and {overhead['storage_requests_per_slot']:.1f} "
        "storage requests to each Graph request (300 requests one at a time, Azurite on loopback).\n\n"
        + pacing_kinds(drains)
        + cost.report([row for row in drains if row["pacing"] == "shared"])
    )


def pacing_kinds(rows: list[dict[str, Any]]) -> str:
    """The shared limiter's storage requests per email, by kind: where its round trips go."""
    lines = []
    for row in rows:
        kinds = row.get("storage_requests") or {}
        if row["pacing"] != "shared" or not kinds:
            continue
        per = ", ".join(f"{kind} {n / row['sent']:.2f}" for kind, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
        lines.append(f"- {row['mailboxes']} mailbox(es), {row['workers']} worker(s): {per}")
    if not lines:
        return ""
    return (
        "The shared limiter's storage requests per email, by kind (writes count requests or write off finished\n"
        "ones; reads follow a conflict, poll for a free slot, or refresh a stale view):\n" + "\n".join(lines) + "\n\n"
    )


def storage_per_send(row: dict[str, Any]) -> tuple[float, float]:
    """The app's storage requests per email sent: the shared pacing's, and the send records'."""
    counts = row["storage_by_resource"]
    records = counts.get(f"table:{row['send_table']}", 0)
    pacing = sum(n for kind, n in counts.items() if not kind.startswith("queue:")) - records
    return pacing / row["sent"], records / row["sent"]


def send_tables(args: argparse.Namespace) -> None:
    """Tables 1-4."""
    with standins() as settings:
        env = {**os.environ, **settings}
        modes = (
            "start",
            "import-functions",
            "index",
            "first-send",
            "first-send-sdk",
            "first-send-floor",
            "first-send-floor-validated",
            "first-send-warmup",
        )
        cold: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for _ in range(args.runs):  # interleaved: the machine's drift falls on every mode alike
            for mode in modes:
                cold[mode].append(measure(mode, env))
        cpu = {mode: [measure(mode, env, args.sends) for _ in range(3)] for mode in ("cpu", "cpu-sdk", "cpu-floor")}
        economy = measure("economy", env, args.economy_sends, module="bench.load")
    load = measure("throughput", dict(os.environ), args.messages, module="bench.load")

    def median(mode: str, key: str, scale: float = 1.0) -> str:
        return f"{statistics.median(r[key] for r in cold[mode]) * scale:.0f}"

    print(
        table(
            f"1. Cold start (median of {args.runs} fresh processes)",
            ["what", "wall ms", "peak RSS MB"],
            [
                [
                    "the interpreter alone (every process pays it)",
                    median("start", "wall_s", 1000),
                    median("start", "rss_mb"),
                ],
                [
                    "import azure.functions only",
                    median("import-functions", "wall_s", 1000),
                    median("import-functions", "rss_mb"),
                ],
                [
                    "(a) import function_app + index its functions",
                    median("index", "wall_s", 1000),
                    median("index", "rss_mb"),
                ],
                [
                    "(b) m365send: first send (Key Vault, token, sendMail)",
                    median("first-send", "wall_s", 1000),
                    median("first-send", "rss_mb"),
                ],
                [
                    "(b) msgraph-sdk: the same first send",
                    median("first-send-sdk", "wall_s", 1000),
                    median("first-send-sdk", "rss_mb"),
                ],
                [
                    "(b) floor: the mandated libraries alone (azure-identity, Key Vault, msal, httpx)",
                    median("first-send-floor", "wall_s", 1000),
                    median("first-send-floor", "rss_mb"),
                ],
                [
                    "(b) the floor with pydantic v2 validating the message (the other mandated library)",
                    median("first-send-floor-validated", "wall_s", 1000),
                    median("first-send-floor-validated", "rss_mb"),
                ],
            ],
        )
    )

    def ratio(mode: str) -> float:
        own = float(statistics.median(r["wall_s"] for r in cold[mode]))
        return own / float(statistics.median(r["wall_s"] for r in cold["first-send-sdk"]))

    print(
        f"m365send's first send takes {ratio('first-send'):.2f}x the SDK's time; the floor alone, with no "
        f"trigger, validation or error handling, {ratio('first-send-floor'):.2f}x.\n"
    )

    warmed = cold["first-send-warmup"]

    def med(key: str) -> float:
        return float(statistics.median(r[key] for r in warmed))

    def wall_ms(mode: str) -> float:
        return float(statistics.median(r["wall_s"] for r in cold[mode])) * 1000

    # What importing azure.functions adds (the Functions worker has it loaded before the app); the
    # interpreter's own start is not part of it: every process compared here pays that.
    functions_ms = wall_ms("import-functions") - wall_ms("start")
    ours_ms, floor_ms, sdk_ms = wall_ms("first-send"), wall_ms("first-send-floor"), wall_ms("first-send-sdk")
    validated_ms = wall_ms("first-send-floor-validated")
    print(
        table(
            f"1c. A new instance's first email (median of {args.runs} fresh processes)",
            ["", "ms", "against", "ratio", "target"],
            [
                ["warm-up function (reported apart)", f"{med('warmup_ms'):.0f}", "", "", ""],
                [
                    "first send after the warm-up",
                    f"{med('first_after_warmup_ms'):.1f}",
                    f"a warm send, {med('warm_send_ms'):.1f} ms",
                    f"{med('first_after_warmup_ms') / med('warm_send_ms'):.2f}x",
                    "<= 1.2x",
                ],
                [
                    "cold first send, no warm-up, without azure.functions's import",
                    f"{ours_ms - functions_ms:.0f}",
                    f"the floor process, {floor_ms:.0f} ms",
                    f"{(ours_ms - functions_ms) / floor_ms:.2f}x",
                    "<= 1.05x",
                ],
                [
                    "the same",
                    f"{ours_ms - functions_ms:.0f}",
                    f"msgraph-sdk, {sdk_ms:.0f} ms",
                    f"{(ours_ms - functions_ms) / sdk_ms:.2f}x",
                    "< 1x",
                ],
                [
                    "the same",
                    f"{ours_ms - functions_ms:.0f}",
                    f"the floor with pydantic validating the message, {validated_ms:.0f} ms",
                    f"{(ours_ms - functions_ms) / validated_ms:.2f}x",
                    "",
                ],
            ],
        )
    )

    def split(mode: str) -> list[str]:
        runs = cold[mode]
        return [f"{statistics.median(r[k] for r in runs):.0f}" for k in ("setup_ms", "first_call_ms")]

    print(
        table(
            "1b. Where a first send's time goes (median ms; the rest of the wall time is Python's start)",
            ["client", "imports + client set-up", "first call to Graph's 202"],
            [
                ["m365send (Key Vault read in the first call)", *split("first-send")],
                ["msgraph-sdk (Key Vault read in set-up)", *split("first-send-sdk")],
            ],
        )
    )

    def cpu_row(mode: str, name: str) -> list[str]:
        runs = cpu[mode]
        return [
            name,
            f"{statistics.median(r['cpu_ms_per_send'] for r in runs):.2f}",
            f"{statistics.median(r['wall_ms_per_send'] for r in runs):.2f}",
        ]

    print(
        table(
            f"2. Per-send cost on a warm client, 10 KB message ({args.sends} sends, median of 3 processes)",
            ["client", "CPU ms / send", "wall ms / send"],
            [
                cpu_row("cpu", "m365send (validation, cached token, request, response)"),
                cpu_row("cpu-sdk", "msgraph-sdk"),
                cpu_row("cpu-floor", "floor: msal cache hit + httpx post, nothing else"),
            ],
        )
    )
    print(
        table(
            f"3. Throughput at the mailbox limits ({load['messages']} queue messages, one mailbox, one warm worker)",
            ["limits (stand-in)", "sends/s", "ceiling/s", "ratio", "429s received", "dead-lettered", "seconds"],
            [
                [
                    "4 concurrent, 100 per 6 s, 50 ms latency",
                    f"{load['sends_per_second']:.2f}",
                    f"{load['ceiling_per_second']:.2f}",
                    f"{load['ratio']:.0%}",
                    str(load["throttled_429"]),
                    str(load["dead_lettered"]),
                    f"{load['seconds']:.0f}",
                ]
            ],
        )
    )
    per_credential_hour = economy["simulated_hours"] * economy["credentials"]
    print(
        table(
            f"4. Token and Key Vault economy ({economy['sends']:,} sends, {economy['credentials']} credentials, "
            f"{economy['simulated_hours']:g} simulated hours, tokens valid 1 h)",
            ["", "total", "per credential-hour"],
            [
                [
                    "Graph token requests",
                    f"{economy['token_requests']:.0f}",
                    f"{economy['token_requests'] / per_credential_hour:.2f}",
                ],
                [
                    "Key Vault reads",
                    f"{economy['key_vault_reads']:.0f}",
                    f"{economy['key_vault_reads'] / per_credential_hour:.2f}",
                ],
                ["sends served from the token cache", f"{economy['token_cache_hits']:.0f}", ""],
            ],
        )
    )


if __name__ == "__main__":
    main()
