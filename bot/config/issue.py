"""A broken cross-field rule of a configuration or policy file (see :mod:`bot.config.policy`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from pydantic_core import PydanticCustomError

Loc = tuple[str | int, ...]


class Issue(NamedTuple):
    """A broken cross-field rule. ``loc`` is relative to the model whose rule found it."""

    loc: Loc
    problem: str
    got: str | None = None


RULES_ERROR = "config_rules"


def dotted(loc: Loc) -> str:
    """``("contracts", 1, "symbol")`` → ``"contracts[1].symbol"``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def raise_issues(*groups: Iterable[Issue]) -> None:
    """Raise one pydantic error carrying every issue (the loader prints one line each)."""
    issues = tuple(issue for group in groups for issue in group)
    if issues:
        summary = "; ".join(f"{dotted(i.loc)}: {i.problem}" for i in issues)
        raise PydanticCustomError(RULES_ERROR, "{summary}", {"summary": summary, "issues": issues})
