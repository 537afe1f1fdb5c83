"""Blocks World: seeded instances, exact rules, and solvers (closed form, A*, constructive).

Instance: ``n`` blocks named ``A, B, C, ...`` on ``stacks`` stacks numbered from 0, each stack
listed bottom to top; a seeded random start and a different seeded random goal. A move is
``[block, from_stack, to_stack]`` (the format of Shojaee et al. 2025). Rules: only the top block
of a stack moves, onto the top of another stack (or an empty one); the goal is reached when every
stack equals its goal stack.

Solvability and optimal length:

* one stack: nothing can move, solvable only when start equals goal (0 moves);
* two stacks: the sequence ``stack0 (bottom->top) + stack1 (top->bottom)`` never changes (a move
  only shifts the split point), so an instance is solvable exactly when start and goal give the
  same sequence, in ``|len(start0) - len(goal0)|`` moves;
* three or more stacks: always solvable. A* with an admissible heuristic (blocks not yet well
  placed -- a block is well placed when it and everything below it match the goal, and such a
  block never needs to move -- plus one for each block that must move twice, see
  :meth:`Blocks.lower_bound`) gives the optimum up to ``node_limit`` expansions (optimal
  blocks-world planning is NP-hard in general: Gupta and Nau 1992). Past the limit the solver
  returns a valid constructive solution (gather every block into one tower in a chosen order,
  then deal it out) with ``optimal_length = None`` and the heuristic as a lower bound.

References: Shojaee et al. (2025), "The Illusion of Thinking"; Gupta and Nau (1992), "On the
complexity of blocks-world planning", Artificial Intelligence 56.
"""

from __future__ import annotations

import heapq
import random
import re
import string
from dataclasses import dataclass, field
from functools import cached_property
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

State = tuple[tuple[str, ...], ...]

_LINE = re.compile(
    r"[\[(]?\s*['\"]?([A-Z])['\"]?\s*[,\s]\s*(\d+)\s*(?:,|->|→|to|\s)\s*(\d+)\s*[\])]?"
)
_WORDS = re.compile(
    r"(?:move\s+)?(?:block\s+)?\b([A-Z])\b\s+from\s+(?:stack\s*)?(\d+)\s+(?:on)?to\s+(?:stack\s*)?(\d+)"
)


def _split(rng: random.Random, blocks: list[str], stacks: int) -> State:
    order = blocks[:]
    rng.shuffle(order)
    piles: list[list[str]] = [[] for _ in range(stacks)]
    for b in order:
        piles[rng.randrange(stacks)].append(b)
    return tuple(tuple(p) for p in piles)


