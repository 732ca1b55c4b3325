"""What the loopback tests build the same way on either venue: the live bot's configuration file,
the live bot over a store, and the ccxt adapter pointed at a loopback server.

The venues differ only in their ccxt id (``binanceusdm``, ``bybit``) and in the server class;
everything here takes those as arguments, so a scenario reads the same on both.
"""

from __future__ import annotations

import gzip
from collections.abc import Sequence
from decimal import Decimal as D
from pathlib import Path
from typing import Any

from bot.bootstrap import Secrets, build_live, open_store
from bot.clock import Clock, LiveClock
from bot.config.loader import load_config
from bot.domain.enums import MarginMode
from bot.exchange.ccxt_adapter import CcxtExchange
from bot.exchange.factory import make_ccxt_exchange
from bot.instruments import load_instruments
from bot.runtime.runner import Runner
from bot.sim.exchange import SimulatedExchange
from bot.store.sql import SqlStore

from .loopback_core import LoopbackServer

ROOT = Path(__file__).resolve().parents[2]
BTC = "BTC/USDT:USDT"
HOUR = 3_600_000


def hourly_rows(n: int, symbol: str = BTC) -> list[tuple[int, D, D, D, D, D]]:
    """The last ``n`` bundled hours of ``symbol``, moved in time so the last one closed this
    hour."""
    stem = symbol.replace("/", "_").replace(":", "_")
    with gzip.open(ROOT / "data" / "sample" / f"{stem}-1h.csv.gz", "rt") as fh:
        lines = fh.read().splitlines()[1:]
    rows = [line.split(",") for line in lines[-n:]]
    now = LiveClock().now_ms()
    last_open = now - now % HOUR - HOUR
    shift = last_open - int(rows[-1][0])
    return [(int(r[0]) + shift, D(r[1]), D(r[2]), D(r[3]), D(r[4]), D(r[5])) for r in rows]


def venue_account(venue: str) -> SimulatedExchange:
    """The account behind a loopback server: BTC with the venue's bundled specification,
    10,000 USDT, isolated margin."""
    instruments = {BTC: load_instruments(venue)[BTC]}
    return SimulatedExchange(
        instruments, LiveClock(), starting_balance=D(10000), margin_mode=MarginMode.ISOLATED
    )


def serve_btc_history(server: LoopbackServer, account: SimulatedExchange) -> None:
    """The server answers with the last 400 bundled BTC hours (trade and mark candles), and the
    account's mark is the last close: a live bot has the history its policy needs."""
    rows = hourly_rows(400)
    server.set_candles(BTC, "trade", rows)
    server.set_candles(BTC, "mark", rows)
    account.set_mark(BTC, rows[-1][4])


def live_config_text(
    *,
    name: str,
    venue: str,
    base_url: str,
    database: Path,
    log_dir: Path,
    direction: str = "long",
    policy_file: Path | None = None,
    max_orders_per_minute: int = 60,
    max_unreadable_reads: int | None = None,
    symbol: str = BTC,
    starting_balance: int = 10000,
    data_dir: Path | None = None,
    data_exchange: str | None = None,
) -> str:
    """One BTC contract on the bundled sample data, vol_target, isolated margin, the venue at
    ``base_url`` with ccxt's rate limiter off (the loopback server needs none). ``data_dir`` and
    ``data_exchange`` move the market data (e.g. to a folder ``bot data download`` fills)."""
    data_lines = f'dir = "{data_dir or ROOT / "data" / "sample"}"\n'
    if data_exchange is not None:
        data_lines += f'exchange = "{data_exchange}"\n'
    unreadable = f"max_unreadable_reads = {max_unreadable_reads}\n" if max_unreadable_reads else ""
    policy = policy_file or ROOT / "policies" / "vol_target.toml"
    return f"""
[account]
name = "{name}"
starting_balance = {starting_balance}
margin_mode = "isolated"

[[contracts]]
symbol = "{symbol}"
direction = "{direction}"

[data]
{data_lines}
[policy]
file = "{policy}"

[risk]
max_leverage_per_contract = 5
max_gross_leverage = 6
max_notional_per_contract = 50000
daily_loss_limit = 0.05
max_drawdown = 0.25
stale_data_seconds = 7200
max_orders_per_minute = {max_orders_per_minute}
{unreadable}
[simulation]
slippage_bps = 2

[exchange]
name = "{venue}"
demo = false
api_url = "{base_url}"
ccxt_options = {{ enableRateLimit = false, timeout = 2500 }}

[runtime]
database_url = "sqlite:///{database}"
log_dir = "{log_dir}"
"""


def start_live(config_path: Path, key: str, secret: str) -> tuple[Runner, SqlStore]:
    """The live bot and its store from a configuration file, as a start of the process builds
    them (keys given directly instead of through the environment)."""
    config = load_config(config_path)
    store = open_store(config, create=True)
    return build_live(config, store, Secrets(key, secret, None)), store


def stop_live(runner: Runner, store: SqlStore) -> None:
    """Close what :func:`start_live` opened (the adapter's HTTP session, the store)."""
    runner.engine.exchange.exchange.close()  # type: ignore[attr-defined]
    store.close()


def loopback_adapter(
    venue: str,
    base_url: str,
    clock: Clock,
    *,
    key: str,
    secret: str,
    account: str,
    symbols: Sequence[str],
    timeout_ms: int = 1500,
    **extra: Any,
) -> CcxtExchange:
    """The live adapter over real ccxt, pointed at a loopback server, instruments loaded
    (``extra``: further arguments of :func:`make_ccxt_exchange`)."""
    exchange = make_ccxt_exchange(
        venue,
        demo=False,
        api_url=base_url,
        options={"enableRateLimit": False, "timeout": timeout_ms},
        api_key=key,
        api_secret=secret,
        password=None,
        clock=clock,
        symbols=list(symbols),
        account=account,
        **extra,
    )
    exchange.load_instruments()
    return exchange
