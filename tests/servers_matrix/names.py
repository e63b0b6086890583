"""Names the matrix apps and their tests share: environment variables, timings, cache keys."""

#: The cache URL (a Redis URL in the matrix).
URL_VAR = "CACHEKIT_MATRIX_URL"
#: A file each process appends its pid to when it closes the cache at exit.
CLOSE_LOG_VAR = "CACHEKIT_MATRIX_CLOSE_LOG"
#: The name of this app instance, answered in ``X-Instance``.
INSTANCE_VAR = "CACHEKIT_MATRIX_INSTANCE"
#: Seconds each page render takes, so that a stampede's requests overlap it.
RENDER_SECONDS = 0.3
#: Prefix of the shared counters of renders per path.
RENDERS_KEY = "matrix.renders:"