@dataclass(frozen=True)
class Blocks:
    """A Blocks World instance; build a seeded one with :func:`generate`."""

    n: int
    stacks: int
    start: State
    target: State
    seed: int | None = None
    name: str = field(default="blocks")

    def __post_init__(self) -> None:
        from memlens.errors import UserError

        check_size(self.n, "the number of blocks n", 1, 26)
        check_size(self.stacks, "the number of stacks", 1, 26)
        names = sorted(string.ascii_uppercase[: self.n])
        for what, st in (("start", self.start), ("goal", self.target)):
            if len(st) != self.stacks or sorted(b for s in st for b in s) != names:
                raise UserError(
                    f"the {what} must place blocks {', '.join(names)} once each on {self.stacks} stacks."
                )

    # -- rules ----------------------------------------------------------------------------
    def initial(self) -> State:
        return self.start

    def is_goal(self, state: State) -> bool:
        return state == self.target

    def coerce_move(self, obj: Any) -> tuple[str, int, int]:
        if isinstance(obj, dict):
            obj = [obj.get("block"), obj.get("from"), obj.get("to")]
        if not isinstance(obj, list | tuple) or len(obj) != 3 or not isinstance(obj[0], str):
            raise IllegalMove(f"malformed move {obj!r}: expected [block, from_stack, to_stack]")
        return (obj[0].strip().upper(), as_int(obj[1], "from_stack"), as_int(obj[2], "to_stack"))

    def apply(self, state: State, move: tuple[str, int, int]) -> State:
        block, src, dst = move
        return move_top(state, block, src, dst, item_word="block", place_word="stack")

    # -- answers --------------------------------------------------------------------------
    def parse_line(self, line: str) -> list[Any] | None:
        m = _WORDS.search(line)
        if m is None:
            m = _LINE.fullmatch(strip_enumeration(line))
        return [m.group(1), int(m.group(2)), int(m.group(3))] if m else None

    def format_move(self, move: Any) -> str:
        b, s, t = move
        return f'["{b}", {s}, {t}]'

    # -- solvers --------------------------------------------------------------------------
    def misplaced(self, state: State) -> int:
        """Blocks not well placed: an admissible, consistent lower bound on the moves left."""
        good = 0
        for have, want in zip(state, self.target, strict=True):
            for x, y in zip(have, want, strict=False):
                if x != y:
                    break
                good += 1
        return self.n - good

    def lower_bound(self, state: State) -> int:
        """:meth:`misplaced` plus one for every block that must move twice.

        A block ``b`` that is not well placed and sits above a block ``c`` that is not well
        placed either, where the goal puts ``c`` below ``b`` on the same stack, has to move off
        ``c`` before ``c`` can move, and cannot be in its goal position yet when it does. Each
        move moves one block, so the per-block minimums add up to an admissible bound.
        """
        where = self._goal_pos
        bound = 0
        for have, want in zip(state, self.target, strict=True):
            good = 0
            for x, y in zip(have, want, strict=False):
                if x != y:
                    break
                good += 1
            below: list[tuple[int, int]] = []  # goal positions of misplaced blocks beneath
            for b in have[good:]:
                gs, gh = where[b]
                twice = any(cs == gs and ch < gh for cs, ch in below)
                bound += 2 if twice else 1
                below.append((gs, gh))
        return bound

    @cached_property
    def _goal_pos(self) -> dict[str, tuple[int, int]]:
        return {b: (i, h) for i, s in enumerate(self.target) for h, b in enumerate(s)}

    def solve(self, max_moves: int = 1 << 20, node_limit: int = 20_000) -> Solution:
        if self.stacks == 1:
            ok = self.start == self.target
            return Solution(ok, 0 if ok else None, [] if ok else None, "closed form (one stack)")
        if self.stacks == 2:
            return self._solve_two()
        path = self._astar(node_limit)
        if path is not None:
            return Solution(True, len(path), path, "A* (admissible heuristic, states re-opened)")
        moves = self.constructive()
        bound = self.lower_bound(self.start)
        note = (
            f"A* stopped after {node_limit} expansions; the solution is valid but not proven "
            f"optimal (the optimum is at least {bound} moves)"
        )
        return Solution(
            True, None, moves, "constructive (gather, then deal)", note, lower_bound=bound
        )

    def _solve_two(self) -> Solution:
        def line(st: State) -> tuple[str, ...]:
            return st[0] + st[1][::-1]

        method = "closed form (two stacks keep stack0 + reversed stack1)"
        if line(self.start) != line(self.target):
            return Solution(False, None, None, method)
        moves, state = [], self.start
        while state != self.target:
            src = 0 if len(state[0]) > len(self.target[0]) else 1
            move = (state[src][-1], src, 1 - src)
            state = self.apply(state, move)
            moves.append(list(move))
        return Solution(True, len(moves), moves, method)

    def _astar(self, node_limit: int) -> list[list[Any]] | None:
        start = self.start
        best = {start: 0}
        parent: dict[State, tuple[State, list[Any]] | None] = {start: None}
        h = self.lower_bound
        heap = [(h(start), 0, 0, start)]
        tie = 0
        expanded = 0
        while heap:
            _, g, _, state = heapq.heappop(heap)
            if g > best[state]:
                continue
            if state == self.target:
                path = []
                while parent[state] is not None:
                    state, move = parent[state]
                    path.append(move)
                return path[::-1]
            expanded += 1
            if expanded > node_limit:
                return None
            for src in range(self.stacks):
                if not state[src]:
                    continue
                block = state[src][-1]
                for dst in range(self.stacks):
                    if dst == src:
                        continue
                    new = list(state)
                    new[src] = state[src][:-1]
                    new[dst] = state[dst] + (block,)
                    nxt = tuple(new)
                    if g + 1 < best.get(nxt, 1 << 30):
                        best[nxt] = g + 1
                        parent[nxt] = (state, [block, src, dst])
                        tie += 1
                        heapq.heappush(heap, (g + 1 + h(nxt), g + 1, tie, nxt))
        return None  # pragma: no cover - three or more stacks always reach the goal

    def constructive(self) -> list[list[Any]]:
        """A valid (not minimal) solution for three or more stacks, ``O(n**2)`` moves.

        Gather every block on stack 0 as the tower ``goal0 + reversed(goal1 + ... + goalS)``
        (buffering on stacks 1..S-1), then deal the top of the tower onto stacks 1..S-1.
        """
        piles = [list(s) for s in self.start]
        moves: list[list[Any]] = []

        def move(src: int, dst: int) -> None:
            moves.append([piles[src][-1], src, dst])
            piles[dst].append(piles[src].pop())

        while piles[0]:
            move(0, 1)
        tower = list(self.target[0]) + [b for g in self.target[1:] for b in g][::-1]
        for block in tower:
            src = next(i for i in range(1, self.stacks) if block in piles[i])
            other = next(i for i in range(1, self.stacks) if i != src)
            while piles[src][-1] != block:
                move(src, other)
            move(src, 0)
        for j in range(1, self.stacks):
            for _ in self.target[j]:
                move(0, j)
        return moves

    def prompt(self, program: bool = False) -> str:
        def show(st: State) -> str:
            return "; ".join(f"stack {i}: [{', '.join(s)}]" for i, s in enumerate(st))

        rules = (
            f"Blocks World with {self.n} blocks on {self.stacks} stacks numbered 0 to "
            f"{self.stacks - 1}; each stack is listed from bottom to top.\n"
            f"Start: {show(self.start)}.\nGoal: {show(self.target)}.\n"
            "Rules: only the top block of a stack can be moved, and only onto the top of another "
            "stack (which may be empty); one block moves at a time.\n"
            'A move is written [block, from_stack, to_stack]; for example ["A", 0, 1] moves '
            "block A from the top of stack 0 to the top of stack 1.\n"
        )
        return rules + answer_request(program, '[["A", 0, 1], ...]')

    def to_dict(self) -> dict[str, Any]:
        return {
            "puzzle": self.name,
            "n": self.n,
            "stacks": self.stacks,
            "seed": self.seed,
            "start": [list(s) for s in self.start],
            "goal": [list(s) for s in self.target],
        }


def generate(n: int, stacks: int = 3, seed: int = 0) -> Blocks:
    """A seeded random instance: start and goal are independent random placements (distinct
    when ``n >= 2``); the same ``(n, stacks, seed)`` always gives the same instance."""
    check_size(n, "the number of blocks n", 1, 26)
    check_size(stacks, "the number of stacks", 1, 26)
    rng = random.Random(f"blocks:{n}:{stacks}:{seed}")
    names = list(string.ascii_uppercase[:n])
    start = _split(rng, names, stacks)
    goal = _split(rng, names, stacks)
    for _ in range(100):
        if goal != start or n == 1 or stacks == 1:
            break
        goal = _split(rng, names, stacks)
    return Blocks(n, stacks, start, goal, seed)


def from_dict(d: dict[str, Any]) -> Blocks:
    """Rebuild an instance from :meth:`Blocks.to_dict` (start and goal given explicitly)."""
    start = tuple(tuple(str(b) for b in s) for s in d["start"])
    goal = tuple(tuple(str(b) for b in s) for s in d["goal"])
    return Blocks(int(d["n"]), int(d.get("stacks", len(start))), start, goal, d.get("seed"))
