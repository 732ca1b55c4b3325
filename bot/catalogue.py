"""The contract catalogue: every contract's filters, fees and brackets, from the venue or the
bundled snapshot.

Where a contract specification comes from, everywhere one is needed (simulation, paper, live,
``bot vol``, ``bot contracts show``):

1. the user's catalogue ``<data dir>/contracts/<exchange>.json``, written by
   ``bot contracts sync`` (or by hand, same format);
2. the bundled snapshot ``bot/resources/instruments/<exchange>.json``;
3. for Bybit only, a labelled STAND-IN: Binance USD-M's bundled figures for the same contract
   (tick, step, minimums, leverage brackets, largest order and position) with Bybit's own fees
   and liquidation formula (:func:`_stand_ins`; a contract Bybit spells otherwise, SHIB1000 for
   Binance's 1000SHIB, is found by its coin and multiplier). Bybit publishes no tables offline
   for most of its contracts (four are bundled), so without it a Bybit contract could not be
   simulated without network access; every command that shows or simulates one says it is a
   stand-in.

A contract in none of them gets one :class:`~bot.errors.ConfigError` naming the files and the
command that fixes it.

Catalogue format (the bundled format, see :mod:`bot.instruments`, plus ``read_at``)::

    {"exchange": "binanceusdm", "as_of": "2026-12-04", "read_at": "2026-12-04T12:00:00Z",
     "source": "...", "instruments": {"ADA/USDT:USDT": {...}}}

``read_at`` (ISO 8601, UTC) is when the venue was read; a hand-written file may leave it out and
then counts as read at 00:00 UTC of ``as_of``. Every number is a JSON string (exact decimals).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from bot import strict_json
from bot.atomic_file import replaced_text
from bot.domain.instrument import Instrument
from bot.errors import ConfigError, DataError
from bot.instruments import PACKAGE, available_exchanges, load_instruments, parse_instruments

CATALOGUE_DIR = "contracts"
SYNC_HINT = "bot contracts sync --config CONFIG --contracts {symbols}"
# An instrument whose ``source`` starts with this carries figures that are not the venue's own for
# that contract (see bot/resources/instruments/README.md); the CLI shows it on every listing.
STAND_IN_MARK = "STAND-IN"
# A venue whose catalogues lack a contract takes that contract's figures from this venue's
# bundled snapshot, as a labelled stand-in (see the module's docstring).
STAND_IN_DONORS = {"bybit": "binanceusdm"}

__all__ = [
    "Catalogue",
    "catalogue_path",
    "instrument_to_json",
    "load_catalogue",
    "resolve_instruments",
    "write_catalogue",
]


@dataclass(frozen=True)
class Catalogue:
    """A venue's contracts from one source (the user's file or the bundled snapshot)."""

    exchange: str
    instruments: Mapping[str, Instrument]
    read_at_ms: int
    source: str  # human-readable origin (file path or "bundled snapshot ...")
    path: Path | None  # the user's file, None for the bundled snapshot
    # symbol -> that instrument's own ``source`` text from the file (where its figures came from)
    notes: Mapping[str, str] = field(default_factory=dict)
    # The venue whose figures stand in for this one's (a :func:`_stand_ins` layer), else None.
    donor: str | None = None

    def is_stand_in(self, symbol: str) -> bool:
        """True when ``symbol``'s figures are a labelled stand-in, not the venue's own."""
        return self.notes.get(symbol, "").startswith(STAND_IN_MARK)


def catalogue_path(data_dir: Path, exchange: str) -> Path:
    """Where the user's catalogue of ``exchange`` lives under ``data_dir``."""
    return data_dir / CATALOGUE_DIR / f"{exchange}.json"


def bundled_path(exchange: str) -> str:
    return f"{PACKAGE.replace('.', '/')}/{exchange}.json"


