"""The demo app served on a free port and fetched over real HTTP, as a newcomer would."""

from __future__ import annotations

import re
import threading
import uuid

import requests

from tests import servers


def test_counter_increments_per_session_and_says_time_or_times(demo_url: str) -> None:
    client = requests.Session()
    first = client.get(demo_url + "/", timeout=5)
    second = client.get(demo_url + "/", timeout=5)
    assert "id='visits'>1</strong> time in" in first.text
    assert "id='visits'>2</strong> times in" in second.text
    cookie = first.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Vary" in first.headers
    other = requests.get(demo_url + "/", timeout=5)
    assert "id='visits'>1<" in other.text


def test_titles_do_not_repeat_the_name(demo_url: str) -> None:
    home = requests.get(demo_url + "/", timeout=5).text
    assert re.search(r"<title>([^<]*)</title>", home).group(1) == "cachekit demo"  # type: ignore[union-attr]
    stats = requests.get(demo_url + "/stats", timeout=5).text
    assert "<title>Stats · cachekit demo</title>" in stats


def test_static_assets_and_favicon_are_served_by_the_demo(demo_url: str) -> None:
    home = requests.get(demo_url + "/", timeout=5).text
    assert "http://" not in home.replace(demo_url, "")
    assert "https://" not in home
    for path, kind in (
        ("/static/app.js", "javascript"),
        ("/static/style.css", "css"),
        ("/static/favicon.svg", "svg"),
        ("/favicon.ico", "svg"),
    ):
        response = requests.get(demo_url + path, timeout=5)
        assert response.status_code == 200, path
        assert kind in response.headers["Content-Type"], path
        assert response.content


def test_cached_page_is_a_hit_on_second_fetch(demo_url: str) -> None:
    requests.post(demo_url + "/api/purge", timeout=5)
    first = requests.get(demo_url + "/cached", timeout=5)
    second = requests.get(demo_url + "/cached", timeout=5)
    assert first.headers["X-Cache"] == "MISS"
    assert second.headers["X-Cache"] == "HIT"
    assert second.headers["Cache-Control"] == "no-store"  # the browser keeps no copy of its own
    assert "Served from cache" in second.text
    rendered = [r.text.split("id='rendered'>")[1].split("<")[0] for r in (first, second)]
    assert rendered[0] == rendered[1]


def test_one_served_hit_counts_once(demo_url: str) -> None:
    requests.get(demo_url + "/cached", timeout=5)
    before = requests.get(demo_url + "/stats.json", timeout=5).json()["pages"]
    assert requests.get(demo_url + "/cached", timeout=5).headers["X-Cache"] == "HIT"
    after = requests.get(demo_url + "/stats.json", timeout=5).json()["pages"]
    assert after["hits"] == before["hits"] + 1
    assert after["misses"] == before["misses"]


def test_concurrent_requests_at_a_cold_page_render_it_once(demo_url: str) -> None:
    run = uuid.uuid4().hex
    statuses: list[str] = []

    def fetch() -> None:
        statuses.append(requests.get(f"{demo_url}/slow?run={run}", timeout=10).headers["X-Cache"])

    threads = [threading.Thread(target=fetch) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 12
    assert requests.get(f"{demo_url}/api/renders?run={run}", timeout=5).json()["renders"] == 1
    assert statuses.count("MISS") == 1


def test_purge_and_tag_make_the_next_fetch_a_miss(demo_url: str) -> None:
    requests.get(demo_url + "/cached", timeout=5)
    assert requests.get(demo_url + "/cached", timeout=5).headers["X-Cache"] == "HIT"
    assert requests.post(demo_url + "/api/purge", timeout=5).json()["purged"] is True
    assert requests.get(demo_url + "/cached", timeout=5).headers["X-Cache"] == "MISS"
    assert requests.get(demo_url + "/cached", timeout=5).headers["X-Cache"] == "HIT"
    assert requests.post(demo_url + "/api/invalidate-tag", timeout=5).json()["invalidated"] is True
    assert requests.get(demo_url + "/cached", timeout=5).headers["X-Cache"] == "MISS"


def test_login_cycles_session_and_logout_clears(demo_url: str) -> None:
    client = requests.Session()
    client.get(demo_url + "/", timeout=5)
    before = client.cookies.get("session")
    response = client.post(demo_url + "/login", data={"name": "ada"}, timeout=5)
    assert "id='user'>ada<" in response.text
    assert "id='cycled'" in response.text
    after = client.cookies.get("session")
    assert after
    assert after != before
    response = client.post(demo_url + "/logout", timeout=5)
    assert "logged out" in response.text
    assert "session=;" in response.headers["Set-Cookie"] or "Max-Age=0" in response.headers["Set-Cookie"]
    assert "id='user'" not in client.get(demo_url + "/", timeout=5).text


def test_get_login_leads_to_the_form(demo_url: str) -> None:
    response = requests.get(demo_url + "/login", timeout=5)
    assert response.status_code == 200
    assert "id='login'" in response.text
    assert response.history[0].status_code == 303


def test_stats_reflect_traffic(demo_url: str) -> None:
    before = requests.get(demo_url + "/stats.json", timeout=5).json()
    requests.get(demo_url + "/cached", timeout=5)
    requests.get(demo_url + "/cached", timeout=5)
    after = requests.get(demo_url + "/stats.json", timeout=5).json()
    assert after["pages"]["served"] == before["pages"]["served"] + 2
    assert after["pages"]["hits"] >= before["pages"]["hits"] + 1
    assert after["session_count"] >= 1
    assert after["backend"] == "locmem://"
    page = requests.get(demo_url + "/stats", timeout=5)
    assert "hit_ratio" in page.text


def test_unknown_page_is_404(demo_url: str) -> None:
    assert requests.get(demo_url + "/nope", timeout=5).status_code == 404


def test_stampede_and_swr_buttons_report_one_render_and_stale_answers(demo_url: str) -> None:
    stampede = requests.post(demo_url + "/api/stampede?n=16", timeout=30).json()
    assert stampede["requests"] == 16
    assert stampede["renders"] == 1
    assert stampede["statuses"]["MISS"] == 1
    swr = requests.post(demo_url + "/api/swr", timeout=30).json()
    assert swr["stale"] >= 6  # all but the one that regenerates, give or take a late thread
    assert swr["regenerated"] >= 1


def test_demo_runs_on_redis_with_url(redis_server: servers.ServerProcess) -> None:
    from middleware.demo import build_app
    from tests.wsgi import Client

    client = Client(build_app(f"redis://{redis_server.address}/0"))
    status, _, body = client.get("/")
    assert status.startswith("200")
    assert b"id='visits'>1<" in body
    _, _, body = client.get("/")
    assert b"id='visits'>2<" in body  # the session lives in Redis
    first = dict(client.get("/cached")[1])
    second = dict(client.get("/cached")[1])
    assert (first["X-Cache"], second["X-Cache"]) == ("MISS", "HIT")
