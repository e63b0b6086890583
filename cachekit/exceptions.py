"""The errors cachekit raises.

Every error derives from :class:`CacheKitError`, so ``except CacheKitError``
catches them all. The tree (session errors live in ``sessions.exceptions``)::

    CacheKitError
    ├── ConfigurationError(CacheKitError, ValueError)  bad setting, unknown scheme, missing client lib
    ├── CacheError
    │   ├── BackendError                                server answered with an error
    │   │   └── BackendUnavailableError                 refused, timed out, connection lost
    │   ├── SerializationError                          value cannot be (de)serialized
    │   ├── MissingKeyError(CacheError, ValueError)     incr/decr on an absent key
    │   └── LockTimeoutError                            stampede lock not acquired in time
    └── SessionError                                    see sessions.exceptions
"""

from __future__ import annotations


class CacheKitError(Exception):
    """Root of every error raised by cachekit, sessions and middleware."""


class ConfigurationError(CacheKitError, ValueError):
    """A setting, URL or option is wrong; raised when the cache is built.

    :param setting: the name of the offending setting or option, if known.
    """

    def __init__(self, message: str, *, setting: str | None = None) -> None:
        super().__init__(message)
        #: The setting or option that was wrong, e.g. ``"TIMEOUT"``.
        self.setting = setting


class CacheError(CacheKitError):
    """Something went wrong while using a cache."""


class BackendError(CacheError):
    """The cache server answered with an error (out of memory, wrong type, ...)."""


class BackendUnavailableError(BackendError):
    """The cache server could not be reached: refused, timed out or connection lost.

    With the default failure policy :class:`cachekit.Cache` turns this into a
    miss (reads) or a no-op (writes); ``on_error="raise"`` lets it through.
    """


class SerializationError(CacheError):
    """A value could not be serialized for storage, or stored bytes could not be read.

    :param key: the cache key the value belongs to, if known.
    """

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        #: The user-facing key whose value failed, if known.
        self.key = key


class MissingKeyError(CacheError, ValueError):
    """``incr``/``decr`` (or ``incr_version``) was called on a key that is not stored.

    Subclasses :class:`ValueError` because that is what Django raises there.
    """

    def __init__(self, key: str) -> None:
        super().__init__(f"Key {key!r} not found; set it before calling incr/decr.")
        #: The user-facing key that was missing.
        self.key = key


class LockTimeoutError(CacheError):
    """A stampede lock could not be acquired within the allowed wait."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"Lock {name!r} not acquired within {timeout:g} s.")
        #: The lock's name.
        self.name = name
        #: How long the caller waited, in seconds.
        self.timeout = timeout


class SessionError(CacheKitError):
    """Base class of the session errors in :mod:`sessions.exceptions`."""
