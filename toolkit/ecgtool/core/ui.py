"""Terminal output shared by the commands: progress bars, tables, and the --quiet switch."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import click

_QUIET = bool(os.environ.get("ECGTOOL_QUIET"))


def set_quiet(value: bool) -> None:
    global _QUIET
    _QUIET = bool(value)


def reset_quiet() -> None:
    """Back to the environment's setting (ECGTOOL_QUIET): the CLI calls it when an invocation ends."""
    set_quiet(bool(os.environ.get("ECGTOOL_QUIET")))


def _quiet_callback(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        set_quiet(True)
    return value


def quiet_option(fn):
    """`--quiet`: no progress bars or chatter (results and errors are still printed)."""
    return click.option("--quiet", "-q", is_flag=True, expose_value=False, is_eager=True,
                        callback=_quiet_callback, help="Silence progress bars.")(fn)


def console():
    from rich.console import Console

    return Console(stderr=True, quiet=_QUIET)


def info(msg: str) -> None:
    """A line of chatter on stderr (silenced by --quiet)."""
    if not _QUIET:
        click.echo(msg, err=True)


def warn(msg: str) -> None:
    click.secho(f"warning: {msg}", err=True, fg="yellow")


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Any]:
    """A rich progress bar on stderr; yields an object with advance(n=1) and update(text)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TimeRemainingColumn(), TextColumn("{task.fields[status]}"), console=console(),
                    disable=_QUIET or not sys.stderr.isatty() and bool(os.environ.get("CI")), transient=False)

    class _Bar:
        def __init__(self) -> None:
            self.task = prog.add_task(description, total=total, status="")

        def advance(self, n: int = 1) -> None:
            prog.advance(self.task, n)

        def update(self, status: str = "", **kw: Any) -> None:
            prog.update(self.task, status=status, **kw)

    with prog:
        yield _Bar()


#: columns that hold a fraction in [0, 1] in files and APIs and are shown in %
PERCENT_COLUMNS = ("macro_f1", "weighted_f1", "accuracy", "val_macro_f1", "test_macro_f1")


def as_percent(rows: Sequence[dict], columns: Sequence[str] = PERCENT_COLUMNS) -> list[dict]:
    """Copies of `rows` for display: fractions in `columns` (and f1_<class> columns) as % with 2 decimals."""
    def pct(k: str, v: Any) -> Any:
        if (k in columns or k.startswith("f1_")) and isinstance(v, (int, float)) and not isinstance(v, bool):
            return round(100.0 * v, 2)
        return v

    return [{k: pct(k, v) for k, v in r.items()} for r in rows]


def format_cell(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:.3e}"
    return str(value)


def print_table(rows: Sequence[dict], columns: Sequence[str] | None = None, title: str | None = None,
                width: int | None = None) -> None:
    """Print rows as a table on stdout (rich), plain when stdout is not a terminal."""
    from rich.console import Console
    from rich.table import Table

    if not rows:
        click.echo("(no rows)")
        return
    columns = list(columns or rows[0].keys())
    if width:  # a bounded table: no vertical rules, so the columns get the room
        from rich import box

        table = Table(title=title, show_lines=False, box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    else:
        table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(c, overflow="fold")
    for r in rows:
        table.add_row(*(format_cell(r.get(c)) for c in columns))
    Console(width=width or max(100, min(220, 14 * len(columns)))).print(table)


def markdown_table(rows: Sequence[dict], columns: Sequence[str] | None = None) -> str:
    """Rows as a GitHub markdown table."""
    if not rows:
        return "(no rows)\n"
    columns = list(columns or rows[0].keys())
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(format_cell(r.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"
