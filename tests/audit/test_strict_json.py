"""Every JSON the project writes is strict JSON: a number that is not finite is written
``null``, and its object's ``not_finite`` says what it was and why. Before, a run of two hours
with a large gain wrote ``"cagr": Infinity`` and ``"calmar": Infinity`` into report.json, which
any strict parser (JavaScript, jq, Go, orjson) rejects whole."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot import strict_json
from tests.audit.harness import ROOT, run, write_config
from tests.audit.market import HOUR, T0, eight_hourly, walk, write_market
from tests.audit.scenarios import BTC


def _strict(text: str) -> Any:
    """Parse as a strict parser does: ``Infinity``, ``-Infinity`` and ``NaN`` are refused."""

    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_a_two_hour_run_with_a_large_gain_writes_a_strict_report(tmp_path: Path) -> None:
    warm = 169  # hourly candles before the run: static_3x needs its window (168) + 1
    trade = walk(warm + 2, 60_000.0, tf_ms=HOUR, vol_per_bar=0.004, seed=5)
    trade.scale_from(warm, 1.15)  # +15 % at the run's first hour, +15 % at its second
    trade.scale_from(warm + 1, 1.15)
    data = tmp_path / "data"
    write_market(data, BTC, trade, trade.copy(), eight_hourly(T0, int(trade.ts[-1]) + HOUR, 0.0))
    config = write_config(tmp_path, data, [BTC], policy="static_3x", max_drawdown=0.9)
    outcome = run(config, out=tmp_path / "out")
    assert not outcome.report_problems
    text = (tmp_path / "out" / "report.json").read_text()
    report = _strict(text)  # raised on "Infinity" before
    assert report["total_return"] > 0.1
    assert report["cagr"] is None
    assert report["calmar"] is None
    why = report["not_finite"]
    assert why["cagr"].startswith("Infinity: a total return of")
    assert "does not annualise" in why["cagr"]
    assert why["calmar"].startswith("Infinity: the CAGR (Infinity) over the max drawdown")
    _strict((tmp_path / "out" / "account.json").read_text())


def test_non_finite_numbers_are_null_and_said_where_they_are() -> None:
    doc = {
        "a": 1.5,
        "b": float("inf"),
        "c": [1.0, float("nan"), [float("-inf")]],
        "d": {"e": float("nan"), "f": "text"},
        "g": np.float64("inf"),
        "h": (2, float("inf")),
    }
    out = _strict(strict_json.dumps(doc, indent=2))
    assert out["a"] == 1.5
    assert out["b"] is None
    assert out["c"] == [1.0, None, [None]]
    assert out["d"] == {"e": None, "f": "text", "not_finite": {"e": "NaN (no JSON number)"}}
    assert out["g"] is None
    assert out["h"] == [2, None]
    assert out["not_finite"] == {
        "b": "Infinity (no JSON number)",
        "c[1]": "NaN (no JSON number)",
        "c[2][0]": "-Infinity (no JSON number)",
        "g": "Infinity (no JSON number)",
        "h[1]": "Infinity (no JSON number)",
    }
    # the writer's own reason is kept
    given = _strict(strict_json.dumps({"x": float("inf"), "not_finite": {"x": "too short"}}))
    assert given == {"x": None, "not_finite": {"x": "too short"}}
    # finite documents are written exactly as json.dumps writes them
    plain = {"k": [1, 2.5, "s"], "z": {"y": None}}
    assert strict_json.dumps(plain, indent=2, sort_keys=True) == json.dumps(
        plain, indent=2, sort_keys=True
    )


def test_a_value_the_walk_cannot_see_fails_loudly() -> None:
    class Odd:
        pass

    with pytest.raises(ValueError, match="not strict JSON"):
        strict_json.dumps({"x": Odd()}, default=lambda _: float("nan"))


def test_every_json_the_project_writes_goes_through_strict_json() -> None:
    """``json.dump``/``json.dumps`` anywhere in bot/ but bot/strict_json.py would write
    ``Infinity`` again for the next non-finite number."""
    offenders = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        if path.name == "strict_json.py" and path.parent.name == "bot":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("dump", "dumps")
                and isinstance(node.value, ast.Name)
                and node.value.id == "json"
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == []
