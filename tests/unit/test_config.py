"""bot.config: loading config files, every error path, immutability and exact decimals."""

from __future__ import annotations

import re
from dataclasses import replace
from decimal import Decimal
from decimal import Decimal as D
from pathlib import Path

import pytest
from pydantic import ValidationError

import bot.config
from bot.catalogue import catalogue_path, write_catalogue
from bot.config import (
    BotConfig,
    ContractConfig,
    DistanceParams,
    LeverageParams,
    load_config,
    load_policy,
)
from bot.domain.instrument import Instrument
from bot.errors import ConfigError
from bot.instruments import load_instruments

POLICY = """\
kind = "vol_target"
timeframe = "1h"
[volatility]
estimator = "yang_zhang"
window = 168
[leverage]
min = 1
max = 5
target_volatility = 0.4
[stop_loss]
kind = "atr"
distance = 3
[liquidation]
buffer_vol_units = 2
[funding]
max_annual_cost = 0.25
[limits]
daily_loss = 0.05
max_drawdown = 0.25
"""

CONFIG = """\
[account]
name = "main"
starting_balance = 10000
[[contracts]]
symbol = "BTC/USDT:USDT"
direction = "long"
[[contracts]]
symbol = "ETH/USDT:USDT"
direction = "long"
[data]
dir = "data"
[policy]
file = "policies/p.toml"
[risk]
max_leverage_per_contract = 5
max_gross_leverage = 6
max_notional_per_contract = 50000
daily_loss_limit = 0.05
max_drawdown = 0.25
stale_data_seconds = 120
max_orders_per_minute = 20
[simulation]
start = 2025-06-02
end = 2025-09-30
slippage_bps = 2
"""


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A directory with a data dir and a policy, where a config file can be written.

    It is also the working directory, so messages name files relative to it ("config.toml").
    """
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "p.toml").write_text(POLICY)
    return tmp_path


def write(project: Path, text: str, name: str = "config.toml") -> Path:
    path = project / name
    path.write_text(text)
    return path


def errors_of(path: Path, **kwargs: object) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, **kwargs)  # type: ignore[arg-type]
    return str(info.value)


def the_line(message: str, key: str) -> str:
    """The single line of ``message`` about ``key`` (``<file>: <key>: ...``)."""
    lines = [line for line in message.splitlines() if f": {key}: " in line]
    assert len(lines) == 1, message
    return lines[0]


# --- valid configuration -----------------------------------------------------------------


def test_valid_config_loads_with_defaults(project: Path) -> None:
    cfg = load_config(write(project, CONFIG))

    assert cfg.source == (project / "config.toml").resolve()
    assert cfg.account.name == "main"
    assert cfg.account.quote == "USDT"
    assert cfg.account.starting_balance == Decimal(10000)
    assert cfg.account.margin_mode == "isolated"
    assert [c.symbol for c in cfg.contracts] == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert cfg.data.exchange == "binanceusdm"
    assert [p.name for p in cfg.policies] == ["p"]
    assert cfg.risk.on_daily_loss == "halted"
    assert cfg.simulation.trigger_source == "auto"
    assert cfg.simulation.fee_override_taker is None
    assert cfg.exchange.name == "binanceusdm"
    assert cfg.exchange.demo is True
    assert cfg.exchange.ccxt_options == {}
    assert cfg.runtime.alert_urls == ()


def test_relative_paths_are_taken_from_the_config_directory(
    project: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    cfg = load_config(write(project, CONFIG))

    root = project.resolve()
    assert cfg.data.dir == root / "data"
    assert cfg.policy.file == root / "policies" / "p.toml"
    assert cfg.simulation.out_dir == root / "out"
    assert cfg.runtime.log_dir == root / "logs"
    assert cfg.runtime.database_url == f"sqlite:///{root / 'bot-state.db'}"


def test_absolute_and_memory_database_urls_are_kept(project: Path) -> None:
    text = CONFIG + '[runtime]\ndatabase_url = "sqlite:///:memory:"\n'
    assert load_config(write(project, text)).runtime.database_url == "sqlite:///:memory:"
    text = CONFIG + '[runtime]\ndatabase_url = "postgresql://db/bot"\n'
    assert load_config(write(project, text)).runtime.database_url == "postgresql://db/bot"


def test_exchange_margin_mode_follows_the_account(project: Path) -> None:
    text = edit(CONFIG, 'name = "main"\n', 'name = "main"\nmargin_mode = "cross"\n')
    assert load_config(write(project, text)).exchange.margin_mode == "cross"
    text += '[exchange]\nmargin_mode = "isolated"\n'
    assert load_config(write(project, text)).exchange.margin_mode == "isolated"


def test_the_specifications_simulated_are_the_traded_venues_unless_said(project: Path) -> None:
    """A config moved to Bybit by its exchange.name alone kept simulating (and paper trading)
    on Binance's specifications, fees and brackets."""
    assert load_config(write(project, CONFIG)).data.exchange == "binanceusdm"
    text = CONFIG + '[exchange]\nname = "bybit"\n'
    assert load_config(write(project, text)).data.exchange == "bybit"
    said = edit(text, "[data]\n", '[data]\nexchange = "binanceusdm"\n')
    assert load_config(write(project, said)).data.exchange == "binanceusdm"


def test_ccxt_options_pass_through_as_plain_json_types(project: Path) -> None:
    text = CONFIG + "[exchange.ccxt_options]\nrecvWindow = 10000\nratio = 0.5\nflag = true\n"
    options = load_config(write(project, text)).exchange.ccxt_options
    assert options == {"recvWindow": 10000, "ratio": 0.5, "flag": True}
    assert type(options["ratio"]) is float


