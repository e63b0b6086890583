"""cachekit.contrib.cachelib: cachelib's interface, and Flask-Caching / Flask-Session on it."""

from __future__ import annotations

import itertools

import pytest

pytest.importorskip("cachelib")

from cachekit.contrib.cachelib import CachekitCache
from tests.servers import ServerProcess

_names = itertools.count()


@pytest.fixture(params=["locmem", "redis", "memcached"])
def cache(request: pytest.FixtureRequest) -> CachekitCache:
    if request.param == "locmem":
        url = f"locmem://cachelib-{next(_names)}"
    else:
        server: ServerProcess = request.getfixturevalue(f"{request.param}_server")
        url = f"{request.param}://{server.address}"
    adapter = CachekitCache(url, key_prefix=f"cl{next(_names)}")
    adapter.clear()
    return adapter


def test_basic_interface(cache: CachekitCache) -> None:
    assert cache.set("a", {"x": 1}) is True
    assert cache.get("a") == {"x": 1}
    assert cache.add("a", 2) is False
    assert cache.has("a")
    assert cache.delete("a") is True
    assert cache.get("a") is None


def test_many(cache: CachekitCache) -> None:
    assert cache.set_many({"a": 1, "b": 2}) == ["a", "b"]
    assert cache.get_many("a", "b", "c") == [1, 2, None]
    assert cache.get_dict("a", "c") == {"a": 1, "c": None}
    assert cache.delete_many("a", "b") == ["a", "b"]
    assert cache.get("b") is None


def test_inc_starts_from_zero(cache: CachekitCache) -> None:
    assert cache.inc("n") == 1
    assert cache.inc("n", 5) == 6
    assert cache.dec("n", 2) == 4


def test_zero_timeout_never_expires(cache: CachekitCache) -> None:
    cache.set("k", "v", timeout=0)
    assert cache.cache.get("k") == "v"


def test_clear_scoped_to_prefix() -> None:
    one = CachekitCache("locmem://cachelib-shared", key_prefix="one")
    two = CachekitCache("locmem://cachelib-shared", key_prefix="two")
    one.set("k", 1)
    two.set("k", 2)
    assert one.clear() is True
    assert (one.get("k"), two.get("k")) == (None, 2)


def test_flask_caching_uses_adapter() -> None:
    flask = pytest.importorskip("flask")
    flask_caching = pytest.importorskip("flask_caching")
    app = flask.Flask(__name__)
    app.config.update(
        CACHE_TYPE="cachekit.contrib.cachelib.CachekitCache",
        CACHE_DEFAULT_TIMEOUT=60,
        CACHE_OPTIONS={"url": "locmem://flask-caching", "key_prefix": "fc"},
    )
    cache = flask_caching.Cache(app)
    renders: list[int] = []

    @app.route("/")
    @cache.cached()
    def index() -> str:
        renders.append(1)
        return f"render {len(renders)}"

    client = app.test_client()
    assert client.get("/").data == b"render 1"
    assert client.get("/").data == b"render 1"
    assert len(renders) == 1
    backend = app.extensions["cache"][cache]
    assert isinstance(backend, CachekitCache)
    assert backend.cache.stats()["hits"] >= 1


def test_flask_session_uses_adapter() -> None:
    flask = pytest.importorskip("flask")
    flask_session = pytest.importorskip("flask_session")
    app = flask.Flask(__name__)
    store = CachekitCache("locmem://flask-session", key_prefix="fs")
    app.config.update(SESSION_TYPE="cachelib", SESSION_CACHELIB=store, SECRET_KEY="x" * 32)
    flask_session.Session(app)

    @app.route("/count")
    def count() -> str:
        flask.session["n"] = flask.session.get("n", 0) + 1
        return str(flask.session["n"])

    client = app.test_client()
    assert [client.get("/count").data for _ in range(3)] == [b"1", b"2", b"3"]
    assert store.cache.stats()["sets"] >= 3


def test_key_prefix_none_is_cachelibs_default() -> None:
    adapter = CachekitCache(f"locmem://cachelib-{next(_names)}", key_prefix=None)
    assert adapter.set("k", 1) is True
    assert adapter.get("k") == 1
    assert adapter.cache.key_prefix == ""


@pytest.mark.parametrize("kind", ["redis", "memcached"])
def test_an_assigned_cachelib_serializer_writes_the_stored_bytes(
    kind: str, request: pytest.FixtureRequest
) -> None:
    import json

    from cachelib.serializers import JSONSerializer

    server: ServerProcess = request.getfixturevalue(f"{kind}_server")
    adapter = CachekitCache(f"{kind}://{server.address}", key_prefix=f"ser{next(_names)}")
    adapter.serializer = JSONSerializer()  # what Flask-Caching does with CACHE_SERIALIZER
    assert adapter.set("k", {"a": [1, 2]}) is True
    raw = adapter.cache.backend.get(adapter.cache.make_key("k"))
    assert json.loads(raw) == {"a": [1, 2]}
    assert adapter.get("k") == {"a": [1, 2]}
    assert adapter.set("bad", {1, 2}) is False  # JSON cannot hold a set: cachelib returns False
    assert adapter.inc("n") == 1
    assert adapter.inc("n", 4) == 5
    adapter.clear()


def test_flask_caching_cache_serializer_is_honoured(redis_server: ServerProcess) -> None:
    import json

    from cachelib.serializers import JSONSerializer

    flask = pytest.importorskip("flask")
    flask_caching = pytest.importorskip("flask_caching")
    app = flask.Flask(__name__)
    app.config.update(
        CACHE_TYPE="cachekit.contrib.cachelib.CachekitCache",
        CACHE_SERIALIZER=JSONSerializer,
        CACHE_OPTIONS={"url": f"redis://{redis_server.address}", "key_prefix": None},
    )
    cache = flask_caching.Cache(app)
    backend = app.extensions["cache"][cache]
    backend.clear()
    with app.app_context():
        cache.set("k", [1, "two"])
        assert cache.get("k") == [1, "two"]
    assert json.loads(backend.cache.backend.get(backend.cache.make_key("k"))) == [1, "two"]
    backend.clear()


def test_an_outage_reads_as_a_miss() -> None:
    from tests.servers import free_port

    adapter = CachekitCache(
        f"redis://127.0.0.1:{free_port()}/0", socket_timeout=0.3, socket_connect_timeout=0.3
    )
    assert adapter.get("k") is None
    assert adapter.has("k") is False
    assert adapter.inc("n") is None  # no value to return: cachelib's None
