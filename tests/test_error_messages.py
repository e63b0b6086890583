"""Errors that say what to do (issue 20): each message names the fix."""

from __future__ import annotations

import warnings

import pytest

import cachekit
from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.null import NullBackend
from cachekit.exceptions import ConfigurationError
from middleware import SessionMiddleware
from sessions.settings import UnknownSettingWarning
from sessions.settings import warn_unknown_settings


def _app(environ: object, start_response: object) -> list[bytes]:
    return [b""]


@pytest.mark.parametrize(
    ("path", "backend"),
    [
        pytest.param("django.core.cache.backends.locmem.LocMemCache", LocMemBackend, id="django-locmem"),
        pytest.param("django.core.cache.backends.dummy.DummyCache", NullBackend, id="django-dummy"),
    ],
)
def test_django_backend_path_names_the_matching_backend(path: str, backend: type) -> None:
    cache = cachekit.config.from_settings({"BACKEND": path, "LOCATION": "errors-test"})
    assert isinstance(cache.backend, backend)


def test_django_redis_and_memcached_paths_resolve_to_ours() -> None:
    from cachekit.backends import load_backend

    assert load_backend("django.core.cache.backends.redis.RedisCache").__name__ == "RedisBackend"
    assert load_backend("django_redis.cache.RedisCache").__name__ == "RedisBackend"
    assert load_backend("django.core.cache.backends.memcached.PyMemcacheCache").__name__ == "MemcachedBackend"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("cachekit.contrib.django.CacheBackend", id="our-django-adapter"),
        pytest.param("collections.OrderedDict", id="not-a-backend"),
    ],
)
def test_dotted_path_to_a_non_backend_says_what_to_write(path: str) -> None:
    with pytest.raises(ConfigurationError, match="short name") as info:
        cachekit.config.from_settings({"BACKEND": path, "LOCATION": "redis://127.0.0.1:6379/0"})
    assert info.value.setting == "BACKEND"
    assert "redis://" in str(info.value)


def test_misspelled_session_setting_is_warned_with_the_closest_name() -> None:
    settings = {"SESSION_ENGINE": "cache", "SESSION_COOKIE_AEG": 60, "SESSION_TYPE": "redis"}
    with pytest.warns(UnknownSettingWarning, match="SESSION_COOKIE_AEG.*did you mean SESSION_COOKIE_AGE"):
        SessionMiddleware.from_settings(_app, settings)


def test_framework_and_own_session_settings_are_not_warned() -> None:
    settings = {
        "SESSION_ENGINE": "cache",
        "SESSION_COOKIE_AGE": 60,
        "SESSION_REFRESH_EACH_REQUEST": True,  # Flask
        "SESSION_FILE_PATH": "/tmp",  # Django
        "SESSION_TYPE": "cachelib",  # Flask-Session
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SessionMiddleware.from_settings(_app, settings)
    assert warn_unknown_settings(settings) == []


def test_settings_module_objects_are_checked_too() -> None:
    class Settings:
        SESSION_IDLE_TIMOUT = 60

    with pytest.warns(UnknownSettingWarning, match="SESSION_IDLE_TIMEOUT"):
        assert warn_unknown_settings(Settings()) == ["SESSION_IDLE_TIMOUT"]


def test_empty_secret_key_says_empty() -> None:
    with pytest.raises(ConfigurationError, match="got an empty string"):
        SessionMiddleware.from_settings(_app, {"SESSION_ENGINE": "signed_cookies", "SECRET_KEY": ""})


def test_one_character_secret_key_is_refused_from_settings() -> None:
    with pytest.raises(ConfigurationError, match="at least 32") as info:
        SessionMiddleware.from_settings(_app, {"SESSION_ENGINE": "signed_cookies", "SECRET_KEY": "k"})
    assert info.value.setting == "SECRET_KEY"