def test_signal_contract_with_existing_file_loads(project: Path) -> None:
    (project / "sig.csv").write_text("timestamp,direction\n")
    text = edit(
        CONFIG,
        'symbol = "ETH/USDT:USDT"\ndirection = "long"',
        'symbol = "ETH/USDT:USDT"\ndirection = "signal"\nsignal_file = "sig.csv"',
    )
    contract = load_config(write(project, text)).contracts[1]
    assert contract.signal_file == (project / "sig.csv").resolve()


def test_policy_overrides_replace_the_configured_policy(project: Path) -> None:
    other = project / "policies" / "other.toml"
    other.write_text(edit(POLICY, "target_volatility = 0.4", "target_volatility = 0.2"))
    cfg = load_config(write(project, CONFIG), policy_overrides=[other])
    assert [(p.name, p.leverage.target_volatility) for p in cfg.policies] == [
        ("other", Decimal("0.2"))
    ]


def test_effective_loss_limits_are_the_tighter_of_config_and_policy(project: Path) -> None:
    text = edit(CONFIG, "daily_loss_limit = 0.05", "daily_loss_limit = 0.03")
    cfg = load_config(write(project, text))
    policy = cfg.policies[0]  # daily_loss 0.05, max_drawdown 0.25
    assert cfg.risk.effective_daily_loss_limit(policy) == Decimal("0.03")
    assert cfg.risk.effective_max_drawdown(policy) == Decimal("0.25")


# --- unknown, missing and mistyped keys ----------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "allowed"),
    [
        ("[account]\n", "colour = 1\n[account]\n", "colour", "account, contracts, data"),
        ("[risk]\n", "[risk]\nmax_levrage = 3\n", "risk.max_levrage", "max_leverage_per_contract"),
        (
            'direction = "long"\n[data]',
            'direction = "long"\nleverage = 2\n[data]',
            "contracts[1].leverage",
            "symbol, direction, signal_file",
        ),
        ("[simulation]\n", "[simulation]\nfee = 1\n", "simulation.fee", "fee_override_taker"),
    ],
)
def test_unknown_keys_are_rejected_with_the_allowed_ones(
    project: Path, old: str, new: str, key: str, allowed: str
) -> None:
    path = write(project, edit(CONFIG, old, new))
    line = the_line(errors_of(path), key)
    assert line.startswith("config.toml: ") or "config.toml: " in line
    assert "unknown key (allowed: " in line
    assert allowed in line


@pytest.mark.parametrize("key", ["source", "policies"])
def test_keys_filled_by_the_loader_are_not_toml_keys(project: Path, key: str) -> None:
    path = write(project, f'{key} = "x"\n' + CONFIG)
    line = the_line(errors_of(path), key)
    assert "unknown key (allowed: account," in line
    assert "source" not in line.split("allowed:")[1]


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("max_drawdown = 0.25\nstale", "stale", "risk.max_drawdown"),
        ('name = "main"\n', "", "account.name"),
        ('[policy]\nfile = "policies/p.toml"\n', "", "policy"),
        ("slippage_bps = 2\n", "", "simulation.slippage_bps"),
    ],
)
def test_missing_required_keys_are_named(project: Path, old: str, new: str, key: str) -> None:
    line = the_line(errors_of(write(project, edit(CONFIG, old, new))), key)
    assert line.endswith(f"{key}: required key missing")


def test_no_contracts_is_an_error(project: Path) -> None:
    text = re.sub(r"\[\[contracts\]\]\n.*?\n.*?\n", "", CONFIG)
    assert "[[contracts]]" not in text
    assert "contracts: required key missing" in errors_of(write(project, text))
    text = "contracts = []\n" + text
    assert "contracts: must not be empty (got an array)" in errors_of(write(project, text))


LONGG = 'contracts[0].direction: must be one of "long", "short", "signal" or "follow" (got "longg")'


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        # the only entry, bad: pydantic also said the array was empty
        (
            [
                ('[[contracts]]\nsymbol = "ETH/USDT:USDT"\ndirection = "long"\n', ""),
                ("long", "longg"),
            ],
            [LONGG],
        ),
        (
            [
                ('[[contracts]]\nsymbol = "ETH/USDT:USDT"\ndirection = "long"\n', ""),
                ('symbol = "BTC/USDT:USDT"', "symbol = 5"),
            ],
            ["contracts[0].symbol: must be a string (got 5)"],
        ),
        # every entry bad
        (
            [('direction = "long"\n[[', 'direction = "longg"\n[['), ('"ETH/USDT:USDT"', "5")],
            [LONGG, "contracts[1].symbol: must be a string (got 5)"],
        ),
    ],
)
def test_a_bad_contract_is_not_also_reported_as_no_contracts(
    project: Path, edits: list[tuple[str, str]], expected: list[str]
) -> None:
    text = CONFIG
    for old, new in edits:
        text = edit(text, old, new)
    lines = errors_of(write(project, text)).splitlines()
    assert lines == [f"config.toml: {line}" for line in expected]


