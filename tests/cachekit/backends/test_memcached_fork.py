"""A forked child never uses its parent's memcached sockets, even when no fork hook ran.

uWSGI forks its workers in C and runs Python's ``os.register_at_fork`` hooks only
with ``--py-call-osafterfork``, so the backend's hook cannot be the only guard:
the connection pool checks the process id on every borrow, as redis-py does.
"""

from __future__ import annotations

import os
import weakref

import pytest

from cachekit.backends.memcached import MemcachedBackend
from cachekit.backends.memcached import sync as memcached_module
from tests import servers


def _idle_local_port(backend: MemcachedBackend) -> int:
    """The local port of the connection the single-server pool would lend next."""
    pool = backend._client
    port: int = pool._idle[-1].sock.getsockname()[1]
    return port


@pytest.mark.parametrize("hook_runs", [False, True], ids=["no-fork-hook", "fork-hook"])
def test_child_opens_its_own_connection(
    memcached_server: servers.ServerProcess, monkeypatch: pytest.MonkeyPatch, hook_runs: bool
) -> None:
    backend = MemcachedBackend(servers=[memcached_server.address])
    backend.set("fork:k", b"parent", ttl=None)
    assert backend.get("fork:k") == b"parent"
    parent_port = _idle_local_port(backend)
    if not hook_runs:  # what a C-level fork (uWSGI's default) does: no Python hook at all
        monkeypatch.setattr(memcached_module, "_live_backends", weakref.WeakSet())

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        status = 1
        try:
            value = backend.get("fork:k")
            report = f"{value!r} {_idle_local_port(backend)}"
            os.write(write, report.encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write)
    with os.fdopen(read) as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report
    value, child_port = report.rsplit(" ", 1)
    assert value == repr(b"parent")
    assert int(child_port) != parent_port, "the child borrowed its parent's socket"
    # The parent's own connection is untouched by the child's.
    assert backend.get("fork:k") == b"parent"
    assert _idle_local_port(backend) == parent_port
    backend.close()
