"""The one "add a field to Vary" rule, used by the page cache and by the session middleware."""

from __future__ import annotations

import pytest

from cachekit.pages.rules import with_vary
from middleware._wsgi import add_vary

Headers = list[tuple[str, str]]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ([], [("Vary", "Cookie")]),
        ([("Vary", "Accept")], [("Vary", "Accept, Cookie")]),
        ([("Vary", "")], [("Vary", "Cookie")]),
        ([("Vary", "*")], [("Vary", "*")]),
        ([("Vary", "Accept"), ("vary", "cookie")], [("Vary", "Accept"), ("vary", "cookie")]),
        ([("X-A", "1"), ("Vary", "Accept-Encoding")], [("X-A", "1"), ("Vary", "Accept-Encoding, Cookie")]),
    ],
)
def test_cookie_is_added_to_vary_once(headers: Headers, expected: Headers) -> None:
    before = list(headers)
    assert with_vary(headers, "Cookie") == expected
    assert headers == before  # a copy

    in_place = list(headers)
    add_vary(in_place, "Cookie")
    assert in_place == expected
