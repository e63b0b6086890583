"""sessions.contrib.django honours Django's SessionBase contract on every cachekit store."""

from __future__ import annotations

import asyncio
import datetime
import threading
from collections.abc import Iterator
from importlib import import_module
from typing import Any

import pytest

from tests.django_settings import configure_django

pytest.importorskip("django")
configure_django()

from django.conf import settings  # noqa: E402
from django.contrib.sessions.backends.base import UpdateError  # noqa: E402
from django.core.cache import caches as django_caches  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import Client  # noqa: E402
from django.test import override_settings  # noqa: E402

from cachekit.backends.locmem import LocMemBackend  # noqa: E402
from cachekit.cache import Cache  # noqa: E402
from cachekit.config import from_url  # noqa: E402
from cachekit.exceptions import BackendUnavailableError  # noqa: E402
from sessions.contrib.django import SessionStore  # noqa: E402
from sessions.stores import CacheStore  # noqa: E402
from sessions.stores import SignedCookieStore  # noqa: E402
from sessions.stores.base import Store  # noqa: E402
from tests.conftest import FakeClock  # noqa: E402
from tests.servers import ServerProcess  # noqa: E402
from tests.servers import free_port  # noqa: E402

SERVER_KINDS = ["django-cache", "redis", "memcached"]
KINDS = [*SERVER_KINDS, "signed-cookie"]

#: A store shared by the module-level factory test.
FACTORY_STORE = CacheStore(Cache(LocMemBackend("django-sessions-factory")))


def make_factory_store() -> Store:
    return FACTORY_STORE


def _store(kind: str, request: pytest.FixtureRequest) -> Store | None:
    if kind == "django-cache":
        django_caches["default"].clear()
        return None  # the default: a CacheStore on CACHES[SESSION_CACHE_ALIAS]
    if kind == "signed-cookie":
        return SignedCookieStore("django-session-test-key-00000000")
    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    cache = from_url(f"{kind}://{server.address}", key_prefix="djs")
    cache.clear()
    return CacheStore(cache)


def _engine(kind: str, request: pytest.FixtureRequest) -> Iterator[type[SessionStore]]:
    with override_settings(CACHEKIT_SESSION_STORE=_store(kind, request)):
        yield SessionStore


@pytest.fixture(params=KINDS)
def engine(request: pytest.FixtureRequest) -> Iterator[type[SessionStore]]:
    yield from _engine(request.param, request)


@pytest.fixture(params=SERVER_KINDS)
def server_engine(request: pytest.FixtureRequest) -> Iterator[type[SessionStore]]:
    yield from _engine(request.param, request)


@pytest.fixture
def client() -> Client:
    return Client()


def saved(engine: type[SessionStore], **data: Any) -> SessionStore:
    session = engine()
    session.update(data)
    session.save()
    return session


# -- configuration --------------------------------------------------------------


def test_django_loads_the_engine() -> None:
    assert settings.SESSION_ENGINE == "sessions.contrib.django"
    assert import_module(settings.SESSION_ENGINE).SessionStore is SessionStore


def test_default_store_uses_the_django_cache_alias_with_its_prefix() -> None:
    store = SessionStore().store
    assert isinstance(store, CacheStore)
    assert store.cache.backend is django_caches["default"].cache.backend
    assert store.policy.age == settings.SESSION_COOKIE_AGE


def test_cookie_age_setting_shapes_the_default_store() -> None:
    with override_settings(SESSION_COOKIE_AGE=600):
        session = SessionStore()
        assert session.store.policy.age == 600
        assert session.get_expiry_age() == 600


def test_store_setting_accepts_a_dotted_path_to_a_factory() -> None:
    with override_settings(CACHEKIT_SESSION_STORE=f"{__name__}.make_factory_store"):
        assert SessionStore().store is FACTORY_STORE


def test_a_non_cachekit_cache_alias_is_refused_with_advice() -> None:
    caches = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with (
        override_settings(CACHES=caches),
        pytest.raises(ImproperlyConfigured, match="CACHEKIT_SESSION_STORE"),
    ):
        SessionStore()


def test_a_store_setting_that_is_no_store_is_refused() -> None:
    with override_settings(CACHEKIT_SESSION_STORE=42), pytest.raises(ImproperlyConfigured, match="42"):
        SessionStore()


# -- SessionBase's contract -------------------------------------------------------


def test_save_then_load_in_a_new_instance(engine: type[SessionStore]) -> None:
    session = saved(engine, user="ada", cart=[1, 2], when=datetime.date(2024, 5, 1))
    key = session.session_key
    assert key is not None
    loaded = engine(key)
    assert loaded["user"] == "ada"
    assert loaded["cart"] == [1, 2]
    assert loaded["when"] == datetime.date(2024, 5, 1)
    assert loaded.exists(key)


