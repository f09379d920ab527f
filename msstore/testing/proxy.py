"""A loopback TCP proxy that can blackhole and heal: network faults for tests.

Put it between a client and a server (PostgreSQL, NATS) and call :meth:`TcpProxy.blackhole`:
connections stay open and new ones are accepted, but no byte moves in either direction, as in
a partitioned network or a hung host (nothing is refused or reset, so neither side learns
anything). :meth:`TcpProxy.heal` lets the held bytes through, in order. :meth:`TcpProxy.cut`
resets every connection, as a server restart does. :meth:`TcpProxy.slow` holds each chunk of
bytes a while before passing it on, as a distant or overloaded server does.

It listens on 127.0.0.1 only and forwards only to the target it was given::

    with TcpProxy("127.0.0.1", pg_port) as proxy:
        store = PostgresStateStore(f"postgresql://postgres@127.0.0.1:{proxy.port}/db")
        proxy.blackhole()
        ...  # calls must fail within their deadline
        proxy.heal()
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Self

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int, *, port: int = 0) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", port))
        self.port: int = self._listener.getsockname()[1]
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = False
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self.connections = 0
        self._delay = 0.0
        self._accepting = threading.Thread(
            target=self._accept, name=f"msstore-proxy-{self.port}", daemon=True
        )
        self._accepting.start()

    def __repr__(self) -> str:
        state = "blackholed" if self.blackholed else "forwarding"
        return f"TcpProxy(127.0.0.1:{self.port} -> {self.target[0]}:{self.target[1]}, {state})"

    @property
    def blackholed(self) -> bool:
        return not self._forwarding.is_set()

    def blackhole(self) -> None:
        """Stop moving bytes; connections stay open (nothing is refused or reset)."""
        self._forwarding.clear()

    def heal(self) -> None:
        """Move bytes again, the held ones first."""
        self._forwarding.set()

    def slow(self, seconds: float) -> None:
        """Hold every chunk ``seconds`` before passing it on, in each direction (0: no delay);
        a round trip then takes at least twice that."""
        if not isinstance(seconds, (int, float)) or not 0 <= seconds <= 60:
            raise ValueError(f"seconds must be from 0 to 60, got {seconds!r}")
        self._delay = float(seconds)

    def cut(self) -> None:
        """Reset every open connection (new ones are still accepted)."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _close(sock)

    def close(self) -> None:
        self._closed = True
        self._forwarding.set()
        _close(self._listener)
        self.cut()
        self._accepting.join(5.0)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._sockets.update((client, upstream))
                self.connections += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                self._forwarding.wait()
                data = src.recv(65536)
                if not data:
                    break
                if self._delay:
                    time.sleep(self._delay)
                self._forwarding.wait()  # blackholed meanwhile: hold the bytes until healed
                dst.sendall(data)
        except OSError:
            pass
        finally:
            _close(src)
            _close(dst)
            with self._lock:
                self._sockets.discard(src)
                self._sockets.discard(dst)


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()
