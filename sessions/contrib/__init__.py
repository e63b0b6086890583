"""Framework adapters for cachekit sessions; import the one you need explicitly.

* :mod:`sessions.contrib.django`: a Django ``SESSION_ENGINE`` (and a session
  middleware answering outages);
* :mod:`sessions.contrib.flask`: a Flask ``SessionInterface``;
* :mod:`sessions.contrib.starlette`: Starlette's ``SessionMiddleware``, on cachekit stores.

Each imports its framework; this package imports none. It holds the one
outage answer they share with :class:`middleware.SessionMiddleware`: when the
session store is down, the request gets ``503 Service Unavailable`` with
``Retry-After: 5`` and a short plain-text body, never a 500 and a traceback.
"""

#: The status every integration answers when the session store is unreachable.
UNAVAILABLE_STATUS = 503
#: Seconds a client is told to wait (``Retry-After``).
RETRY_AFTER = 5
#: The plain-text body of that answer.
UNAVAILABLE_BODY = b"Service Unavailable: the session store is not reachable.\n"

__all__ = ["RETRY_AFTER", "UNAVAILABLE_BODY", "UNAVAILABLE_STATUS"]