def test_create_stores_an_empty_session_under_a_new_key(engine: type[SessionStore]) -> None:
    session = engine()
    session.create()
    assert session.session_key is not None
    assert session.modified is True
    assert engine().exists(session.session_key)
    assert dict(engine(session.session_key).items()) == {}


def test_an_unknown_key_is_never_adopted(engine: type[SessionStore]) -> None:
    forged = "x" * 43
    session = engine(forged)
    assert session.get("user") is None
    assert session.session_key is None
    session["user"] = "mallory"
    session.save()
    assert session.session_key != forged
    assert not engine().exists(forged)


def test_must_create_stores_under_a_fresh_key_and_never_overwrites(engine: type[SessionStore]) -> None:
    first = saved(engine, n=1)
    key = first.session_key
    first["n"] = 2
    first.save(must_create=True)
    assert first.session_key != key
    assert engine(first.session_key)["n"] == 2
    if first.store.server_side:
        assert engine(key)["n"] == 1


def test_cycle_key_keeps_the_data_under_a_new_key(server_engine: type[SessionStore]) -> None:
    session = saved(server_engine, user="ada")
    old = session.session_key
    session.cycle_key()
    assert session.session_key not in (None, old)
    assert session["user"] == "ada"
    assert not server_engine().exists(old)
    assert server_engine(session.session_key)["user"] == "ada"


def test_cycle_key_on_a_new_session_stores_it(engine: type[SessionStore]) -> None:
    session = engine()
    session["user"] = "ada"
    session.cycle_key()
    assert session.session_key is not None
    assert engine(session.session_key)["user"] == "ada"


def test_flush_deletes_the_stored_session(server_engine: type[SessionStore]) -> None:
    session = saved(server_engine, user="ada")
    old = session.session_key
    session.flush()
    assert session.session_key is None
    assert session.is_empty()
    assert not server_engine().exists(old)


def test_delete_by_key(server_engine: type[SessionStore]) -> None:
    session = saved(server_engine, user="ada")
    server_engine().delete(session.session_key)
    assert not server_engine().exists(session.session_key)


def test_clear_then_save_removes_every_key(server_engine: type[SessionStore]) -> None:
    key = saved(server_engine, a=1, b=2).session_key
    session = server_engine(key)
    session.clear()
    session["c"] = 3
    session.save()
    assert dict(server_engine(key).items()) == {"c": 3}


def test_save_after_a_concurrent_delete_raises_update_error(server_engine: type[SessionStore]) -> None:
    key = saved(server_engine, user="ada").session_key
    late = server_engine(key)
    late["n"] = 1
    server_engine().delete(key)
    with pytest.raises(UpdateError):
        late.save()
    assert not server_engine().exists(key)


def test_concurrent_saves_of_different_keys_both_persist(server_engine: type[SessionStore]) -> None:
    key = saved(server_engine, shared=0, gone="x").session_key
    one, two = server_engine(key), server_engine(key)
    one.load(), two.load()
    one["a"] = 1
    del one["gone"]
    two["b"] = 2
    one.save()
    two.save()
    assert dict(server_engine(key).items()) == {"shared": 0, "a": 1, "b": 2}


def test_threads_adding_keys_to_one_session_lose_none(server_engine: type[SessionStore]) -> None:
    key = saved(server_engine, start=True).session_key
    errors: list[BaseException] = []

    def add(index: int) -> None:
        try:
            session = server_engine(key)
            session[f"k{index}"] = index
            session.save()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add, args=(index,)) for index in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert errors == []
    data = dict(server_engine(key).items())
    assert {name for name in data if name.startswith("k")} == {f"k{index}" for index in range(16)}


def test_in_place_change_is_saved_when_marked_modified(engine: type[SessionStore]) -> None:
    session = saved(engine, cart=[1])
    loaded = engine(session.session_key)
    loaded["cart"].append(2)
    loaded.modified = True
    loaded.save()
    assert engine(loaded.session_key)["cart"] == [1, 2]


def test_values_that_are_not_json_are_refused_at_save(engine: type[SessionStore]) -> None:
    session = engine()
    session["bad"] = object()
    with pytest.raises(Exception, match="bad"):
        session.save()


def test_clear_expired_is_a_no_op() -> None:
    SessionStore.clear_expired()
    asyncio.run(SessionStore.aclear_expired())


# -- expiry -----------------------------------------------------------------------


@pytest.fixture
def clocked() -> Iterator[tuple[type[SessionStore], FakeClock]]:
    clock = FakeClock(start=1_700_000_000.0)
    cache = Cache(LocMemBackend("django-sessions-clocked", clock=clock), clock=clock)
    with override_settings(CACHEKIT_SESSION_STORE=CacheStore(cache, age=3600, clock=clock)):
        yield SessionStore, clock
    cache.clear()


