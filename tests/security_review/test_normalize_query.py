"""``normalize_query=True`` must not merge query strings that the app reads differently.

The hole: sorting the raw ``&`` pieces also reordered repeated parameters, so
``?a=2&a=1`` and ``?a=1&a=2`` shared one page, while Werkzeug's ``args.get``
(and Django's ``GET.get`` the other way round) read the first or last value.
One request picked the content every visitor of the other order got. The sort
is now by parameter name only (decoded, as the app decodes it) and stable, so
repeated parameters keep their order.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.pages.shells import SHELLS
from tests.pages.shells import Shell
from tests.pages.shells import environ_for


def _first_value(environ: dict[str, Any], start_response: Any) -> list[bytes]:
    from werkzeug.wrappers import Request

    args = Request(environ).args
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [f"a={args.get('a')} b={args.get('b')}".encode()]


@pytest.mark.parametrize("shell", SHELLS)
@pytest.mark.parametrize(
    ("attack", "victim", "expected"),
    [
        ("a=2&a=1", "a=1&a=2", b"a=1 b=None"),
        ("%61=2&a=1", "a=1&%61=2", b"a=1 b=None"),  # the same name, percent-encoded
        ("b=1&a=2&a=1", "a=1&b=1&a=2", b"a=1 b=1"),
    ],
)
def test_normalized_query_keeps_repeated_parameters_apart(
    shell: str, attack: str, victim: str, expected: bytes
) -> None:
    pytest.importorskip("werkzeug")
    cached = Shell(shell, _first_value, timeout=60, normalize_query=True)
    try:
        cached(environ_for("/list", query=attack))
        assert cached(environ_for("/list", query=victim))[2] == expected
    finally:
        cached.close()


@pytest.mark.parametrize("shell", SHELLS)
def test_normalized_query_still_shares_reordered_distinct_parameters(shell: str) -> None:
    pytest.importorskip("werkzeug")
    renders: list[str] = []

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        renders.append(environ.get("QUERY_STRING", ""))
        return _first_value(environ, start_response)

    cached = Shell(shell, app, timeout=60, normalize_query=True)
    try:
        assert cached(environ_for("/list", query="b=1&a=2"))[2] == b"a=2 b=1"
        assert cached(environ_for("/list", query="a=2&b=1"))[2] == b"a=2 b=1"
        assert renders == ["b=1&a=2"]  # the second order was served from the first's page
    finally:
        cached.close()
