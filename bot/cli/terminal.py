"""Terminal output that reads well in a terminal and in a pipe.

* :func:`cli_console`: on a terminal, rich's normal console; piped or redirected (no terminal),
  a console so wide that no table cell is cut or folded (``grep`` sees whole numbers, not
  ``7,406.…``) and no colour codes.
* :func:`progress`: a progress bar on a terminal, nothing at all in a pipe (no blank lines).
* :func:`table_csv`: any rich table as CSV (the ``--csv`` of commands whose output is a table).
* :func:`unclipped`: numeric columns never wrap and long text folds instead of being cut.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

PIPE_WIDTH = 1000  # columns of a console that is not a terminal: wide enough never to cut


class Advance(Protocol):
    """``advance(done)``, or ``advance(done, new_total)`` when the total becomes known."""

    def __call__(self, done: int, new_total: int | None = None, /) -> None: ...


class CliConsole(Console):
    """A console whose tables never cut a number: right-justified (numeric) columns do not
    wrap, other columns fold rather than end in an ellipsis (see :func:`unclipped`)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        fixed = tuple(unclipped(o) if isinstance(o, Table) else o for o in objects)
        super().print(*fixed, **kwargs)


def cli_console(*, stderr: bool = False) -> Console:
    stream = sys.stderr if stderr else sys.stdout
    if stream.isatty():
        return CliConsole(stderr=stderr)
    return CliConsole(stderr=stderr, width=PIPE_WIDTH, no_color=True, highlight=False)


@contextmanager
def progress(console: Console, label: str, total: int | None = None) -> Iterator[Advance]:
    """Yield ``advance(done, total)``; shows a bar on a terminal and prints nothing otherwise."""
    bar = Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    with bar:
        task = bar.add_task(label, total=total)

        def advance(done: int, new_total: int | None = None) -> None:
            bar.update(task, completed=done, total=new_total if new_total is not None else total)

        yield advance


def _cell(value: object) -> str:
    if isinstance(value, Text):
        return value.plain
    return Text.from_markup(value).plain if isinstance(value, str) else str(value)


def table_csv(table: Table) -> str:
    """The table's header and cells as CSV text (markup removed)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    columns = table.columns
    if table.show_header:
        writer.writerow([_cell(c.header) for c in columns])
    cells = [list(c.cells) for c in columns]
    for i in range(table.row_count):
        writer.writerow([_cell(col[i]) if i < len(col) else "" for col in cells])
    return out.getvalue()


def unclipped(table: Table, numeric: set[str] | None = None) -> Table:
    """Numeric columns (by header; all right-justified ones by default) never wrap; others fold."""
    for column in table.columns:
        header = _cell(column.header)
        is_number = header in numeric if numeric is not None else column.justify == "right"
        if is_number:
            column.no_wrap = True
            column.min_width = max(column.min_width or 0, _widest(column))
        elif column.overflow == "ellipsis":
            column.overflow = "fold"
    return table


def _widest(column: object) -> int:
    cells = getattr(column, "cells", [])
    return max((len(_cell(c)) for c in cells), default=0)
