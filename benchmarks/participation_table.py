"""The README's "Volume participation cap" table: the bundled sample (vol_target, its whole
window) with a 50,000,000 USDT book and the notional cap out of the way, for each
``[orders] max_participation``: slippage paid, the part of it entries and adds paid, total
return, orders. Prints a Markdown table; asserts nothing.

Usage: python benchmarks/participation_table.py [--balance 50000000]
"""

from __future__ import annotations

import argparse
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loguru import logger  # noqa: E402

from bot.backtest.replay import load_data, replay  # noqa: E402
from bot.backtest.report import build_report  # noqa: E402
from bot.bootstrap import config_instruments  # noqa: E402
from bot.config.loader import load_config  # noqa: E402
from bot.config.policy import Policy  # noqa: E402
from bot.domain.enums import OrderPurpose  # noqa: E402
from bot.domain.orders import Order  # noqa: E402
from bot.sim.exchange import SimulatedExchange  # noqa: E402
from bot.sim.history import simulation_window  # noqa: E402


class _Counting(SimulatedExchange):
    """Counts what entries and adds paid in slippage (the exchange's own running total)."""

    entry_slippage = Decimal(0)

    def _fill_market(self, order: Order, reference: Decimal, ts_ms: int, **kw: object) -> Order:
        before = self.slippage_paid
        filled = super()._fill_market(order, reference, ts_ms, **kw)  # type: ignore[arg-type]
        if order.purpose is OrderPurpose.ENTRY:
            self.entry_slippage += self.slippage_paid - before
        return filled


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--balance", type=Decimal, default=Decimal(50_000_000))
    a = ap.parse_args()
    logger.remove()
    config = load_config(ROOT / "config.example.toml")
    config = config.model_copy(
        update={
            "account": config.account.model_copy(update={"starting_balance": a.balance}),
            "risk": config.risk.model_copy(update={"max_notional_per_contract": a.balance * 10}),
        }
    )
    base = config.policies[0]
    symbols = tuple(c.symbol for c in config.contracts)
    histories = load_data(config, base, symbols)
    instruments = config_instruments(config, symbols)
    start, end = simulation_window(histories, base, config)
    print("| max_participation | slippage paid | of it, entries and adds | total return | orders |")
    print("|---|---|---|---|---|")
    for cap in (None, Decimal("0.05"), Decimal("0.01"), Decimal("0.002")):
        data = base.model_dump()
        data["orders"] = {**data["orders"], "max_participation": cap}
        policy = Policy.model_validate(data)
        result = replay(config, policy, histories, instruments, start, end, exchange_type=_Counting)
        report = build_report(result, 0.0)
        ex = result.exchange
        assert isinstance(ex, _Counting)
        orders = len(result.store.orders)
        print(
            f"| {'off' if cap is None else cap} | {ex.slippage_paid:,.0f} | "
            f"{ex.entry_slippage:,.0f} | {report['total_return']:.2%} | {orders:,} |"
        )


if __name__ == "__main__":
    main()
