"""``bot data download`` reads the real market's history, whatever ``exchange.demo`` says."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from typer.testing import CliRunner

import bot.exchange.history_download as history_download
from bot.cli.app import app

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    added: int = 0
    series: list[Any] = field(default_factory=list)


class RecordingDownloader:
    """Stands in for the downloader: records which endpoints it was given, fetches nothing."""

    urls: ClassVar[list[str]] = []

    def __init__(self, ex: Any, out: Path, **_kw: Any) -> None:
        RecordingDownloader.urls = _all_urls(ex.urls["api"])

    def run(self, *_args: Any) -> Result:
        return Result()


def _all_urls(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [u for v in node.values() for u in _all_urls(v)]
    return []


def test_history_comes_from_the_real_market_when_the_config_trades_the_demo_venue(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # config.example.toml trades the demo venue (exchange.demo = true, the default): its own
    # prices and funding, not Binance's. A download for simulations must not read them.
    monkeypatch.setattr(history_download, "HistoryDownloader", RecordingDownloader)
    got = CliRunner().invoke(
        app,
        [
            "data",
            "download",
            "--config",
            str(ROOT / "config.example.toml"),
            "--contracts",
            "BTC/USDT:USDT",
            "--start",
            "2025-01-01",
            "--end",
            "2025-01-02",
            "--out",
            str(tmp_path / "never-written"),  # (checked, so created, before the download)
            "--json",
        ],
    )
    assert got.exit_code == 0, got.output
    assert json.loads(got.output)["added"] == 0
    urls = RecordingDownloader.urls
    assert any("fapi.binance.com" in u for u in urls), urls
    assert not [u for u in urls if "demo" in u or "testnet" in u]


def test_an_unusable_out_is_one_error_before_the_exchange_is_asked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """--out under a file was a traceback from the downloader, once the exchange was reached."""
    RecordingDownloader.urls = []
    monkeypatch.setattr(history_download, "HistoryDownloader", RecordingDownloader)
    (tmp_path / "afile").write_text("mine")
    got = CliRunner().invoke(
        app,
        [
            "data",
            "download",
            "--config",
            str(ROOT / "config.example.toml"),
            "--start",
            "2025-01-01",
            "--end",
            "2025-01-02",
            "--out",
            str(tmp_path / "afile" / "data"),
        ],
    )
    assert got.exit_code == 2, got.output
    assert "afile/data: cannot write there: Not a directory" in " ".join(got.output.split())
    assert RecordingDownloader.urls == []  # never constructed: no exchange was asked
