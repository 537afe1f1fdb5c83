"""Checker Jumping: exact rules (no backward moves), the optimum ``(n + 1)**2 - 1`` and a solver.

Instance: a row of ``2n + 1`` cells, ``n`` red checkers on the left, one empty cell, ``n`` blue
checkers on the right (``RR_BB`` for ``n = 2``). Goal: the colours swapped (``BB_RR``). Cells are
numbered from 0. A move is ``[colour, from, to]`` with colour ``"R"`` or ``"B"`` (the format of
Shojaee et al. 2025). Rules:

* a checker slides into the adjacent empty cell, or jumps over exactly one checker of the
  **opposite** colour into the empty cell;
* no backward moves: red moves only right (increasing index), blue only left.

Optimal length ``(n + 1)**2 - 1 = n(n + 2)``. With forward-only moves *every* solution has this
length: each red must pass each blue, which only a jump does (``n**2`` jumps), and the total
displacement ``2n(n + 1)`` = slides + 2 jumps gives ``2n`` slides. A grader therefore never sees a
correct but longer answer here; a longer one must contain a backward move, which is illegal.

References: Shojaee et al. (2025), "The Illusion of Thinking"; Concepts §7 (docs/concepts.md).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from memlens.puzzles.base import (
    IllegalMove,
    Solution,
    answer_request,
    as_int,
    check_size,
    strip_enumeration,
)

_COLOURS = {"r": "R", "red": "R", "b": "B", "blue": "B"}
_LINE = re.compile(
    r"[\[(]?\s*['\"]?(red|blue|r|b)['\"]?\s*[,:\s]\s*(\d+)\s*(?:,|->|→|to|\s)\s*(\d+)\s*[\])]?",
    re.I,
)


@dataclass(frozen=True)
class Checkers:
    """A Checker Jumping instance with ``n`` checkers of each colour."""

    n: int
    name: str = "checkers"

    def __post_init__(self) -> None:
        check_size(self.n, "the number of checkers per colour n", 1, 200)

    def initial(self) -> str:
        return "R" * self.n + "_" + "B" * self.n

    def goal(self) -> str:
        return "B" * self.n + "_" + "R" * self.n

    def is_goal(self, state: str) -> bool:
        return state == self.goal()

    def coerce_move(self, obj: Any) -> tuple[str, int, int]:
        if isinstance(obj, dict):
            obj = [obj.get("color", obj.get("colour")), obj.get("from"), obj.get("to")]
        if not isinstance(obj, list | tuple) or len(obj) != 3:
            raise IllegalMove(f"malformed move {obj!r}: expected [colour, from, to]")
        colour = _COLOURS.get(str(obj[0]).strip().lower()) if isinstance(obj[0], str) else None
        if colour is None:
            raise IllegalMove(f"malformed move {obj!r}: the colour must be 'R' or 'B'")
        return (colour, as_int(obj[1], "from"), as_int(obj[2], "to"))

    def apply(self, state: str, move: tuple[str, int, int]) -> str:
        colour, src, dst = move
        last = 2 * self.n
        for pos, what in ((src, "from"), (dst, "to")):
            if not 0 <= pos <= last:
                raise IllegalMove(f"{what} position {pos} is off the board (cells are 0..{last})")
        if state[src] != colour:
            held = "empty" if state[src] == "_" else f"holds {state[src]}"
            raise IllegalMove(f"cell {src} {held}, not a {colour} checker")
        if state[dst] != "_":
            raise IllegalMove(f"cell {dst} is occupied by {state[dst]}")
        step = dst - src
        if (colour == "R" and step < 0) or (colour == "B" and step > 0):
            way = "right" if colour == "R" else "left"
            raise IllegalMove(f"backward move: {colour} checkers only move {way}")
        if abs(step) == 2:
            over = state[(src + dst) // 2]
            if over == colour:
                raise IllegalMove(
                    f"{colour} cannot jump over its own colour at cell {(src + dst) // 2}"
                )
        elif abs(step) != 1:
            raise IllegalMove(f"a checker moves 1 cell (slide) or 2 (jump), not {abs(step)}")
        cells = list(state)
        cells[src], cells[dst] = "_", colour
        return "".join(cells)

    def successors(self, state: str) -> list[tuple[tuple[str, int, int], str]]:
        """Legal (move, next state) pairs, jumps first."""
        gap = state.index("_")
        out = []
        for src, colour in ((gap - 2, "R"), (gap + 2, "B"), (gap - 1, "R"), (gap + 1, "B")):
            if 0 <= src <= 2 * self.n and state[src] == colour:
                if abs(gap - src) == 2 and state[(gap + src) // 2] == colour:
                    continue
                cells = list(state)
                cells[src], cells[gap] = "_", colour
                out.append(((colour, src, gap), "".join(cells)))
        return out

    # -- answers --------------------------------------------------------------------------
    def parse_line(self, line: str) -> list[Any] | None:
        m = _LINE.fullmatch(strip_enumeration(line))
        return [m.group(1), int(m.group(2)), int(m.group(3))] if m else None

    def format_move(self, move: Any) -> str:
        c, s, t = move
        return f"['{c}', {s}, {t}]"

    # -- solvers --------------------------------------------------------------------------
    def optimal_length(self) -> int:
        """``(n + 1)**2 - 1`` (see the module docstring for why every solution has it)."""
        return (self.n + 1) ** 2 - 1

    def solve(self, max_moves: int = 1 << 20) -> Solution:
        """The classical wave construction, checked by replay.

        Colours alternate in runs of ``1, 2, ..., n, n, n, ..., 2, 1`` moves starting with red
        (``n(n + 2)`` moves in all); within a run the mover jumps when it can, else slides.
        """
        runs = [*range(1, self.n + 1), self.n, *range(self.n, 0, -1)]
        state, path = self.initial(), []
        for i, run in enumerate(runs):
            colour = "R" if i % 2 == 0 else "B"
            for _ in range(run):
                move = next(m for m, _ in self.successors(state) if m[0] == colour)
                state = self.apply(state, move)
                path.append(list(move))
        if not self.is_goal(state) or len(path) != self.optimal_length():  # pragma: no cover
            raise AssertionError(f"checkers construction failed for n={self.n}")
        moves = path if len(path) <= max_moves else None
        return Solution(
            True, len(path), moves, "wave construction; every solution has (n+1)^2 - 1 moves"
        )

    def bfs_length(self) -> int:
        """Shortest solution by breadth-first search (a cross-check for small ``n``)."""
        start, goal = self.initial(), self.goal()
        dist = {start: 0}
        queue = deque([start])
        while queue:
            state = queue.popleft()
            if state == goal:
                return dist[state]
            for _, nxt in self.successors(state):
                if nxt not in dist:
                    dist[nxt] = dist[state] + 1
                    queue.append(nxt)
        raise RuntimeError("goal unreachable")  # pragma: no cover

    def prompt(self, program: bool = False) -> str:
        n = self.n
        board = " ".join(self.initial())
        target = " ".join(self.goal())
        rules = (
            f"A row of {2 * n + 1} cells, numbered 0 to {2 * n}, holds {n} red checkers (R) on the "
            f"left, one empty cell (_) and {n} blue checkers (B) on the right: {board}. "
            f"The goal is to swap them: {target}.\n"
            "Rules: a checker can slide into the adjacent empty cell, or jump over exactly one "
            "checker of the opposite colour into the empty cell. Checkers never move backward: "
            "red moves only to the right, blue only to the left.\n"
            "A move is written [colour, from, to]; for example ['R', 0, 1] slides the red checker "
            "from cell 0 to cell 1.\n"
        )
        return rules + answer_request(program, "[[colour, from, to], ...]")

    def to_dict(self) -> dict[str, Any]:
        return {"puzzle": self.name, "n": self.n}