STALE = "stale_data_seconds = 120"
SLIP = "slippage_bps = 2"
ACCOUNT = '[account]\nname = "main"\nstarting_balance = 10000\n'
WRONG_VALUES = [
    (
        STALE,
        'stale_data_seconds = "120"',
        'risk.stale_data_seconds: must be an integer (got "120")',
    ),
    (STALE, "stale_data_seconds = 1.5", "risk.stale_data_seconds: must be an integer (got 1.5)"),
    (STALE, "stale_data_seconds = true", "risk.stale_data_seconds: must be an integer (got true)"),
    (STALE, "stale_data_seconds = 0", "risk.stale_data_seconds: must be > 0 (got 0)"),
    (SLIP, "slippage_bps = true", "simulation.slippage_bps: must be a number (got true)"),
    (
        SLIP,
        'slippage_bps = "two"',
        'simulation.slippage_bps: must be a number like 0.25 (got "two")',
    ),
    (SLIP, "slippage_bps = nan", "simulation.slippage_bps: must be a finite number (got NaN)"),
    (SLIP, "slippage_bps = -1", "simulation.slippage_bps: must be >= 0 (got -1)"),
    (
        SLIP,
        "slippage_bps = 2\nfee_override_taker = 0.5",
        "simulation.fee_override_taker: must be <= 0.01 (got 0.5)",
    ),
    ("start = 2025-06-02", 'start = "June"', "simulation.start: must be a date like 2025-06-02"),
    (
        "[simulation]",
        'on_daily_loss = "x"\n[simulation]',
        'risk.on_daily_loss: must be one of "reducing" or "halted" (got "x")',
    ),
    (
        "[data]\n",
        '[data]\nexchange = "okx"\n',
        'data.exchange: must be one of "binanceusdm" or "bybit"',
    ),
    ('name = "main"', 'name = "a b"', 'account.name: must be 1-12 of A-Z a-z 0-9 _ - (got "a b")'),
    ('name = "main"', 'name = "thirteen_char"', "account.name: must be 1-12"),
    ("starting_balance = 10000", "starting_balance = 0", "account.starting_balance: must be > 0"),
    (
        "daily_loss_limit = 0.05",
        "daily_loss_limit = 1",
        "risk.daily_loss_limit: must be < 1 (got 1)",
    ),
    (ACCOUNT, "account = 5\n", "account: must be a table (got 5)"),
    (
        "[risk]",
        '[exchange]\ndemo = "yes"\n[risk]',
        'exchange.demo: must be true or false (got "yes")',
    ),
    ("[risk]", "[exchange]\napi_url = 5\n[risk]", "exchange.api_url: must be a string (got 5)"),
    (
        "[risk]",
        '[runtime]\nalert_urls = "https://x"\n[risk]',
        "runtime.alert_urls: must be an array",
    ),
    ("[risk]", '[runtime]\nalert_urls = ["hooks"]\n[risk]', "runtime.alert_urls[0]: must be a URL"),
    # Durations past any meaning overflowed the scheduler at its first job (no tick ever ran).
    (
        "[risk]",
        "[runtime]\nmisfire_grace_seconds = 99999999999999999999\n[risk]",
        "runtime.misfire_grace_seconds: must be <= 86400 (got 99999999999999999999)",
    ),
    (
        "[risk]",
        "[runtime]\nguard_seconds = 99999999999999999999\n[risk]",
        "runtime.guard_seconds: must be <= 3600 (got 99999999999999999999)",
    ),
    (
        STALE,
        "stale_data_seconds = 99999999999999999999",
        "risk.stale_data_seconds: must be <= 604800",
    ),
    (
        SLIP,
        'slippage_bps = 2\nresume_after_halt = "9999999999w"',
        'simulation.resume_after_halt: must be at most 365d (a year) (got "9999999999w")',
    ),
    (
        "[data]\n",
        "[data]\ncatalogue_max_age_hours = true\n",
        "data.catalogue_max_age_hours: must be an integer (got true)",
    ),
    # Both used to load and fail only when `bot run --live` built the adapter, in a line that
    # did not name the file ("exchange: set either demo = true or api_url, not both").
    (
        "[risk]",
        '[exchange]\napi_url = "http://127.0.0.1:8080"\n[risk]',
        "exchange.api_url: needs demo = false (demo = true trades the venue's own demo "
        'endpoints) (got "http://127.0.0.1:8080")',
    ),
    (
        "[risk]",
        '[exchange]\ndemo = false\napi_url = "ws://127.0.0.1:8080"\n[risk]',
        'exchange.api_url: must be http(s)://host[:port][/path] (got "ws://127.0.0.1:8080")',
    ),
    (
        "[risk]",
        '[exchange]\ndemo = false\napi_url = "https://gw.example/fapi?x=1"\n[risk]',
        'exchange.api_url: must be http(s)://host[:port][/path] (got "https://gw.example/fapi?x=1")',
    ),
    # config.example.toml documents "binanceusdm" or "bybit"; any other id used to load and
    # fail only at `bot run`, in a line that did not name the file.
    (
        "[risk]",
        '[exchange]\nname = "kraken"\n[risk]',
        'exchange.name: must be one of "binanceusdm" or "bybit" (got "kraken")',
    ),
]


@pytest.mark.parametrize(("old", "new", "expected"), WRONG_VALUES)
def test_wrong_values_and_types_are_reported_with_key_and_value(
    project: Path, old: str, new: str, expected: str
) -> None:
    message = errors_of(write(project, edit(CONFIG, old, new)))
    assert f"config.toml: {expected}" in message


@pytest.mark.parametrize(
    "symbol", ["BTCUSDT", "btc/usdt:usdt", "BTC/USDT", "BTC-USDT-SWAP", "BTC/USDT:USDT-250926", ""]
)
def test_bad_symbols_are_rejected(project: Path, symbol: str) -> None:
    text = edit(CONFIG, 'symbol = "ETH/USDT:USDT"', f'symbol = "{symbol}"')
    line = the_line(errors_of(write(project, text)), "contracts[1].symbol")
    assert f'must be a ccxt perpetual symbol like BTC/USDT:USDT (got "{symbol}")' in line


