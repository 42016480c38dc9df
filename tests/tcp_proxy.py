"""A loopback TCP proxy a test can cut: a network partition between an agent and its controller."""

from __future__ import annotations

import contextlib
import socket
import threading


class PartitionableProxy:
    """Forwards 127.0.0.1:port to a target port; partition() drops every connection and refuses new ones."""

    def __init__(self, target_port: int) -> None:
        self._target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._partitioned = threading.Event()
        self._lock = threading.Lock()
        self._open: set[socket.socket] = set()
        threading.Thread(target=self._accept, name=f"proxy-{self.port}", daemon=True).start()

    @property
    def url(self) -> str:
        """Where clients connect."""
        return f"http://127.0.0.1:{self.port}"

    def partition(self) -> None:
        """Cut every open connection; new ones are closed as soon as they are accepted."""
        self._partitioned.set()
        with self._lock:
            for connection in self._open:
                _shut(connection)

    def heal(self) -> None:
        """Forward again."""
        self._partitioned.clear()

    def close(self) -> None:
        """Stop listening and cut everything."""
        self.partition()
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._partitioned.is_set():
                _shut(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target_port), timeout=5)
            except OSError:  # the controller is down: the client sees its connection closed
                _shut(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)
            _shut(source)
            _shut(sink)


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)
    connection.close()