def load_catalogue(path: Path, exchange: str) -> Catalogue | None:
    """The user's catalogue at ``path`` (None when absent); DataError names any problem."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON: {exc}") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc}") from None
    try:
        instruments = parse_instruments(data, str(path))
    except ValueError as exc:
        raise DataError(str(exc)) from None
    if data["exchange"] != exchange:
        raise DataError(f"{path}: 'exchange' is {data['exchange']!r}, expected {exchange!r}")
    return Catalogue(exchange, instruments, _read_at_ms(data, path), str(path), path, _notes(data))


def bundled_catalogue(exchange: str) -> Catalogue:
    """The snapshot shipped with the bot (``as_of`` midnight UTC is its read time)."""
    if exchange not in available_exchanges():
        raise ConfigError(
            f"unknown exchange {exchange!r}; known: {', '.join(available_exchanges())}"
        )
    from importlib import resources

    data = json.loads(
        resources.files(PACKAGE).joinpath(f"{exchange}.json").read_text(encoding="utf-8")
    )
    return Catalogue(
        exchange,
        load_instruments(exchange),
        _read_at_ms(data, Path(bundled_path(exchange))),
        f"bundled snapshot {bundled_path(exchange)} (as of {data['as_of']})",
        None,
        _notes(data),
    )


def _notes(data: Mapping[str, Any]) -> dict[str, str]:
    """Each instrument's ``source`` text (already validated by ``parse_instruments``)."""
    return {sym: str(spec["source"]) for sym, spec in data["instruments"].items()}


def resolve_instruments(
    exchange: str, symbols: Sequence[str], data_dir: Path | None
) -> dict[str, Instrument]:
    """Specifications of ``symbols``: the user's catalogue first, then the bundled snapshot,
    then (Bybit) a labelled stand-in; a ConfigError names what is found nowhere."""
    found, missing = resolve_with_sources(exchange, symbols, data_dir)
    if missing:
        bundled = f"the bundled snapshot {bundled_path(exchange)}"
        if data_dir is not None:
            where = f"not in the catalogue {catalogue_path(data_dir, exchange)} nor in {bundled}"
        else:
            where = f"not in {bundled} (no data directory, so no user catalogue, was given)"
        raise ConfigError(
            f"{exchange}: no contract specification for {', '.join(missing)}: {where}; read it "
            f"from the exchange with `{SYNC_HINT.format(symbols=','.join(missing))}`"
        )
    return {s: inst for s, (inst, _) in found.items()}


def resolve_with_sources(
    exchange: str, symbols: Sequence[str], data_dir: Path | None
) -> tuple[dict[str, tuple[Instrument, Catalogue]], list[str]]:
    """(symbol -> (instrument, the catalogue it came from), symbols found nowhere)."""
    layers: list[Catalogue] = []
    if data_dir is not None:
        user = load_catalogue(catalogue_path(data_dir, exchange), exchange)
        if user is not None:
            layers.append(user)
    layers.append(bundled_catalogue(exchange))
    found: dict[str, tuple[Instrument, Catalogue]] = {}
    missing: list[str] = []
    for sym in symbols:
        for layer in layers:
            if sym in layer.instruments:
                found[sym] = (layer.instruments[sym], layer)
                break
        else:
            missing.append(sym)
    if missing and exchange in STAND_IN_DONORS:
        stand_ins = _stand_ins(exchange, STAND_IN_DONORS[exchange], missing, layers[-1])
        found.update((s, (inst, stand_ins)) for s, inst in stand_ins.instruments.items())
        missing = [s for s in missing if s not in stand_ins.instruments]
        found = {s: found[s] for s in symbols if s in found}  # in the order asked
    return found, missing


def stand_ins(exchange: str, symbols: Sequence[str], data_dir: Path | None) -> dict[str, Catalogue]:
    """The contracts of ``symbols`` whose figures are a labelled stand-in, each with the
    catalogue it comes from (its note in ``notes``, its donor venue if any): what every command
    that shows or simulates one says beside its figures."""
    found, _ = resolve_with_sources(exchange, symbols, data_dir)
    return {s: catalogue for s, (_, catalogue) in found.items() if catalogue.is_stand_in(s)}


