"""A TCP fault proxy for tests: forwards loopback traffic and misbehaves on request.

Put it between a client and a real server (``FaultProxy(upstream_port).start()``,
then point the client at ``proxy.port``) and ask for one fault at a time:

* :meth:`FaultProxy.drop_replies`: the next ``n`` chunks from the server are
  swallowed, so the client waits for a reply that never comes (its socket timeout);
* :meth:`FaultProxy.cut_after_requests`: the next ``n`` requests reach the server,
  then the client's connection is closed before the reply (a "lost connection"
  after the command may have run);
* :meth:`FaultProxy.fake_replies`: the next requests are answered with the given
  bytes and never reach the server (e.g. ``b"-LOADING ...\\r\\n"``);
* :meth:`FaultProxy.delay`: replies are held for ``seconds``;
* :meth:`FaultProxy.cut`: every open connection is closed now.

One request or reply is assumed to be one chunk, which holds for the small,
one-at-a-time commands the tests send. Threads only; stopped by :meth:`stop`.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from collections import deque

from tests.servers import HOST


class FaultProxy:
    """Forwards ``127.0.0.1:port`` to ``127.0.0.1:upstream_port``, with faults on request."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.create_server((HOST, 0))
        self.port: int = self._listener.getsockname()[1]
        # accept() is not woken by close() on Linux: poll so stop() returns promptly.
        self._listener.settimeout(0.1)
        self._lock = threading.Lock()
        self._drop = 0
        self._cut_after = 0
        self._fakes: deque[bytes] = deque()
        self._delay = 0.0
        self._sockets: set[socket.socket] = set()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        #: Counters of faults actually applied, for assertions.
        self.dropped = self.cuts = self.faked = 0

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(5)
        self._listener.close()
        self.cut()

    # -- faults ----------------------------------------------------------------

    def drop_replies(self, count: int = 1) -> None:
        with self._lock:
            self._drop += count

    def cut_after_requests(self, count: int = 1) -> None:
        with self._lock:
            self._cut_after += count

    def fake_replies(self, *replies: bytes) -> None:
        with self._lock:
            self._fakes.extend(replies)

    def delay(self, seconds: float) -> None:
        with self._lock:
            self._delay = seconds

    def cut(self) -> None:
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    # -- plumbing --------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection((HOST, self.upstream_port), timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while not self._stopped.is_set():
                readable, _, _ = select.select([client, upstream], [], [], 0.2)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is client:
                        self._from_client(client, upstream, data)
                    else:
                        self._from_server(client, data)
        except (OSError, ValueError):
            return
        finally:
            for sock in (client, upstream):
                with self._lock:
                    self._sockets.discard(sock)
                sock.close()

    def _from_client(self, client: socket.socket, upstream: socket.socket, data: bytes) -> None:
        with self._lock:
            fake = self._fakes.popleft() if self._fakes else None
            cut = self._cut_after > 0
            if cut:
                self._cut_after -= 1
        if fake is not None:
            self.faked += 1
            client.sendall(fake)
            return
        upstream.sendall(data)
        if cut:
            self.cuts += 1
            time.sleep(0.05)  # let the server run the command before the client loses it
            raise OSError("cut after request")

    def _from_server(self, client: socket.socket, data: bytes) -> None:
        with self._lock:
            drop = self._drop > 0
            if drop:
                self._drop -= 1
            delay = self._delay
        if drop:
            self.dropped += 1
            return
        if delay:
            time.sleep(delay)
        client.sendall(data)
