"""Optional parts of the package, installed as pip extras, and the error when one is missing.

``alerts`` (Apprise notifications) and ``postgres`` (the PostgreSQL driver) are optional: the
bundled simulation, paper trading on SQLite and the tools run without them. A configuration that
asks for one names the extra to install instead of failing on an import deep inside a library.
"""

from __future__ import annotations

import importlib.util

from bot.errors import ConfigError

DISTRIBUTION = "perp-risk-bot"


class MissingExtra(ConfigError):
    """An optional part the configuration needs is not installed."""


def require(module: str, extra: str, needed_for: str) -> None:
    """Raise :class:`MissingExtra` naming ``extra`` when ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise MissingExtra(
            f"{needed_for} needs the optional {extra!r} part, which is not installed: "
            f"pip install '{DISTRIBUTION}[{extra}]' (or '.[{extra}]' from a source tree)"
        )
