"""Misbehaving servers on free loopback ports: one that never answers, one that breaks off replies.

Both run in the test process (threads), close their sockets on ``close()``,
and are used as context managers.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType

from tests.servers import HOST


class SilentServer:
    """Accepts TCP connections (the kernel completes the handshake) but never reads or answers.

    With ``backlog_full`` the listen queue is filled first, so new connections
    are never even established: the client's *connect* hangs instead.
    """

    def __init__(self, *, backlog_full: bool = False) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self._socket.listen(0)
        self._fillers: list[socket.socket] = []
        #: The port it listens on.
        self.port: int = self._socket.getsockname()[1]
        if backlog_full:
            # Linux queues backlog + 1 connections; two more than that are certainly dropped.
            for _ in range(3):
                filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                filler.setblocking(False)
                with contextlib.suppress(BlockingIOError):
                    filler.connect((HOST, self.port))
                self._fillers.append(filler)

    def close(self) -> None:
        for filler in self._fillers:
            filler.close()
        self._socket.close()

    def __enter__(self) -> SilentServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class BreakingServer:
    """Reads each request, sends ``reply`` (part of an answer, or garbage) and drops the connection.

    :param reply: the bytes sent before the connection ends.
    :param reset: end with a TCP reset (``SO_LINGER`` 0) instead of an orderly close.
    """

    def __init__(self, reply: bytes, *, reset: bool = False) -> None:
        self.reply = reply
        self.reset = reset
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind((HOST, 0))
        self._socket.listen(16)
        #: The port it listens on.
        self.port: int = self._socket.getsockname()[1]
        #: How many connections it broke.
        self.broken = 0
        self._closed = threading.Event()
        self._socket.settimeout(0.05)  # accept() wakes up to notice close()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            with connection:
                with contextlib.suppress(OSError):
                    connection.settimeout(2.0)
                    if connection.recv(65536):
                        connection.sendall(self.reply)
                    if self.reset:
                        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.broken += 1

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
        self._socket.close()

    def __enter__(self) -> BreakingServer:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
