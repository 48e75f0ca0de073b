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
    """One Azurite process (blob, queue, table) in memory; ``connection_string`` reaches all three."""

    def __init__(self) -> None:
        binary = _ROOT / "node_modules" / ".bin" / "azurite"
        if not binary.exists():
            found = shutil.which("azurite")
            if not found:
                raise RuntimeError("Azurite is not installed: run `npm ci` in the repository (scripts/test does)")
            binary = Path(found)
        self.ports = {"blob": _free_port(), "queue": _free_port(), "table": _free_port()}
        # Azurite writes a debug-free log of nothing in memory mode, but wants a cwd it may write to.
        self._workdir = tempfile.TemporaryDirectory(prefix="azurite-")
        self._process = subprocess.Popen(  # noqa: S603 - a fixed local binary
            [
                str(binary),
                "--silent",
                "--inMemoryPersistence",
                "--skipApiVersionCheck",
                "--loose",
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                str(self.ports["blob"]),
                "--queueHost",
                "127.0.0.1",
                "--queuePort",
                str(self.ports["queue"]),
                "--tableHost",
                "127.0.0.1",
                "--tablePort",
                str(self.ports["table"]),
            ],
            cwd=self._workdir.name,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self._wait_until_listening()

    def _wait_until_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        pending = set(self.ports.values())
        while pending and time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"Azurite exited: {self._process.stderr.read().decode() if self._process.stderr else ''}"
                )
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
        self._process.kill()
        self._process.wait(timeout=10)
        if self._process.stderr:
            self._process.stderr.close()
        self._workdir.cleanup()
