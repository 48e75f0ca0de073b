"""Run the local stand-ins in a process of their own, so their CPU is not counted as the client's.

Prints one JSON line with the app settings (``apps``: one settings set per app registration, with
``--apps N``), then serves until standard input closes.
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
    parser.add_argument("--apps", type=int, default=1, help="app registrations (credentials) to create")
    args = parser.parse_args()
    with LocalCloud() as cloud:
        settings = cloud.env()
        apps = [settings] + [{**settings, **cloud.add_app(str(uuid.uuid4()))} for _ in range(args.apps - 1)]
        print(json.dumps({**settings, "BENCH_APPS": json.dumps(apps)}), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
