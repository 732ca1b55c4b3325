"""bot.config.database_url reads a URL exactly as SQLAlchemy does (the store opens what the config
checked), without importing it."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from bot.config.database_url import DatabaseUrl, NotADatabaseUrl, parse_database_url

URLS = [
    "sqlite:///bot-state.db",
    "sqlite:////abs/path/state.db",
    "sqlite:///:memory:",
    "sqlite://",
    "sqlite://state.db",
    "sqlite:///dir%20with%20space/x.db",
    "sqlite:///a.db?mode=ro&cache=shared",
    "postgresql://db/bot",
    "postgresql+psycopg://user@127.0.0.1:5432/bot",
    "postgresql+psycopg://user:p%40ss@host:6543/bot?sslmode=require",
    "postgresql://user:pa:ss@host/bot",
    "postgresql://[::1]:5432/bot",
    "postgresql://[2001:db8::1]/bot",
    "postgresql://@host/bot",
    "postgresql://host",
    "postgresql://host?x=1",
    "postgresql+asyncpg://u@host/bot",
    "mysql://u@host/bot",
    "nonsense://",
    "a_b+c://x",
]
NOT_URLS = ["", "bot-state.db", "sqlite:/x.db", "://x", "my-sql://x", " sqlite:///x.db"]


def _reference(text: str) -> DatabaseUrl:
    url = make_url(text)
    return DatabaseUrl(url.drivername, url.host, url.port, url.database)


@pytest.mark.parametrize("text", URLS)
def test_the_fields_are_sqlalchemys(text: str) -> None:
    assert parse_database_url(text) == _reference(text)


@pytest.mark.parametrize("text", NOT_URLS)
def test_what_sqlalchemy_cannot_read_is_not_a_url(text: str) -> None:
    with pytest.raises(ArgumentError):
        make_url(text)
    with pytest.raises(NotADatabaseUrl, match="not a database URL"):
        parse_database_url(text)


@pytest.mark.parametrize("port", ["54x", ""])
def test_a_port_that_is_not_a_number_is_named(port: str) -> None:
    text = f"postgresql://host:{port}/bot"
    with pytest.raises(ValueError):
        make_url(text)  # SQLAlchemy: a bare int() error
    with pytest.raises(NotADatabaseUrl, match=f"port '{port}' is not a number"):
        parse_database_url(text)


_PART = st.text(alphabet="abz09_+-.:@/?[]%=& ", max_size=12)


@settings(max_examples=300)
@given(
    scheme=st.sampled_from(["sqlite", "postgresql", "postgresql+psycopg", "my_db", "x-y", ""]),
    rest=_PART,
)
def test_any_text_reads_as_sqlalchemy_reads_it(scheme: str, rest: str) -> None:
    """... but for an unencoded "@" in the user or password, refused (see below)."""
    text = f"{scheme}://{rest}"
    try:
        expected: DatabaseUrl | type[Exception] = _reference(text)
    except (ArgumentError, ValueError):
        expected = NotADatabaseUrl
    if re.match(r"[^/?#]*@[^/?#]*@", rest):
        expected = NotADatabaseUrl
    if isinstance(expected, DatabaseUrl):
        assert parse_database_url(text) == expected
    else:
        with pytest.raises(NotADatabaseUrl):
            parse_database_url(text)


def test_an_unencoded_at_sign_in_the_password_is_refused_without_quoting_it() -> None:
    """SQLAlchemy and libpq split ``bot:p@ss@db`` at the first "@": password "p", host
    "ss@db". The connection then failed with a host error quoting part of the password; the
    configuration now refuses the URL and says how to write it."""
    assert make_url("postgresql://bot:p@ss@db.example/x").host == "ss@db.example"
    with pytest.raises(NotADatabaseUrl, match='unencoded "@": write it as %40') as info:
        parse_database_url("postgresql://bot:p@ss@db.example/x")
    assert "p@ss" not in str(info.value)
    assert "ss@db" not in str(info.value)
    encoded = parse_database_url("postgresql://bot:p%40ss@db.example/x")
    assert encoded.host == "db.example"
    assert parse_database_url("sqlite:///dir/a@b.db").database == "dir/a@b.db"
