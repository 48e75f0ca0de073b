"""Table 5b: peak memory of a worker validating and sending a large inline body: ``python -m bench.body_memory``.

For each case a fresh worker process warms up with a small send, builds the request body (an
inline attachment as base64, on one line or wrapped at 76 columns as MIME tools write it), resets
the kernel's peak-RSS mark (``/proc/self/clear_refs``), hands the body to the real HTTP function
(validation, then a draft and an upload session to the Graph stand-in) and reads the peak again.
The growth is what handling the request cost on top of the body it received.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import time
from typing import Any

from bench.harness import run_worker, standins, table
from standins.examples import SEED_EXAMPLE

MB = 1024 * 1024


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _body(megabytes: int, wrapped: bool) -> bytes:
    """A request body of about ``megabytes`` MB: the seed example with one inline attachment."""
    raw = os.urandom(megabytes * MB * 3 // 4)
    encoded = base64.encodebytes(raw) if wrapped else base64.b64encode(raw)  # encodebytes wraps at 76
    del raw
    message = {**SEED_EXAMPLE, "Attachments": [{"Name": "scan.pdf", "ContentBytes": "@"}]}
    head, tail = json.dumps(message).encode().split(b'"@"')
    # JSON escapes the newlines of wrapped base64 as \n, as a client's serializer would.
    return head + b'"' + encoded.replace(b"\n", b"\\n") + b'"' + tail


def worker(megabytes: int, wrapped: bool) -> dict[str, Any]:
    """In the measured process: warm up, build the body, reset the peak, send; the figures."""
    import azure.functions as func  # noqa: TID251 - the benchmark drives the real trigger

    import function_app

    send = next(f for f in function_app.app.get_functions() if f.get_function_name() == "send").get_user_function()

    def post(body: bytes) -> None:
        response = send(func.HttpRequest("POST", "/api/send", body=body, headers={}, params={}))
        if response.status_code != 202:
            raise RuntimeError(response.get_body().decode()[:2000])

    post(json.dumps(SEED_EXAMPLE).encode())
    body = _body(megabytes, wrapped)
    gc.collect()
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset VmHWM (peak RSS) to the current RSS
    before = _status_mb("VmHWM")
    started = time.perf_counter()
    post(body)
    return {
        "body_mb": len(body) / MB,
        "wrapped": wrapped,
        "rss_before_mb": before,
        "peak_mb": _status_mb("VmHWM"),
        "seconds": time.perf_counter() - started,
    }


def measure(megabytes: int) -> list[dict[str, Any]]:
    """Both cases, each in a fresh worker, against the stand-ins."""
    rows = []
    with standins(apps=1) as settings:
        env = {**os.environ, **settings}
        for wrapped in (False, True):
            args = ["--worker", str(megabytes), *(["--wrapped"] if wrapped else [])]
            rows.append(run_worker("bench.body_memory", args, env))
    return rows


def report(rows: list[dict[str, Any]]) -> str:
    """The figures as a table."""
    lines = []
    for r in rows:
        growth = r["peak_mb"] - r["rss_before_mb"]
        ratio = growth / r["body_mb"]
        lines.append(
            [
                f"{r['body_mb']:.0f}",
                "wrapped at 76 columns" if r["wrapped"] else "one line",
                f"{r['rss_before_mb']:.0f}",
                f"{r['peak_mb']:.0f}",
                f"{growth:.0f}",
                f"{ratio:.2f}x",
                "<= 2x" + (" (met)" if ratio <= 2 else " (NOT met)"),
                f"{r['seconds']:.1f}",
            ]
        )
    return table(
        "5b. Memory handling one large request body (inline base64 attachment, validation + draft + upload session)",
        ["body MB", "base64", "RSS with the body MB", "peak RSS MB", "peak growth MB", "growth / body", "target", "s"],
        lines,
    )


def main() -> None:
    """Parent: ``--mb N`` (default 100, the largest HTTP body Azure Functions takes). Worker: ``--worker N``."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=100, help="request body size in MB")
    parser.add_argument("--worker", type=int, metavar="MB", help=argparse.SUPPRESS)
    parser.add_argument("--wrapped", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.wrapped)))
        return
    print(report(measure(args.mb)))


if __name__ == "__main__":
    main()