# --- cross-field rules ---------------------------------------------------------------------


def test_duplicate_contracts_are_rejected(project: Path) -> None:
    text = edit(CONFIG, 'symbol = "ETH/USDT:USDT"', 'symbol = "BTC/USDT:USDT"')
    line = the_line(errors_of(write(project, text)), "contracts[1].symbol")
    assert line.endswith('duplicate of contracts[0].symbol (got "BTC/USDT:USDT")')


def test_contract_must_settle_in_the_account_quote(project: Path) -> None:
    text = edit(CONFIG, 'symbol = "ETH/USDT:USDT"', 'symbol = "ETH/USDC:USDC"')
    line = the_line(errors_of(write(project, text)), "contracts[1].symbol")
    assert 'settles in USDC, not account.quote "USDT" (got "ETH/USDC:USDC")' in line


def test_signal_direction_requires_a_signal_file(project: Path) -> None:
    text = edit(
        CONFIG, 'ETH/USDT:USDT"\ndirection = "long"', 'ETH/USDT:USDT"\ndirection = "signal"'
    )
    line = the_line(errors_of(write(project, text)), "contracts[1].signal_file")
    assert line.endswith('required key missing for direction = "signal"')


def test_signal_file_is_only_allowed_with_signal_direction(project: Path) -> None:
    (project / "sig.csv").write_text("")
    text = edit(
        CONFIG, 'direction = "long"\n[data]', 'direction = "long"\nsignal_file = "sig.csv"\n[data]'
    )
    line = the_line(errors_of(write(project, text)), "contracts[1].signal_file")
    assert 'only allowed with direction = "signal"' in line
    assert "sig.csv" in line


@pytest.mark.parametrize("end", ["2025-06-02", "2025-06-01"])
def test_simulation_end_must_follow_start(project: Path, end: str) -> None:
    text = edit(CONFIG, "end = 2025-09-30", f"end = {end}")
    line = the_line(errors_of(write(project, text)), "simulation.end")
    assert (
        line
        == f"config.toml: simulation.end: must be after simulation.start (got {end} <= 2025-06-02)"
    )


def test_open_ended_simulation_window_is_allowed(project: Path) -> None:
    text = edit(edit(CONFIG, "start = 2025-06-02\n", ""), "end = 2025-09-30\n", "")
    sim = load_config(write(project, text)).simulation
    assert (sim.start, sim.end) == (None, None)


# --- paths ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "key", "problem", "resolved"),
    [
        ('dir = "data"', 'dir = "missing"', "data.dir", "directory not found", "missing"),
        (
            'dir = "data"',
            'dir = "policies/p.toml"',
            "data.dir",
            "not a directory",
            "policies/p.toml",
        ),
        (
            'file = "policies/p.toml"',
            'file = "policies/none.toml"',
            "policy.file",
            "file not found",
            "policies/none.toml",
        ),
        (
            'ETH/USDT:USDT"\ndirection = "long"',
            'ETH/USDT:USDT"\ndirection = "signal"\nsignal_file = "sig/none.csv"',
            "contracts[1].signal_file",
            "file not found",
            "sig/none.csv",
        ),
    ],
)
def test_missing_input_paths_name_the_key_and_resolved_path(
    project: Path, old: str, new: str, key: str, problem: str, resolved: str
) -> None:
    line = the_line(errors_of(write(project, edit(CONFIG, old, new))), key)
    assert line == f"config.toml: {key}: {problem} (got {project.resolve() / resolved})"


def test_missing_config_file(tmp_path: Path) -> None:
    message = errors_of(tmp_path / "nope.toml")
    assert message.endswith(f"file not found (got {(tmp_path / 'nope.toml').resolve()})")


def test_config_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(b'name = "\xff"\n')
    assert "c.toml: not UTF-8 text (byte 8)" in errors_of(path)


# --- syntax, secrets, several problems ------------------------------------------------------


def test_toml_syntax_error_names_line_and_column(project: Path) -> None:
    text = edit(CONFIG, "stale_data_seconds = 120", "stale_data_seconds = ")
    message = errors_of(write(project, text))
    line_no = text.splitlines().index("stale_data_seconds = ") + 1
    assert message.startswith(f"config.toml: line {line_no}, column 22: invalid TOML: ")


def test_toml_syntax_error_at_end_of_file(project: Path) -> None:
    message = errors_of(write(project, CONFIG + 'x = "unterminated'))
    assert message.startswith("config.toml: line ")
    assert "at end of file: invalid TOML: " in message


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("[account]\n", 'api_key = "s3cr3t-value"\n[account]\n', "api_key"),
        ("[account]\n", '[account]\npassword = "s3cr3t-value"\n', "account.password"),
        (
            'direction = "long"\n[data]',
            'direction = "long"\nsecret = "s3cr3t-value"\n[data]',
            "contracts[1].secret",
        ),
        (
            "[risk]",
            '[exchange.ccxt_options]\napiKey = "s3cr3t-value"\n[risk]',
            "exchange.ccxt_options.apiKey",
        ),
        (
            "[risk]",
            '[exchange]\nccxt_options = { headers = [{ API_SECRET = "s3cr3t-value" }] }\n[risk]',
            "exchange.ccxt_options.headers[0].API_SECRET",
        ),
    ],
)
def test_api_credentials_are_rejected_and_never_echoed(
    project: Path, old: str, new: str, key: str
) -> None:
    message = errors_of(write(project, edit(CONFIG, old, new)))
    line = the_line(message, key)
    for variable in ("BOT_API_KEY", "BOT_API_SECRET", "BOT_API_PASSWORD"):
        assert variable in line
    assert "s3cr3t-value" not in message
    assert "unknown key" not in message  # reported once, as a credential


