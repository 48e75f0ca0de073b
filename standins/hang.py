"""A TCP relay in front of a local service that can be told to hang, the way a stalled dependency does.

While ``paused``, the relay accepts connections and reads what clients send but forwards nothing
either way: a client sees its request go out and no answer come back until its own read timeout.
TLS passes through untouched (the relay never looks at the bytes), so it fits the HTTPS stand-ins
as well as Azurite. ``resume`` lets the held bytes flow again.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading

__all__ = ["HangingRelay"]


class HangingRelay:
    """Relays ``127.0.0.1:port`` to ``target_port``; ``pause()`` makes the service hang, ``resume()`` ends it."""

    def __init__(self, target_port: int, *, host: str = "127.0.0.1") -> None:
        self._target = (host, target_port)
        self._listener = socket.create_server((host, 0))
        self.port: int = self._listener.getsockname()[1]
        self._running = threading.Event()
        self._running.set()  # set: bytes flow; clear: the relay holds them
        self._closed = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="hanging-relay", daemon=True).start()

    def pause(self) -> None:
        """From now on, hold every byte: requests under way and new ones get no answer."""
        self._running.clear()

    def resume(self) -> None:
        """Let the held bytes flow again."""
        self._running.set()

    def url(self, scheme: str = "http") -> str:
        """The relay's base URL."""
        return f"{scheme}://127.0.0.1:{self.port}"

    def close(self) -> None:
        """Stop relaying and close every connection."""
        self._closed = True
        self._running.set()
        with self._lock:
            for sock in [self._listener, *self._sockets]:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self._target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed:
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    self._running.wait()  # a paused relay reads nothing more, so nothing is forwarded
                    if self._closed:
                        return
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
