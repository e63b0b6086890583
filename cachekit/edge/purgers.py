"""Purgers: turn a :class:`~cachekit.edge.jobs.PurgeJob` into requests to a proxy or a CDN's API.

A purger names its *targets* (one per Varnish host; one for an API) and
builds one :class:`~cachekit.edge.jobs.WireRequest` per job and target, so a
purge that reached two Varnish hosts out of three is retried on the third only.

- :class:`VarnishPurger`: ``PURGE`` for URLs, ``BAN`` for URL prefixes and
  path patterns, ``PURGE`` with ``xkey`` / ``xkey-softpurge`` (varnish-modules)
  for tags; the VCL in ``docs/views.md`` ("Behind Varnish and a CDN") answers them.
- :class:`HTTPPurger`: method, URL template, headers and body template per
  kind, shaped to fit Fastly's and Cloudflare's purge APIs (:func:`fastly_purger`,
  :func:`cloudflare_purger`). Credentials go in ``secret_headers``: never logged.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from collections.abc import Sequence
from dataclasses import dataclass
from string import Template
from typing import Protocol
from urllib.parse import quote
from urllib.parse import urlsplit

from cachekit.edge.jobs import InvalidPurgeError
from cachekit.edge.jobs import Kind
from cachekit.edge.jobs import PurgeJob
from cachekit.edge.jobs import WireRequest
from cachekit.edge.jobs import has_dot_segment
from cachekit.edge.jobs import json_list
from cachekit.edge.jobs import send
from cachekit.edge.jobs import valid_netloc
from cachekit.exceptions import ConfigurationError

#: Seconds a purge request may take before it counts as unreachable (then it is queued).
DEFAULT_TIMEOUT = 5.0
#: The request header carrying a ban's path pattern to the VCL.
BAN_HEADER = "Cachekit-Ban"
#: The request header asking the VCL for a soft URL purge (``purge.soft()`` of vmod_purge).
SOFT_HEADER = "Cachekit-Soft-Purge"
#: Most values in one Cloudflare ``purge_cache`` request ("Max operations per request").
CLOUDFLARE_MAX_VALUES = 100
#: Most surrogate keys in one Fastly batch purge ("up to 256 surrogate keys ... in one batch request").
FASTLY_MAX_KEYS = 256


class Purger(Protocol):
    """What :class:`~cachekit.edge.Purges` needs of a purger."""

    #: Names the purger in queues and logs: unique among one app's purgers.
    name: str

    def targets(self) -> Sequence[str]:
        """Stable names of the places one job is delivered to (hosts, an API).

        Each is up to 2,048 of ``A-Z a-z 0-9 _ . : / [ ] % -`` (they key queued items; see
        :func:`check_target`): the built-in purgers name an origin, ``http(s)://host[:port]``.
        """

    def request(self, job: PurgeJob, target: str) -> WireRequest | None:
        """The request that delivers ``job`` to ``target``; ``None`` if this purger cannot purge its kind."""

    def batch(self, kind: Kind) -> int | None:
        """Most values of ``kind`` one request may carry (``1``: one request per value); ``None``: any."""

    def deliver(self, request: WireRequest) -> int:
        """Send ``request``; the ``2xx`` status, else :class:`~cachekit.edge.jobs.PurgeDeliveryError`."""


def _origin(address: str, setting: str) -> str:
    """``http://host:port`` from ``host:port`` or a URL (its path is ignored).

    :raises ConfigurationError: for another scheme, no host, a bad port, or a
        ``user:password@`` (an origin names places, never credentials: they
        would show in reprs, logs and queued items; put them in headers).
    """
    if not isinstance(address, str):
        raise ConfigurationError(f"{setting}: expected host:port or http(s)://host:port, got {address!r}.")
    text = address if "://" in address else f"http://{address}"
    try:
        parts = urlsplit(text)
    except ValueError:  # an unclosed [IPv6
        raise ConfigurationError(f"{setting}: expected host:port or http(s)://host:port.") from None
    if "@" in parts.netloc:
        # Never echo the address: what precedes the @ is a credential.
        raise ConfigurationError(
            f"{setting}: an address must not carry user:password@ (got one for host {parts.hostname!r}); "
            "send credentials in secret_headers."
        )
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or not check_origin(f"{parts.scheme}://{parts.netloc}")
    ):
        raise ConfigurationError(f"{setting}: expected host:port or http(s)://host:port, got {address!r}.")
    return f"{parts.scheme}://{parts.netloc}"


def check_origin(origin: object) -> bool:
    """Whether ``origin`` is ``http(s)://host[:port]`` with a valid host and a port in 1-65535."""
    if not isinstance(origin, str) or not origin.isascii():
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or origin != f"{parts.scheme}://{parts.netloc}":
        return False
    if "@" in parts.netloc or not valid_netloc(parts.netloc):
        return False
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        return False
    return port is None or port > 0