def test_every_problem_is_reported_one_per_line(project: Path) -> None:
    text = edit(CONFIG, "starting_balance = 10000", "starting_balance = -1")
    text = edit(text, 'dir = "data"', 'dir = "nowhere"')
    text = edit(text, "[risk]\n", "[risk]\nmax_levrage = 3\n")
    lines = errors_of(write(project, text)).splitlines()
    assert len(lines) == 3
    assert all(line.startswith("config.toml: ") for line in lines)
    assert {line.split(": ")[1] for line in lines} == {
        "account.starting_balance",
        "data.dir",
        "risk.max_levrage",
    }


def test_policy_errors_are_reported_with_the_policy_file(project: Path) -> None:
    (project / "policies" / "p.toml").write_text(edit(POLICY, "max = 5", "max = 0.5"))
    text = edit(CONFIG, "starting_balance = 10000", "starting_balance = 0")
    lines = errors_of(write(project, text)).splitlines()
    assert lines[0].startswith("config.toml: account.starting_balance: must be > 0")
    assert lines[1] == "policies/p.toml: leverage.max: must be >= leverage.min (got 0.5 < 1)"
    assert len(lines) == 2  # no extra "policies: ..." noise


def test_bad_policy_overrides_are_all_reported(project: Path) -> None:
    bad = project / "bad.toml"
    bad.write_text(edit(POLICY, "window = 168", "window = 1"))
    message = errors_of(write(project, CONFIG), policy_overrides=[bad, project / "none.toml"])
    assert "bad.toml: volatility.window: must be >= 2 (got 1)" in message
    assert "none.toml: file not found" in message


def test_duplicate_policy_names_are_rejected(project: Path) -> None:
    other = project / "policies" / "p.toml"
    message = errors_of(write(project, CONFIG), policy_overrides=[other, other])
    assert 'config.toml: policies[1].name: duplicate of policies[0].name (got "p")' in message


# --- immutability, exactness, public surface ------------------------------------------------


def test_models_are_frozen(project: Path) -> None:
    cfg = load_config(write(project, CONFIG))
    with pytest.raises(ValidationError, match="frozen"):
        cfg.risk.max_drawdown = Decimal("0.9")  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        cfg.policies[0].leverage.max = Decimal(100)  # type: ignore[misc]
    assert cfg.risk.max_drawdown == Decimal("0.25")


@pytest.mark.parametrize("written", ["0.1", '"0.1"'])
def test_decimals_stay_exact(project: Path, written: str) -> None:
    text = edit(CONFIG, "slippage_bps = 2", f"slippage_bps = {written}")
    value = load_config(write(project, text)).simulation.slippage_bps
    assert isinstance(value, Decimal)
    assert value == Decimal("0.1")
    assert str(value) == "0.1"


def test_python_floats_are_read_through_str() -> None:
    assert DistanceParams(kind="atr", distance=0.1).distance == Decimal("0.1")
    lev = LeverageParams(min=0.1, max=0.3)
    assert (lev.min, lev.max) == (Decimal("0.1"), Decimal("0.3"))


def test_direct_construction_runs_the_same_rules() -> None:
    with pytest.raises(ValidationError, match="only allowed with direction"):
        ContractConfig(symbol="BTC/USDT:USDT", direction="long", signal_file=Path(__file__))
    with pytest.raises(ValidationError, match=r"must be >= leverage\.min"):
        LeverageParams(min=Decimal(2), max=Decimal(1))


def test_load_policy_is_exported_and_public_surface_is_stable() -> None:
    assert bot.config.load_policy is load_policy
    assert sorted(bot.config.__all__) == [
        "AccountConfig",
        "AllocationParams",
        "BotConfig",
        "ContractConfig",
        "DataConfig",
        "DistanceParams",
        "ExchangeConfig",
        "FundingParams",
        "LeverageParams",
        "LiquidationParams",
        "OrderParams",
        "Policy",
        "PolicyLimits",
        "PolicyRef",
        "RiskConfig",
        "RuntimeConfig",
        "SimulationConfig",
        "VolatilityParams",
        "load_config",
        "load_policy",
    ]
    assert BotConfig.model_config.get("extra") == "forbid"


# --- values no venue accepts or no trader means (issue 8) --------------------------------------


def test_leverage_cap_above_the_venues_maximum_is_refused(project: Path) -> None:
    text = edit(CONFIG, "max_leverage_per_contract = 5", "max_leverage_per_contract = 200")
    line = the_line(errors_of(write(project, text)), "risk.max_leverage_per_contract")
    assert line.startswith(
        "config.toml: risk.max_leverage_per_contract: above the venue's maximum on binanceusdm: "
        "BTC/USDT:USDT 150x (or set contracts[0].max_leverage); ETH/USDT:USDT"
    )
    assert line.endswith("(got 200)")


def test_a_contract_cap_above_the_venues_maximum_is_refused(project: Path) -> None:
    text = edit(
        CONFIG, 'symbol = "ETH/USDT:USDT"\n', 'symbol = "ETH/USDT:USDT"\nmax_leverage = 500\n'
    )
    line = the_line(errors_of(write(project, text)), "contracts[1].max_leverage")
    assert "above the maximum" in line
    assert "ETH/USDT:USDT" in line


