"""Who may press the halt button.

* The operator's token comes from ``BOT_DASHBOARD_TOKEN``; without it the dashboard is
  read-only. It is typed into the confirmation form of each action (never stored in a cookie,
  so a stolen browser session cannot act) and compared in constant time.
* Cross-site requests are refused twice over: the ``Origin`` (or, without it, the ``Referer``)
  must be this server's own, and the form must carry the per-browser CSRF token that only a
  page of this server can read (a random cookie, ``SameSite=Strict``, echoed in a hidden field:
  the double-submit pattern).
"""

from __future__ import annotations

import hmac
import os
import secrets
from dataclasses import dataclass
from urllib.parse import urlsplit

TOKEN_ENV = "BOT_DASHBOARD_TOKEN"  # noqa: S105 - the variable's name, not a secret
CSRF_COOKIE = "bot_csrf"
MIN_TOKEN_LENGTH = 16


class Refused(Exception):
    """An action request that must not be acted on; the message says why (shown to the user)."""


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
        if not host:
            raise Refused("request without a Host header")
        source = origin if origin and origin != "null" else referer
        if not source:
            raise Refused("request without Origin or Referer: refused (cross-site protection)")
        if urlsplit(source).netloc.lower() != host.lower():
            raise Refused(f"request from {urlsplit(source).netloc!r}, not from this dashboard")
        if not csrf_cookie or not csrf_form or not _same(csrf_cookie, csrf_form):
            raise Refused("missing or wrong form token (reload the page and try again)")
        if not token_form or not _same(token_form, self.token):
            raise Refused("wrong operator token")


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def new_csrf() -> str:
    return secrets.token_urlsafe(32)
