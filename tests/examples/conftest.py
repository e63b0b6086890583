"""Load the apps in docs/examples and drive each through its framework's own test client.

The Flask app goes through Flask's test client, the Django app through
Django's, and the Bottle, Pyramid and bare WSGI apps through WebTest (which
also runs WSGI's lint validator on every request). All three are wrapped in
one small :class:`Driver` interface so that the scenarios are written once.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any
from typing import Protocol

import pytest

from tests.examples import apps


def load_example(name: str) -> ModuleType:
    """Import an example; Django's only after the shared test settings are in place."""
    if name == "django_app":
        from tests.django_settings import configure_django

        configure_django()  # the example's own settings are applied per test
    return apps.load_example(name)


def import_webtest() -> Any:
    # WebOb (under WebTest and Pyramid) still imports the cgi module, deprecated
    # in Python 3.11; that is theirs to fix, not a failure of ours.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'cgi' is deprecated", category=DeprecationWarning)
        import webob  # noqa: F401
        import webtest
    return webtest


@dataclass
class Reply:
    """What any test client answered, in one shape."""

    status: int
    headers: list[tuple[str, str]]
    text: str

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)

    def set_cookies(self, name: str = "session") -> list[str]:
        return [
            value
            for key, value in self.headers
            if key.lower() == "set-cookie" and value.startswith(f"{name}=")
        ]


class Driver(Protocol):
    """A test client that keeps cookies like a browser."""

    def get(self, path: str) -> Reply: ...

    def post(self, path: str, data: dict[str, str]) -> Reply: ...

    def set_cookie(self, name: str, value: str) -> None: ...


class FlaskDriver:
    def __init__(self, app: Any) -> None:
        self.client = app.test_client()

    def _reply(self, response: Any) -> Reply:
        return Reply(response.status_code, list(response.headers.items()), response.get_data(as_text=True))

    def get(self, path: str) -> Reply:
        return self._reply(self.client.get(path))

    def post(self, path: str, data: dict[str, str]) -> Reply:
        return self._reply(self.client.post(path, data=data))

    def set_cookie(self, name: str, value: str) -> None:
        self.client.set_cookie(name, value)


class DjangoDriver:
    def __init__(self) -> None:
        from django.test import Client

        self.client = Client()

    def _reply(self, response: Any) -> Reply:
        # Django's handler puts cookies on the wire this way (WSGIHandler.__call__).
        headers = list(response.items())
        headers += [("Set-Cookie", cookie.OutputString()) for cookie in response.cookies.values()]
        return Reply(response.status_code, headers, response.content.decode())

    def get(self, path: str) -> Reply:
        return self._reply(self.client.get(path))

    def post(self, path: str, data: dict[str, str]) -> Reply:
        return self._reply(self.client.post(path, data))

    def set_cookie(self, name: str, value: str) -> None:
        self.client.cookies[name] = value


class WebTestDriver:
    def __init__(self, app: Any) -> None:
        self.client = import_webtest().TestApp(app)

    def _reply(self, response: Any) -> Reply:
        return Reply(response.status_int, list(response.headerlist), response.text)

    def get(self, path: str) -> Reply:
        return self._reply(self.client.get(path, status="*"))

    def post(self, path: str, data: dict[str, str]) -> Reply:
        return self._reply(self.client.post(path, params=data, status="*"))

    def set_cookie(self, name: str, value: str) -> None:
        self.client.set_cookie(name, value)


@dataclass
class ExampleUnderTest:
    """One example app, fresh for one test, and a factory of test clients for it."""

    name: str
    app: Any

    def client(self) -> Driver:
        if self.name == "flask_app":
            return FlaskDriver(self.app)
        if self.name == "django_app":
            return DjangoDriver()
        return WebTestDriver(self.app)


@pytest.fixture(params=apps.EXAMPLES)
def example(request: pytest.FixtureRequest) -> Iterator[ExampleUnderTest]:
    name: str = request.param
    if name == "pyramid_app":
        import_webtest()  # WebOb first, under the warning filter
    module = load_example(name)
    # A cache of its own per test: no page or session leaks between tests.
    url = f"locmem://example-{request.node.nodeid}"
    if name != "django_app":
        yield ExampleUnderTest(name, module.create_app(url))
        return
    from django.test import override_settings

    overrides = {
        **module.CACHEKIT_SETTINGS,
        "CACHES": {"default": {"BACKEND": "cachekit.contrib.django.CacheBackend", "LOCATION": url}},
    }
    with override_settings(**overrides):
        yield ExampleUnderTest(name, module.application)
