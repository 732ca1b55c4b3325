"""A ``bot simulate`` output directory in the dashboard's views.

A directory with ``report.json`` is one run; a directory whose subdirectories hold one each (the
``--policy A --policy B`` layout) is a comparison of several runs. The files are parsed once and
read again only when they change (their modification times)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from bot.dashboard.account import drawdowns
from bot.dashboard.model import ContractView, Curve, JournalTable, Overview
from bot.errors import DataError
from bot.outputs import STAGING_PREFIX
from bot.store.views import TimeWindow

SUMMARY = (  # report.json key, label, format
    ("policy", "policy", "{}"),
    ("final_equity", "final equity", "{:,.2f}"),
    ("total_return", "total return", "{:.2%}"),
    ("buy_and_hold_return", "buy & hold 1x", "{:.2%}"),
    ("max_drawdown", "max drawdown", "{:.2%}"),
    ("sharpe", "Sharpe", "{:.2f}"),
    ("sortino", "Sortino", "{:.2f}"),
    ("avg_leverage", "avg leverage", "{:.2f}"),
    ("n_orders", "orders", "{}"),
    ("n_stop_losses", "stop-losses", "{}"),
    ("n_liquidations", "liquidations", "{}"),
    ("fees_paid", "fees paid", "{:,.2f}"),
    ("funding_paid", "funding paid", "{:,.2f}"),
)
FILES = ("report.json", "equity.csv", "decisions.csv", "orders.csv", "events.csv")


def discover_runs(directory: Path) -> dict[str, Path]:
    """Run name -> directory. Raises :class:`DataError` when ``directory`` holds no run."""
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory (give the --out directory of bot simulate)")
    if (directory / "report.json").is_file():
        return {directory.name or "simulation": directory}
    runs = {
        sub.name: sub
        for sub in sorted(directory.iterdir())
        # not a run still being written (bot simulate writes into a hidden directory there)
        if (sub / "report.json").is_file() and not sub.name.startswith(STAGING_PREFIX)
    }
    if not runs:
        raise DataError(
            f"{directory}: no report.json in it or in its subdirectories "
            "(give the --out directory of bot simulate)"
        )
    return runs


def _ms(iso: str, where: str) -> int:
    try:
        return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        raise DataError(f"{where}: bad time {iso!r}") from None


def _dec(text: str | None, where: str) -> Decimal | None:
    if text is None or text == "":
        return None
    try:
        return Decimal(text)
    except InvalidOperation:
        raise DataError(f"{where}: bad number {text!r}") from None


def _increment(*texts: str | None) -> Decimal | None:
    """The display increment of numbers as the simulation wrote them (``105133.5`` -> 0.1, the
    finest of several): the output has no contract specs, and writes prices and sizes at the
    exchange's precision."""
    exponents = []
    for text in texts:
        if not text:
            continue
        try:
            exponent = Decimal(text).as_tuple().exponent
        except InvalidOperation:
            continue
        if isinstance(exponent, int):
            exponents.append(min(exponent, 0))
    return Decimal(1).scaleb(min(exponents)) if exponents else None


def _shown(fmt: str, value: Any) -> str:
    """A report figure as the summary shows it; as written when it is not the expected kind
    (a null, a string): never an error page for one odd figure."""
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return "-" if value is None else str(value)


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    try:
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read: {exc}") from None


@dataclass(frozen=True, slots=True)
class _Loaded:
    stamp: tuple[float, ...]
    report: dict[str, Any]
    curve: Curve
    leverage: dict[str, float]  # last row of equity.csv
    decisions: list[dict[str, str]]
    orders: list[dict[str, str]]
    events: list[dict[str, str]]
    positions: list[dict[str, str]]
    wallet: Decimal | None
    quote: str
    starting_balance: Decimal | None  # report.json's (None: a report written without it)


