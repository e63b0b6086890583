"""Reading the session cookie from a ``Cookie`` header and building ``Set-Cookie``.

Modelled on :func:`werkzeug.http.dump_cookie`, with the session's needs made
strict: a cookie value must be plain cookie-octets (RFC 6265), ``SameSite`` is
checked, and ``SameSite=None`` demands ``Secure`` as browsers do.
"""

from __future__ import annotations

import email.utils
import math
import re
from typing import TYPE_CHECKING
from typing import TypedDict

from sessions.exceptions import CookieTooLargeError
from sessions.stores.cookie import MAX_COOKIE_SIZE

if TYPE_CHECKING:
    from typing_extensions import Unpack

_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_OCTETS = re.compile(r"[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*")
_ATTRIBUTE = re.compile(r"[\x21-\x3a\x3c-\x7e]+")
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


class CookieAttributeError(ValueError):
    """A cookie attribute that cannot be sent; :attr:`attribute` says which one.

    :param attribute: ``"name"``, ``"path"``, ``"domain"`` or ``"samesite"``.
    """

    def __init__(self, attribute: str, message: str) -> None:
        super().__init__(message)
        #: The attribute at fault: ``"name"``, ``"path"``, ``"domain"`` or ``"samesite"``.
        self.attribute = attribute


#: The ``Expires`` value that deletes a cookie.
EPOCH = "Thu, 01 Jan 1970 00:00:00 GMT"


def read_cookie(header: str, name: str) -> str | None:
    """Return the value of cookie ``name`` in a ``Cookie`` request header, or ``None``.

    A name sent twice with different values (a cookie planted for another path
    or a parent domain, "cookie tossing") is ambiguous and yields ``None``: the
    request then gets a new session rather than possibly the attacker's.
    Surrounding double quotes are removed.
    """
    if name not in header:
        return None
    if ";" not in header:
        # One cookie: no duplicate is possible.
        key, sep, value = header.partition("=")
        if not sep or key.strip() != name:
            return None
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        return value
    found: str | None = None
    for part in header.split(";"):
        key, sep, value = part.partition("=")
        if not sep or key.strip() != name:
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if found is not None and found != value:
            return None
        found = value
    return found


def normalize_samesite(value: str | bool | None, *, secure: bool) -> str | None:
    """Return the ``SameSite`` attribute value (``"Lax"``, ``"Strict"``, ``"None"``) or ``None`` to omit it.

    :raises CookieAttributeError: (a ``ValueError``) for another value, or ``"None"``
        without ``secure`` (browsers reject such cookies).
    """
    if value is None or value is False:
        return None
    if not isinstance(value, str) or value.lower() not in _SAMESITE:
        raise CookieAttributeError(
            "samesite", f"SameSite must be 'Lax', 'Strict', 'None' or None, got {value!r}."
        )
    samesite = _SAMESITE[value.lower()]
    if samesite == "None" and not secure:
        raise CookieAttributeError(
            "samesite", "SameSite='None' requires Secure=True; browsers reject the cookie otherwise."
        )
    return samesite


# The last second formatted, and its text; starts true (-1 with "" made http_date(-1) "").
_last_date: tuple[int, str] = (0, EPOCH)


def http_date(timestamp: float) -> str:
    """Format a Unix time as an HTTP date (``Thu, 01 Jan 1970 00:00:00 GMT``)."""
    global _last_date
    second = int(timestamp)
    last = _last_date  # one tuple, read once: safe without a lock
    if last[0] == second:
        return last[1]
    text = email.utils.formatdate(second, usegmt=True)
    _last_date = (second, text)
    return text


