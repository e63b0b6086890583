"""Session: change tracking, laziness, expiry helpers and value checks."""

from __future__ import annotations

import datetime
import decimal
import math
import uuid

import pytest

from cachekit.exceptions import ConfigurationError
from cachekit.exceptions import SerializationError
from sessions.serializers import TaggedJSONSerializer
from sessions.session import ExpiryPolicy
from sessions.session import Session
from sessions.session import SessionState
from sessions.stores.cookie import SignedCookieStore
from tests.sessions.helpers import SECRET
from tests.sessions.helpers import WallClock


class CountingStore(SignedCookieStore):
    loads = 0

    def load(self, cookie_value: str) -> SessionState | None:
        self.loads += 1
        return super().load(cookie_value)


@pytest.fixture
def clock() -> WallClock:
    return WallClock()


@pytest.fixture
def store(clock: WallClock) -> CountingStore:
    return CountingStore(SECRET, clock=clock)


def test_loads_lazily_and_once(store: CountingStore) -> None:
    session = Session(store, "anything")
    assert store.loads == 0
    assert not session.accessed
    assert session.get("a") is None
    assert session.get("b") is None
    assert store.loads == 1
    assert session.accessed
    assert session.accessed_keys == {"a", "b"}


def test_tracks_changes_and_deletions(store: CountingStore) -> None:
    session = Session(store)
    assert not session.modified
    session["a"] = 1
    session["b"] = 2
    del session["a"]
    assert session.modified
    assert session.changed_keys == {"b"}
    assert session.deleted_keys == {"a"}
    session["a"] = 3
    assert session.changed_keys == {"a", "b"}
    assert session.deleted_keys == set()


def test_reading_does_not_modify(store: CountingStore) -> None:
    session = Session(store)
    assert "a" not in session
    assert len(session) == 0
    assert list(session) == []
    assert not session.modified
    assert not session.needs_save()


def test_empty_new_session_is_not_saved(store: CountingStore) -> None:
    session = Session(store)
    session["a"] = 1
    del session["a"]
    assert not session.needs_save()
    assert not session.needs_save(save_every_request=True)


def test_modified_by_hand_resaves_every_key(store: CountingStore) -> None:
    session = Session(store)
    session["cart"] = []
    value = session.save()
    again = Session(store, value)
    again["cart"].append("apple")  # in place: not seen
    assert not again.modified
    again.modified = True
    assert again.changed_keys == {"cart"}
    assert store.load(again.save()) is not None


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(object(), id="object"),
        pytest.param({1: "int key"}, id="int-key"),
        pytest.param(math.nan, id="nan"),
        pytest.param([{1, 2}], id="set-in-list"),
        pytest.param({1, 2}, id="set"),
    ],
)
def test_unstorable_values_fail_at_assignment_naming_the_key(store: CountingStore, value: object) -> None:
    session = Session(store)
    with pytest.raises(SerializationError, match="'bad'") as info:
        session["bad"] = value
    assert info.value.key == "bad"
    assert "bad" not in session


def test_unstorable_value_changed_in_place_fails_at_save(store: CountingStore) -> None:
    session = Session(store)
    session["box"] = []
    session["box"].append(object())
    with pytest.raises(SerializationError):
        session.save()


def test_non_str_keys_are_refused(store: CountingStore) -> None:
    session = Session(store)
    with pytest.raises(TypeError, match="str"):
        session[1] = "x"  # type: ignore[index]


def test_expiry_helpers(store: CountingStore, clock: WallClock) -> None:
    session = Session(store)
    assert session.get_expiry_age() == pytest.approx(store.policy.age)
    expected = datetime.datetime.fromtimestamp(clock.now + store.policy.age, datetime.timezone.utc)
    assert abs((session.get_expiry_date() - expected).total_seconds()) < 0.01
    assert not session.get_expire_at_browser_close()
    session.set_expiry(0)
    assert session.get_expire_at_browser_close()
    session.set_expiry(datetime.datetime.fromtimestamp(clock.now + 30, datetime.timezone.utc))
    assert session.get_expiry_age() == pytest.approx(30, abs=0.01)
    session.set_expiry(datetime.timedelta(minutes=2))
    assert session.get_expiry_age() == pytest.approx(120)
    session.set_expiry(None)
    assert session.get_expiry_age() == pytest.approx(store.policy.age)
    assert session.modified
    with pytest.raises(TypeError):
        session.set_expiry("soon")  # type: ignore[arg-type]


def test_repr_shows_no_values(store: CountingStore) -> None:
    session = Session(store)
    session["password"] = "hunter2"
    assert "hunter2" not in repr(session)
    assert "hunter2" not in repr(store)
    assert SECRET not in repr(store)


@pytest.mark.parametrize(
    ("setting", "options"),
    [
        ("SESSION_COOKIE_AGE", {"age": 0}),
        ("SESSION_COOKIE_AGE", {"age": "long"}),
        ("SESSION_IDLE_TIMEOUT", {"idle_timeout": -5}),
        ("SESSION_IDLE_REFRESH_INTERVAL", {"idle_timeout": 60, "refresh_interval": 0}),
        ("SESSION_EXPIRE_AT_BROWSER_CLOSE", {"expire_at_browser_close": "yes"}),
    ],
)
def test_bad_policy_names_the_setting(setting: str, options: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError, match=setting) as info:
        ExpiryPolicy(**options)  # type: ignore[arg-type]
    assert info.value.setting == setting


def test_refresh_interval_defaults_to_a_tenth_of_idle() -> None:
    assert ExpiryPolicy(idle_timeout=600).refresh_interval == 60


# -- tagged JSON -------------------------------------------------------------------

VALUES = [
    datetime.datetime(2024, 1, 2, 3, 4, 5, 6),
    datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=2))),
    datetime.date(1999, 12, 31),
    decimal.Decimal("-0.000100"),
    uuid.uuid4(),
    {" dt": "x"},
    {" di": ["a", 1]},
    {" unknown": 1},
    {"a": [{" d": {"nested": True}}]},
    ("tuple", "stays", "tuple"),
    ("nested", (1, b"\xff")),
    b"\x00\xffbytes",
    [(1, 2), {"t": (3,)}],
    "ünïcode ☃",
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_tagged_json_round_trip(value: object) -> None:
    serializer = TaggedJSONSerializer()
    back = serializer.loads(serializer.dumps(value))
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(
    "data",
    [b"\xff\xfe", b"{", b'{" nope": 1}', b'{" dt": "not a date"}', b'{" di": 5}'],
    ids=["non-utf8", "truncated", "unknown-tag", "bad-datetime", "bad-escape"],
)
def test_tagged_json_rejects_garbage(data: bytes) -> None:
    with pytest.raises(SerializationError):
        TaggedJSONSerializer().loads(data)


@pytest.mark.parametrize("record", [b'{" u": 1}', b'{" dt": 5}', b'{" dec": []}', b'{" d": "not a date"}'])
def test_malformed_tags_are_serialization_errors(record: bytes) -> None:
    from cachekit.exceptions import SerializationError
    from sessions.serializers import TaggedJSONSerializer

    with pytest.raises(SerializationError):
        TaggedJSONSerializer().loads(record)
