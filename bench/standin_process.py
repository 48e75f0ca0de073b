"""Run the local stand-ins in a process of their own, so their CPU is not counted as the client's.

Prints one JSON line with the app settings, then serves until standard input closes.
"""

from __future__ import annotations

import json
import sys

from standins.cloud import LocalCloud


def main() -> None:
    """Serve until stdin closes."""
    with LocalCloud() as cloud:
        print(json.dumps(cloud.env()), flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
