"""Bounded background work: page re-renders and refresh-ahead recomputations off the request path.

With ``stale_while_revalidate`` the request that finds a page stale (and takes
the URL's render lock) is answered from the stale copy at once; the re-render
is handed to one of these, which run it after the response. ``get_or_set`` and
``@memoize`` with ``refresh_ahead`` hand their early recomputations to them too.

* :class:`ThreadWorkers` (WSGI): a small :class:`~concurrent.futures.ThreadPoolExecutor`,
  created on first use in each process. A pool made before ``fork`` (gunicorn's
  ``--preload``) is never used by the children: each child builds its own, and
  forgets the parent's count of jobs in flight.
* :class:`TaskWorkers` (ASGI): ``asyncio`` tasks on the running loop, referenced
  until done.

Both take at most ``limit`` jobs at once, and at most one per ``key`` given;
:meth:`submit` returns ``False`` when all are busy (or that key's job is under
way), and the caller goes on without it: the page shell serves the stale page
and lets go of the lock, so a later request retries. A job that raises is
logged; it never reaches a client. At interpreter exit the thread pool finishes
the jobs in flight (the ``concurrent.futures`` exit hook joins its threads);
under ASGI the page shell waits for them on ``lifespan.shutdown``. Nothing here
imports the rest of cachekit.
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

logger = logging.getLogger("cachekit.background")

#: Default number of background re-renders one page cache runs at once, per process.
REVALIDATE_WORKERS = 4

_THREAD_WORKERS: weakref.WeakSet[ThreadWorkers] = weakref.WeakSet()
_SHARED: dict[tuple[str, int], ThreadWorkers] = {}
_SHARED_LOCK = threading.Lock()


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

    @classmethod
    def shared(cls, limit: int = REVALIDATE_WORKERS, *, name: str = "cachekit-revalidate") -> ThreadWorkers:
        """The process's one pool of ``limit`` threads named ``name``, made on the first call.

        Every page cache of a process with the same ``revalidate_workers`` shares it, so the
        bound is per process, not per decorated view (fifty ``@cache_page`` views would
        otherwise hold up to fifty pools).
        """
        with _SHARED_LOCK:
            workers = _SHARED.get((name, limit))
            if workers is None:
                workers = _SHARED[name, limit] = cls(limit, name=name)
            return workers

    def _reset(self) -> None:
        # Also the fork handler: the child has none of the parent's threads, and its
        # copy of the condition's lock may have been held by one of them.
        self._changed = threading.Condition()
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._running = 0
        self._keys: set[str] = set()

    @property
    def running(self) -> int:
        """Jobs submitted and not yet finished in this process."""
        return self._running if self._pid == os.getpid() else 0

    def submit(self, job: Callable[[], object], key: str | None = None) -> bool:
        """Run ``job()`` on a pool thread; ``False`` (and nothing run) when ``limit`` are running.

        :param key: names the job: while one with this key runs, another is refused.
        """
        if self._pid != os.getpid():  # forked without the at-fork hook (os.fork is not the only way)
            self._reset()
        with self._changed:
            if self._running >= self.limit or (key is not None and key in self._keys):
                return False
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix=self._name)
            try:
                self._pool.submit(self._run, job, key)
            except RuntimeError:  # the interpreter is shutting down: no new threads
                return False
            self._running += 1
            if key is not None:
                self._keys.add(key)
            return True

    def _run(self, job: Callable[[], object], key: str | None) -> None:
        try:
            job()
        except Exception:
            logger.exception("a background job failed")
        finally:
            with self._changed:
                self._running -= 1
                self._keys.discard(key)
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
        self._keys: dict[str, asyncio.Task[None]] = {}

    def _live(self) -> set[asyncio.Task[None]]:
        # A task of a loop that was closed before it finished never will: not counted.
        self._tasks = {task for task in self._tasks if not task.done() and not task.get_loop().is_closed()}
        return self._tasks

    @property
    def running(self) -> int:
        """Jobs started and not yet finished."""
        return len(self._live())

    def submit(self, job: Callable[[], Awaitable[object]], key: str | None = None) -> bool:
        """Start ``await job()`` as a task; ``False`` (and nothing started) when ``limit`` are running.

        Must be called with a running event loop.

        :param key: names the job: while one with this key runs, another is refused.
        """
        tasks = self._live()
        if len(tasks) >= self.limit:
            return False
        if key is not None:
            running = self._keys.get(key)
            if running is not None and running in tasks:
                return False
        task = asyncio.get_running_loop().create_task(self._run(job))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        if key is not None:
            self._keys[key] = task
            task.add_done_callback(
                lambda done: self._keys.pop(key, None) if self._keys.get(key) is done else None
            )
        return True

    def _forget(self, key: str, task: asyncio.Task[None]) -> None:
        if self._keys.get(key) is task:
            del self._keys[key]

    async def _run(self, job: Callable[[], Awaitable[object]]) -> None:
        try:
            await job()
        except Exception:
            logger.exception("a background job failed")

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until no job of the running loop is running; ``False`` if ``timeout`` passed first."""
        loop = asyncio.get_running_loop()
        mine = [task for task in self._live() if task.get_loop() is loop]
        if not mine:
            return True
        _, pending = await asyncio.wait(mine, timeout=timeout)
        return not pending