def test_sessions_expire_after_the_store_age(clocked: tuple[type[SessionStore], FakeClock]) -> None:
    engine, clock = clocked
    key = saved(engine, user="ada").session_key
    assert engine().get_expiry_age() == 3600
    clock.advance(3599)
    assert engine().exists(key)
    clock.advance(2)
    assert not engine().exists(key)


def test_integer_expiry_counts_from_each_save(clocked: tuple[type[SessionStore], FakeClock]) -> None:
    engine, clock = clocked
    session = engine()
    session["user"] = "ada"
    session.set_expiry(60)
    session.save()
    key = session.session_key
    assert session.get_expiry_age() == 60
    clock.advance(50)
    again = engine(key)
    again["seen"] = True
    again.save()
    clock.advance(50)
    assert engine().exists(key)  # 100 s after creation, 50 s after the last save
    clock.advance(11)
    assert not engine().exists(key)


def test_datetime_expiry(clocked: tuple[type[SessionStore], FakeClock]) -> None:
    engine, clock = clocked
    session = engine()
    session["user"] = "ada"
    session.set_expiry(datetime.datetime.fromtimestamp(clock() + 120, datetime.timezone.utc))
    session.save()
    clock.advance(119)
    assert engine().exists(session.session_key)
    clock.advance(2)
    assert not engine().exists(session.session_key)


def test_zero_expiry_ends_with_the_browser(engine: type[SessionStore]) -> None:
    session = engine()
    session["user"] = "ada"
    assert session.get_expire_at_browser_close() is False
    session.set_expiry(0)
    assert session.get_expire_at_browser_close() is True
    session.save()
    assert engine(session.session_key).get_expire_at_browser_close() is True


# -- async methods ------------------------------------------------------------------


def test_async_methods(server_engine: type[SessionStore]) -> None:
    async def scenario() -> None:
        session = server_engine()
        await session.aset("user", "ada")
        await session.asave()
        key = session.session_key
        assert await session.aexists(key)
        loaded = server_engine(key)
        assert await loaded.aget("user") == "ada"
        assert await loaded.aload() == {"user": "ada"}
        await loaded.acycle_key()
        assert loaded.session_key != key
        assert not await loaded.aexists(key)
        assert await loaded.aget_expire_at_browser_close() is False
        new_key = loaded.session_key
        await loaded.aflush()
        assert loaded.session_key is None
        assert not await loaded.aexists(new_key)

    asyncio.run(scenario())


# -- through Django's SessionMiddleware and test client -------------------------------