def user_catalogue(project: Path, entries: dict[str, Instrument]) -> Path:
    """``data/contracts/binanceusdm.json``, the user's catalogue, holding ``entries``."""
    path = catalogue_path(project / "data", "binanceusdm")
    write_catalogue(path, "binanceusdm", {s: (i, "test") for s, i in entries.items()}, 0, "test")
    return path


def at_most(inst: Instrument, leverage: str, symbol: str | None = None) -> Instrument:
    """``inst`` whose brackets allow at most ``leverage`` (renamed ``symbol``, if given)."""
    brackets = tuple(
        replace(b, max_leverage=min(b.max_leverage, D(leverage))) for b in inst.brackets
    )
    if symbol is None:
        return replace(inst, brackets=brackets)
    return replace(inst, symbol=symbol, base=symbol.split("/")[0], brackets=brackets)


def test_the_venue_limits_are_checked_on_the_users_catalogue_first(project: Path) -> None:
    """The user's catalogue comes first, as everywhere a specification is needed: a contract
    only there (LEVTWO, 2x at most) and one whose maximum it lowers (ETH, 4x) are checked
    against it. The check used to read the bundled snapshot alone: both passed at 5x."""
    bundled = load_instruments("binanceusdm")
    path = user_catalogue(
        project,
        {
            "ETH/USDT:USDT": at_most(bundled["ETH/USDT:USDT"], "4"),
            "LEVTWO/USDT:USDT": at_most(bundled["BTC/USDT:USDT"], "2", "LEVTWO/USDT:USDT"),
        },
    )
    text = edit(
        CONFIG,
        "[data]\n",
        '[[contracts]]\nsymbol = "LEVTWO/USDT:USDT"\ndirection = "long"\n[data]\n',
    )
    line = the_line(errors_of(write(project, text)), "risk.max_leverage_per_contract")
    assert line == (
        "config.toml: risk.max_leverage_per_contract: above the venue's maximum on binanceusdm: "
        f"ETH/USDT:USDT 4x (per {path}; or set contracts[1].max_leverage); "
        f"LEVTWO/USDT:USDT 2x (per {path}; or set contracts[2].max_leverage) (got 5)"
    )
    own = edit(
        text, 'symbol = "LEVTWO/USDT:USDT"\n', 'symbol = "LEVTWO/USDT:USDT"\nmax_leverage = 3\n'
    )
    line = the_line(errors_of(write(project, own)), "contracts[2].max_leverage")
    assert f"above the maximum 2x of LEVTWO/USDT:USDT on binanceusdm (per {path})" in line


def test_a_percent_stop_is_checked_against_the_liquidation_the_users_catalogue_gives(
    project: Path,
) -> None:
    # A 15 % stop fires before ETH's liquidation at 5x on the bundled figures (about 19.5 %
    # away); with a maintenance margin of 10 % in the user's catalogue it is about 10 % away.
    eth = load_instruments("binanceusdm")["ETH/USDT:USDT"]
    # one bracket over the whole range (the tiers' maintenance amounts must stay consistent)
    only = replace(
        eth.brackets[0], notional_cap=eth.brackets[-1].notional_cap, maint_margin_rate=D("0.1")
    )
    user_catalogue(project, {"ETH/USDT:USDT": replace(eth, brackets=(only,))})
    policy = edit(POLICY, 'kind = "atr"\ndistance = 3', 'kind = "percent"\ndistance = 15')
    (project / "policies" / "p.toml").write_text(policy)
    line = the_line(errors_of(write(project, CONFIG)), "policy.file")
    assert "stop_loss.distance = 15 % lies at or beyond the liquidation price of ETH" in line


def test_a_contract_in_no_catalogue_is_left_to_live_and_an_unreadable_one_to_its_users(
    project: Path,
) -> None:
    # found nowhere: checked live, where the venue's brackets are read
    text = edit(
        CONFIG,
        "[data]\n",
        '[[contracts]]\nsymbol = "NOWHERE/USDT:USDT"\ndirection = "long"\n[data]\n',
    )
    assert load_config(write(project, text)).contracts[2].symbol == "NOWHERE/USDT:USDT"
    # a catalogue that cannot be read is reported where it is used; the bundled figures check
    catalogue_path(project / "data", "binanceusdm").parent.mkdir(parents=True)
    catalogue_path(project / "data", "binanceusdm").write_text("{not json")
    assert load_config(write(project, CONFIG)).risk.max_leverage_per_contract == 5
    refused = edit(CONFIG, "max_leverage_per_contract = 5", "max_leverage_per_contract = 200")
    assert "ETH/USDT:USDT" in the_line(
        errors_of(write(project, refused)), "risk.max_leverage_per_contract"
    )


def test_a_percent_stop_beyond_liquidation_at_the_usable_leverage_is_refused(
    project: Path,
) -> None:
    # 19 % passes the policy's own check (< 100/5) but ETH's maintenance margin makes the
    # liquidation at 5x about 19.5 % away; at 4.9 the stop must be closer still
    policy = edit(POLICY, 'kind = "atr"\ndistance = 3', 'kind = "percent"\ndistance = 19.9')
    (project / "policies" / "p.toml").write_text(policy)
    line = the_line(errors_of(write(project, CONFIG)), "policy.file")
    assert "stop_loss.distance = 19.9 % lies at or beyond the liquidation price" in line
    (project / "policies" / "p.toml").write_text(policy.replace("19.9", "15"))
    assert load_config(write(project, CONFIG)).policies[0].stop_loss.distance == 15


