"""A database password given as a URL query parameter (libpq's ``?password=``) is masked like
the one before the host: the state database's errors reach the alerts, the log, the dashboard's
503 page and ``/healthz``."""

from __future__ import annotations

import socket

import pytest

from bot.runtime.runner import _store_alert
from bot.store.migrate import safe_url
from bot.store.sql import SqlStore, StoreUnavailable

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
