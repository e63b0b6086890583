"""The sync cache fronts, generated from ``cachekit/fronts/_async`` by ``.ci/unasync.py``: do not edit."""