def stand_in_warning(venue: str, symbols: Sequence[str], data_dir: Path | None) -> str | None:
    """The warning naming the contracts of ``symbols`` that run on labelled stand-in figures
    (``bot simulate``, ``bot sweep``), None if none does: a result is only as good as the
    brackets, and those are not the venue's own. Two kinds: the bundled Bybit SOL/BNB ladder,
    and another venue's figures for a contract the venue's snapshot lacks."""
    found = stand_ins(venue, symbols, data_dir)
    bundled = [s for s, cat in found.items() if cat.donor is None]
    donated = [s for s, cat in found.items() if cat.donor]
    said = []
    if bundled:
        said.append(
            f"{', '.join(bundled)} ran on STAND-IN leverage brackets from "
            f"{found[bundled[0]].source}, not {venue}'s own (stricter: earlier "
            "liquidation, lower leverage)"
        )
    if donated:
        donor = found[donated[0]].donor
        said.append(
            f"{', '.join(donated)} ran on STAND-IN figures: {donor}'s tick, step, minimums and "
            f"leverage brackets for the same contract, with {venue}'s fees and liquidation "
            f"formula ({venue}'s own are not bundled; its brackets may be stricter or looser)"
        )
    if not said:
        return None
    every = bundled + donated
    return (
        f"warning: {'; '.join(said)}; `{SYNC_HINT.format(symbols=','.join(every))}` reads the "
        "venue's"
    )


def _stand_ins(exchange: str, donor: str, symbols: Sequence[str], own: Catalogue) -> Catalogue:
    """``symbols`` as the ``donor`` venue's bundled snapshot specifies them, with ``exchange``'s
    fees and liquidation formula (taken from ``own``, its bundled snapshot: the highest fee of
    its contracts, so a stand-in never pays less than the venue's regular tier).

    The price and percent filters are left out (the bot does not apply them; each venue has its
    own). The donor's leverage brackets are the same contract's, sized to its market, where
    Bybit's bundled stand-in ladder (SOL, BNB) was published for small contracts."""
    theirs = bundled_catalogue(donor)
    donors = {s: d for s in symbols if (d := _donor_symbol(s, theirs.instruments)) is not None}
    fees = {
        name: max(getattr(inst, name) for inst in own.instruments.values())
        for name in ("maker_fee", "taker_fee", "liquidation_fee")
    }
    model = next(iter(own.instruments.values())).margin_model
    instruments = {
        s: dataclasses.replace(
            theirs.instruments[d],
            symbol=s,
            base=_base_quote(s)[0],
            **fees,
            min_price=None,
            max_price=None,
            percent_down=None,
            percent_up=None,
            margin_model=model,
        )
        for s, d in donors.items()
    }

    def note(symbol: str) -> str:
        named = "" if donors[symbol] == symbol else f" ({donor} names it {donors[symbol]})"
        return (
            f"{STAND_IN_MARK}: {donor}'s tick, step, minimums and leverage brackets for the same "
            f"contract{named}, from its {theirs.source}, with {exchange}'s fees and liquidation "
            f"formula; {exchange}'s own figures for it are not bundled"
        )

    return Catalogue(
        exchange,
        instruments,
        theirs.read_at_ms,
        f"{STAND_IN_MARK}: {donor}'s figures from {theirs.source}",
        None,
        {s: note(s) for s in instruments},
        donor=donor,
    )


# A contract quoted per 1,000 (or more) units of its coin: Binance writes the multiplier before
# the coin (1000SHIB, 1MBABYDOGE), Bybit before or after it (1000PEPE, SHIB1000).
_MULTIPLIER_FIRST = re.compile(r"^(1(?:0{3,}|M))([A-Z][A-Z0-9]*)$")
_MULTIPLIER_LAST = re.compile(r"^([A-Z][A-Z0-9]*?)(10{3,})$")


def _units(base: str) -> tuple[int, str]:
    """(units of the coin one contract unit stands for, the coin) of a base currency name:
    ``1000SHIB`` and ``SHIB1000`` are (1000, "SHIB"), ``1MBABYDOGE`` is (1000000, "BABYDOGE"),
    ``BTC`` is (1, "BTC")."""
    if (m := _MULTIPLIER_FIRST.match(base)) is not None:
        return (1_000_000 if m[1] == "1M" else int(m[1])), m[2]
    if (m := _MULTIPLIER_LAST.match(base)) is not None:
        return int(m[2]), m[1]
    return 1, base


