"""Operator commands (halt, halt and flatten, resume) posted through the state database.

``bot halt``/``bot resume`` and the dashboard's buttons all go through :func:`post_command`: the
running bot applies the command at its next job (``Runner.apply_commands``), which records the
state change as a risk event; a stopped bot applies it at its next start."""

from __future__ import annotations

from typing import Literal

from bot import strict_json
from bot.store.sql import SqlStore

Kind = Literal["halt", "resume"]


def post_command(
    store: SqlStore, kind: Kind, *, reason: str, now_ms: int, flatten: bool = False
) -> int:
    """Queue ``kind`` for the bot; returns the command id."""
    if kind == "halt":
        args: dict[str, object] = {"flatten": flatten, "reason": reason or "bot halt"}
    elif kind == "resume":
        if flatten:
            raise ValueError("resume cannot flatten")
        args = {"reason": reason or "bot resume"}
    else:
        raise ValueError(f"unknown operator command {kind!r}: halt or resume")
    return store.post_command(kind, strict_json.dumps(args, sort_keys=True), now_ms)
