"""Run the local stand-ins in a process of their own, so their CPU is not counted as the client's.

Prints one JSON line with the app settings (``apps``: one settings set per worker, with ``--apps N``:
its own app registration and client secret, or, with ``--credential federated``, the same app and
managed identity, each worker with caches of its own), then serves until standard input closes and
prints a second JSON line: what the stand-ins were asked (token requests, identity token requests,
Key Vault reads, Graph requests).
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid

from standins.cloud import LocalCloud


def main() -> None:
    """Serve until stdin closes."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--apps", type=int, default=1, help="workers (app registrations in the secret mode)")
    parser.add_argument("--credential", choices=["secret", "certificate", "federated"], default="secret")
    args = parser.parse_args()
    with LocalCloud() as cloud:
        settings = cloud.env(args.credential)
        if args.credential == "secret":
            extra = [{**settings, **cloud.add_app(str(uuid.uuid4()))} for _ in range(args.apps - 1)]
        else:
            extra = [settings] * (args.apps - 1)
        print(json.dumps({**settings, "BENCH_APPS": json.dumps([settings, *extra])}), flush=True)
        sys.stdin.read()
        counts = {
            "token_requests": sum(cloud.entra.token_requests.values()),
            "identity_requests": sum(cloud.identity.requests.values()),
            "key_vault_reads": sum(cloud.vault.reads.values()),
            "graph_requests": sum(cloud.graph.requests.values()),
        }
        print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main()
