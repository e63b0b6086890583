"""The example named by ``$CACHEKIT_EXAMPLE``, as gunicorn serves it in tests/examples/test_gunicorn.py.

``gunicorn tests.examples.served:app``; the cache is ``$CACHEKIT_URL``. Every
response says which worker process served it in ``X-Worker-Pid``.
"""

from __future__ import annotations

import os

from tests.examples.apps import with_worker_pid
from tests.examples.apps import wsgi_app

app = with_worker_pid(wsgi_app(os.environ["CACHEKIT_EXAMPLE"]))
