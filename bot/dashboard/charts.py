"""Server-drawn SVG line charts: no JavaScript, readable on a phone, a few kilobytes for a year
of hourly points (series are reduced to at most ``MAX_POINTS`` buckets, keeping each bucket's
extreme for drawdowns so the worst one is never smoothed away)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

MAX_POINTS = 600
WIDTH, HEIGHT, PAD_L, PAD_R, PAD_T, PAD_B = 800, 220, 90, 12, 12, 28
COLOURS = ("#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563")


@dataclass(frozen=True, slots=True)
class Series:
    name: str
    ts_ms: Sequence[int]
    values: Sequence[float]


def reduce(ts: Sequence[int], values: Sequence[float], *, keep_max: bool) -> Series:
    """At most ``MAX_POINTS`` points: per bucket the last value, or the largest (drawdowns)."""
    n = len(ts)
    if n <= MAX_POINTS:
        return Series("", list(ts), list(values))
    size = -(-n // MAX_POINTS)
    out_t, out_v = [], []
    for i in range(0, n, size):
        chunk = values[i : i + size]
        out_t.append(ts[min(i + size, n) - 1])
        out_v.append(max(chunk) if keep_max else chunk[-1])
    return Series("", out_t, out_v)


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def line_chart(
    series: Sequence[Series], *, title: str, value_format: str = "{:,.0f}", invert: bool = False
) -> str:
    """An SVG chart of ``series`` sharing axes. ``invert`` draws larger values lower (drawdown)."""
    drawn = [s for s in series if len(s.ts_ms) > 0]
    if not drawn:
        return f'<p class="muted">{escape(title)}: no data yet</p>'
    t0 = min(s.ts_ms[0] for s in drawn)
    t1 = max(s.ts_ms[-1] for s in drawn)
    lo = min(min(s.values) for s in drawn)
    hi = max(max(s.values) for s in drawn)
    if hi == lo:
        hi, lo = hi + (abs(hi) or 1.0) * 0.01, lo - (abs(lo) or 1.0) * 0.01
    span_t = max(t1 - t0, 1)
    plot_w, plot_h = WIDTH - PAD_L - PAD_R, HEIGHT - PAD_T - PAD_B

    def x(t: int) -> float:
        return PAD_L + (t - t0) / span_t * plot_w

    def y(v: float) -> float:
        frac = (v - lo) / (hi - lo)
        return PAD_T + (frac if invert else 1 - frac) * plot_h

    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" preserveAspectRatio="none">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{PAD_L}" y="{PAD_T}" width="{plot_w}" height="{plot_h}" class="frame"/>',
    ]
    for v in (lo, (lo + hi) / 2, hi):
        parts.append(
            f'<text x="{PAD_L - 4}" y="{y(v) + 4:.1f}" class="axis" text-anchor="end">'
            f"{escape(value_format.format(v))}</text>"
        )
    parts.append(f'<text x="{PAD_L}" y="{HEIGHT - 6}" class="axis">{_day(t0)}</text>')
    parts.append(
        f'<text x="{WIDTH - PAD_R}" y="{HEIGHT - 6}" class="axis" text-anchor="end">'
        f"{_day(t1)}</text>"
    )
    for i, s in enumerate(drawn):
        colour = COLOURS[i % len(COLOURS)]
        points = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in zip(s.ts_ms, s.values, strict=True))
        parts.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{points}">'
            f"<title>{escape(s.name)}</title></polyline>"
        )
    parts.append("</svg>")
    if len(drawn) > 1:
        parts.append('<p class="legend">')
        for i, s in enumerate(drawn):
            colour = COLOURS[i % len(COLOURS)]
            parts.append(f'<span style="color:{colour}">&#9632; {escape(s.name)}</span> ')
        parts.append("</p>")
    return "".join(parts)
