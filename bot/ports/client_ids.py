"""Deterministic client order ids.

Format ``<account>-<purpose>-<BASE>-<tick>-<n>``: the account label, the purpose code
(:class:`~bot.domain.enums.OrderPurpose`), the contract's base asset (8 chars at most), the tick's
time in base-36 seconds and the order's index within the tick. The same tick re-run after a crash
produces the same ids, so the exchange and the store both recognise a retry. Binance allows
``^[.A-Z:/a-z0-9_-]{1,36}$`` (unique among open orders); Bybit 36 characters.
"""

from __future__ import annotations

import re

from bot.domain.enums import OrderPurpose

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
_PAIRS = tuple(a + b for a in _DIGITS for b in _DIGITS)  # _PAIRS[k]: k in two base-36 digits
_VALID = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_PURPOSES = {p.value: p for p in OrderPurpose}


def base36(n: int) -> str:
    if n < 0:
        raise ValueError("negative")
    # Two digits per step (every tick, every order): at most 1295 is one entry of _PAIRS.
    out = ""
    while n >= 1296:
        out = _PAIRS[n % 1296] + out
        n //= 1296
    return (_PAIRS[n] if n >= 36 else _DIGITS[n]) + out


def make_client_id(account: str, purpose: OrderPurpose, symbol: str, tick_ms: int, n: int) -> str:
    base = re.sub(r"[^A-Za-z0-9]", "", symbol.split("/")[0])[:8]
    cid = f"{account}-{purpose.value}-{base}-{base36(tick_ms // 1000)}-{base36(n)}"
    if not _VALID.match(cid):
        raise ValueError(f"client order id {cid!r} is not valid for the exchange")
    return cid


def parse_purpose(client_id: str, account: str) -> OrderPurpose | None:
    """The purpose of one of this account's orders, or ``None`` for a foreign order."""
    prefix = f"{account}-"
    if not client_id.startswith(prefix):
        return None
    code = client_id[len(prefix) : len(prefix) + 2]
    return _PURPOSES.get(code)