def test_middleware_sets_the_cookie_and_keeps_the_session(engine: type[SessionStore], client: Client) -> None:
    response = client.get("/set", {"user": "ada"})
    cookie = response.cookies[settings.SESSION_COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == settings.SESSION_COOKIE_AGE
    assert "Cookie" in response["Vary"]
    shown = client.get("/show").json()
    assert shown["data"] == {"user": "ada"}
    assert shown["key"] == cookie.value


def test_untouched_session_sends_no_cookie(engine: type[SessionStore], client: Client) -> None:
    response = client.get("/untouched")
    assert settings.SESSION_COOKIE_NAME not in response.cookies
    assert not response.has_header("Vary")


def test_login_cycles_the_key_and_logout_deletes_the_cookie(
    server_engine: type[SessionStore], client: Client
) -> None:
    client.get("/set", {"theme": "dark"})
    before = client.cookies[settings.SESSION_COOKIE_NAME].value
    client.get("/login")
    after = client.cookies[settings.SESSION_COOKIE_NAME].value
    assert after != before
    assert not server_engine().exists(before)
    assert client.get("/show").json()["data"] == {"theme": "dark", "user": "ada"}
    response = client.get("/logout")
    deleted = response.cookies[settings.SESSION_COOKIE_NAME]
    assert deleted.value == ""
    assert deleted["max-age"] == 0
    assert not server_engine().exists(after)


def test_session_deleted_mid_request_is_interrupted(
    server_engine: type[SessionStore], client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.get("/set", {"user": "ada"})
    key = client.cookies[settings.SESSION_COOKIE_NAME].value
    original = server_engine.save

    def delete_first(self: SessionStore, must_create: bool = False) -> None:
        self.store.delete(key)  # a logout in another tab, just before this save
        original(self, must_create)

    monkeypatch.setattr(server_engine, "save", delete_first)
    response = client.get("/set", {"n": "1"})
    monkeypatch.undo()
    assert response.status_code == 400  # SessionInterrupted is a SuspiciousOperation
    assert not server_engine().exists(key)


def test_set_expiry_shapes_the_cookie(engine: type[SessionStore], client: Client) -> None:
    response = client.get("/expire", {"seconds": "90"})
    assert int(response.cookies[settings.SESSION_COOKIE_NAME]["max-age"]) == 90
    response = client.get("/expire", {"seconds": "0"})
    assert response.cookies[settings.SESSION_COOKIE_NAME]["max-age"] == ""


def test_test_client_session_property(engine: type[SessionStore], client: Client) -> None:
    session = client.session
    session["user"] = "ada"
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
    assert client.get("/show").json()["data"] == {"user": "ada"}


# -- outages ---------------------------------------------------------------------------


def test_an_outage_raises_instead_of_logging_users_out() -> None:
    redis = pytest.importorskip("redis")
    del redis
    cache = from_url(f"redis://127.0.0.1:{free_port()}/0?socket_timeout=0.5&socket_connect_timeout=0.5")
    with override_settings(CACHEKIT_SESSION_STORE=CacheStore(cache)):
        session = SessionStore("a" * 43)
        with pytest.raises(BackendUnavailableError):
            session.load()


# -- issue 15: Django's own answers --------------------------------------------------


def test_save_after_an_expiry_in_the_past_saves_and_the_session_is_gone(engine: type[SessionStore]) -> None:
    # Django: no CreateError; the save goes through and nothing can load the session.
    new = engine()
    new["user"] = 1
    new.set_expiry(-10)
    new.save()
    assert new.session_key is not None
    assert engine(new.session_key).load() == {}
    stored = engine()
    stored["user"] = 2
    stored.save()
    key = stored.session_key
    assert engine(key).load() == {"user": 2}
    stored.set_expiry(-10)
    stored.save()
    assert stored.session_key != key
    assert engine(stored.session_key).load() == {}
    if engine().store.server_side:  # a cookie store cannot revoke the old value
        assert engine(key).load() == {}


def test_middleware_with_an_expiry_in_the_past(engine: type[SessionStore], client: Client) -> None:
    client.get("/set", {"a": "1"})
    response = client.get("/expire", {"seconds": "-10"})
    assert response.status_code == 200
    assert client.get("/show").json()["data"] == {}


def test_cookie_age_and_browser_close_are_read_live() -> None:
    session = SessionStore()
    session["a"] = 1
    with override_settings(SESSION_COOKIE_AGE=77, SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        assert session.get_session_cookie_age() == 77
        assert session.get_expiry_age() == 77
        assert session.get_expire_at_browser_close() is True
        session.save()
        assert SessionStore(session.session_key).get_expiry_age() == 77
    assert session.get_session_cookie_age() == settings.SESSION_COOKIE_AGE
    assert session.get_expire_at_browser_close() is False


class _SaveFails(CacheStore):
    """A store that loads fine and whose saves meet an outage."""

    def save(self, session: Any) -> str:
        raise BackendUnavailableError("store went away during save")


OUR_MIDDLEWARE = ["sessions.contrib.django.SessionMiddleware"]


def _dead_store() -> CacheStore:
    cache = from_url(f"redis://127.0.0.1:{free_port()}/0?socket_timeout=0.5&socket_connect_timeout=0.5")
    return CacheStore(cache)


@pytest.mark.parametrize("path", ["/show", "/set?a=1"])
def test_outage_during_the_view_is_a_503_with_retry_after(path: str) -> None:
    pytest.importorskip("redis")
    with override_settings(MIDDLEWARE=OUR_MIDDLEWARE, CACHEKIT_SESSION_STORE=_dead_store()):
        client = Client()
        client.cookies["sessionid"] = "a" * 43
        response = client.get(path)
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert b"session store" in response.content


def test_outage_during_the_save_is_a_503_with_retry_after() -> None:
    store = _SaveFails(Cache(LocMemBackend("django-save-fails")))
    with override_settings(MIDDLEWARE=OUR_MIDDLEWARE, CACHEKIT_SESSION_STORE=store):
        response = Client().get("/set", {"a": "1"})
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "sessionid" not in response.cookies


def test_our_middleware_is_djangos_when_the_store_is_up(engine: type[SessionStore]) -> None:
    with override_settings(MIDDLEWARE=OUR_MIDDLEWARE):
        client = Client()
        assert client.get("/set", {"a": "1"}).status_code == 200
        assert client.get("/show").json()["data"] == {"a": "1"}
        assert client.get("/untouched").cookies == {}


def test_with_djangos_own_middleware_an_outage_is_a_500() -> None:
    # What the docs' outage table says for Django's stock middleware.
    store = _SaveFails(Cache(LocMemBackend("django-save-fails-stock")))
    with override_settings(CACHEKIT_SESSION_STORE=store):
        response = Client(raise_request_exception=False).get("/set", {"a": "1"})
    assert response.status_code == 500
