"""Every app in docs/examples works through its framework's test client.

The same scenarios run on each: the session counter, login (which cycles the
session id) and logout, notes, the cached page served from cache, and the
session cookie's attributes on the wire.
"""

from __future__ import annotations

import re

import pytest

from tests.examples.conftest import ExampleUnderTest
from tests.examples.conftest import Reply

SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def visits(reply: Reply) -> int:
    found = re.search(r"<b id='visits'>(\d+)</b>", reply.text)
    assert found is not None, reply.text
    return int(found.group(1))


def user(reply: Reply) -> str | None:
    found = re.search(r"<b id='user'>(.*?)</b>", reply.text)
    return found.group(1) if found else None


def notes(reply: Reply) -> list[str]:
    return re.findall(r"<li class='note'>(.*?)</li>", reply.text)


def session_id(reply: Reply) -> str:
    (cookie,) = reply.set_cookies()
    value = cookie.split(";", 1)[0].partition("=")[2]
    assert SESSION_ID.fullmatch(value), cookie
    return value


def attributes(cookie: str) -> dict[str, str]:
    parts = [part.strip() for part in cookie.split(";")[1:]]
    return {name.lower(): value for name, _, value in (part.partition("=") for part in parts)}


def test_session_counter(example: ExampleUnderTest) -> None:
    client, other = example.client(), example.client()
    assert [visits(client.get("/")) for _ in range(3)] == [1, 2, 3]
    assert visits(other.get("/")) == 1  # another browser, another session


def test_session_cookie_on_the_wire(example: ExampleUnderTest) -> None:
    reply = example.client().get("/")
    assert reply.status == 200
    session_id(reply)
    (cookie,) = reply.set_cookies()
    found = attributes(cookie)
    assert found["path"] == "/"
    assert found["samesite"].lower() == "lax"
    assert "httponly" in found
    assert "secure" not in found  # served over http in these examples
    assert int(found["max-age"]) == 14 * 24 * 3600
    assert "expires" in found
    assert "Cookie" in (reply.header("Vary") or "")


def test_login_cycles_the_session_id_and_logout_ends_the_session(example: ExampleUnderTest) -> None:
    client = example.client()
    before = session_id(client.get("/"))

    reply = client.post("/login", {"name": "Ada <script>"})
    assert reply.status == 303
    after = session_id(reply)
    assert after != before
    home = client.get("/")
    assert user(home) == "Ada &lt;script&gt;"  # escaped
    assert visits(home) == 2  # the data survived the new id

    planted = example.client()
    planted.set_cookie("session", before)  # the id from before login is worthless now
    home = planted.get("/")
    assert user(home) is None
    assert visits(home) == 1

    reply = client.post("/logout", {})
    assert reply.status == 303
    (deleted,) = reply.set_cookies()
    assert deleted.split(";", 1)[0] in ("session=", 'session=""')
    found = attributes(deleted)
    assert found.get("max-age") == "0" or "1970" in found.get("expires", "")
    home = client.get("/")
    assert user(home) is None
    assert visits(home) == 1

    stale = example.client()
    stale.set_cookie("session", after)  # the logged-out id is gone from the store
    assert user(stale.get("/")) is None


def test_notes_are_kept_in_the_session(example: ExampleUnderTest) -> None:
    client = example.client()
    client.get("/")
    assert client.post("/notes", {"text": "first"}).status == 303
    assert client.post("/notes", {"text": "<i>second</i>"}).status == 303
    assert notes(client.get("/")) == ["first", "&lt;i&gt;second&lt;/i&gt;"]
    assert notes(example.client().get("/")) == []


def test_cached_page_is_served_from_cache(example: ExampleUnderTest) -> None:
    first = example.client().get("/cached")
    assert first.status == 200
    assert "Rendered at" in first.text
    assert first.set_cookies() == []
    again = example.client()
    again.get("/")  # a browser with a session gets the same shared page
    second = again.get("/cached")
    assert second.text == first.text
    if example.name != "django_app":
        # cachekit's page cache says how old a served copy is; Django's says nothing.
        assert first.header("Age") is None
        assert second.header("Age") is not None


@pytest.mark.parametrize("path", ["/login", "/logout", "/notes"])
def test_get_on_a_post_only_url_is_refused(example: ExampleUnderTest, path: str) -> None:
    assert example.client().get(path).status in (404, 405)
