"""cachekit: one cache API over local-memory, Redis and Memcached backends."""

from cachekit.cache import DEFAULT_TIMEOUT
from cachekit.cache import Cache
from cachekit.config import caches
from cachekit.config import configure
from cachekit.config import from_settings
from cachekit.config import from_url
from cachekit.exceptions import BackendError
from cachekit.exceptions import BackendUnavailableError
from cachekit.exceptions import CacheError
from cachekit.exceptions import CacheKitError
from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import LockTimeoutError
from cachekit.exceptions import MissingKeyError
from cachekit.exceptions import SerializationError
from cachekit.memoize import memoize
from cachekit.views import cache_page
from cachekit.views import purge

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "BackendError",
    "BackendUnavailableError",
    "Cache",
    "CacheError",
    "CacheKitError",
    "ConfigurationError",
    "LockTimeoutError",
    "MissingKeyError",
    "SerializationError",
    "__version__",
    "cache_page",
    "caches",
    "configure",
    "from_settings",
    "from_url",
    "memoize",
    "purge",
]
