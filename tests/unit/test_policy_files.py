"""Shipped policy files and config.example.toml load; every policy error path is reported."""

from __future__ import annotations

import re
import tempfile
from decimal import Decimal
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel

from bot.config import BotConfig, Policy, load_config, load_policy
from bot.errors import ConfigError
from bot.stats.volatility import ESTIMATORS, atr, estimate
from bot.stats.window_series import trailing_atr

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
EXAMPLE = ROOT / "config.example.toml"

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
ALLOCATION = '[allocation]\nmethod = "erc"\nmax_gross_leverage = 4\ncovariance_window = 720\n'


def edit(text: str, old: str, new: str) -> str:
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    return text.replace(old, new)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # messages then name "p.toml", relative to the working directory
    return tmp_path


def policy_errors(workdir: Path, text: str) -> str:
    path = workdir / "p.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_policy(path)
    return str(info.value)


# --- shipped files ---------------------------------------------------------------------------


def test_vol_target_policy_file() -> None:
    p = load_policy(POLICIES / "vol_target.toml")
    assert (p.name, p.kind, p.timeframe) == ("vol_target", "vol_target", "1h")
    assert (p.volatility.estimator, p.volatility.window) == ("yang_zhang", 168)
    lev = p.leverage
    assert (lev.target_volatility, lev.min, lev.max) == (
        Decimal("0.70"),
        Decimal("0.5"),
        Decimal(5),
    )
    assert (lev.hysteresis, lev.max_step, lev.fixed) == (Decimal("0.10"), Decimal(1), None)
    assert (p.stop_loss.kind, p.stop_loss.distance) == ("vol", Decimal("2.5"))
    assert p.take_profit is not None
    assert (p.take_profit.kind, p.take_profit.distance) == ("vol", Decimal(6))
    assert p.liquidation.buffer_vol_units == 2
    assert p.funding.max_annual_cost == Decimal("0.25")
    assert (p.limits.daily_loss, p.limits.max_drawdown) == (Decimal("0.05"), Decimal("0.25"))
    assert p.allocation is None


def test_risk_parity_policy_file() -> None:
    p = load_policy(POLICIES / "risk_parity.toml")
    assert p.kind == "risk_parity"
    assert p.allocation is not None
    assert (p.allocation.method, p.allocation.max_gross_leverage) == ("erc", Decimal(4))
    assert p.allocation.covariance_window == 720
    assert (p.volatility.estimator, p.volatility.window) == ("close_to_close", 720)
    lev = p.leverage
    assert (lev.target_volatility, lev.min, lev.max) == (
        Decimal("0.5"),
        Decimal("0.25"),
        Decimal(5),
    )
    assert lev.hysteresis == Decimal("0.1")


def test_static_3x_policy_file() -> None:
    p = load_policy(POLICIES / "static_3x.toml")
    assert p.kind == "static"
    assert (p.leverage.fixed, p.leverage.min, p.leverage.max) == (
        Decimal(3),
        Decimal(3),
        Decimal(3),
    )
    assert p.leverage.target_volatility is None
    assert (p.stop_loss.kind, p.stop_loss.distance) == ("percent", Decimal(5))
    assert p.take_profit is None


def test_conservative_policy_file() -> None:
    p = load_policy(POLICIES / "conservative.toml")
    assert p.kind == "vol_target"
    assert (p.leverage.target_volatility, p.leverage.max) == (Decimal("0.35"), Decimal(2))
    assert (p.leverage.min, p.leverage.hysteresis) == (Decimal("0.25"), Decimal("0.15"))
    assert (p.stop_loss.kind, p.stop_loss.distance) == ("vol", Decimal(2))
    assert p.liquidation.buffer_vol_units == 4
    assert (p.limits.daily_loss, p.limits.max_drawdown) == (Decimal("0.02"), Decimal("0.10"))


def test_hedged_policy_file() -> None:
    p = load_policy(POLICIES / "vol_target_hedged.toml")
    assert p.kind == "vol_target"
    assert p.hedge is not None
    assert p.hedge.instruments == ("BTC/USDT:USDT",)
    assert (p.hedge.target_net_exposure, p.hedge.band) == (Decimal("0.5"), Decimal("0.5"))
    assert (p.hedge.beta_window, p.hedge.beta_shrinkage) == (168, Decimal("0.3"))
    assert p.hedge.cooldown_minutes == 240


