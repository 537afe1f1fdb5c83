"""When a tracker observes: observation schedules (log-spaced by default, or every k steps, or a list)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from memlens.errors import UserError


class Schedule:
    """The steps at which a :class:`Tracker` observes the model.

    Build one with :meth:`log` (default: step 0 and ``round(10 ** (k / points_per_decade))`` for
    ``k = 0, 1, 2, ...``, duplicates removed), :meth:`every` or :meth:`at`. Schedules need no
    final step: a log schedule goes on forever with a bounded number of points per decade.
    """

    def __init__(self, kind: str, value: Any) -> None:
        self.kind = kind
        self.value = value

    @classmethod
    def log(cls, points_per_decade: int = 12) -> Schedule:
        if points_per_decade < 1:
            raise UserError(f"points per decade must be at least 1, got {points_per_decade}.")
        return cls("log", int(points_per_decade))

    @classmethod
    def every(cls, n: int) -> Schedule:
        if n < 1:
            raise UserError(f"the observation interval must be at least 1 step, got {n}.")
        return cls("every", int(n))

    @classmethod
    def at(cls, steps: Sequence[int]) -> Schedule:
        steps = sorted({int(s) for s in steps})
        if not steps or steps[0] < 0:
            raise UserError("explicit observation steps must be a non-empty list of steps >= 0.")
        return cls("at", steps)

    def describe(self) -> str:
        if self.kind == "log":
            return f"log-spaced, {self.value} points per decade, plus step 0"
        if self.kind == "every":
            return f"every {self.value} steps, plus step 0"
        return f"at steps {self.value}"

    def next_at_or_after(self, step: int) -> int | None:
        """The first scheduled step ``>= step`` (``None`` when an explicit list is exhausted)."""
        step = max(0, int(step))
        if self.kind == "at":
            return next((s for s in self.value if s >= step), None)
        if step == 0:
            return 0
        if self.kind == "every":
            n = self.value
            return -(-step // n) * n
        d = self.value
        k = max(0, math.floor(d * math.log10(step)) - 2)
        while round(10 ** (k / d)) < step:
            k += 1
        return int(round(10 ** (k / d)))

    def due(self, after: int | None, step: int) -> bool:
        """Whether a scheduled step lies in ``(after, step]`` (``after=None``: in ``[0, step]``)."""
        nxt = self.next_at_or_after(0 if after is None else after + 1)
        return nxt is not None and nxt <= step

    def steps_until(self, last: int) -> list[int]:
        """Every scheduled step in ``[0, last]``."""
        out, s = [], self.next_at_or_after(0)
        while s is not None and s <= last:
            out.append(s)
            s = self.next_at_or_after(s + 1)
        return out
