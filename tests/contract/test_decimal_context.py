"""The bot's own Decimal arithmetic does not change with ccxt's number rounding.

ccxt's ``decimal_to_precision`` (behind every ``amount_to_precision``) set the calling thread's
decimal context for good: rounding ``ROUND_HALF_UP`` and ``Underflow`` trapped. After the first
order of a paper or live bot, a quotient's 28th digit rounded differently from a simulation of
the same ticks (a comparison of two runs in one test process differed by one digit), and a
result too small to represent raised."""

from __future__ import annotations

import decimal
from collections.abc import Iterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import ccxt
import pytest

from bot.backtest.replay import run_simulation
from bot.config.loader import load_config
from bot.exchange.ccxt_clients import keep_decimal_context
from tests.contract.test_ccxt_loopback import adapter, clock, entry, server, sim  # noqa: F401
from tests.research.helpers import sample_config


@pytest.fixture
def default_context() -> Iterator[None]:
    with decimal.localcontext(decimal.Context()):
        yield


@pytest.mark.usefixtures("default_context")
def test_ccxts_rounding_leaves_the_threads_context_as_it_was() -> None:
    client = ccxt.binanceusdm()
    keep_decimal_context(client)
    client.decimal_to_precision("1.23456", ccxt.ROUND, 2, ccxt.DECIMAL_PLACES)
    ctx = decimal.getcontext()
    assert ctx.rounding == ROUND_HALF_EVEN
    assert not ctx.traps[decimal.Underflow]
    assert Decimal(2) / Decimal(3) == Decimal("0.6666666666666666666666666667")


@pytest.mark.usefixtures("default_context")
def test_the_unprotected_client_is_what_changed_it() -> None:
    # (what the bot no longer lets happen: the same call on a client left as ccxt makes it)
    ccxt.binanceusdm().decimal_to_precision("1.23456", ccxt.ROUND, 2, ccxt.DECIMAL_PLACES)
    assert decimal.getcontext().rounding != ROUND_HALF_EVEN


@pytest.mark.usefixtures("default_context")
def test_an_order_sent_through_the_adapter_leaves_the_context_as_it_was(adapter) -> None:  # noqa: F811
    adapter.place_order(entry())
    ctx = decimal.getcontext()
    assert ctx.rounding == ROUND_HALF_EVEN
    assert not ctx.traps[decimal.Underflow]


def test_a_simulation_computes_in_the_default_context_whatever_the_threads(
    tmp_path: Path,
) -> None:
    """A thread whose context ccxt changed (a raw client in the same process: a history
    download, a catalogue sync) simulates in Python's default context all the same: the same
    ticks give the same digits (two runs of one policy in one test process once differed in
    one digit of orders.csv), and the caller's context is left as it was."""
    config = load_config(sample_config(tmp_path))
    seen: set[tuple[str, bool]] = set()

    def progress(_done: int, _total: int) -> None:
        ctx = decimal.getcontext()
        seen.add((ctx.rounding, bool(ctx.traps[decimal.Underflow])))

    changed = decimal.Context(rounding=decimal.ROUND_HALF_UP, traps=[decimal.Underflow])
    with decimal.localcontext(changed):
        run_simulation(config, config.policies[0], symbols=("ETH/USDT:USDT",), progress=progress)
        assert decimal.getcontext().rounding == decimal.ROUND_HALF_UP  # the caller's, as it was
    assert seen == {(ROUND_HALF_EVEN, False)}
