"""Build the bundled sample data in ``data/sample`` from the full data set.

Copies, verbatim and in the same format, the rows of these Binance USD-M files whose
timestamp falls in the window (half-open, UTC):

  BTC, ETH, SOL   1h trade, 1h mark, funding   2024-10-01 00:00 .. 2025-10-01 00:00
  BTC, ETH, SOL   5m trade                     2025-06-01 00:00 .. 2025-10-01 00:00

and writes ``README.md`` with provenance, ranges, row counts and gaps. The output is
byte-for-byte reproducible (gzip without a timestamp or file name).

Usage: python scripts/make_sample_data.py [--src /work/shared/data] [--out data/sample]
"""

from __future__ import annotations

import argparse
import gzip
import re
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bot.marketdata.files import load_candles, load_funding, stem_to_symbol

REPO_ROOT = Path(__file__).resolve().parents[1]
BASES = ("BTC", "ETH", "SOL")
YEAR = ("2024-10-01", "2025-10-01")
SUMMER = ("2025-06-01", "2025-10-01")
# (file suffix, window, timeframe in ms or None for funding, kind)
SERIES = (
    ("1h", YEAR, 3_600_000, "trade"),
    ("1h-mark", YEAR, 3_600_000, "mark"),
    ("funding", YEAR, None, ""),
    ("5m", SUMMER, 300_000, "trade"),
)
_SOURCE_RE = re.compile(
    r"^  - (?P<repo>github\.com/\S+) `(?P<path>[^`]+)` @ `(?P<commit>[0-9a-f]+)` -- [\d,]+ rows, "
    r"(?P<first>[\d-]+ [\d:]+) -> (?P<last>[\d-]+ [\d:]+); licence: (?P<licence>.*)$"
)


def day_ms(day: str) -> int:
    return int(datetime.fromisoformat(day).replace(tzinfo=UTC).timestamp()) * 1000


def fmt(ms: int) -> str:
    return f"{datetime.fromtimestamp(ms / 1000, tz=UTC):%Y-%m-%d %H:%M}"


def slice_file(src: Path, dst: Path, start_ms: int, end_ms: int) -> None:
    """Copy the header and the rows with ``start_ms <= timestamp < end_ms``, bytes unchanged."""
    header, *rows = gzip.decompress(src.read_bytes()).rstrip(b"\n").split(b"\n")
    kept = [r for r in rows if start_ms <= int(r.split(b",", 1)[0]) < end_ms]
    payload = b"\n".join([header, *kept]) + b"\n"
    dst.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))


def sources(readme: str, name: str, first: str, last: str) -> list[str]:
    """The shared README's contributing files for ``name`` whose rows overlap [first, last]."""
    section = readme.split(f"### `{name}`", 1)[1].split("\n### ", 1)[0]
    out = []
    for line in section.splitlines():
        m = _SOURCE_RE.match(line)
        if m and m["first"] <= last and m["last"] >= first:
            out.append(
                f"  - {m['repo']} `{m['path']}` @ `{m['commit']}` "
                f"({m['first']} -> {m['last']}); licence: {m['licence']}"
            )
    if not out:
        raise SystemExit(f"no source listed for {name} in the shared README")
    return out


def describe(path: Path, tf_ms: int | None, kind: str) -> tuple[str, str, int, str]:
    """(first, last, rows, gaps) of a written file, read back through the bot's loader."""
    symbol = stem_to_symbol(path.name.split("-", 1)[0])
    if tf_ms is None:
        f = load_funding(path, symbol)
        hours = Counter(f.interval_hours_at(i) for i in range(1, len(f)))
        gaps = "intervals: " + ", ".join(f"{h:g}h x{n}" for h, n in sorted(hours.items()))
        return fmt(int(f.ts[0])), fmt(int(f.ts[-1])), len(f), gaps
    c = load_candles(path, symbol, tf_ms, kind)
    holes = [f"{fmt(a)} -> {fmt(b)} ({(b - a) // tf_ms} candles)" for a, b in c.gaps()]
    return fmt(int(c.ts[0])), fmt(int(c.ts[-1])), len(c), "; ".join(holes) or "none"


def write_readme(out: Path, table: list[str], details: list[str]) -> None:
    text = f"""# Sample market data (Binance USD-M perpetuals)

A small slice of real market data bundled for tests and examples, made by
`scripts/make_sample_data.py` from the project's full data set (`/work/shared/data`).
Each file is a time slice of the file of the same name in the full set: rows are copied
verbatim (same header, same number formatting), never edited or filled.

**Provenance.** Binance USD-M public market data (kline history, mark-price klines and
funding-rate history) gathered from public GitHub repositories that committed freqtrade
`download-data --trading-mode futures` folders (`user_data/data/binance/futures/`); the full
data set merged every version of those files and checked them against each other and against
the Binance Data Vision archive. The contributing files are listed below. None of the source
repositories states a licence for its data files; the data are Binance public market data,
subject to Binance's terms of use. Use for research and testing.

**Format.** One gzip CSV per contract and series. Candles: `timestamp,open,high,low,close,volume`,
`timestamp` = candle open time in UTC epoch milliseconds, volume in the base asset (0 for
mark-price candles). Funding: `timestamp,funding_rate`, settlement time (rounded to the minute)
and rate as a fraction of notional per interval, positive = longs pay shorts.

**Windows** (UTC, inclusive): 1h trade, 1h mark and funding from 2024-10-01 00:00 to
2025-09-30 23:59; 5m trade from 2025-06-01 00:00 to 2025-09-30 23:59.

| file | contract | series | first (UTC) | last (UTC) | rows | gaps |
|---|---|---|---|---|---|---|
{chr(10).join(table)}

## Sources per file

{chr(10).join(details)}
"""
    (out / "README.md").write_text(text, encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--src", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "data" / "sample")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    shared_readme = (args.src / "README.md").read_text(encoding="utf-8")
    table, details = [], []
    for base in BASES:
        for suffix, (start, end), tf_ms, kind in SERIES:
            name = f"{base}_USDT_USDT-{suffix}.csv.gz"
            slice_file(args.src / name, args.out / name, day_ms(start), day_ms(end))
            first, last, rows, gaps = describe(args.out / name, tf_ms, kind)
            series = "funding rate" if tf_ms is None else f"{kind} {suffix.split('-')[0]}"
            table.append(
                f"| `{name}` | {base}/USDT:USDT | {series} | {first} | {last} | {rows:,} | {gaps} |"
            )
            details.append(f"- `{name}`:\n" + "\n".join(sources(shared_readme, name, first, last)))
            print(f"{name}: {rows} rows, {first} -> {last}, gaps: {gaps}")
    write_readme(args.out, table, details)


if __name__ == "__main__":
    main()