def _drawdowns(
    rows: list[dict[str, str]], equity: list[float], start: Decimal | None
) -> list[float]:
    """Each row's drawdown as the simulation measured it: equity.csv's own column (from the
    highest equity so far, the starting balance included, on the unrounded equity: the series
    report.json's max_drawdown is the largest of). Measured here from the first row, a run that
    never got back above its starting balance showed a smaller drawdown than its report. An
    output without the column: from the equity, after the starting balance when the report
    gives it."""
    column = [r.get("drawdown") for r in rows]
    if rows and all(column):
        return [float(x) for x in column if x]
    if start is None:
        return drawdowns(equity)
    return drawdowns([float(start), *equity])[1:]


class SimulationSource:
    """One simulation run directory."""

    kind = "simulation"

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self._cache: _Loaded | None = None
        self._load()

    def _stamp(self) -> tuple[float, ...]:
        return tuple(
            (self.directory / f).stat().st_mtime if (self.directory / f).exists() else 0.0
            for f in (*FILES, "positions.csv", "account.json")
        )

    def _load(self) -> _Loaded:
        stamp = self._stamp()
        if self._cache is not None and self._cache.stamp == stamp:
            return self._cache
        d = self.directory
        try:
            report = json.loads((d / "report.json").read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{d / 'report.json'}: cannot be read: {exc}") from exc
        if not isinstance(report, dict):
            raise DataError(f"{d / 'report.json'}: not a JSON object")
        eq_rows = _rows(d / "equity.csv")
        start = report.get("starting_balance")
        starting = None if start is None else _dec(str(start), str(d / "report.json"))
        try:
            ts = [int(r["timestamp"]) for r in eq_rows]
            eq = [float(r["equity"]) for r in eq_rows]
            drawdown = _drawdowns(eq_rows, eq, starting)
            leverage = {
                k.removeprefix("leverage_"): float(v)
                for k, v in (eq_rows[-1].items() if eq_rows else [])
                if k.startswith("leverage_") and v
            }
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"{d / 'equity.csv'}: expected the columns timestamp, equity and leverage_* with "
                f"numbers (is the simulation still writing it?): {exc!r}"
            ) from None
        account = d / "account.json"
        wallet, quote = None, "USDT"
        if account.is_file():
            try:
                acct = json.loads(account.read_text())
                wallet = _dec(acct.get("wallet"), str(account))
                quote = str(acct.get("quote") or quote)
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as exc:
                raise DataError(f"{account}: cannot be read: {exc!r}") from None
        self._cache = _Loaded(
            stamp,
            report,
            Curve(ts, eq, drawdown),
            leverage,
            _rows(d / "decisions.csv"),
            _rows(d / "orders.csv"),
            _rows(d / "events.csv"),
            _rows(d / "positions.csv"),
            wallet,
            quote,
            starting,
        )
        return self._cache

    def symbols(self) -> list[str]:
        return [str(s) for s in self._load().report.get("contracts", [])]

    def curve(self) -> Curve:
        return self._load().curve

    def overview(self, now_ms: int) -> Overview:
        data = self._load()
        report = data.report
        curve = data.curve
        last_state = next((e for e in reversed(data.events) if e.get("kind") == "state"), None)
        state, reason = "active", None
        if last_state is not None:
            detail = last_state.get("detail", "")
            if detail.startswith("[") and "]" in detail:
                state, reason = detail[1 : detail.index("]")], detail[detail.index("]") + 1 :]
        end_ms = curve.ts_ms[-1] if curve.ts_ms else None
        equity = Decimal(str(curve.equity[-1])) if curve.equity else None
        peak = Decimal(str(max(curve.equity))) if curve.equity else None
        if peak is not None and data.starting_balance is not None:
            # the starting balance is the first peak, as in the drawdown
            peak = max(peak, data.starting_balance)
        summary = {label: _shown(fmt, report[key]) for key, label, fmt in SUMMARY if key in report}
        return Overview(
            title=f"simulation {self.name}",
            kind=self.kind,
            quote=data.quote,
            as_of_ms=end_ms,
            equity=equity,
            wallet=data.wallet,
            unrealized_pnl=equity - data.wallet if equity is not None and data.wallet else None,
            peak_equity=peak,
            drawdown=Decimal(str(round(curve.drawdown[-1], 6))) if curve.drawdown else None,
            max_drawdown_limit=Decimal(0),
            state=state,
            state_reason=reason.strip() if reason else None,
            state_since_ms=_ms(last_state["time"], "events.csv") if last_state else None,
            daily_loss=None,
            daily_loss_limit=Decimal(0),
            margin_ratio=None,
            last_tick_ms=end_ms,
            positions_ms=end_ms,
            interval_ms=0,
            contracts=self._contracts(data),
            summary=summary,
        )

    def _contracts(self, data: _Loaded) -> list[ContractView]:
        last: dict[str, dict[str, str]] = {}
        for r in data.decisions:
            last[r["symbol"]] = r
        held = {r["symbol"]: r for r in data.positions}
        resting: dict[tuple[str, str], Decimal | None] = {}
        for o in data.orders:
            if o.get("status") == "open" and o.get("purpose") in ("stop_loss", "take_profit"):
                resting[(o["symbol"], o["purpose"])] = _dec(o.get("trigger_price"), "orders.csv")
        out = []
        for sym in self.symbols():
            dec = last.get(sym, {})
            pos = held.get(sym, {})
            q = _dec(pos.get("qty"), "positions.csv") or Decimal(0)
            mark = _dec(pos.get("mark"), "positions.csv") or _dec(dec.get("mark"), "decisions.csv")
            vol = _dec(dec.get("volatility"), "decisions.csv")
            lev = data.leverage.get(sym.split("/")[0])
            out.append(
                ContractView(
                    symbol=sym,
                    direction="-",
                    tick=_increment(dec.get("mark"), dec.get("stop_loss"), dec.get("take_profit")),
                    step=_increment(dec.get("target_qty"), dec.get("current_qty")),
                    qty=q,
                    entry=_dec(pos.get("entry_price"), "positions.csv"),
                    mark=mark,
                    notional=abs(q) * mark if mark is not None else None,
                    leverage=Decimal(str(lev)) if lev is not None else None,
                    target_leverage=_dec(dec.get("target_leverage"), "decisions.csv"),
                    liquidation=None,
                    liq_distance=None,
                    liq_distance_vol=None,
                    volatility=vol,
                    stop_loss=resting.get((sym, "stop_loss"))
                    or _dec(pos.get("stop_loss"), "positions.csv"),
                    take_profit=resting.get((sym, "take_profit")),
                    funding_rate=None,
                    next_funding_ms=None,
                    increase_allowed=None,
                    decided_ms=_ms(dec["time"], "decisions.csv") if dec else None,
                    reason=dec.get("reason"),
                )
            )
        return out

    def journal(self, window: TimeWindow, limit: int) -> list[JournalTable]:
        data = self._load()

        def keep(row: dict[str, str], time_key: str) -> bool:
            if window.symbol is not None and row.get("symbol") not in (window.symbol, ""):
                return False
            if window.since_ms is None and window.until_ms is None:
                return True
            ms = _ms(row[time_key], "journal")
            if window.since_ms is not None and ms < window.since_ms:
                return False
            return window.until_ms is None or ms <= window.until_ms

        def table(title: str, rows: list[dict[str, str]], time_key: str) -> JournalTable:
            picked: list[dict[str, str]] = []
            for r in reversed(rows):  # newest first
                if keep(r, time_key):
                    picked.append(r)
                    if len(picked) >= limit:
                        break
            columns = list(rows[0].keys()) if rows else [time_key]
            return JournalTable(title, columns, [[r.get(c) or "" for c in columns] for r in picked])

        return [
            table("decisions", data.decisions, "time"),
            table("orders", data.orders, "created"),
            table("events", data.events, "time"),
        ]
