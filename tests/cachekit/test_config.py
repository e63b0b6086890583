"""Configuration: URLs, settings mappings, the caches registry and their errors."""

from __future__ import annotations

import types
from collections.abc import Iterator
from typing import Any

import pytest

import cachekit
from cachekit import ConfigurationError
from cachekit import caches
from cachekit import configure
from cachekit import from_settings
from cachekit import from_url
from cachekit.backends import load_backend
from cachekit.backends import register_backend
from cachekit.backends.locmem import LocMemBackend
from cachekit.backends.null import NullBackend
from cachekit.serializers import JSONSerializer


@pytest.fixture(autouse=True)
def _reset_registry() -> Iterator[None]:
    yield
    caches.configure(None)


def test_from_url_locmem_options() -> None:
    cache = from_url("locmem://named?max_entries=500&timeout=60&key_prefix=app&version=3")
    assert isinstance(cache.backend, LocMemBackend)
    assert cache.backend.location == "named"
    assert cache.backend.max_entries == 500
    assert (cache.default_timeout, cache.key_prefix, cache.version) == (60, "app", 3)


def test_from_url_keyword_options_win() -> None:
    cache = from_url("locmem://?timeout=60", timeout=5, serializer="json")
    assert cache.default_timeout == 5
    assert isinstance(cache.serializer, JSONSerializer)


def test_from_url_timeout_none() -> None:
    assert from_url("locmem://?timeout=none").default_timeout is None


def test_from_url_null() -> None:
    assert isinstance(from_url("null://").backend, NullBackend)


