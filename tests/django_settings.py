"""Configure Django once per test process, with settings every Django test can share."""

from __future__ import annotations

from typing import Any


def configure_django(**overrides: Any) -> None:
    """Configure Django's settings if no one has yet; later calls change nothing."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-secret-key-not-for-production-0123456789",
        ALLOWED_HOSTS=["*"],
        USE_TZ=True,
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.sessions"],
        DATABASES={},
        CACHES={
            "default": {"BACKEND": "cachekit.contrib.django.CacheBackend", "LOCATION": "django-default"},
            "prefixed": {
                "BACKEND": "cachekit.contrib.django.CacheBackend",
                "LOCATION": "django-default",
                "KEY_PREFIX": "pfx",
                "VERSION": 3,
            },
            "short": {
                "BACKEND": "cachekit.contrib.django.CacheBackend",
                "LOCATION": "django-short",
                "TIMEOUT": 1,
                "OPTIONS": {"MAX_ENTRIES": 50},
            },
        },
        # Sessions through cachekit (tests/contrib/test_django_sessions.py); the
        # URLs and views those tests drive live in tests/contrib/django_urls.py.
        SESSION_ENGINE="sessions.contrib.django",
        MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware"],
        ROOT_URLCONF="tests.contrib.django_urls",
        **overrides,
    )
    django.setup()
