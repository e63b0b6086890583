"""Bounded background work for the page cache: re-renders off the request path.

With ``stale_while_revalidate`` the request that finds a page stale (and takes
the URL's render lock) is answered from the stale copy at once; the re-render
is handed to one of these, which run it after the response:

* :class:`ThreadWorkers` (WSGI): a small :class:`~concurrent.futures.ThreadPoolExecutor`,
  created on first use in each process. A pool made before ``fork`` (gunicorn's
  ``--preload``) is never used by the children: each child builds its own, and
  forgets the parent's count of jobs in flight.
* :class:`TaskWorkers` (ASGI): ``asyncio`` tasks on the running loop, referenced
  until done.

Both take at most ``limit`` jobs at once; :meth:`submit` returns ``False`` when
all are busy, and the shell then serves the stale page and lets go of the lock
(a later request retries). A job that raises is logged; it never reaches a
client. At interpreter exit the thread pool finishes the jobs in flight (the
``concurrent.futures`` exit hook joins its threads); under ASGI the shell waits
for them on ``lifespan.shutdown``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Awaitable
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

logger = logging.getLogger("cachekit.views")

#: Default number of background re-renders one page cache runs at once, per process.
REVALIDATE_WORKERS = 4

_THREAD_WORKERS: weakref.WeakSet[ThreadWorkers] = weakref.WeakSet()


class ThreadWorkers:
    """At most ``limit`` jobs at once on threads of a pool made lazily in each process."""

    def __init__(self, limit: int = REVALIDATE_WORKERS, *, name: str = "cachekit-revalidate") -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}.")
        #: Jobs run at once.
        self.limit = limit
        self._name = name
        self._reset()
        _THREAD_WORKERS.add(self)

    def _reset(self) -> None:
        # Also the fork handler: the child has none of the parent's threads, and its
        # copy of the condition's lock may have been held by one of them.
        self._changed = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._running = 0

    @property
    def running(self) -> int:
        """Jobs submitted and not yet finished in this process."""
        return self._running if self._pid == os.getpid() else 0

    def submit(self, job: Callable[[], object]) -> bool:
        """Run ``job()`` on a pool thread; ``False`` (and nothing run) when ``limit`` are running."""
        if self._pid != os.getpid():  # forked without the at-fork hook (os.fork is not the only way)
            self._reset()
        with self._changed:
            if self._running >= self.limit:
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix=self._name)
            try:
                self._pool.submit(self._run, job)
            except RuntimeError:  # the interpreter is shutting down: no new threads
                return False
            self._running += 1
            return True

    def _run(self, job: Callable[[], object]) -> None:
        try:
            job()
        except Exception:
            logger.exception("a background page re-render failed; the stale copy stays")
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until no job is running; ``False`` if ``timeout`` seconds passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self.running == 0, timeout)


def _after_fork_in_child() -> None:
    for workers in list(_THREAD_WORKERS):
        workers._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class TaskWorkers:
    """At most ``limit`` jobs at once as ``asyncio`` tasks on the running loop."""

    def __init__(self, limit: int = REVALIDATE_WORKERS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, got {limit!r}.")
        #: Jobs run at once.
        self.limit = limit
        self._tasks: set[asyncio.Task[None]] = set()

    def _live(self) -> set[asyncio.Task[None]]:
        # A task of a loop that was closed before it finished never will: not counted.
        self._tasks = {task for task in self._tasks if not task.done() and not task.get_loop().is_closed()}
        return self._tasks

    @property
    def running(self) -> int:
        """Jobs started and not yet finished."""
        return len(self._live())

    def submit(self, job: Callable[[], Awaitable[object]]) -> bool:
        """Start ``await job()`` as a task; ``False`` (and nothing started) when ``limit`` are running.

        Must be called with a running event loop.
        """
        tasks = self._live()
        if len(tasks) >= self.limit:
            return False
        task = asyncio.get_running_loop().create_task(self._run(job))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        return True

    async def _run(self, job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        except Exception:
            logger.exception("a background page re-render failed; the stale copy stays")

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until no job of the running loop is running; ``False`` if ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        mine = [task for task in self._live() if task.get_loop() is loop]
        if not mine:
            return True
        _, pending = await asyncio.wait(mine, timeout=timeout)
        return not pending
