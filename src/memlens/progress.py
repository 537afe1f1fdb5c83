"""One progress protocol for every long-running memlens function.

A recipe (``memlens.<capability>.run``) accepts ``progress=``, a callable receiving
:class:`ProgressEvent` values: which task moved (a label such as ``"L=1 d=16"`` or ``"target"``),
how far, out of how much, and an optional short note. Events are small picklable dataclasses, so
they travel unchanged from worker processes and Ray tasks (:mod:`memlens.scale`). The library
never draws a progress bar itself: the command line renders events (``memlens.commands._ui``); a
notebook can pass ``print`` or its own callable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class ProgressEvent:
    """``task`` advanced to ``completed`` of ``total`` (``None``: unknown); ``note`` is optional."""

    task: str
    completed: float
    total: float | None = None
    note: str = ""

    def __str__(self) -> str:
        of = f"/{self.total:g}" if self.total is not None else ""
        return f"{self.task}: {self.completed:g}{of}" + (f" ({self.note})" if self.note else "")


ProgressFn = Callable[[ProgressEvent], None]


def emit(
    progress: ProgressFn | None,
    task: str,
    completed: float,
    total: float | None = None,
    note: str = "",
) -> None:
    """Send one :class:`ProgressEvent` to ``progress`` (nothing when it is ``None``)."""
    if progress is not None:
        progress(ProgressEvent(task, completed, total, note))
