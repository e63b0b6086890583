"""The async sources of the cache fronts: edit these, then run ``.ci/unasync.py`` for the sync twins."""
