"""Start Azurite (npm package ``azurite``, installed into ``node_modules`` by the scripts) on free ports."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["Azurite"]

ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (published in its documentation); not a secret.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Azurite:
    """Azurite (blob, queue, table) in memory; ``connection_string`` reaches all three.

    Azurite's queue service sweeps deleted messages from its store every 60 s and serves nothing
    while it does: after 2,000 messages went through a queue, every request waited 5.0 to 5.2 s
    (measured), then some connections were reset. Azure Storage does not stop like that, so
    benchmarks that drain thousands of messages pass ``separate=True`` (each service in a process of
    its own: in one process the tables stop too) and ``sweep_queue=False`` (the queue without the
    sweep, ``azurite_queue_unswept.js``; deleted messages then stay in memory, a few MB).
    """

    def __init__(self, *, separate: bool = False, sweep_queue: bool = True) -> None:
        binary = _ROOT / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            found = shutil.which("azurite")
            if not found:
                raise RuntimeError("Azurite is not installed: run `npm ci` in the repository (scripts/test does)")
            binary = Path(found)
        self.ports = {"blob": _free_port(), "queue": _free_port(), "table": _free_port()}
        # Azurite writes a debug-free log of nothing in memory mode, but wants a cwd it may write to.
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        groups = [[service] for service in self.ports] if separate else [list(self.ports)]
        self._sweep_queue = sweep_queue
        self._processes = [self._start(binary, group) for group in groups]
        self._wait_until_listening()

    def _start(self, binary: Path, services: list[str]) -> subprocess.Popen[bytes]:
        command = [str(binary)]
        if services == ["queue"] and not self._sweep_queue:
            command = [shutil.which("node") or "node", str(_ROOT / "standins" / "azurite_queue_unswept.js")]
        elif len(services) == 1:  # azurite-blob, azurite-queue, azurite-table: one service each
            command = [str(binary.with_name(f"{binary.name}-{services[0]}"))]
        options = ["--silent", "--inMemoryPersistence", "--skipApiVersionCheck", "--loose"]
        for service in services:
            options += [f"--{service}Host", "127.0.0.1", f"--{service}Port", str(self.ports[service])]
        return subprocess.Popen(  # noqa: S603 - a fixed local binary
            [*command, *options],
            cwd=self._workdir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def _wait_until_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending and time.monotonic() < deadline:
            for process in self._processes:
                if process.poll() is not None:
                    raise RuntimeError(f"Azurite exited: {process.stderr.read().decode() if process.stderr else ''}")
            for port in list(pending):
                with socket.socket() as probe:
                    if probe.connect_ex(("127.0.0.1", port)) == 0:
                        pending.discard(port)
            time.sleep(0.05)
        if pending:
            self.close()
            raise RuntimeError(f"Azurite did not listen on {sorted(pending)} within {timeout} s")

    def endpoint(self, service: str) -> str:
        """``http://127.0.0.1:<port>/devstoreaccount1`` for blob, queue or table."""
        return f"http://127.0.0.1:{self.ports[service]}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        """A storage connection string, as ``M365Storage`` holds it locally."""
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
            f"BlobEndpoint={self.endpoint('blob')};QueueEndpoint={self.endpoint('queue')};"
            f"TableEndpoint={self.endpoint('table')};"
        )

    def close(self) -> None:
        """Stop Azurite (its data is in memory only, so there is nothing to shut down cleanly)."""
        for process in self._processes:
            process.kill()
            process.wait(timeout=10)
            if process.stderr:
                process.stderr.close()
        self._workdir.cleanup()
