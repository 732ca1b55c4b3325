"""An optional part the configuration asks for, when not installed, is named with its extra."""

from __future__ import annotations

import sys

import pytest

from bot.alerts import apprise_destinations
from bot.extras import MissingExtra, require
from bot.store.sql import SqlStore


def test_require_names_the_extra_and_the_pip_command() -> None:
    with pytest.raises(MissingExtra, match=r"charts needs the optional 'plots' part") as info:
        require("no_such_module_for_this_test", "plots", "charts")
    assert "pip install 'perp-risk-bot[plots]'" in str(info.value)
    require("decimal", "plots", "charts")  # installed: no error


def test_alert_urls_without_apprise_name_the_alerts_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "apprise", None)  # import apprise would fail: not installed
    assert apprise_destinations([]) == []  # no URL, no Apprise needed
    with pytest.raises(MissingExtra, match=r"runtime.alert_urls .*'alerts'"):
        apprise_destinations(["json://localhost:1/hook"])


def test_postgres_url_without_psycopg_names_the_postgres_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    url = "postgresql+psycopg://bot:secret@127.0.0.1:1/bot"
    with pytest.raises(MissingExtra, match=r"postgresql\+psycopg://bot:\*\*\*@.*'postgres'"):
        SqlStore.open(url)
