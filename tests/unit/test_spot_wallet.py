"""Spot holdings: the configured wallet and the mapping of a ccxt spot balance."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from bot.errors import ConfigError, PermanentExchangeError
from bot.exchange.mapping import spot_totals_from_ccxt
from bot.exchange.spot import ConfiguredSpotWallet


def test_configured_wallet_returns_the_declared_quantities() -> None:
    wallet = ConfiguredSpotWallet({"BTC": D("0.5")})
    assert wallet.fetch_spot_balances(["BTC", "ETH"]) == {"BTC": D("0.5"), "ETH": D(0)}
    with pytest.raises(ConfigError, match="spot holding BTC: quantity -1 is negative"):
        ConfiguredSpotWallet({"BTC": D(-1)})


def test_spot_totals_from_a_ccxt_balance() -> None:
    balance = {"info": {"balances": []}, "BTC": {"free": 0.3, "used": 0.1, "total": "0.4"}}
    assert spot_totals_from_ccxt(balance, ["BTC", "ETH"]) == {"BTC": D("0.4"), "ETH": D(0)}


def test_an_unreadable_spot_balance_is_an_error_not_zero() -> None:
    with pytest.raises(PermanentExchangeError, match="not a balance"):
        spot_totals_from_ccxt(None, ["BTC"])
    with pytest.raises(PermanentExchangeError, match="spot balance of BTC: no total"):
        spot_totals_from_ccxt({"info": {}, "BTC": {"free": 1}}, ["BTC"])


def test_a_spot_reply_without_its_asset_rows_is_unknown_not_zero() -> None:
    """Defect: a spot reply missing its list of asset rows (Binance ``balances``, Bybit
    ``result.list[].coin``) gave ccxt no row of the asset, read as a holding of zero: the hedge
    of a spot inventory still held was bought back. Only a reply that lists its rows holds an
    asset it omits at zero."""
    infos: list[dict[str, object]] = [
        {},
        {"balances": None},
        {"result": {}},
        {"result": {"list": [{}]}},
    ]
    for info in infos:
        with pytest.raises(PermanentExchangeError, match="spot balance of BTC: the reply lists no"):
            spot_totals_from_ccxt({"info": info}, ["BTC"])
    bybit = {"result": {"list": [{"coin": [{"coin": "USDT", "walletBalance": "5"}]}]}}
    assert spot_totals_from_ccxt({"info": bybit}, ["BTC"]) == {"BTC": D(0)}
