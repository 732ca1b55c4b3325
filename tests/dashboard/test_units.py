"""Small pieces of the dashboard: number formatting, the extra's error, the guard, the bind."""

from __future__ import annotations

import sys
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.cli.app import app as cli
from bot.dashboard import require_extra
from bot.dashboard.security import AllowedHosts, Guard, Refused
from bot.dashboard.server import warn_if_exposed
from bot.errors import ConfigError
from bot.numbers import money, percent, places_of, price, qty
from tests.runtime.conftest import write_config


def test_numbers_follow_the_contract_precision() -> None:
    assert places_of(Decimal("0.10")) == 1
    assert places_of(Decimal("0.001")) == 3
    assert places_of(Decimal(5)) == 0
    assert price(Decimal("9861.395427715813"), Decimal("0.1")) == "9861.4"
    assert price(Decimal("105604.41666"), Decimal("0.10"), grouping=True) == "105,604.4"
    assert qty(Decimal("0.0525"), Decimal("0.001")) == "0.052"  # half-even
    assert money(Decimal("9861.395427715813")) == "9861.40"
    assert percent(Decimal("0.011839")) == "1.18 %"
    assert price(None, Decimal("0.1")) == "-"
    assert percent(Decimal("Infinity")) == "Infinity"


def test_a_missing_extra_names_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn now raises ImportError
    with pytest.raises(ConfigError, match=r"pip install 'perp-risk-bot\[dashboard\]'"):
        require_extra()
    result = CliRunner().invoke(cli, ["serve", "--sim", "out"])
    assert result.exit_code == 2
    assert "perp-risk-bot[dashboard]" in result.output


def test_serve_needs_one_source(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "give --config" in result.output
    cfg = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "no state database" in result.output
    assert not (tmp_path / "state.db").exists()  # the dashboard never creates one


def test_the_token_must_be_long_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOT_DASHBOARD_TOKEN", "short")
    with pytest.raises(ValueError, match="at least 16"):
        Guard.from_environment()
    monkeypatch.delenv("BOT_DASHBOARD_TOKEN")
    assert Guard.from_environment().read_only


def test_the_guard_checks_origin_before_referer() -> None:
    guard = Guard("a-long-operator-token")
    hosts = AllowedHosts.serving()
    ok = {
        "host": "127.0.0.1:8080",
        "origin": None,
        "referer": "http://127.0.0.1:8080/actions/halt",
        "csrf_cookie": "c" * 40,
        "csrf_form": "c" * 40,
        "token_form": "a-long-operator-token",
    }
    guard.check(hosts=hosts, **ok)  # a same-site Referer without Origin is accepted
    with pytest.raises(Refused, match="not from this dashboard"):
        guard.check(hosts=hosts, **{**ok, "origin": "http://127.0.0.1:9999"})
    with pytest.raises(Refused, match="not from this dashboard"):
        guard.check(hosts=hosts, **{**ok, "referer": "http://evil.example/"})


@pytest.mark.parametrize(
    ("host", "admitted"),
    [
        ("127.0.0.1:8080", True),
        ("LOCALHOST:1", True),
        ("[::1]:8080", True),
        ("[0:0:0:0:0:0:0:1]", True),  # the same address written out
        ("192.168.1.5:8080", True),  # the --host address
        ("attacker.example:8080", False),
        ("127.0.0.1.attacker.example", False),
        ("localhost.", False),
        ("ops@127.0.0.1", False),
        ("127.0.0.1:8080:1", False),
        ("[::1", False),
        ("", False),
        (None, False),
    ],
)
def test_only_the_served_host_names_are_admitted(host: str | None, admitted: bool) -> None:
    assert AllowedHosts.serving("192.168.1.5").admits(host) is admitted


def test_allowed_hosts_are_names_or_addresses() -> None:
    hosts = AllowedHosts.serving("::", ["Bot.Example.com", "[2001:DB8::1]", "10.0.0.7"])
    assert hosts.direct == {"127.0.0.1", "localhost", "::1", "::"}
    assert hosts.proxied == {"bot.example.com", "2001:db8::1", "10.0.0.7"}
    assert hosts.admits("[2001:db8:0::1]:443")
    for wrong in ("https://bot.example.com", "bot.example.com:443", "bot.example.com/x", ""):
        with pytest.raises(ValueError, match="is not a host name or address"):
            AllowedHosts.serving("127.0.0.1", [wrong])


def test_binding_beyond_loopback_warns(capsys: pytest.CaptureFixture[str]) -> None:
    from rich.console import Console

    console = Console(force_terminal=False, width=200)
    warn_if_exposed("127.0.0.1", console)
    warn_if_exposed("::1", console)
    assert "WARNING" not in capsys.readouterr().out
    warn_if_exposed("0.0.0.0", console)  # noqa: S104 - the case under test
    assert "reachable from other machines" in capsys.readouterr().out


def test_run_checks_the_token_before_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOT_DASHBOARD_TOKEN", "short")
    cfg = write_config(tmp_path)
    result = CliRunner().invoke(cli, ["run", "--config", str(cfg), "--once", "--dashboard"])
    assert result.exit_code == 2
    assert "BOT_DASHBOARD_TOKEN is 5 characters long" in result.output
    assert not (tmp_path / "state.db").exists()  # nothing started
