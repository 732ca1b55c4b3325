"""Who may read the dashboard and who may press the halt button.

* Only requests for a host name the dashboard is served under are answered
  (:class:`AllowedHosts`: the loopback names, the ``--host`` address, and the names given with
  ``--allowed-host`` for a reverse proxy); any other ``Host`` gets 400 before a page is
  rendered. A web page elsewhere can make its own name resolve to 127.0.0.1 after it loaded
  (DNS rebinding): the browser then treats the dashboard as that page's own origin and lets its
  script read every page, and the name is all that tells the two apart.
* The operator's token comes from ``BOT_DASHBOARD_TOKEN``; without it the dashboard is
  read-only. It is typed into the confirmation form of each action (never stored in a cookie,
  so a stolen browser session cannot act) and compared in constant time.
* Cross-site requests are refused twice over: the ``Origin`` (or, without it, the ``Referer``)
  must name one of the allowed hosts (matching the request's own ``Host`` is not enough: a
  rebinding page sends its name in both), and the form must carry the per-browser CSRF token
  that only a page of this server can read (a random cookie, ``SameSite=Strict``, echoed in a
  hidden field: the double-submit pattern).
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

TOKEN_ENV = "BOT_DASHBOARD_TOKEN"  # noqa: S105 - the variable's name, not a secret
CSRF_COOKIE = "bot_csrf"
MIN_TOKEN_LENGTH = 16


class Refused(Exception):
    """An action request that must not be acted on; the message says why (shown to the user)."""


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# A Host header or an origin's authority: name or [IPv6], optional port (RFC 9110 7.2). No
# user part, no trailing dot: what a browser sends for an address typed as such.
_AUTHORITY = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9_.-]+))(?::(?P<port>[0-9]{1,5}))?"
)


def _authority(text: str) -> tuple[str, int | None] | None:
    """``(host name, port)`` of ``name[:port]`` or ``[ipv6][:port]``, the name lower-case and
    an IPv6 address in its short form; None when ``text`` is neither."""
    m = _AUTHORITY.fullmatch(text)
    if m is None:
        return None
    if m["ipv6"] is not None:
        try:
            name = ipaddress.IPv6Address(m["ipv6"]).compressed
        except ValueError:
            return None
    else:
        name = m["name"].lower()
    return name, int(m["port"]) if m["port"] else None


def host_name(text: str) -> str:
    """``text`` (a ``--host`` or ``--allowed-host`` value: a name or an address, IPv6 with or
    without brackets) as the allow-list holds it; ValueError for anything else (a scheme, a
    port, a path)."""
    try:
        return ipaddress.ip_address(text.removeprefix("[").removesuffix("]")).compressed
    except ValueError:
        pass
    parsed = _authority(text)
    if parsed is None or parsed[1] is not None:
        raise ValueError(
            f"{text!r} is not a host name or address: give it as the browser's address bar "
            "shows it, without scheme, port or path (e.g. bot.example.com)"
        )
    return parsed[0]


@dataclass(frozen=True, slots=True)
class AllowedHosts:
    """The host names the dashboard is served under: ``direct`` is reached as it is (the
    loopback names, the address it listens on: an SSH tunnel's forwarded port included),
    ``proxied`` through a reverse proxy (``--allowed-host``), whose public port is its own."""

    direct: frozenset[str]
    proxied: frozenset[str] = frozenset()

    @classmethod
    def serving(cls, host: str = LOOPBACK_NAMES[0], proxied: Iterable[str] = ()) -> AllowedHosts:
        """The loopback names and ``host`` (the address listened on), and the ``proxied``
        names; ValueError naming a value that is not a host name or address."""
        return cls(
            frozenset({*LOOPBACK_NAMES, host_name(host)}),
            frozenset(host_name(name) for name in proxied),
        )

    def shown(self) -> str:
        names = sorted(self.direct | self.proxied)
        return ", ".join(f"[{n}]" if ":" in n else n for n in names)

    def admits(self, host: str | None) -> bool:
        """Whether a request whose ``Host`` header is ``host`` is for this dashboard: an
        allowed name, or any IP address. An address cannot be rebound (a page's name can be
        made to resolve to this machine; an address is the machine), and a browser sends the
        address it was pointed at: a dashboard or ``/metrics`` listening on a wildcard
        (``--host 0.0.0.0``) is reached at the machine's own addresses, which the allow-list
        cannot know (its ``--host`` entry, ``0.0.0.0``, is no address a client sends)."""
        parsed = _authority(host or "")
        return parsed is not None and (parsed[0] in self.direct | self.proxied or _is_ip(parsed[0]))

    def admits_origin(self, source: str, host: str) -> bool:
        """Whether a page at ``source`` (an ``Origin`` or ``Referer``) is this dashboard's own,
        for a request whose ``Host`` (allowed) is ``host``: a proxied name at any port, a
        direct name at the host and port the request came to (another program on another
        port of this machine is another origin)."""
        origin = _authority(urlsplit(source).netloc)
        if origin is None:
            return False
        if origin[0] in self.proxied:
            return True
        return (origin[0] in self.direct or _is_ip(origin[0])) and origin == _authority(host)


def _is_ip(name: str) -> bool:
    """Whether ``name`` (as :func:`_authority` gives it) is an IP address, not a name."""
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Guard:
    token: str | None

    @classmethod
    def from_environment(cls) -> Guard:
        token = os.environ.get(TOKEN_ENV) or None
        if token is not None and len(token) < MIN_TOKEN_LENGTH:
            raise ValueError(
                f"{TOKEN_ENV} is {len(token)} characters long; use at least "
                f"{MIN_TOKEN_LENGTH} random ones (e.g. python3 -c "
                "'import secrets; print(secrets.token_urlsafe(24))')"
            )
        return cls(token)

    @property
    def read_only(self) -> bool:
        return self.token is None

    def check(
        self,
        *,
        hosts: AllowedHosts,
        host: str | None,
        origin: str | None,
        referer: str | None,
        csrf_cookie: str | None,
        csrf_form: str | None,
        token_form: str | None,
    ) -> None:
        """Raise :class:`Refused` unless the request may act."""
        if self.token is None:
            raise Refused(f"the dashboard is read-only: {TOKEN_ENV} is not set where it runs")
        if not host or not hosts.admits(host):
            raise Refused("request without a Host header of this dashboard")
        source = origin if origin and origin != "null" else referer
        if not source:
            raise Refused("request without Origin or Referer: refused (cross-site protection)")
        if not hosts.admits_origin(source, host):
            raise Refused(f"request from {urlsplit(source).netloc!r}, not from this dashboard")
        if not csrf_cookie or not csrf_form or not _same(csrf_cookie, csrf_form):
            raise Refused("missing or wrong form token (reload the page and try again)")
        if not token_form or not _same(token_form, self.token):
            raise Refused("wrong operator token")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_csrf() -> str:
    return secrets.token_urlsafe(32)
