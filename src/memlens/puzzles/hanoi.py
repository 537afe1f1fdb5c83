"""Tower of Hanoi: exact rules, the closed-form optimum and a solution generator.

Instance: ``n`` disks numbered 1 (smallest) to ``n`` (largest) start stacked on peg 0; the goal is
the same stack on the **last** peg (``pegs - 1``). A move is ``[disk, from_peg, to_peg]`` with pegs
numbered from 0 (the format of Shojaee et al. 2025). Rules: one disk at a time, only the top disk
of a peg moves, never onto a smaller disk.

Optimal length: ``2**n - 1`` with three pegs (the classical recursion, proven optimal). With
``p >= 4`` pegs the solver uses the Frame–Stewart recursion
``FS(n, p) = min_k 2 FS(k, p) + FS(n - k, p - 1)``, proven optimal for four pegs (Bousch 2014,
"La quatrième tour de Hanoï") and conjectured optimal beyond; the solution says so in its note.

References: Shojaee et al. (2025) "The Illusion of Thinking"; Opus and Lawsen (2025),
arXiv:2506.09250 (the 2**15 - 1 move answers exceed output-token limits).
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass
from functools import cache
from typing import Any

from memlens.puzzles.base import (
    IllegalMove,
    Solution,
    answer_request,
    as_int,
    check_size,
    move_top,
    strip_enumeration,
)

State = tuple[tuple[int, ...], ...]  # per peg, bottom -> top

_LINE = re.compile(r"[\[(]?\s*(\d+)\s*[,\s]\s*(\d+)\s*[,\s]\s*(\d+)\s*[\])]?")
_WORDS = re.compile(r"disk\s*#?(\d+)\s+from\s+(?:peg\s*)?(\d+)\s+to\s+(?:peg\s*)?(\d+)", re.I)


@cache
def frame_stewart(n: int, pegs: int) -> int:
    """Frame–Stewart number of moves for ``n`` disks on ``pegs`` pegs (``2**n - 1`` for 3 pegs)."""
    if n <= 0:
        return 0
    if pegs == 3:
        return 2**n - 1
    if n == 1:
        return 1
    return min(2 * frame_stewart(k, pegs) + frame_stewart(n - k, pegs - 1) for k in range(1, n))


@cache
def _best_split(n: int, pegs: int) -> int:
    return min(
        range(1, n), key=lambda k: 2 * frame_stewart(k, pegs) + frame_stewart(n - k, pegs - 1)
    )


@dataclass(frozen=True)
class Hanoi:
    """A Tower of Hanoi instance (see the module docstring for the rules and move format)."""

    n: int
    pegs: int = 3
    name: str = "hanoi"

    def __post_init__(self) -> None:
        check_size(self.n, "the number of disks n", 1, 64)
        check_size(self.pegs, "the number of pegs", 3, 10)

    # -- rules ----------------------------------------------------------------------------
    def initial(self) -> State:
        return (tuple(range(self.n, 0, -1)),) + ((),) * (self.pegs - 1)

    def goal(self) -> State:
        return ((),) * (self.pegs - 1) + (tuple(range(self.n, 0, -1)),)

    def is_goal(self, state: State) -> bool:
        return len(state[-1]) == self.n

    def coerce_move(self, obj: Any) -> tuple[int, int, int]:
        if isinstance(obj, dict):
            obj = [obj.get("disk"), obj.get("from"), obj.get("to")]
        if not isinstance(obj, list | tuple) or len(obj) != 3:
            raise IllegalMove(f"malformed move {obj!r}: expected [disk, from_peg, to_peg]")
        disk = as_int(obj[0], "disk")
        src = as_int(obj[1], "from_peg")
        dst = as_int(obj[2], "to_peg")
        return (disk, src, dst)

    def apply(self, state: State, move: tuple[int, int, int]) -> State:
        disk, src, dst = move
        if not 1 <= disk <= self.n:
            raise IllegalMove(f"disk {disk} does not exist (disks are 1..{self.n})")
        new = move_top(state, disk, src, dst, item_word="disk", place_word="peg")
        if state[dst] and state[dst][-1] < disk:
            raise IllegalMove(
                f"disk {disk} cannot be placed on the smaller disk {state[dst][-1]} on peg {dst}"
            )
        return new

    # -- answers --------------------------------------------------------------------------
    def parse_line(self, line: str) -> list[int] | None:
        m = _WORDS.search(line)
        if m:
            return [int(g) for g in m.groups()]
        m = _LINE.fullmatch(strip_enumeration(line))
        return [int(g) for g in m.groups()] if m else None

    def format_move(self, move: Any) -> str:
        d, s, t = move
        return f"[{d}, {s}, {t}]"

    # -- solver ---------------------------------------------------------------------------
    def optimal_length(self) -> int:
        """``2**n - 1`` for 3 pegs; the Frame–Stewart number for more (see module docstring)."""
        return frame_stewart(self.n, self.pegs)

    def solve(self, max_moves: int = 1 << 20) -> Solution:
        length = self.optimal_length()
        if self.pegs == 3:
            method, note = "closed form 2^n - 1 (recursive solution)", ""
        else:
            method = "Frame-Stewart recursion"
            note = (
                "optimal (Bousch 2014)"
                if self.pegs == 4
                else "Frame-Stewart length, conjectured optimal for 5 or more pegs"
            )
        moves = None
        if length <= max_moves:
            moves = []
            self._emit(list(range(1, self.n + 1)), 0, self.pegs - 1, list(range(self.pegs)), moves)
        elif not note:
            note = f"solution not listed: {length} moves exceed max_moves={max_moves}"
        return Solution(True, length, moves, method, note)

    def _emit(self, disks: list[int], src: int, dst: int, pegs: list[int], out: list) -> None:
        """Append moves carrying ``disks`` (ascending sizes) from ``src`` to ``dst`` via ``pegs``."""
        n = len(disks)
        if n == 0:
            return
        if n == 1:
            out.append([disks[0], src, dst])
            return
        spare = [p for p in pegs if p not in (src, dst)]
        if len(pegs) == 3:
            (via,) = spare
            self._emit(disks[:-1], src, via, pegs, out)
            out.append([disks[-1], src, dst])
            self._emit(disks[:-1], via, dst, pegs, out)
            return
        k = _best_split(n, len(pegs))
        via = spare[0]
        self._emit(disks[:k], src, via, pegs, out)
        rest = [p for p in pegs if p != via]
        self._emit(disks[k:], src, dst, rest, out)
        self._emit(disks[:k], via, dst, pegs, out)

    def bfs_length(self, limit: int = 2_000_000) -> int:
        """Shortest solution by breadth-first search over all states (a cross-check, small ``n``)."""
        start, goal = self.initial(), self.goal()
        seen = {start: 0}
        queue = deque([start])
        while queue:
            state = queue.popleft()
            if state == goal:
                return seen[state]
            for src in range(self.pegs):
                if not state[src]:
                    continue
                disk = state[src][-1]
                for dst in range(self.pegs):
                    if dst != src and (not state[dst] or state[dst][-1] > disk):
                        nxt = self.apply(state, (disk, src, dst))
                        if nxt not in seen:
                            seen[nxt] = seen[state] + 1
                            queue.append(nxt)
            if len(seen) > limit:
                raise RuntimeError("state limit reached")
        raise RuntimeError("goal unreachable")  # pragma: no cover - Hanoi is always solvable

    # -- prompts --------------------------------------------------------------------------
    def prompt(self, program: bool = False) -> str:
        p = self.pegs
        rules = (
            f"I have a Tower of Hanoi puzzle with {self.n} disks of different sizes, numbered 1 "
            f"(smallest) to {self.n} (largest), and {p} pegs numbered 0 to {p - 1}. Initially all "
            f"disks are stacked on peg 0 with the largest at the bottom and the smallest on top. "
            f"The goal is to move the whole stack to peg {p - 1}.\n"
            "Rules: only one disk can be moved at a time; only the top disk of a peg can be moved; "
            "a disk may never be placed on top of a smaller disk.\n"
            "A move is written [disk, from_peg, to_peg]; for example [1, 0, 2] moves disk 1 from "
            "peg 0 to peg 2.\n"
        )
        return rules + answer_request(program, "[[disk, from_peg, to_peg], ...]")

    def to_dict(self) -> dict[str, Any]:
        return {"puzzle": self.name, "n": self.n, "pegs": self.pegs}