class VarnishPurger:
    """Purge one or more Varnish hosts.

    :param hosts: ``host:port`` (or ``http://host:port``) of each Varnish.
    :param name: the purger's name in queues and logs.
    :param timeout: seconds per request.
    :param soft_urls: when a soft URL purge is asked, send ``Cachekit-Soft-Purge: 1``
        (the VCL calls ``purge.soft()``); else soft URL purges are hard.

    Tags travel as ``xkey: a b`` (or ``xkey-softpurge: a b`` when soft): the
    pages must carry an ``xkey`` response header, which the VCL strips.
    """

    def __init__(
        self,
        hosts: Sequence[str],
        *,
        name: str = "varnish",
        timeout: float = DEFAULT_TIMEOUT,
        soft_urls: bool = True,
    ) -> None:
        if isinstance(hosts, str):
            hosts = [hosts]
        if not hosts:
            raise ConfigurationError("VarnishPurger needs at least one host.", setting="hosts")
        self.name = name
        self.hosts = tuple(_origin(host, "VarnishPurger hosts") for host in hosts)
        self.timeout = timeout
        self.soft_urls = soft_urls

    def __repr__(self) -> str:
        return f"VarnishPurger({list(self.hosts)!r}, name={self.name!r})"

    def targets(self) -> Sequence[str]:
        """One target per Varnish host."""
        return self.hosts

    def request(self, job: PurgeJob, target: str) -> WireRequest | None:
        """``PURGE`` (URL, xkey) or ``BAN`` (prefix, pattern) for ``target``; one request per job."""
        if job.kind == "tags":
            field = "xkey-softpurge" if job.soft else "xkey"
            return WireRequest(
                "PURGE", target + "/", (("Host", "cachekit-purge"), (field, " ".join(job.values)))
            )
        if job.kind == "url":
            return self._url_request(job.values[0], target, job.soft)
        headers: tuple[tuple[str, str], ...]
        if job.kind == "prefix":
            parts = urlsplit(job.values[0])
            headers = (("Host", parts.netloc), (BAN_HEADER, "^" + re.escape(parts.path or "/")))
        else:
            pattern = "|".join(f"({value})" for value in job.values)
            headers = (("Host", "cachekit-purge"), (BAN_HEADER, pattern), ("Cachekit-Ban-Any-Host", "1"))
        return WireRequest("BAN", target + "/", headers)

    def batch(self, kind: Kind) -> int | None:
        """URLs and prefixes go one per request (a ``PURGE`` names one URL, a ban one host)."""
        return 1 if kind in ("url", "prefix") else None

    def _url_request(self, url: str, target: str, soft: bool) -> WireRequest:
        parts = urlsplit(url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        headers = [("Host", parts.netloc)]
        if soft and self.soft_urls:
            headers.append((SOFT_HEADER, "1"))
        return WireRequest("PURGE", target + path, tuple(headers))

    def deliver(self, request: WireRequest) -> int:
        """Send ``request`` to its Varnish."""
        return send(request, self.timeout)


@dataclass(frozen=True)
class HTTPCall:
    """How an API purges one kind: ``method``, a ``path`` template, a ``body`` template.

    Templates use :class:`string.Template` names: ``$value`` (one value,
    percent-encoded in the path, a JSON string in the body: then one request
    per value), ``$values`` (the job's values as a JSON array, body only;
    ``$values_noscheme`` without ``http(s)://``),
    ``$host`` and ``$path`` (of a URL, in the path), plus the purger's ``params``.

    ``$query`` is a URL's ``?query`` (empty when it has none), already percent-encoded.

    :param headers: extra headers; ``$values_spaced`` in a value is the values joined by spaces.
    :param max_values: most values one request may carry (Cloudflare: 100); longer jobs
        are sent in several requests. ``None``: no limit but the job's.
    """

    method: str
    path: str
    body: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    max_values: int | None = None

    def __post_init__(self) -> None:
        if self.max_values is not None and (
            not isinstance(self.max_values, int) or isinstance(self.max_values, bool) or self.max_values < 1
        ):
            raise ConfigurationError(
                f"HTTPCall max_values must be a whole number >= 1, got {self.max_values!r}."
            )

    @property
    def each(self) -> bool:
        """Whether one request is sent per value (the templates name ``$value``, ``$host`` or ``$path``)."""
        return any(_ONE_VALUE.search(text) for text in (self.path, self.body or ""))


_ONE_VALUE = re.compile(r"\$\{?(value|host|path|query)\b")


class HTTPPurger:
    """Purge through an HTTP API: one :class:`HTTPCall` per kind it supports.

    :param name: the purger's name in queues and logs.
    :param endpoint: the API's origin, e.g. ``https://api.fastly.com``.
    :param calls: ``{"url": HTTPCall(...), "tags": ..., "prefix": ...}``; kinds left out are not sent.
    :param headers: headers on every request.
    :param secret_headers: credentials (``Authorization``, ``Fastly-Key``...):
        sent, never logged, never in ``repr`` or in queued items.
    :param soft_headers: added when the purge is soft (``Fastly-Soft-Purge: 1``);
        without them a soft purge is sent as a hard one.
    :param params: values for the templates (``service_id``, ``zone_id``...).
    """

    def __init__(
        self,
        name: str,
        endpoint: str,
        calls: Mapping[Kind, HTTPCall],
        *,
        headers: Mapping[str, str] | None = None,
        secret_headers: Mapping[str, str] | None = None,
        soft_headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.endpoint = _origin(endpoint, f"HTTPPurger {name} endpoint")
        self.calls = dict(calls)
        self._headers = tuple((headers or {}).items())
        self._secret = tuple((secret_headers or {}).items())
        self._soft = tuple((soft_headers or {}).items())
        self._params = {key: quote(str(value), safe="") for key, value in (params or {}).items()}
        self.timeout = timeout
        self._ssl = ssl_context

    def __repr__(self) -> str:
        return f"HTTPPurger({self.name!r}, {self.endpoint!r}, kinds={sorted(self.calls)!r})"

    def targets(self) -> Sequence[str]:
        """One target: the API."""
        return (self.endpoint,)

    def request(self, job: PurgeJob, target: str) -> WireRequest | None:
        """The request for ``job``; ``None`` if the API has no call for its kind.

        A call whose templates name ``$value`` takes jobs of one value: :class:`~cachekit.edge.Purges`
        splits jobs by :meth:`batch`.

        :raises InvalidPurgeError: if a value would make a ``.`` or ``..`` segment of the path.
        """
        call = self.calls.get(job.kind)
        if call is None:
            return None
        names: dict[str, str] = {**self._params, "values": json_list(job.values)}
        names["values_noscheme"] = json_list(tuple(value.partition("://")[2] for value in job.values))
        value = job.values[0]
        names["value"] = quote(value, safe="")
        names["query"] = ""
        if job.kind in ("url", "prefix"):
            parts = urlsplit(value)
            names["host"] = quote(parts.netloc, safe=":")
            names["path"] = quote(parts.path or "/", safe="/%")
            if parts.query:
                # check_url let through only printable ASCII without space, quote or backslash.
                names["query"] = "?" + quote(parts.query, safe="/%?=&;:+,@!$'()*[]~-._")
        path = Template(call.path).substitute(names)
        route = urlsplit(path).path
        if has_dot_segment(route):
            # A value ("..", a tag) must never move the request to another API path.
            raise InvalidPurgeError(f"{self.name}: a purge value would make a dot segment in {route[:80]!r}.")
        body = None
        if call.body is not None:
            body_names = {**names, "value": json_list((value,))[1:-1]}
            body = Template(call.body).substitute(body_names).encode()
        spaced = " ".join(job.values)
        headers = [
            (name, Template(text).safe_substitute(values_spaced=spaced)) for name, text in call.headers
        ]
        headers += [*self._headers, *self._secret]
        if job.soft:
            headers += self._soft
        if body is not None and not any(name.lower() == "content-type" for name, _ in headers):
            headers.append(("Content-Type", "application/json"))
        secret = frozenset(name.lower() for name, _ in self._secret)
        return WireRequest(call.method, target + path, tuple(headers), body, secret)

    def batch(self, kind: Kind) -> int | None:
        """``1`` if the call for ``kind`` names one value, else its ``max_values``."""
        call = self.calls.get(kind)
        if call is None:
            return None
        return 1 if call.each else call.max_values

    def deliver(self, request: WireRequest) -> int:
        """Send ``request`` to the API."""
        return send(request, self.timeout, self._ssl)


def fastly_purger(
    service_id: str, api_token: str, *, name: str = "fastly", endpoint: str = "https://api.fastly.com"
) -> HTTPPurger:
    """A purger for Fastly: ``POST /service/{id}/purge`` with ``Surrogate-Key``; URLs: ``POST /purge/{url}``.

    A URL is sent as ``/purge/{host}{path}?{query}`` (Fastly's "purge single URL"
    takes the cached URL without its scheme; its query string is the request's).
    Soft purges send ``Fastly-Soft-Purge: 1``. The token goes in ``Fastly-Key`` (never logged).
    """
    if not service_id or not api_token:
        raise ConfigurationError("fastly_purger needs a service id and an API token.")
    return HTTPPurger(
        name,
        endpoint,
        {
            "tags": HTTPCall(
                "POST",
                "/service/$service_id/purge",
                headers=(("Surrogate-Key", "$values_spaced"),),
                max_values=FASTLY_MAX_KEYS,
            ),
            "url": HTTPCall("POST", "/purge/$host$path$query"),
        },
        headers={"Accept": "application/json"},
        secret_headers={"Fastly-Key": api_token},
        soft_headers={"Fastly-Soft-Purge": "1"},
        params={"service_id": service_id},
    )


def cloudflare_purger(
    zone_id: str,
    api_token: str,
    *,
    name: str = "cloudflare",
    endpoint: str = "https://api.cloudflare.com",
    max_values: int = CLOUDFLARE_MAX_VALUES,
) -> HTTPPurger:
    """A purger for Cloudflare: ``POST /client/v4/zones/{id}/purge_cache``, ``files``/``tags``/``prefixes``.

    Cloudflare has no soft purge: soft purges are sent as hard ones. The token
    goes in ``Authorization: Bearer`` (never logged).

    :param max_values: most URLs, tags or prefixes per request: Cloudflare takes
        100 "operations per request" (500 URLs on Enterprise plans); a longer job is
        sent in several requests.
    """
    if not zone_id or not api_token:
        raise ConfigurationError("cloudflare_purger needs a zone id and an API token.")
    path = "/client/v4/zones/$zone_id/purge_cache"
    return HTTPPurger(
        name,
        endpoint,
        {
            "url": HTTPCall("POST", path, '{"files": $values}', max_values=max_values),
            "tags": HTTPCall("POST", path, '{"tags": $values}', max_values=max_values),
            "prefix": HTTPCall("POST", path, '{"prefixes": $values_noscheme}', max_values=max_values),
        },
        secret_headers={"Authorization": f"Bearer {api_token}"},
        params={"zone_id": zone_id},
    )


def check_target(target: object) -> str:
    """A purger target as queued items name it: no space, control, quote or ``@`` (credentials).

    :raises InvalidPurgeError: otherwise.
    """
    if not isinstance(target, str) or not _TARGET.fullmatch(target):
        raise InvalidPurgeError("a purge target must be 1-2048 of A-Z a-z 0-9 _ . : / [ ] % -.")
    return target


_TARGET = re.compile(r"[A-Za-z0-9_.:/\[\]%-]{1,2048}")


def check_name(name: object) -> str:
    """A purger name: printable ASCII without spaces (it keys queued items)."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", name):
        raise InvalidPurgeError(f"a purger name must be 1-64 of A-Z a-z 0-9 _ . : -, got {name!r}.")
    return name