class CookieFormat:
    """``Set-Cookie`` lines for one cookie name and fixed attributes, checked once up front.

    :param name: the cookie name.
    :param path: ``Path``, or ``None`` to omit it.
    :param domain: ``Domain``, or ``None`` for the request's host only.
    :param secure: add ``Secure``.
    :param httponly: add ``HttpOnly``.
    :param samesite: ``"Lax"``, ``"Strict"``, ``"None"`` or ``None``; see :func:`normalize_samesite`.
    :param max_size: the largest ``name=value`` allowed, in bytes.
    :param partitioned: add ``Partitioned`` (CHIPS: the cookie is kept per top-level
        site, for apps embedded in other sites; browsers want ``Secure`` with it).
    :raises CookieAttributeError: (a ``ValueError``) for an invalid name, path, domain or
        ``SameSite`` value.
    """

    def __init__(
        self,
        name: str,
        *,
        path: str | None = "/",
        domain: str | None = None,
        secure: bool = False,
        httponly: bool = True,
        samesite: str | None = "Lax",
        max_size: int = MAX_COOKIE_SIZE,
        partitioned: bool = False,
    ) -> None:
        if not _NAME.fullmatch(name):
            raise CookieAttributeError("name", f"Invalid cookie name {name!r}.")
        for label, value in (("path", path), ("domain", domain)):
            if value is not None and (not isinstance(value, str) or not _ATTRIBUTE.fullmatch(value)):
                raise CookieAttributeError(label, f"Invalid cookie {label} {value!r}.")
        samesite = normalize_samesite(samesite, secure=secure)
        #: The cookie name.
        self.name = name
        #: The largest ``name=value`` allowed, in bytes.
        self.max_size = max_size
        self._start = f"{name}="
        self._overhead = len(name) + 1
        self._last: tuple[str | None, int, int, int, str] = (None, 0, 0, 0, "")
        self._head = f"; Domain={domain}" if domain else ""
        tail = []
        if secure:
            tail.append("; Secure")
        if httponly:
            tail.append("; HttpOnly")
        if path:
            tail.append(f"; Path={path}")
        if samesite:
            tail.append(f"; SameSite={samesite}")
        if partitioned:
            tail.append("; Partitioned")
        self._tail = "".join(tail)

    def dump(self, value: str, max_age: float | None = None, expires: float | None = None) -> str:
        """Return the ``Set-Cookie`` value setting the cookie to ``value``.

        :param max_age: seconds the cookie lives (rounded up); ``None`` for a browser-session cookie.
        :param expires: the Unix time it expires, for clients without ``Max-Age``.
        :raises ValueError: for a value that is not cookie-octets.
        :raises CookieTooLargeError: if ``name=value`` is longer than ``max_size``.
        """
        if max_age is not None and expires is not None:
            # The usual cookie. The line depends only on the value, the second of
            # ``expires`` and the rounded ``max_age``: a client sending requests
            # in quick succession gets the line built for its previous one.
            age = math.ceil(max_age)
            second = int(expires)
            last = self._last
            if last[0] == value and last[1] == second and last[2] == age and last[3] == self.max_size:
                return last[4]
            if len(value) + self._overhead > self.max_size or _OCTETS.fullmatch(value) is None:
                self._refuse(value)
            line = (
                f"{self._start}{value}{self._head}; Expires={http_date(second)}"
                f"; Max-Age={age if age > 0 else 0}{self._tail}"
            )
            # One tuple, replaced whole: safe to share between threads without a lock.
            self._last = (value, second, age, self.max_size, line)
            return line
        if len(value) + self._overhead > self.max_size or _OCTETS.fullmatch(value) is None:
            self._refuse(value)
        line = f"{self._start}{value}{self._head}"
        if expires is not None:
            line += f"; Expires={http_date(expires)}"
        if max_age is not None:
            line += f"; Max-Age={max(0, math.ceil(max_age))}"
        return line + self._tail

    def _refuse(self, value: str) -> None:
        size = len(self.name) + 1 + len(value)
        if size > self.max_size:
            raise CookieTooLargeError(size, self.max_size)
        raise ValueError("Cookie value contains characters a cookie cannot carry.")

    def delete(self) -> str:
        """Return the ``Set-Cookie`` value that makes the client drop the cookie."""
        return f"{self.name}={self._head}; Expires={EPOCH}; Max-Age=0{self._tail}"


class CookieAttributes(TypedDict, total=False):
    """The attributes of a cookie, as :class:`CookieFormat` takes them (its defaults apply)."""

    path: str | None
    domain: str | None
    secure: bool
    httponly: bool
    samesite: str | None
    partitioned: bool


def dump_cookie(
    name: str,
    value: str,
    *,
    max_age: float | None = None,
    expires: float | None = None,
    max_size: int = MAX_COOKIE_SIZE,
    **attributes: Unpack[CookieAttributes],
) -> str:
    """Return a ``Set-Cookie`` header value.

    Attributes come in Werkzeug's order: ``Domain``, ``Expires``, ``Max-Age``,
    ``Secure``, ``HttpOnly``, ``Path``, ``SameSite``, ``Partitioned``.

    :param max_age: seconds the cookie lives (rounded up); ``None`` for a browser-session cookie.
    :param expires: the Unix time the cookie expires, for clients without ``Max-Age``.
    :param max_size: the largest ``name=value`` allowed, in bytes.
    :param attributes: ``path`` [``"/"``], ``domain``, ``secure``, ``httponly`` [True],
        ``samesite`` [``"Lax"``; see :func:`normalize_samesite`] and ``partitioned`` (CHIPS),
        as :class:`CookieFormat` takes them.
    :raises ValueError: for an invalid name, value or attribute.
    :raises CookieTooLargeError: if ``name=value`` is longer than ``max_size``.
    """
    return CookieFormat(name, max_size=max_size, **attributes).dump(value, max_age, expires)


def delete_cookie(name: str, **attributes: Unpack[CookieAttributes]) -> str:
    """Return a ``Set-Cookie`` header value that makes the client drop cookie ``name``.

    ``path``, ``domain`` and ``partitioned`` must match the ones the cookie was set with.
    """
    return CookieFormat(name, **attributes).delete()


__all__ = [
    "EPOCH",
    "CookieAttributeError",
    "CookieAttributes",
    "CookieFormat",
    "delete_cookie",
    "dump_cookie",
    "http_date",
    "normalize_samesite",
    "read_cookie",
]
