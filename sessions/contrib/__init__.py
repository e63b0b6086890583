"""Framework adapters for cachekit sessions; import the one you need explicitly.

* :mod:`sessions.contrib.django`: a Django ``SESSION_ENGINE``;
* :mod:`sessions.contrib.flask`: a Flask ``SessionInterface``.

Each imports its framework; this package imports none.
"""
