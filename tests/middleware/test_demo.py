"""The demo app served on a free port and fetched over real HTTP, as a newcomer would."""

from __future__ import annotations

import requests


def test_counter_increments_per_session(demo_url: str) -> None:
    client = requests.Session()
    first = client.get(demo_url + "/", timeout=5)
    second = client.get(demo_url + "/", timeout=5)
    assert "id='visits'>1<" in first.text
    assert "id='visits'>2<" in second.text
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Vary" in first.headers
    other = requests.get(demo_url + "/", timeout=5)
    assert "id='visits'>1<" in other.text


def test_cached_page_is_a_hit_on_second_fetch(demo_url: str) -> None:
    first = requests.get(demo_url + "/cached", timeout=5)
    second = requests.get(demo_url + "/cached", timeout=5)
    assert first.headers["X-Cache"] == "MISS"
    assert second.headers["X-Cache"] == "HIT"
    assert "Served from cache" in second.text
    rendered = [r.text.split("id='rendered'>")[1].split("<")[0] for r in (first, second)]
    assert rendered[0] == rendered[1]


def test_login_cycles_session_and_logout_clears(demo_url: str) -> None:
    client = requests.Session()
    client.get(demo_url + "/", timeout=5)
    before = client.cookies.get("session")
    response = client.post(demo_url + "/login", data={"name": "ada"}, timeout=5)
    assert "id='user'>ada<" in response.text
    after = client.cookies.get("session")
    assert after
    assert after != before
    response = client.post(demo_url + "/logout", timeout=5)
    assert "logged out" in response.text
    assert "session=;" in response.headers["Set-Cookie"] or "Max-Age=0" in response.headers["Set-Cookie"]
    assert "id='user'" not in client.get(demo_url + "/", timeout=5).text


def test_stats_reflect_traffic(demo_url: str) -> None:
    before = requests.get(demo_url + "/stats.json", timeout=5).json()
    requests.get(demo_url + "/cached", timeout=5)
    requests.get(demo_url + "/cached", timeout=5)
    after = requests.get(demo_url + "/stats.json", timeout=5).json()
    assert after["pages"]["hits"] >= before["pages"]["hits"] + 2
    assert after["session_count"] >= 1
    page = requests.get(demo_url + "/stats", timeout=5)
    assert "hit_ratio" in page.text


def test_unknown_page_is_404(demo_url: str) -> None:
    assert requests.get(demo_url + "/nope", timeout=5).status_code == 404
