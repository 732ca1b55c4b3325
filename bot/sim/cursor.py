"""Index lookups on a time column for a clock that mostly moves forward by steady steps.

The simulation asks the same questions of its history every tick ("how many candles have
opened by now?"), each time a little later than the last. :class:`TimeCursor` answers exactly
what ``numpy.searchsorted(ts, x, side="right")`` answers, but remembers the last answer: the
same time again, or a time inside the same candle, costs no numpy call; a time further on is
guessed from the grid the candles are on and the guess is checked against the two candles
around it. Any other time (backwards, across a gap, off the grid) falls back to the binary
search, so paper trading, whose clock moves by arbitrary steps and restarts, gets the same
answers as the dry run.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]
# Beyond any time in ms an int64 column holds: the bounds of an answer that has no candle there.
_END = 1 << 63


class TimeCursor:
    """``searchsorted(ts, x, side="right")`` (how many of ``ts`` are <= ``x``) with a memory.

    ``ts`` must be sorted ascending (as every candle and funding series is) and must not change
    while the cursor is used (the loaders' arrays are read-only); ``step`` is the grid the
    times are usually on (a candle's length), used only to guess, never trusted."""

    __slots__ = ("_hi", "_i", "_lo", "_n", "_step", "ts")

    def __init__(self, ts: IntArray, step: int) -> None:
        if step <= 0:
            raise ValueError(f"TimeCursor: step must be positive, got {step}")
        self.ts = ts
        self._n = len(ts)
        self._step = step
        # The last answer ``_i`` holds for every x with _lo <= x < _hi: ts[_i - 1] <= x < ts[_i].
        # Nothing is known yet: an empty interval (and no answer to guess from).
        self._i = 0
        self._lo = 0
        self._hi = 0

    def right(self, x: int) -> int:
        """How many times in ``ts`` are <= ``x`` (``searchsorted(ts, x, side="right")``)."""
        if self._lo <= x < self._hi:
            return self._i
        ts = self.ts
        n = self._n
        i = self._i
        if i > 0:
            # On the grid, every step of time past the candle before the answer is one candle;
            # the guess is checked against the candles around it.
            g = i + (x - self._lo) // self._step
            if 0 < g <= n:
                lo = int(ts[g - 1])
                if lo <= x:
                    hi = int(ts[g]) if g < n else _END
                    if x < hi:
                        self._i, self._lo, self._hi = g, lo, hi
                        return g
        g = int(ts.searchsorted(x, side="right"))
        self._i = g
        # Python ints: the next call compares without touching numpy.
        self._lo = int(ts[g - 1]) if g > 0 else -_END
        self._hi = int(ts[g]) if g < n else _END
        return g