def test_every_shipped_policy_is_named_after_its_file() -> None:
    files = sorted(POLICIES.glob("*.toml"))
    assert [f.stem for f in files] == [
        "conservative",
        "risk_parity",
        "static_3x",
        "vol_target",
        "vol_target_hedged",
    ]
    assert [load_policy(f).name for f in files] == [f.stem for f in files]


def test_example_config_loads(tmp_path: Path) -> None:
    path = EXAMPLE
    if not (ROOT / "data" / "sample").is_dir():  # the sample data may not be in place yet
        (tmp_path / "sample").mkdir()
        text = edit(EXAMPLE.read_text(), 'dir = "data/sample"', f'dir = "{tmp_path / "sample"}"')
        text = edit(text, 'file = "policies/', f'file = "{POLICIES}/')
        path = tmp_path / "config.toml"
        path.write_text(text)
    cfg = load_config(path)

    assert (cfg.account.name, cfg.account.quote, cfg.account.margin_mode) == (
        "main",
        "USDT",
        "isolated",
    )
    assert cfg.account.starting_balance == 10000
    assert [c.symbol for c in cfg.contracts] == ["BTC/USDT:USDT", "ETH/USDT:USDT", "SOL/USDT:USDT"]
    assert {c.direction for c in cfg.contracts} == {"long"}
    assert cfg.policy.file == POLICIES / "vol_target.toml"
    assert [p.name for p in cfg.policies] == ["vol_target"]
    assert (str(cfg.simulation.start), str(cfg.simulation.end)) == ("2025-06-02", "2025-09-30")
    assert cfg.simulation.slippage_bps == 2