def _base_quote(symbol: str) -> tuple[str, str]:
    base, _, rest = symbol.partition("/")
    return base, rest


def _donor_symbol(symbol: str, theirs: Mapping[str, Instrument]) -> str | None:
    """The donor's name for ``symbol``'s contract: the same symbol, or the one that quotes the
    same coin in the same number of units under the donor's spelling (Bybit's SHIB1000 is
    Binance's 1000SHIB). A different number of units is a different contract (its price, tick
    and step scale with it): no donor."""
    if symbol in theirs:
        return symbol
    base, rest = _base_quote(symbol)
    wanted = _units(base)
    for candidate in theirs:
        other, other_rest = _base_quote(candidate)
        if other_rest == rest and _units(other) == wanted:
            return candidate
    return None


def all_contracts(exchange: str, data_dir: Path | None) -> dict[str, tuple[Instrument, Catalogue]]:
    """Every contract known for ``exchange`` (user's catalogue wins over the snapshot)."""
    layers: list[Catalogue] = [bundled_catalogue(exchange)]
    if data_dir is not None:
        user = load_catalogue(catalogue_path(data_dir, exchange), exchange)
        if user is not None:
            layers.append(user)
    out: dict[str, tuple[Instrument, Catalogue]] = {}
    for layer in layers:
        for sym, inst in layer.instruments.items():
            out[sym] = (inst, layer)
    return dict(sorted(out.items()))


def instrument_to_json(inst: Instrument, source: str) -> dict[str, Any]:
    """One instrument in the file format (numbers as strings, exact)."""
    most: dict[str, str] = {}
    if inst.max_order_qty is not None:
        most["max_order_qty"] = _s(inst.max_order_qty)
    if inst.max_position_notional is not None:
        most["max_position_notional"] = _s(inst.max_position_notional)
    return {
        "base": inst.base,
        "quote": inst.quote,
        "tick_size": _s(inst.tick_size),
        "step_size": _s(inst.step_size),
        "min_qty": _s(inst.min_qty),
        "min_notional": _s(inst.min_notional),
        "maker_fee": _s(inst.maker_fee),
        "taker_fee": _s(inst.taker_fee),
        "liquidation_fee": _s(inst.liquidation_fee),
        **most,
        "source": source,
        "brackets": [
            {
                "notional_floor": _s(b.notional_floor),
                "notional_cap": _s(b.notional_cap),
                "max_leverage": _s(b.max_leverage),
                "maint_margin_rate": _s(b.maint_margin_rate),
                "maint_amount": _s(b.maint_amount),
            }
            for b in inst.brackets
        ],
    }


def write_catalogue(
    path: Path,
    exchange: str,
    entries: Mapping[str, tuple[Instrument, str]],
    read_at_ms: int,
    source: str,
) -> None:
    """Write (atomically) a catalogue: ``entries`` maps symbol -> (instrument, its source)."""
    when = datetime.fromtimestamp(read_at_ms / 1000, tz=UTC)
    payload = {
        "exchange": exchange,
        "as_of": when.date().isoformat(),
        "read_at": when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        "source": source,
        "instruments": {
            sym: instrument_to_json(inst, src) for sym, (inst, src) in sorted(entries.items())
        },
    }
    # never write what we reject
    parse_instruments(json.loads(strict_json.dumps(payload)), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced_text(path) as fh:
        fh.write(strict_json.dumps(payload, indent=1))
        fh.write("\n")


def _s(x: Decimal) -> str:
    text = format(x.normalize(), "f") if x == x.to_integral_value() else format(x, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _read_at_ms(data: Mapping[str, Any], path: Path) -> int:
    raw = data.get("read_at")
    if raw is None:
        day = date.fromisoformat(str(data["as_of"]))
        return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)
    if not isinstance(raw, str):
        raise DataError(f"{path}: 'read_at' must be an ISO 8601 UTC time string, got {raw!r}")
    try:
        when = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise DataError(f"{path}: 'read_at' is not an ISO 8601 time: {raw!r}") from None
    if when.tzinfo is None:
        raise DataError(f"{path}: 'read_at' {raw!r} has no time zone (write it in UTC, ...Z)")
    return int(when.timestamp() * 1000)