@pytest.mark.parametrize(
    ("url", "setting", "fragment"),
    [
        pytest.param("locmem://?max_entires=5", "max_entires", "max_entries", id="misspelled-option"),
        pytest.param("locmem://?max_entries=lots", "max_entries", "'lots'", id="bad-int"),
        pytest.param("locmem://?timeout=soon", "timeout", "'soon'", id="bad-timeout"),
        pytest.param("locmem://?timeout=1&timeout=2", "timeout", "twice", id="duplicate"),
        pytest.param("locmem://?on_error=explode", "on_error", "explode", id="bad-on-error"),
        pytest.param("locmem://?serializer=yaml", "serializer", "yaml", id="bad-serializer"),
        pytest.param("bogus://host", "BACKEND", "bogus", id="unknown-scheme"),
        pytest.param("no-scheme-at-all", "url", "scheme://", id="no-scheme"),
        pytest.param("locmem://?a&&=", "url", "Malformed", id="bad-query"),
    ],
)
def test_bad_urls_name_the_setting(url: str, setting: str, fragment: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_url(url)
    assert info.value.setting == setting
    assert fragment in str(info.value)


def test_password_is_redacted_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        from_url("redis://user:s3cret@127.0.0.1:1/0?nonsense_option=1")
    assert "s3cret" not in str(info.value)


def test_settings_mapping() -> None:
    cache = from_settings(
        {
            "BACKEND": "locmem",
            "LOCATION": "settings-loc",
            "TIMEOUT": 60,
            "KEY_PREFIX": "p",
            "VERSION": 2,
            "OPTIONS": {"max_entries": 10, "on_error": "raise"},
        }
    )
    assert isinstance(cache.backend, LocMemBackend)
    assert (cache.backend.location, cache.backend.max_entries) == ("settings-loc", 10)
    assert (cache.default_timeout, cache.key_prefix, cache.version, cache.on_error) == (60, "p", 2, "raise")


def test_settings_backend_as_url_and_location_url() -> None:
    assert isinstance(from_settings({"BACKEND": "null://"}).backend, NullBackend)
    assert isinstance(from_settings({"LOCATION": "null://"}).backend, NullBackend)


def test_settings_dotted_backend_path() -> None:
    cache = from_settings({"BACKEND": "cachekit.backends.null.NullBackend"})
    assert isinstance(cache.backend, NullBackend)


def test_settings_key_function_dotted_path() -> None:
    cache = from_settings(
        {"BACKEND": "locmem", "LOCATION": "kf", "KEY_FUNCTION": "tests.cachekit.test_config.upper_key"}
    )
    cache.set("abc", 1)
    assert cache.backend.get("::1:ABC") == 1


def upper_key(key: str, prefix: str, version: int) -> str:
    return f"{prefix}::{version}:{key.upper()}"


@pytest.mark.parametrize(
    ("config", "setting"),
    [
        pytest.param({"BACKEND": "locmem", "TIMEOUTS": 5}, "TIMEOUTS", id="misspelled-setting"),
        pytest.param({"BACKEND": "nosuch"}, "BACKEND", id="unknown-backend"),
        pytest.param({"BACKEND": "no.such.module.Backend"}, "BACKEND", id="bad-dotted-path"),
        pytest.param({"BACKEND": "cachekit.backends.null.Nope"}, "BACKEND", id="missing-class"),
        pytest.param({"BACKEND": "locmem", "OPTIONS": {"colour": "blue"}}, "colour", id="unknown-option"),
        pytest.param({"BACKEND": "locmem", "OPTIONS": {"max_entries": "x"}}, "max_entries", id="bad-option"),
        pytest.param(
            {"BACKEND": "locmem", "OPTIONS": {"max_entries": 1.5}}, "max_entries", id="float-for-int"
        ),
        pytest.param({"BACKEND": "locmem", "OPTIONS": []}, "OPTIONS", id="options-type"),
        pytest.param({"BACKEND": "locmem", "TIMEOUT": 0}, "TIMEOUT", id="zero-timeout"),
        pytest.param({"BACKEND": "locmem", "VERSION": "2"}, "version", id="version-type"),
        pytest.param({"BACKEND": 5}, "BACKEND", id="backend-type"),
        pytest.param({"BACKEND": "locmem", "LOCATION": ["a"]}, "LOCATION", id="location-type"),
        pytest.param({"BACKEND": "locmem", "KEY_FUNCTION": "nowhere.fn"}, "KEY_FUNCTION", id="key-function"),
    ],
)
def test_bad_settings_fail_at_construction(config: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        from_settings(config)
    assert info.value.setting == setting


def test_missing_client_library_is_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    register_backend("broken", "cachekit_no_such_module:Backend")
    with pytest.raises(ConfigurationError, match="install"):
        load_backend("broken")


def test_registry_defaults_to_locmem(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CACHEKIT_URL", raising=False)
    caches.configure(None)
    assert isinstance(caches["default"].backend, LocMemBackend)
    assert caches["default"] is caches["default"]


def test_registry_reads_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CACHEKIT_URL", "null://?timeout=7")
    caches.configure(None)
    assert isinstance(caches["default"].backend, NullBackend)
    assert caches["default"].default_timeout == 7


@pytest.mark.parametrize("style", ["dict", "module", "object", "keywords"])
def test_configure_accepts_settings_shapes(style: str) -> None:
    caches_setting = {"default": {"BACKEND": "null"}, "pages": "locmem://pages?timeout=30"}
    if style == "dict":
        configure({"CACHES": caches_setting})
    elif style == "module":
        module = types.ModuleType("settings")
        module.CACHES = caches_setting  # type: ignore[attr-defined]
        configure(module)
    elif style == "object":
        configure(types.SimpleNamespace(CACHES=caches_setting))
    else:
        configure(CACHES=caches_setting)
    assert isinstance(caches["default"].backend, NullBackend)
    assert caches["pages"].default_timeout == 30
    assert caches["pages"].name == "pages"


def test_unknown_alias_is_key_error() -> None:
    configure(CACHES={"default": {"BACKEND": "null"}})
    with pytest.raises(KeyError, match="nope"):
        caches["nope"]


def test_configure_rejects_bad_caches() -> None:
    with pytest.raises(ConfigurationError):
        configure(CACHES=["not", "a", "mapping"])
    with pytest.raises(ConfigurationError):
        configure(CACHES={"default": 5})


def test_flask_style_config() -> None:
    flask = pytest.importorskip("flask")
    app = flask.Flask(__name__)
    app.config["CACHES"] = {"default": {"BACKEND": "locmem", "LOCATION": "flask", "TIMEOUT": 12}}
    configure(app.config)
    assert caches["default"].default_timeout == 12


def test_version_is_single_sourced() -> None:
    from importlib.metadata import version

    assert cachekit.__version__ == version("cachekit-suite")
