"""Peak memory of a worker sending one large blob attachment: ``python -m bench.memory [--mb 100]``.

The parent starts the stand-ins (their own process) and Azurite, uploads a blob of random bytes in
4 MiB blocks, then runs a fresh worker process that warms up with a small blob attachment (imports,
token, secret, Blob client, connections), reads its peak RSS, sends the large blob through the real
HTTP function (draft, upload session, chunk by chunk) and reads its peak RSS again. The worker
prints one JSON line; the parent prints it as a table.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import resource
import time
from typing import Any

from bench.harness import run_worker, standins, table
from standins.examples import SEED_EXAMPLE

CONTAINER = "attachments"
BLOCK = 4 * 1024 * 1024


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def worker(blob: str) -> dict[str, Any]:
    """In the measured process: warm up, then send ``blob`` as an attachment; RSS before and after."""
    import azure.functions as func  # noqa: TID251 - the benchmark drives the real trigger

    import function_app

    send = next(f for f in function_app.app.get_functions() if f.get_function_name() == "send").get_user_function()

    def post(reference: str) -> None:
        message = {**SEED_EXAMPLE, "Attachments": [{"Blob": reference}]}
        request = func.HttpRequest("POST", "/api/send", body=json.dumps(message).encode(), headers={}, params={})
        response = send(request)
        if response.status_code != 202:
            raise RuntimeError(response.get_body().decode())

    post(f"{CONTAINER}/small.bin")
    idle_peak, idle_now = _peak_rss_mb(), _rss_mb()
    started = time.perf_counter()
    post(blob)
    seconds = time.perf_counter() - started
    return {"idle_peak_mb": idle_peak, "idle_rss_mb": idle_now, "peak_mb": _peak_rss_mb(), "seconds": seconds}


def measure(megabytes: int) -> dict[str, Any]:
    """Set up the blob and the stand-ins, run one fresh worker, return its figures."""
    from azure.storage.blob import BlobBlock, BlobServiceClient

    from standins.azurite import Azurite

    azurite = Azurite()
    try:
        container = BlobServiceClient.from_connection_string(azurite.connection_string).create_container(CONTAINER)
        container.upload_blob("small.bin", os.urandom(10_000))
        big = container.get_blob_client("big.bin")
        blocks: list[BlobBlock] = []
        for n in range(-(-megabytes * 1024 * 1024 // BLOCK)):
            block_id = base64.b64encode(f"{n:08d}".encode()).decode()
            big.stage_block(block_id, os.urandom(min(BLOCK, megabytes * 1024 * 1024 - n * BLOCK)))
            blocks.append(BlobBlock(block_id=block_id))
        big.commit_block_list(blocks)
        with standins(apps=1) as settings:
            env = {
                **os.environ,
                **settings,
                "M365Storage": azurite.connection_string,
                "M365_ATTACHMENT_CONTAINERS": CONTAINER,
            }
            figures = run_worker("bench.memory", ["--worker", f"{CONTAINER}/big.bin"], env, timeout=600)
        return {**figures, "file_mb": megabytes}
    finally:
        azurite.close()


def report(figures: dict[str, Any]) -> str:
    """The figures as a table."""
    growth = figures["peak_mb"] - figures["idle_peak_mb"]
    return table(
        f"5. Memory sending one {figures['file_mb']} MB blob attachment (draft + upload session, one warm worker)",
        ["file MB", "idle worker RSS MB", "peak RSS MB", "peak growth MB", "target", "send s", "MB/s"],
        [
            [
                str(figures["file_mb"]),
                f"{figures['idle_peak_mb']:.0f}",
                f"{figures['peak_mb']:.0f}",
                f"{growth:.1f}",
                "< 64" + (" (met)" if growth < 64 else " (NOT met)"),
                f"{figures['seconds']:.1f}",
                f"{figures['file_mb'] / figures['seconds']:.0f}",
            ]
        ],
    )


def main() -> None:
    """Parent: ``--mb N`` (default 100). Worker: ``--worker container/blob``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="size of the attachment blob in MiB")
    parser.add_argument("--worker", metavar="BLOB", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker)))
        return
    print(report(measure(args.mb)))


if __name__ == "__main__":
    main()
