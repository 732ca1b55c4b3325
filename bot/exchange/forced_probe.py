"""Where a venue keeps its record of the closes it made on its own (liquidations, ADL).

A module of its own: the venue profiles (:mod:`bot.exchange.capabilities`) name one per venue and
the answer's parser (:mod:`bot.exchange.mapping`) reads by it, and neither may import the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.domain.enums import ForcedKind


@dataclass(frozen=True, slots=True)
class ForcedProbe:
    """The venue's raw record of the closes it made on its own (liquidation, auto-deleveraging):
    one page of rows, newest included, read with ``since_param`` = the time to look back to."""

    method: str  # ccxt implicit API method
    params: Mapping[str, object]  # besides ``symbol`` (the market id) and the time
    since_param: str
    rows_path: str  # dotted path of the row list in the answer; "" = the answer
    kind_key: str  # the row field that says what made the close
    kinds: Mapping[str, ForcedKind]  # a value of ``kind_key`` (or its prefix) -> the kind
    qty_key: str
    time_key: str
