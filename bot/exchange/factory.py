"""Build a configured ccxt instance and wrap it in :class:`CcxtExchange`.

The only place that picks a ccxt class, demo trading and endpoint overrides. Defaults (each can
be overridden through ``options``, which is merged on top):

- ``enableRateLimit: True``: ccxt paces one instance's requests (tests pass False);
- ``options.fetchCurrencies: False``: ``load_markets`` otherwise calls private spot-wallet
  routes (Binance ``/sapi``) that futures-only keys may not reach;
- ``options.adjustForTimeDifference: True``: measure the server clock offset on load;
- ``options.maxRetriesOnFailure: 0`` (enforced): ccxt's retry would resend order POSTs;
- ``verbose: False`` (enforced): ccxt's verbose mode print()s every request, the API key header
  and the signed URL with it, to stdout, where the log redactor never sees it (the
  configuration refuses it; ``bot --verbose`` logs the same lines through the redactor).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import ccxt

from bot.clock import Clock
from bot.errors import ConfigError
from bot.exchange.capabilities import VENUES, check_capabilities
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.logs import REDACTOR, url_credentials

_DEFAULTS: Mapping[str, Any] = {
    "enableRateLimit": True,
    "options": {
        "fetchCurrencies": False,
        "adjustForTimeDifference": True,
        "maxRetriesOnFailure": 0,
    },
}


def make_ccxt_exchange(
    name: str,
    *,
    demo: bool,
    api_url: str | None,
    options: Mapping[str, object],
    api_key: str | None,
    api_secret: str | None,
    password: str | None,
    clock: Clock,
    symbols: Sequence[str] = (),
    account: str | None = None,
    retry_attempts: int = 5,
    retry_max_seconds: float = 30,
    hedge_reads_after: float | None = None,
) -> CcxtExchange:
    """A :class:`CcxtExchange` for venue ``name`` (a ccxt id: ``binanceusdm``, ``bybit``).

    ``demo`` switches to the venue's demo-trading endpoints (Binance demo-fapi: ccxt's sandbox
    mode no longer works for futures). ``api_url`` (``http(s)://[user:password@]host[:port]``)
    replaces the scheme and host of every REST endpoint, keeping paths (a local test server, a
    gateway). ``options`` is ccxt constructor config merged over the defaults above (its
    ``options`` key deep-merged). ``hedge_reads_after`` (seconds) sends a read still unanswered
    that long once more.

    A user and password in ``api_url`` (a gateway's HTTP basic authentication) stay in every
    URL ccxt requests (requests sends them as the ``Authorization`` header), and ccxt quotes
    the URL in every error text and DEBUG line: the redactor learns them here, with the keys,
    before any request, in every command that builds a client (``bot run``, ``bot contracts
    sync``, ``bot data download``, ``bot vol --exchange``). So does a URL with credentials
    among the ``options`` (ccxt's ``httpsProxy``, ``proxyUrl``...).
    """
    REDACTOR.add([api_key, api_secret, password])
    for value in (api_url, *options.values()):
        if isinstance(value, str):
            REDACTOR.add(url_credentials(value))
    if name not in VENUES:
        raise ConfigError(
            f"exchange.name = {name!r} is not supported; supported: {', '.join(sorted(VENUES))}"
        )
    if demo and api_url:
        raise ConfigError("exchange: set either demo = true or api_url, not both")
    config = _merge(_DEFAULTS, options)
    nested = config["options"]
    if int(nested.get("maxRetriesOnFailure") or 0) != 0:
        raise ConfigError(
            "exchange.options.options.maxRetriesOnFailure must stay 0: ccxt would resend order "
            "requests whose answer was lost, which can double an order"
        )
    config["verbose"] = False
    for key, value in (("apiKey", api_key), ("secret", api_secret), ("password", password)):
        if value:
            config[key] = value
    cls: Any = getattr(ccxt, name)
    if api_url:
        cls = _keep_error_table(cls)

    def build() -> Any:
        exchange = cls(copy.deepcopy(config))
        # Bybit/OKX load_markets also call private currency routes unless told otherwise.
        exchange.has["fetchCurrencies"] = False
        if demo:
            exchange.enable_demo_trading(True)
        if api_url:
            rewrite_api_urls(exchange, api_url)
        return exchange

    exchange = build()
    check_capabilities(exchange)
    return CcxtExchange(
        exchange,
        spawn=build,  # one client per worker thread of a live tick
        hedge_after=hedge_reads_after,
        clock=clock,
        symbols=symbols,
        recv_window_ms=int(nested.get("recvWindow") or 10000),
        retry_attempts=retry_attempts,
        retry_max_seconds=retry_max_seconds,
        account=account,
    )


def rewrite_api_urls(exchange: Any, api_url: str) -> None:
    """Point every REST endpoint of ``exchange`` at ``api_url``, keeping each URL's path."""
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(f"exchange.api_url = {api_url!r}: expected http(s)://host[:port]")
    base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
    exchange.urls["api"] = _rewrite(exchange.urls["api"], base)


def _rewrite(node: Any, base: str) -> Any:
    if isinstance(node, str):
        return base + urlsplit(node).path
    if isinstance(node, Mapping):
        return {k: _rewrite(v, base) for k, v in node.items()}
    return node


def _keep_error_table(cls: Any) -> Any:
    """A subclass that keeps Binance USD-M's error table on a non-Binance host.

    ccxt picks Binance's error table from the URL's host (``https://fapi.binance.com/`` ->
    ``exceptions['linear']``); any other host falls back to the common table and turns -2019,
    -2022, -4116, -4164 ... into plain ``ExchangeError``.
    """
    if "get_exceptions_by_url" not in vars(ccxt.binance) or not issubclass(cls, ccxt.binance):
        return cls

    class _AtCustomUrl(cls):  # type: ignore[misc]
        def get_exceptions_by_url(self, url: str, exactOrBroad: str) -> dict[str, Any]:
            table = self.safe_dict(self.exceptions, "linear", {})
            return dict(self.safe_dict(table, exactOrBroad, {}))

    _AtCustomUrl.__name__ = f"{cls.__name__}AtCustomUrl"
    return _AtCustomUrl


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in base.items()}
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out