def _models(annotation: object) -> set[type[BaseModel]]:
    """Every model class inside ``annotation`` (through Optional, tuple and nested fields)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        found = {annotation}
        for field in annotation.model_fields.values():
            found |= _models(field.annotation)
        return found
    return {model for arg in get_args(annotation) for model in _models(arg)}


def _documented_keys(*paths: Path) -> set[str]:
    """Keys written (or shown commented out) as ``key = ...``, and table names."""
    keys: set[str] = set()
    for path in paths:
        text = path.read_text()
        keys |= set(re.findall(r"^#? ?([A-Za-z_]+) = ", text, flags=re.MULTILINE))
        tables = re.findall(r"^#? ?\[+([A-Za-z_.]+)\]+", text, flags=re.MULTILINE)
        keys |= {part for table in tables for part in table.split(".")}
    return keys


@pytest.mark.parametrize(
    ("root", "paths"),
    [
        (BotConfig, [EXAMPLE]),
        # [allocation] only exists in a risk-parity policy, [hedge] in the hedged one.
        (
            Policy,
            [
                POLICIES / "vol_target.toml",
                POLICIES / "risk_parity.toml",
                POLICIES / "vol_target_hedged.toml",
            ],
        ),
    ],
)
def test_reference_files_document_every_key(root: type[BaseModel], paths: list[Path]) -> None:
    hidden: frozenset[str] = getattr(
        root, "DERIVED_KEYS", frozenset()
    )  # source, policies: not TOML keys
    tables = [f.annotation for name, f in root.model_fields.items() if name not in hidden]
    models = {model for annotation in tables for model in _models(annotation)}
    fields = {n for n in root.model_fields if n not in hidden}
    fields |= {name for model in models for name in model.model_fields}
    missing = fields - _documented_keys(*paths)
    assert not missing, f"{[p.name for p in paths]} do not document {sorted(missing)}"


def test_every_documented_key_has_a_comment_above_it() -> None:
    for path in [EXAMPLE, *POLICIES.glob("*.toml")]:
        lines = path.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.match(r"^#? ?[a-z_]+ = ", line) and number > 0:
                above = lines[number - 1]
                commented = above.startswith(("#", "[")) or re.match(r"^[a-z_]+ = ", above)
                assert commented, f"{path.name}:{number + 1}: {line!r} has no comment"


# --- policy error paths ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("max = 5", "max = 0.5", "leverage.max: must be >= leverage.min (got 0.5 < 1)"),
        ("max = 5", "max = 126", "leverage.max: must be <= 125 (got 126)"),
        ("min = 1", "min = -1", "leverage.min: must be >= 0 (got -1)"),
        ("max = 5", "max = 5\nhysteresis = 1", "leverage.hysteresis: must be < 1 (got 1)"),
        ("max = 5", "max = 5\nmax_step = 0", "leverage.max_step: must be > 0 (got 0)"),
        ("window = 168", "window = 1", "volatility.window: must be >= 2 (got 1)"),
        ("window = 168", 'window = "168"', 'volatility.window: must be an integer (got "168")'),
        ("window = 168", "window = 168\newma_lambda = 1", "volatility.ewma_lambda: must be < 1"),
        ('"yang_zhang"', '"garch"', 'volatility.estimator: must be one of "close_to_close", '),
        ("distance = 3", "distance = 0", "stop_loss.distance: must be > 0 (got 0)"),
        ("daily_loss = 0.05", "daily_loss = 0", "limits.daily_loss: must be > 0 (got 0)"),
        ("max_drawdown = 0.25", "max_drawdown = 1.5", "limits.max_drawdown: must be < 1"),
        ("buffer_vol_units = 2", "buffer_vol_units = -1", "liquidation.buffer_vol_units: must"),
        ("max_annual_cost = 0.25", "max_annual_cost = 0", "funding.max_annual_cost: must be > 0"),
        ("[funding]\n", "[funding]\nlookback = 0\n", "funding.lookback: must be >= 1 (got 0)"),
        ('kind = "vol_target"', 'kind = "momentum"', 'kind: must be one of "vol_target", '),
        (
            "[volatility]",
            "allow_increase = 1\n[volatility]",
            "allow_increase: must be true or false",
        ),
        ("[volatility]", "atr_window = 0\n[volatility]", "atr_window: must be >= 2 (got 0)"),
        ("[volatility]", "atr_window = 1\n[volatility]", "atr_window: must be >= 2 (got 1)"),
        ('kind = "vol_target"', 'kind = "vol_target"\nname = "a b"', "name: must be 1-40 of"),
        ("[funding]", "[orders]\nrebalance_tolerance = 1\n[funding]", "orders.rebalance_tolerance"),
        (
            "[funding]",
            '[take_profit]\nkind = "atr"\ndistance = 0\n[funding]',
            "take_profit.distance: must be > 0 (got 0)",
        ),
    ],
)
def test_bad_policy_values_name_file_key_and_value(
    workdir: Path, old: str, new: str, expected: str
) -> None:
    assert f"p.toml: {expected}" in policy_errors(workdir, edit(POLICY, old, new))


@pytest.mark.parametrize("timeframe", ["0h", "1M", "h", "1.5h", "60s", "1 h", ""])
def test_bad_timeframes_are_rejected(workdir: Path, timeframe: str) -> None:
    message = policy_errors(workdir, edit(POLICY, '"1h"', f'"{timeframe}"'))
    assert (
        f'p.toml: timeframe: must be a number then m, h, d or w, like 1h or 15m (got "{timeframe}")'
        in message
    )


@pytest.mark.parametrize("timeframe", ["1m", "15m", "4h", "1d", "1w", "120m"])
def test_good_timeframes_are_accepted(workdir: Path, timeframe: str) -> None:
    path = workdir / "p.toml"
    path.write_text(edit(POLICY, '"1h"', f'"{timeframe}"'))
    assert load_policy(path).timeframe == timeframe


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ("[volatility]\n", "[volatility]\nwindw = 3\n", "volatility.windw"),
        ("[funding]\n", "[funding]\nlookbak = 3\n", "funding.lookbak"),
        ('kind = "vol_target"', 'kind = "vol_target"\nleverge = 3', "leverge"),
        ("[funding]", "[orders]\nx = 1\n[funding]", "orders.x"),
    ],
)
def test_unknown_policy_keys(workdir: Path, old: str, new: str, key: str) -> None:
    message = policy_errors(workdir, edit(POLICY, old, new))
    assert f"p.toml: {key}: unknown key (allowed: " in message


@pytest.mark.parametrize(
    ("old", "key"),
    [
        ('[stop_loss]\nkind = "atr"\ndistance = 3\n', "stop_loss"),
        ("[limits]\ndaily_loss = 0.05\nmax_drawdown = 0.25\n", "limits"),
        ('timeframe = "1h"\n', "timeframe"),
        ("window = 168\n", "volatility.window"),
    ],
)
def test_missing_policy_keys(workdir: Path, old: str, key: str) -> None:
    message = policy_errors(workdir, edit(POLICY, old, ""))
    assert f"p.toml: {key}: required key missing" in message


# --- cross-field rules ------------------------------------------------------------------------


def test_fixed_leverage_must_be_within_bounds(workdir: Path) -> None:
    text = edit(POLICY, 'kind = "vol_target"', 'kind = "static"')
    text = edit(text, "target_volatility = 0.4", "fixed = 6")
    message = policy_errors(workdir, text)
    assert message == (
        "p.toml: leverage.fixed: must be within [leverage.min, leverage.max] (got 6 outside [1, 5])"
    )


@pytest.mark.parametrize(
    ("kind", "leverage", "extra", "expected"),
    [
        (
            "vol_target",
            "",
            "",
            'leverage.target_volatility: required key missing for kind = "vol_target"',
        ),
        (
            "risk_parity",
            "",
            ALLOCATION,
            "leverage.target_volatility: required key missing for kind",
        ),
        ("static", "fixed = 3", "", None),
        ("static", "", "", 'leverage.fixed: required key missing for kind = "static"'),
        (
            "static",
            "fixed = 3\ntarget_volatility = 0.4",
            "",
            'leverage.target_volatility: only allowed with kind = "vol_target" or "risk_parity"',
        ),
        (
            "vol_target",
            "target_volatility = 0.4\nfixed = 3",
            "",
            'leverage.fixed: only allowed with kind = "static" (got 3)',
        ),
        (
            "risk_parity",
            "target_volatility = 0.4",
            "",
            'allocation: required table missing for kind = "risk_parity"',
        ),
        ("risk_parity", "target_volatility = 0.4", ALLOCATION, None),
        (
            "vol_target",
            "target_volatility = 0.4",
            ALLOCATION,
            'allocation: only allowed with kind = "risk_parity" (got kind = "vol_target")',
        ),
        ("static", "fixed = 3", ALLOCATION, 'allocation: only allowed with kind = "risk_parity"'),
        # a percentage typed for the annualised fraction (70 for 0.70)
        (
            "vol_target",
            "target_volatility = 70",
            "",
            "leverage.target_volatility: must be <= 5 (an annualised fraction: 0.7 is 70 % a "
            "year) (got 70)",
        ),
        ("risk_parity", "target_volatility = 5", ALLOCATION, None),
    ],
)
def test_kind_specific_sections(
    workdir: Path, kind: str, leverage: str, extra: str, expected: str | None
) -> None:
    text = edit(POLICY, 'kind = "vol_target"', f'kind = "{kind}"')
    text = edit(text, "target_volatility = 0.4", leverage) + extra
    path = workdir / "p.toml"
    path.write_text(text)
    if expected is None:
        assert load_policy(path).kind == kind
    else:
        assert f"p.toml: {expected}" in policy_errors(workdir, text)


BEYOND_LIQUIDATION = (
    "must be < 100 / leverage.max = 20 %: at the policy's maximum leverage the position is "
    "liquidated before this stop can fire"
)
TOO_CLOSE = (
    'must be >= 0.05 with stop_loss.kind = "percent": a closer stop is within a few ticks of '
    "the price (refused by the venue or stopped out by the spread)"
)


@pytest.mark.parametrize(
    ("distance", "problem"),
    [
        ("0.05", None),
        ("19.9", None),
        ("0.0001", TOO_CLOSE),
        ("20", BEYOND_LIQUIDATION),
        ("99.9", BEYOND_LIQUIDATION),  # was accepted: a stop no position at 5x ever reaches
        ("100", 'must be < 100 with stop_loss.kind = "percent"'),
        ("250", 'must be < 100 with stop_loss.kind = "percent"'),
    ],
)
def test_percent_stop_loss_is_placeable_and_before_liquidation(
    workdir: Path, distance: str, problem: str | None
) -> None:
    text = edit(POLICY, 'kind = "atr"\ndistance = 3', f'kind = "percent"\ndistance = {distance}')
    if problem is None:
        path = workdir / "p.toml"
        path.write_text(text)
        assert load_policy(path).stop_loss.distance == Decimal(distance)
    else:
        message = policy_errors(workdir, text)
        assert message == f"p.toml: stop_loss.distance: {problem} (got {distance})"


@pytest.mark.parametrize(
    ("kind", "unit"), [("atr", "ATR multiples"), ("vol", "daily volatility units")]
)
def test_volatility_scaled_stop_is_not_noise(workdir: Path, kind: str, unit: str) -> None:
    text = edit(POLICY, 'kind = "atr"\ndistance = 3', f'kind = "{kind}"\ndistance = 0.01')
    assert policy_errors(workdir, text) == (
        f"p.toml: stop_loss.distance: must be >= 0.1 {unit}: a closer stop fires on noise "
        "(got 0.01)"
    )


TP_TOO_CLOSE = (
    'must be >= 0.05 with take_profit.kind = "percent": a closer take-profit is within a few '
    "ticks of the price (refused by the venue or taken by the spread, at a loss after fees)"
)


@pytest.mark.parametrize(
    ("kind", "distance", "problem"),
    [
        ("atr", "0.1", None),
        ("vol", "0.1", None),
        ("percent", "0.05", None),
        # was accepted: the run ended with hundreds of "take-profits", each a realised loss
        (
            "vol",
            "1e-30",
            "must be >= 0.1 daily volatility units: a closer take-profit is taken on noise, at a "
            "loss after fees (got 1E-30)",
        ),
        (
            "atr",
            "0.01",
            "must be >= 0.1 ATR multiples: a closer take-profit is taken on noise, at a loss after "
            "fees (got 0.01)",
        ),
        ("percent", "0.0001", f"{TP_TOO_CLOSE} (got 0.0001)"),
    ],
)
def test_take_profit_is_not_noise(
    workdir: Path, kind: str, distance: str, problem: str | None
) -> None:
    text = POLICY + f'[take_profit]\nkind = "{kind}"\ndistance = {distance}\n'
    if problem is None:
        path = workdir / "p.toml"
        path.write_text(text)
        take_profit = load_policy(path).take_profit
        assert take_profit is not None
        assert take_profit.distance == Decimal(distance)
    else:
        assert policy_errors(workdir, text) == f"p.toml: take_profit.distance: {problem}"


# Durations past any meaning loaded and then broke the run midway: a cooldown's end beyond the
# year 9999 raised at the first stop, a timeframe of 10^20 days in the candle resampling.
TIMEFRAME_TOO_LONG = "timeframe: must be at most 1w (a week)"
COOLDOWN_TOO_LONG = "reentry.cooldown: must be at most 365d (a year)"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("timeframe", "1w", None),
        ("timeframe", "7d", None),
        ("timeframe", "10080m", None),
        ("cooldown", "365d", None),
        ("cooldown", "8760h", None),
        ("cooldown", "0", None),
        ("timeframe", "8d", TIMEFRAME_TOO_LONG),
        ("timeframe", "169h", TIMEFRAME_TOO_LONG),
        ("timeframe", "99999999999999999999d", TIMEFRAME_TOO_LONG),
        ("cooldown", "366d", COOLDOWN_TOO_LONG),
        ("cooldown", "53w", COOLDOWN_TOO_LONG),
        ("cooldown", "9999999999w", COOLDOWN_TOO_LONG),
        ("cooldown", "9" * 5000 + "m", COOLDOWN_TOO_LONG),  # more digits than int() takes
    ],
)
def test_durations_have_an_upper_bound(
    workdir: Path, key: str, value: str, problem: str | None
) -> None:
    if key == "timeframe":
        text = edit(POLICY, 'timeframe = "1h"', f'timeframe = "{value}"')
    else:
        text = POLICY + f'[reentry]\ncooldown = "{value}"\n'
    if problem is None:
        path = workdir / "p.toml"
        path.write_text(text)
        load_policy(path)
    else:
        shown = f'"{value}"' if len(value) <= 78 else f'"{value[:76]}...'
        assert policy_errors(workdir, text) == f"p.toml: {problem} (got {shown})"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("window = 168", "window = 100001", "volatility.window: must be <= 100000 (got 100001)"),
        ("[volatility]", "atr_window = 100001\n[volatility]", "atr_window: must be <= 100000"),
        ("[funding]\n", "[funding]\nlookback = 8761\n", "funding.lookback: must be <= 8760"),
        (
            "[funding]",
            ALLOCATION.replace("720", "100001") + "[funding]",
            "allocation.covariance_window: must be <= 100000 (got 100001)",
        ),
    ],
)
def test_windows_have_an_upper_bound(workdir: Path, old: str, new: str, expected: str) -> None:
    text = edit(POLICY, old, new)
    if "allocation" in expected:
        text = edit(text, 'kind = "vol_target"', 'kind = "risk_parity"')
    assert f"p.toml: {expected}" in policy_errors(workdir, text)
    path = workdir / "p.toml"
    path.write_text(text.replace("100001", "100000").replace("8761", "8760"))
    load_policy(path)


def test_the_smallest_windows_accepted_are_ones_the_estimators_compute(workdir: Path) -> None:
    """The lower bounds of the windows are the estimators' own. atr_window = 1 was accepted
    while both ATR estimators refuse a window under 2 (the live engine's point estimate and the
    simulation's precompute): every simulation died with a traceback and every live tick
    failed, until the bot moved itself to reducing."""
    assert "p.toml: atr_window: must be >= 2 (got 1)" in policy_errors(
        workdir, edit(POLICY, "[volatility]", "atr_window = 1\n[volatility]")
    )
    path = workdir / "p.toml"
    path.write_text(edit(edit(POLICY, "[volatility]", "atr_window = 2\n[volatility]"), "168", "2"))
    policy = load_policy(path)
    high, low = 101.0 + np.arange(8.0), 99.0 + np.arange(8.0)
    close = 100.0 + np.arange(8.0)
    assert atr(high, low, close, policy.atr_window) > 0
    assert trailing_atr(high, low, close, policy.atr_window, 5)[-1] > 0
    for name in ESTIMATORS:
        assert estimate(name, close, high, low, close, policy.volatility.window, 8760.0) >= 0


def test_several_policy_problems_are_all_reported(workdir: Path) -> None:
    text = edit(POLICY, 'kind = "vol_target"', 'kind = "static"\ncolour = "red"')
    text = edit(text, "window = 168", "window = 0")
    text = edit(text, "daily_loss = 0.05", "daily_loss = 2")
    lines = policy_errors(workdir, text).splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "volatility.window",
        "limits.daily_loss",
        "colour",
    ]


def test_policy_syntax_error_names_line_and_column(workdir: Path) -> None:
    message = policy_errors(workdir, edit(POLICY, "[leverage]", "[leverage"))
    assert message.startswith("p.toml: line 6, column 10: invalid TOML: ")


def test_secret_in_a_policy_file_is_rejected(workdir: Path) -> None:
    message = policy_errors(workdir, POLICY + '[extra]\nPassword = "hunter2"\n')
    assert "p.toml: extra.Password: API keys are never read from files" in message
    assert "BOT_API_PASSWORD" in message
    assert "hunter2" not in message


def test_name_defaults_to_file_stem_and_can_be_set(workdir: Path) -> None:
    path = workdir / "my_policy.toml"
    path.write_text(POLICY)
    assert load_policy(path).name == "my_policy"
    path.write_text('name = "custom"\n' + POLICY)
    assert load_policy(path).name == "custom"


@given(st.decimals(min_value=Decimal("0.1"), max_value=Decimal(1000), places=6))
def test_policy_numbers_are_read_exactly(value: Decimal) -> None:
    written = format(value, "f")
    if "." not in written:
        written += ".0"  # a TOML float, the case that would go wrong through binary floats
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.toml"
        path.write_text(edit(POLICY, "distance = 3", f"distance = {written}"))
        distance = load_policy(path).stop_loss.distance
    assert distance == value
    assert str(distance) == written
