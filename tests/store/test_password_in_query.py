"""A database password given as a URL query parameter (libpq's ``?password=``) is masked like
the one before the host: the state database's errors reach the alerts, the log, the dashboard's
503 page and ``/healthz``."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bot.bootstrap import open_store
from bot.config.database_url import database_url_secrets
from bot.config.loader import load_config
from bot.errors import ConfigError
from bot.logs import REDACTED, redact
from bot.runtime.runner import _store_alert
from bot.store.migrate import safe_url
from bot.store.sql import SqlStore, StoreUnavailable
from tests.runtime.conftest import write_config
from tests.runtime.test_alerts import set_runtime

SECRET = "Sup3rSecretPass99"
KEY = "Ssl4KeyPassphrase"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_password_in_the_query_is_masked() -> None:
    masked = safe_url(
        f"postgresql+psycopg://bot@db.internal/bot?password={SECRET}&sslpassword={KEY}&sslmode=require"
    )
    assert SECRET not in masked
    assert KEY not in masked
    assert "sslmode=require" in masked
    assert "db.internal/bot" in masked


def test_the_store_alert_of_an_unreachable_database_carries_no_password() -> None:
    url = (
        f"postgresql+psycopg://bot@127.0.0.1:{closed_port()}/bot"
        f"?password={SECRET}&connect_timeout=2"
    )
    store = SqlStore.open(url, check_schema=False)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.latest_equity()
    finally:
        store.close()
    alert = _store_alert(caught.value)
    assert "cannot read" in alert.message
    assert SECRET not in alert.message


def test_database_url_secrets_lists_every_form_of_the_password() -> None:
    url = "postgresql+psycopg://bot:s3cr%40t@db.internal/bot?sslpassword=k%2By+z&sslmode=require"
    found = database_url_secrets(url)
    assert {"s3cr%40t", "s3cr@t", "k%2By+z", "k+y+z", "k+y z"} <= set(found)
    assert "require" not in found
    assert "bot" not in found
    assert database_url_secrets("sqlite:///bot-state.db") == []
    assert database_url_secrets("not a url") == []


def test_opening_the_database_adds_its_password_to_the_log_redactor(tmp_path: Path) -> None:
    """A driver's or SQLAlchemy's message may quote the URL (a log line, an exception's
    text): once the bot has opened its database, the password never leaves the process."""
    secret = "Db9PassWordInUrl"
    config_path = write_config(tmp_path, contracts=1)
    set_runtime(
        config_path,
        database_url=f'"postgresql+psycopg://bot:{secret}@127.0.0.1:{closed_port()}/bot'
        f'?sslpassword={KEY}&connect_timeout=2"',
    )
    config = load_config(config_path)
    assert secret in redact(f"connection to {secret}")  # not known before the bot opens it
    with pytest.raises(ConfigError) as caught:
        open_store(config)
    assert secret not in str(caught.value)
    assert redact(f"url postgresql://bot:{secret}@h/bot?sslpassword={KEY}") == (
        f"url postgresql://bot:{REDACTED}@h/bot?sslpassword={REDACTED}"
    )


# Any password before the host, written without percent-encoding: every character but the
# ones that end the authority ("/", "?", "#"), "@" and ":" included.
PASSWORDS = st.text(
    alphabet=st.characters(exclude_characters="/?#", codec="utf-8"),
    min_size=1,
    max_size=24,
)


@example(password="p@ss", user="bot", tail="/x", host="db.example")
@given(
    password=PASSWORDS,
    user=st.sampled_from(["bot", ""]),
    tail=st.sampled_from(["", ":5432", ":5432/state", "/state?sslmode=require", "/s?password=x"]),
    host=st.sampled_from(["db.example", "10.0.0.7", "[::1]"]),
)
def test_no_part_of_a_password_before_the_host_is_shown(
    password: str, user: str, tail: str, host: str
) -> None:
    """``postgresql://bot:p@ss@db.example/x``: SQLAlchemy reads the password up to the first
    "@" and the host from there, so "ss" was shown. Masked is all of it, whatever it holds."""
    url = f"postgresql+psycopg://{user}:{password}@{host}{tail}"
    masked = safe_url(url)
    assert masked.startswith(f"postgresql+psycopg://{user}:***@{host}"), masked
    # the host and what follows are the URL's own, as SQLAlchemy renders them
    rest = masked.removeprefix(f"postgresql+psycopg://{user}:***@{host}")
    assert rest in (tail, tail.replace("password=x", "password=***"))


def test_a_password_with_an_unencoded_at_sign_is_masked_whole() -> None:
    assert safe_url("postgresql://bot:p@ss@db.example/x") == "postgresql://bot:***@db.example/x"
    assert safe_url("postgresql://:p@ss@db.example/x") == "postgresql://:***@db.example/x"
    assert safe_url("postgresql://bot@db.example/x") == "postgresql://bot@db.example/x"
    assert safe_url("postgresql://db.example/x") == "postgresql://db.example/x"
    assert safe_url("sqlite:////srv/bot@home/state.db") == "sqlite:////srv/bot@home/state.db"
    assert "p@ss" in database_url_secrets("postgresql://bot:p@ss@db.example/x")
