"""cachekit.contrib.django.CacheBackend behaves as Django's cache API promises, on every backend."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.django_settings import configure_django

pytest.importorskip("django")
configure_django()

from django.core.cache import CacheKeyWarning  # noqa: E402
from django.core.cache import caches  # noqa: E402

from cachekit.contrib.django import CacheBackend  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402


@pytest.fixture(params=["locmem", "redis", "memcached"])
def cache(request: pytest.FixtureRequest) -> Iterator[CacheBackend]:
    if request.param == "locmem":
        backend = caches["default"]
    else:
        server: ServerProcess = request.getfixturevalue(f"{request.param}_server")
        backend = CacheBackend(f"{request.param}://{server.address}", {"KEY_PREFIX": "dj"})
    backend.clear()
    yield backend
    backend.clear()


def test_django_finds_the_backend() -> None:
    assert isinstance(caches["default"], CacheBackend)


def test_set_get_delete(cache: CacheBackend) -> None:
    cache.set("k", {"a": 1})
    assert cache.get("k") == {"a": 1}
    assert cache.delete("k") is True
    assert cache.get("k", "gone") == "gone"


def test_add(cache: CacheBackend) -> None:
    assert cache.add("k", 1) is True
    assert cache.add("k", 2) is False
    assert cache.get("k") == 1


def test_timeout_zero_expires_at_once(cache: CacheBackend) -> None:
    cache.set("k", "v", 0)
    assert cache.get("k") is None


def test_timeout_none_never_expires(cache: CacheBackend) -> None:
    cache.set("k", "v", None)
    assert cache.get("k") == "v"


def test_short_timeout_expires(cache: CacheBackend) -> None:
    cache.set("k", "v", 1)
    deadline = time.monotonic() + 3
    while cache.get("k") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.get("k") is None


def test_versions(cache: CacheBackend) -> None:
    cache.set("k", "v1", version=1)
    cache.set("k", "v2", version=2)
    assert cache.get("k", version=1) == "v1"
    assert cache.get("k", version=2) == "v2"
    assert cache.incr_version("k", version=2) == 3
    assert cache.get("k", version=3) == "v2"
    assert cache.get("k", version=2) is None


def test_incr_decr_and_missing(cache: CacheBackend) -> None:
    cache.set("n", 5)
    assert cache.incr("n") == 6
    assert cache.decr("n", 2) == 4
    with pytest.raises(ValueError, match="not found"):
        cache.incr("missing")


def test_get_or_set(cache: CacheBackend) -> None:
    assert cache.get_or_set("k", lambda: "computed") == "computed"
    assert cache.get_or_set("k", "other") == "computed"


def test_many(cache: CacheBackend) -> None:
    assert cache.set_many({"a": 1, "b": 2}) == []
    assert cache.get_many(["a", "b", "c"]) == {"a": 1, "b": 2}
    cache.delete_many(["a"])
    assert cache.get_many(["a", "b"]) == {"b": 2}


def test_touch_and_has_key(cache: CacheBackend) -> None:
    cache.set("k", "v", 1)
    assert cache.touch("k", None) is True
    assert cache.has_key("k")
    assert "k" in cache
    assert cache.touch("absent") is False


def test_key_validation_warning_like_django(cache: CacheBackend) -> None:
    with pytest.warns(CacheKeyWarning):
        cache.set("has space", 1)
    with pytest.warns(CacheKeyWarning):
        assert cache.get("has space") == 1


def test_async_methods(cache: CacheBackend) -> None:
    async def scenario() -> Any:
        await cache.aset("a", 1)
        await cache.aincr("a")
        return await cache.aget("a"), await cache.aget_or_set("b", "x"), await cache.ahas_key("a")

    assert asyncio.run(scenario()) == (2, "x", True)


def test_same_location_shares_store() -> None:
    caches["default"].set("shared", "yes")
    assert caches["prefixed"].get("shared") is None  # other prefix and version
    other = CacheBackend("django-default", {})
    assert other.get("shared") == "yes"
    assert other.cache.backend is caches["default"].cache.backend


def test_prefix_scopes_clear() -> None:
    caches["default"].set("keep", 1)
    caches["prefixed"].set("drop", 1)
    caches["prefixed"].clear()
    assert caches["prefixed"].get("drop") is None
    assert caches["default"].get("keep") == 1


def test_max_entries_option_maps_to_locmem() -> None:
    short = caches["short"]
    assert short.cache.backend.max_entries == 50
    assert short.default_timeout == 1


def test_close_keeps_working() -> None:
    caches["default"].set("k", 1)
    caches["default"].close()
    assert caches["default"].get("k") == 1


# -- issue 15: the same answers as Django's own backends ---------------------------------
#
# ``peer`` runs each scenario on Django's own LocMemCache, RedisCache and
# PyMemcacheCache (the spec) and on ours over local memory, Redis and memcached.

PEERS = ["django-locmem", "django-redis", "django-memcached", "locmem", "redis", "memcached"]
_DJANGO_BACKENDS = {
    "django-locmem": "django.core.cache.backends.locmem.LocMemCache",
    "django-redis": "django.core.cache.backends.redis.RedisCache",
    "django-memcached": "django.core.cache.backends.memcached.PyMemcacheCache",
}


def _peer_config(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if name == "django-locmem":
        return {"BACKEND": _DJANGO_BACKENDS[name], "LOCATION": "peer-django"}
    if name == "locmem":
        return {"BACKEND": "cachekit.contrib.django.CacheBackend", "LOCATION": "peer-ours"}
    kind = name.removeprefix("django-")
    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    if name.startswith("django-"):
        location = f"redis://{server.address}/2" if kind == "redis" else server.address
        return {"BACKEND": _DJANGO_BACKENDS[name], "LOCATION": location, "KEY_PREFIX": "peer"}
    return {
        "BACKEND": "cachekit.contrib.django.CacheBackend",
        "LOCATION": f"{kind}://{server.address}",
        "KEY_PREFIX": "peer",
    }


@pytest.fixture(params=PEERS)
def peer(request: pytest.FixtureRequest) -> Iterator[Any]:
    from django.core.cache import CacheHandler

    handler = CacheHandler({"peer": _peer_config(str(request.param), request)})
    cache = handler["peer"]
    cache.clear()
    yield cache
    cache.clear()
    handler.close_all()


def test_add_with_timeout_zero_is_true_for_an_absent_key(peer: Any) -> None:
    cache = peer
    # Django's locmem, redis and memcached backends: True when absent, nothing kept.
    assert cache.add("k0", "v", 0) is True
    assert cache.get("k0") is None
    cache.set("k0", "there")
    assert cache.add("k0", "v", 0) is False
    assert cache.get("k0") == "there"


#: Pickle refuses it with PicklingError (a local lambda raises AttributeError instead).
UNPICKLABLE = lambda: None  # noqa: E731


def test_unpicklable_value_raises_a_pickle_error(peer: Any) -> None:
    import pickle

    from cachekit.exceptions import SerializationError

    for store in (peer.set, peer.add):
        with pytest.raises(pickle.PickleError) as caught:
            store("bad", UNPICKLABLE)
        if isinstance(peer, CacheBackend):
            assert isinstance(caught.value, SerializationError)
    with pytest.raises(pickle.PicklingError):
        peer.set_many({"bad": UNPICKLABLE})


# Django's locmem raises TypeError; its redis and memcached backends let their client's
# error through (ResponseError, MemcacheClientError). Ours raise TypeError on every backend.
@pytest.mark.parametrize("peer", ["django-locmem", "locmem", "redis", "memcached"], indirect=True)
def test_incr_on_a_non_integer_raises_type_error(peer: Any) -> None:
    cache = peer
    cache.set("text", "abc")
    with pytest.raises(TypeError):
        cache.incr("text")
    with pytest.raises(TypeError):
        cache.decr("text")
    assert cache.get("text") == "abc"


def test_django_cache_session_engine_with_expiry_in_the_past(peer: Any) -> None:
    cache = peer
    # Django's own "cache" session engine on our backend: a session whose
    # expiry is in the past saves (and is gone) instead of RuntimeError.
    from django.contrib.sessions.backends.cache import SessionStore as DjangoCacheSession

    class OnThisCache(DjangoCacheSession):  # type: ignore[misc]
        def __init__(self, session_key: str | None = None) -> None:
            super().__init__(session_key)
            self._cache = cache

    session = OnThisCache()
    session["user"] = 1
    session.set_expiry(-10)
    session.save()
    assert session.session_key is not None
    assert not OnThisCache().exists(session.session_key)
    assert OnThisCache(session.session_key).load() == {}


@pytest.mark.parametrize(
    ("backend_path", "location"),
    [
        ("cachekit.contrib.django.PyMemcacheCache", "{memcached}"),
        ("cachekit.contrib.django.PyMemcacheCache", ["{memcached}"]),
        ("cachekit.contrib.django.PyMemcacheCache", "{memcached};{memcached}"),
        ("cachekit.contrib.django.RedisCache", "{redis}"),
        ("cachekit.contrib.django.RedisCache", "redis://{redis}/1"),
        ("cachekit.contrib.django.RedisCache", ["redis://{redis}/1"]),
    ],
    ids=["mc-host-port", "mc-list", "mc-semicolons", "redis-host-port", "redis-url", "redis-url-list"],
)
def test_location_forms_django_takes_reach_the_server(
    backend_path: str,
    location: Any,
    redis_server: ServerProcess,
    memcached_server: ServerProcess,
) -> None:
    from django.utils.module_loading import import_string

    def fill(text: str) -> str:
        return text.format(memcached=memcached_server.address, redis=redis_server.address)

    filled = [fill(item) for item in location] if isinstance(location, list) else fill(location)
    first = import_string(backend_path)(filled, {"KEY_PREFIX": "loc"})
    first.set("where", "server")
    # A second instance in "another process": a fresh backend, no shared memory.
    from cachekit.config import from_settings

    kind = "memcached" if "Memcache" in backend_path else "redis"
    other = from_settings({"BACKEND": kind, "LOCATION": filled})
    assert other.backend.get("loc:1:where") is not None
    first.delete("where")


def test_unix_socket_location_for_memcached(tmp_path: Any) -> None:
    import os
    import shutil
    import subprocess

    from tests.conftest import require_binary

    require_binary("memcached")
    socket_path = tmp_path / "mc.sock"
    argv = [shutil.which("memcached") or "memcached", "-s", str(socket_path), "-U", "0"]
    if os.geteuid() == 0:
        argv += ["-u", "root"]  # the socket lives in root's private tmp_path
    process = subprocess.Popen(argv)
    try:
        deadline = time.monotonic() + 5
        while not socket_path.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        for location in (f"unix:{socket_path}", str(socket_path)):
            cache = CacheBackend(location, {"OPTIONS": {"backend": "memcached"}, "KEY_PREFIX": "sock"})
            cache.set("k", location)
            assert cache.get("k") == location
    finally:
        process.terminate()
        process.wait(5)


@pytest.mark.parametrize(
    "location",
    [
        "127.0.0.1:11211",
        "redis:/127.0.0.1:6379/0",
        ["127.0.0.1:11211", "127.0.0.2:11211"],
        "/tmp/mc.sock",
        42,
    ],
)
def test_a_location_without_a_backend_is_refused_not_local_memory(location: Any) -> None:
    from cachekit.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="LOCATION|must be"):
        CacheBackend(location, {})


def test_unknown_backend_option_is_refused() -> None:
    from cachekit.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="backend"):
        CacheBackend("127.0.0.1:11211", {"OPTIONS": {"backend": "memcache"}})


def test_several_plain_redis_urls_are_refused() -> None:
    from cachekit.contrib.django import RedisCache
    from cachekit.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="LOCATION"):
        RedisCache(["redis://127.0.0.1:1/0", "redis://127.0.0.2:1/0"], {})


@pytest.mark.parametrize("name", PEERS)
def test_cache_template_tag(name: str, request: pytest.FixtureRequest) -> None:
    # Django's {% cache %} tag, the same template on Django's backends and on ours.
    from django.conf import settings
    from django.core.cache.utils import make_template_fragment_key
    from django.template import Context
    from django.template import Engine
    from django.test.utils import override_settings

    engine = Engine(libraries={"cache": "django.templatetags.cache"})
    template = engine.from_string(
        '{% load cache %}{% cache 60 side who using="peer" %}[{{ value }}]{% endcache %}'
    )
    with override_settings(CACHES={**settings.CACHES, "peer": _peer_config(name, request)}):
        peer_cache = caches["peer"]
        peer_cache.clear()
        assert template.render(Context({"value": 1, "who": "ann"})) == "[1]"
        assert template.render(Context({"value": 2, "who": "ann"})) == "[1]"  # served from the cache
        assert template.render(Context({"value": 3, "who": "bob"})) == "[3]"  # vary-on argument
        assert peer_cache.get(make_template_fragment_key("side", ["ann"])) == "[1]"
        peer_cache.delete(make_template_fragment_key("side", ["ann"]))
        assert template.render(Context({"value": 4, "who": "ann"})) == "[4]"
        peer_cache.clear()


def test_cache_handler_gives_one_instance_per_thread_sharing_one_store() -> None:
    import threading

    seen: list[Any] = []

    def grab() -> None:
        seen.append((caches["default"], caches["default"]))

    threads = [threading.Thread(target=grab) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    (a1, a2), (b1, b2) = seen
    assert a1 is a2  # the same instance within a thread
    assert b1 is b2
    assert a1 is not b1  # another one in another thread, as Django's CacheHandler gives
    assert a1.cache.backend is b1.cache.backend  # ... over one store
    a1.set("thread", "a")
    assert b1.get("thread") == "a"


def test_system_check_reports_bad_cachekit_settings() -> None:
    from django.core import checks
    from django.test.utils import override_settings

    from cachekit.contrib.django import check_cachekit_settings

    good = {"default": {"BACKEND": "cachekit.contrib.django.CacheBackend", "LOCATION": "ok"}}
    with override_settings(CACHES=good):
        assert check_cachekit_settings() == []
        assert not [m for m in checks.run_checks(tags=[checks.Tags.caches]) if m.id.startswith("cachekit")]
    bad = {
        "default": {"BACKEND": "cachekit.contrib.django.CacheBackend", "LOCATION": "127.0.0.1:11211"},
        "other": {"BACKEND": "django.core.cache.backends.dummy.DummyCache"},
    }
    with override_settings(CACHES=bad, SESSION_CACHE_ALIAS="other"):
        # (Django's own cache checks build every cache, so there the bad one also raises.)
        found = check_cachekit_settings()
        assert sorted(message.id for message in found) == ["cachekit.E001", "cachekit.E002"]
        assert "127.0.0.1:11211" in found[0].msg


def test_an_outage_reads_as_a_miss_and_drops_writes() -> None:
    # The outage table in docs/migrating.md: cachekit's policy, not Django's raise.
    from tests.servers import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    cache = CacheBackend(url, {"OPTIONS": {"socket_timeout": 0.3, "socket_connect_timeout": 0.3}})
    cache.set("k", 1)
    assert cache.get("k", "default") == "default"
    assert cache.add("k", 1) is False
    raising = CacheBackend(url, {"OPTIONS": {"on_error": "raise", "socket_connect_timeout": 0.3}})
    from cachekit.exceptions import BackendUnavailableError

    with pytest.raises(BackendUnavailableError):
        raising.get("k")


@pytest.mark.parametrize(
    ("caches_setting", "expected"),
    [
        (
            {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
            "cachekit.E002",
        ),
        (
            {"default": {"BACKEND": "cachekit.contrib.django.CacheBackend", "LOCATION": "127.0.0.1:11211"}},
            "LOCATION '127.0.0.1:11211' is not a cachekit URL",
        ),
    ],
    ids=["session-alias", "location"],
)
def test_manage_py_check_fails_on_bad_cachekit_settings(
    caches_setting: dict[str, Any], expected: str, tmp_path: Any
) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "check_settings.py").write_text(
        f"SECRET_KEY = {'k' * 50!r}\n"
        "INSTALLED_APPS = ['cachekit.contrib.django.CachekitConfig']\n"
        f"CACHES = {caches_setting!r}\n"
        "SESSION_ENGINE = 'sessions.contrib.django'\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{root}",
        "DJANGO_SETTINGS_MODULE": "check_settings",
    }
    done = subprocess.run(
        [sys.executable, "-m", "django", "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=root,
    )
    assert done.returncode != 0
    assert expected in done.stdout + done.stderr
