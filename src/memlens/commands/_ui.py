"""The one progress display of the command line: rich bars fed by :class:`ProgressEvent`.

``with progress_bars(console) as progress: run(config, out, progress=progress)``: a bar appears
for every task label the first time it reports, showing ``completed/total``, the event's note
and the elapsed time. Bars are transient (they vanish when the run ends, leaving the summary).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from memlens.progress import ProgressEvent, ProgressFn

#: Width of the console when it writes to a file or pipe and ``COLUMNS`` is not set (rich's
#: default there, 80, cuts the wider tables' first column to an ellipsis in a log).
PIPE_WIDTH = 160


def make_console(*, stderr: bool = False) -> Any:
    """The command line's rich console: the terminal's width, or :data:`PIPE_WIDTH` columns in a
    file or pipe unless ``COLUMNS`` says otherwise."""
    from rich.console import Console

    out = Console(stderr=stderr)
    if not out.is_terminal and not os.environ.get("COLUMNS"):
        out = Console(stderr=stderr, width=PIPE_WIDTH)
    return out


@contextlib.contextmanager
def progress_bars(
    console: Any | None = None, *, enabled: bool = True, transient: bool = True
) -> Iterator[ProgressFn]:
    """A progress callable drawing one rich bar per task (a no-op when not ``enabled``)."""
    if not enabled:
        yield lambda event: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    kwargs = {"console": console} if console is not None else {}
    bars = Progress(*columns, transient=transient, **kwargs)
    if transient and not bars.console.is_terminal:
        # bars that vanish at the end show nothing in a file or pipe but a stray blank line
        yield lambda event: None
        return
    tasks: dict[str, Any] = {}

    def update(event: ProgressEvent) -> None:
        if not tasks:
            bars.start()  # at the first event: a run refused before it starts prints nothing
        count = (
            f"{event.completed:,.0f}/{event.total:,.0f}"
            if event.total is not None
            else f"{event.completed:,.0f}"
        )
        if event.task not in tasks:
            tasks[event.task] = bars.add_task(
                event.task, total=event.total, count=count, note=event.note
            )
        bars.update(
            tasks[event.task],
            completed=event.completed,
            total=event.total,
            count=count,
            note=event.note,
        )

    try:
        yield update
    finally:
        if tasks:
            bars.stop()
