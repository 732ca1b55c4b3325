"""The parts of a database URL the configuration checks, read without the SQL stack.

``runtime.database_url`` is checked when the configuration is loaded, so a wrong URL is one clear
error before anything starts. Every command loads the configuration, and most (``bot simulate``,
``bot calc``, ``bot sweep``) never open the database: importing SQLAlchemy to read five fields of
a string would cost them a few hundred milliseconds. This reader follows the URL grammar
SQLAlchemy documents (``dialect+driver://username:password@host:port/database?query``,
https://docs.sqlalchemy.org/en/20/core/engines.html#database-urls) field for field, so the store
later opens exactly what was checked here; ``tests/unit/test_database_url.py`` compares the two
on a list of URLs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import unquote, unquote_plus

# name://[user[:password]@][host or [ipv6]][:port][/database][?query]; every part but the name
# optional. A user part ends at the first "@" that follows it; the host never holds "/", ":" or
# "?"; the database runs to the query.
_URL = re.compile(
    r"""
    (?P<name>[\w+]+)://
    (?:(?P<user>[^:/]*)(?::(?P<password>[^@]*))?@)?
    (?:(?:\[(?P<ipv6>[^/?]+)\]|(?P<ipv4>[^/:?]+))?(?::(?P<port>[^/?]*))?)?
    (?:/(?P<database>[^?]*))?
    (?:\?(?P<query>.*))?
    """,
    re.VERBOSE,
)


# name:// and the authority after it: up to the first "/", "?" or "#" (RFC 3986, 3.2).
_AUTHORITY = re.compile(r"(?P<name>[\w+.-]+://)(?P<authority>[^/?#]*)")


def password_span(text: str) -> tuple[int, int] | None:
    """Where the password before the host lies in ``text`` (start, end), or None when it has
    none: from the user's ":" to the LAST "@" of the authority. SQLAlchemy and libpq split at
    the first "@", so a password holding an unencoded "@" (``bot:p@ss@db``) was read as "p"
    and its rest taken for the host: masking what they call the password showed the rest."""
    m = _AUTHORITY.match(text)
    if m is None:
        return None
    authority = m["authority"]
    at = authority.rfind("@")
    colon = authority.find(":", 0, at)
    if at < 0 or colon < 0:
        return None
    start = m.start("authority")
    return start + colon + 1, start + at


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    drivername: str  # "sqlite", "postgresql+psycopg", ...
    host: str | None
    port: int | None
    database: str | None  # percent-decoded


class NotADatabaseUrl(ValueError):
    """The text is not a database URL at all (no ``name://``), or its port is not a number;
    the message says which, for the trader."""


def parse_database_url(text: str) -> DatabaseUrl:
    """The driver, host, port and database of ``text``; :class:`NotADatabaseUrl` otherwise."""
    m = _URL.match(text)
    if m is None:
        raise NotADatabaseUrl("not a database URL; use sqlite:///bot-state.db or postgresql://...")
    authority = _AUTHORITY.match(text)
    if authority is not None and authority["authority"].count("@") > 1:
        # SQLAlchemy and libpq split at the first "@": the rest of the password would be taken
        # for the host, and the connection error would quote it. (Not quoted here either.)
        raise NotADatabaseUrl(
            'the user name or password holds an unencoded "@": write it as %40 '
            "(percent-encode : / ? # [ ] @ in them)"
        )
    port: int | None = None
    if m["port"] is not None:  # "host:" too: an empty port is refused, as SQLAlchemy does
        try:
            port = int(m["port"])
        except ValueError:
            raise NotADatabaseUrl(
                f"port {m['port']!r} is not a number; write host:5432 or leave the port out"
            ) from None
    database = m["database"]
    return DatabaseUrl(
        drivername=m["name"],
        host=m["ipv4"] or m["ipv6"],
        port=port,
        database=unquote(database) if database is not None else None,
    )


def database_url_secrets(text: str) -> list[str]:
    """The passwords ``text`` carries, as written and percent-decoded: the one before the host
    and any query parameter named like a password (libpq takes ``?password=`` and
    ``?sslpassword=``), for the log redactor ([] when it has none or is no URL)."""
    m = _URL.match(text)
    if m is None:
        return []
    span = password_span(text)  # (an unencoded "@" in it: all of it, not up to the "@")
    raw = [text[span[0] : span[1]] if span is not None else ""]
    for part in (m["query"] or "").split("&"):
        key, eq, value = part.partition("=")
        if eq and "password" in unquote(key).lower():
            raw.append(value)
    out: list[str] = []
    for value in (v for r in raw for v in (r, unquote(r), unquote_plus(r))):
        if value and value not in out:
            out.append(value)
    return out