def test_a_percent_take_profit_inside_its_round_trip_is_refused(project: Path) -> None:
    """A percent take-profit at or inside the round trip of its costs (the taker fee of the
    entry and of the exit, the exit's expected slippage) closes at a loss every time it fires:
    at the policy's floor of 0.05 %, 1,227 of 1,231 take-profits of a four-month simulation lost
    after fees. Refused at load, naming the policy's file, the key, the contract and the
    break-even distance: 2 x 0.05 % + 10 bps = 0.2 % on Binance."""
    take_profit = '[take_profit]\nkind = "percent"\ndistance = {}\n'
    policy = project / "policies" / "p.toml"
    policy.write_text(POLICY + take_profit.format("0.2"))
    line = the_line(errors_of(write(project, CONFIG)), "policy.file")
    assert line == (
        "config.toml: policy.file: policy p (policies/p.toml): take_profit.distance = 0.2 % is "
        "at or inside the round trip of BTC/USDT:USDT, 0.2 % (the taker fee 0.05 % on the "
        "entry and on the exit, and risk.expected_stop_slippage_bps = 10 on the exit): every "
        "take-profit would close at a loss after costs; use a distance above 0.2"
    )
    policy.write_text(POLICY + take_profit.format("0.21"))
    assert load_config(write(project, CONFIG)).policies[0].take_profit is not None
    # less slippage expected, a closer take-profit: 0.1 % + 5 bps
    cheaper = edit(CONFIG, "[simulation]", "expected_stop_slippage_bps = 5\n[simulation]")
    policy.write_text(POLICY + take_profit.format("0.16"))
    load_config(write(project, cheaper))
    # the fee the simulation charges (0.1 %) counts as much as the venue's
    dearer = CONFIG + "fee_override_taker = 0.001\n"
    assert "round trip of BTC/USDT:USDT, 0.3 % (the taker fee 0.1 %" in errors_of(
        write(project, dearer)
    )
    # and so does the venue simulated: Bybit's taker fee is 0.055 %
    bybit = edit(CONFIG, 'dir = "data"', 'dir = "data"\nexchange = "bybit"')
    policy.write_text(POLICY + take_profit.format("0.21"))
    assert "round trip of BTC/USDT:USDT, 0.21 % (the taker fee 0.055 %" in errors_of(
        write(project, bybit)
    )
    # a --policy names its own file; volatility and ATR take-profits are held beyond the round
    # trip tick by tick (bot.policy.decide)
    other = project / "other.toml"
    other.write_text(POLICY + take_profit.format("0.1"))
    assert "policy other (other.toml): take_profit.distance = 0.1 %" in errors_of(
        write(project, CONFIG), policy_overrides=[other]
    )
    other.write_text(POLICY + '[take_profit]\nkind = "vol"\ndistance = 0.1\n')
    load_config(write(project, CONFIG), policy_overrides=[other])


@pytest.mark.parametrize(
    ("options", "key", "problem", "got"),
    [
        ("{ timeout = -5 }", "timeout", "must be within [500, 120000] ms", "-5"),
        ("{ timeout = 0 }", "timeout", "must be within [500, 120000] ms", "0"),
        ('{ timeout = "soon" }', "timeout", "must be a number of ms", "'soon'"),
        ("{ rateLimit = 0 }", "rateLimit", "must be within [1, 60000] ms", "0"),
        (
            "{ options = { recvWindow = 90000 } }",
            "options.recvWindow",
            "must be within [1000, 60000] ms",
            "90000",
        ),
        ('{ enableRateLimit = "no" }', "enableRateLimit", "must be true or false", "'no'"),
    ],
)
def test_absurd_ccxt_options_are_refused(
    project: Path, options: str, key: str, problem: str, got: str
) -> None:
    text = CONFIG + f"[exchange]\nccxt_options = {options}\n"
    line = the_line(errors_of(write(project, text)), f"exchange.ccxt_options.{key}")
    assert line == f"config.toml: exchange.ccxt_options.{key}: {problem} (got {got})"


@pytest.mark.parametrize(("value", "got"), [("true", "true"), ('"yes"', "'yes'"), ("1", "1")])
def test_ccxt_verbose_is_refused_naming_bot_verbose(project: Path, value: str, got: str) -> None:
    """ccxt's verbose mode print()s every request to stdout, the API key header and the signed
    URL with it, past the log redactor: refused at load, pointing to `bot --verbose`."""
    text = CONFIG + f"[exchange]\nccxt_options = {{ timeout = 2500, verbose = {value} }}\n"
    line = the_line(errors_of(write(project, text)), "exchange.ccxt_options.verbose")
    assert line.startswith(
        "config.toml: exchange.ccxt_options.verbose: not allowed: ccxt would print every request"
    )
    assert "run `bot --verbose ...` instead" in line
    assert line.endswith(f"(got {got})")


def test_ccxt_verbose_off_is_accepted(project: Path) -> None:
    text = CONFIG + "[exchange]\nccxt_options = { verbose = false }\n"
    assert load_config(write(project, text)).exchange.ccxt_options == {"verbose": False}


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("mysql://u@host/bot", "backend 'mysql' is not supported"),
        ("postgresql+asyncpg://u@host/bot", "driver 'asyncpg' is not installed"),
        ("sqlite://state.db", "a SQLite URL has three slashes before a file name"),
        ("sqlite://", "needs a database file"),
        ("nonsense://", "backend 'nonsense' is not supported"),
        ("postgresql+psycopg://u@host:54x/bot", "port '54x' is not a number"),
    ],
)
def test_unusable_database_urls_are_refused(project: Path, url: str, problem: str) -> None:
    text = CONFIG + f'[runtime]\ndatabase_url = "{url}"\n'
    line = the_line(errors_of(write(project, text)), "runtime.database_url")
    assert problem in line
    assert line.endswith(f'(got "{url}")')


@pytest.mark.parametrize(
    ("url", "problem", "shown"),
    [
        (
            "postgresql://bot:s3cret@db:54x/bot",
            "port '54x' is not a number",
            "postgresql://bot:***@db:54x/bot",
        ),
        (
            "postgresql://bot:p@ss@db/bot",
            'holds an unencoded "@": write it as %40',
            "postgresql://bot:***@db/bot",
        ),
        (
            "mysql://bot:s3cret@db/bot?password=s3cret2",
            "backend 'mysql' is not supported",
            "mysql://bot:***@db/bot?password=***",
        ),
    ],
)
def test_a_refused_database_url_is_shown_without_its_passwords(
    project: Path, url: str, problem: str, shown: str
) -> None:
    """The error quoted the URL as written, password and all, to the terminal and any log
    that captures it; libpq cannot read an unencoded "@" (it takes the rest for the host)."""
    text = CONFIG + f'[runtime]\ndatabase_url = "{url}"\n'
    line = the_line(errors_of(write(project, text)), "runtime.database_url")
    assert problem in line
    assert line.endswith(f'(got "{shown}")')


@pytest.mark.parametrize(
    ("exchange", "problem", "shown"),
    [
        (
            'demo = false\napi_url = "https://gw:s3cret@gw.example/fapi?x=1"',
            "must be http(s)://host[:port][/path]",
            "https://gw:***@gw.example/fapi?x=1",
        ),
        (
            'api_url = "https://gw:s3cret@gw.example/fapi"',
            "needs demo = false",
            "https://gw:***@gw.example/fapi",
        ),
    ],
)
def test_a_refused_api_url_is_shown_without_its_password(
    project: Path, exchange: str, problem: str, shown: str
) -> None:
    """A gateway's password in api_url stays off the terminal, as a database URL's does."""
    message = errors_of(write(project, CONFIG + f"[exchange]\n{exchange}\n"))
    line = the_line(message, "exchange.api_url")
    assert problem in line
    assert line.endswith(f'(got "{shown}")')


def test_max_parallel_requests_is_bounded(project: Path) -> None:
    text = CONFIG + "[exchange]\nmax_parallel_requests = 0\n"
    assert "exchange.max_parallel_requests" in errors_of(write(project, text))
    text = CONFIG + "[exchange]\nmax_parallel_requests = 8\n"
    assert load_config(write(project, text)).exchange.max_parallel_requests == 8


def test_a_window_beyond_one_venue_request_is_refused_for_live_prices(project: Path) -> None:
    from bot.bootstrap import check_history_reach

    policy = edit(POLICY, "window = 168", "window = 50000")
    (project / "policies" / "p.toml").write_text(policy)
    config = load_config(write(project, CONFIG))  # a simulation may have that much history
    with pytest.raises(ConfigError) as info:
        check_history_reach(config)
    message = str(info.value)
    assert "\n" not in message
    assert "volatility.window = 50000 needs 50001 closed 1h candles" in message
    assert "binanceusdm serves at most 999 in one request" in message
    (project / "policies" / "p.toml").write_text(edit(POLICY, "window = 168", "window = 998"))
    check_history_reach(load_config(write(project, CONFIG)))


def test_a_timeframe_the_venues_do_not_serve_is_refused_for_live_prices(project: Path) -> None:
    """A simulation resamples its files to any length; live candles come as the venue serves
    them: a 13h or 1w policy loads, and is refused before a live or paper start."""
    from bot.bootstrap import check_history_reach

    for timeframe in ("13h", "1w", "3m"):
        policy = edit(POLICY, 'timeframe = "1h"', f'timeframe = "{timeframe}"')
        (project / "policies" / "p.toml").write_text(policy)
        config = load_config(write(project, CONFIG))
        with pytest.raises(ConfigError) as info:
            check_history_reach(config)
        assert f"timeframe = '{timeframe}': live prices are read in 1m, 5m" in str(info.value)
    for timeframe in ("4h", "1d", "15m"):
        policy = edit(POLICY, 'timeframe = "1h"', f'timeframe = "{timeframe}"')
        (project / "policies" / "p.toml").write_text(policy)
        check_history_reach(load_config(write(project, CONFIG)))


def test_a_take_profit_no_short_can_reach_is_refused(project: Path) -> None:
    """A short's take-profit 100 % below its entry is at or below zero: it was dropped without
    a word. Refused where a contract may be short; a long-only book may take it (a rise)."""
    policy = POLICY + '\n[take_profit]\nkind = "percent"\ndistance = 100\n'
    (project / "policies" / "p.toml").write_text(policy)
    load_config(write(project, CONFIG))  # every contract long: reachable
    short = CONFIG.replace('direction = "long"', 'direction = "short"', 1)
    problems = errors_of(write(project, short))
    assert "take_profit.distance" in problems
    assert "is never placed" in problems


def test_api_url_with_demo_off_loads(project: Path) -> None:
    text = edit(
        CONFIG, "[risk]", '[exchange]\ndemo = false\napi_url = "https://gw.example:8443/bn"\n[risk]'
    )
    assert load_config(write(project, text)).exchange.api_url == "https://gw.example:8443/bn"


def test_exchange_names_are_the_venues_the_adapter_supports() -> None:
    from typing import get_args

    from bot.config.models import ExchangeConfig
    from bot.exchange.capabilities import VENUES

    annotation = ExchangeConfig.model_fields["name"].annotation
    assert set(get_args(annotation)) == set(VENUES)
