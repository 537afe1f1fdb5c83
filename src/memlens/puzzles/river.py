"""River Crossing (actors and agents): exact rules including the in-boat rule, and two solvers.

Instance: ``n`` actors ``a_1..a_n`` and their ``n`` agents ``A_1..A_n`` stand on the left bank
with a boat that holds at most ``k`` people. Goal: everyone on the right bank. A move is the list
of people in the boat, e.g. ``["A_1", "a_1"]``; the boat starts on the left and every move
crosses to the other side (the format of Shojaee et al. 2025). Rules:

* the boat never crosses empty and carries at most ``k`` people, all from the bank it is at;
* no actor may be in the presence of another agent unless the actor's own agent is also
  present -- on either bank **and in the boat** (the in-boat rule that several public
  re-implementations omit).

A group is unsafe exactly when it holds at least one agent and at least one actor whose own
agent is absent (any agent present is then "another agent"). Everyone in the boat lands, so a
crossing is legal when the boat group and both banks afterwards are safe. The boat is checked
first, so a crossing that breaks the in-boat rule is reported as such. (Because everyone lands,
an unsafe boat from a safe bank always leaves an unsafe bank too -- the missing agent is either
still on the departure bank, so the landing bank is unsafe, or on the landing bank, so the
departure bank was unsafe already -- which is why the rule changes no minimal length; the
tests check this exhaustively for small ``n``.)

Solvers. :meth:`River.solve` runs breadth-first search on the quotient by the symmetry that
relabels pairs: a state is the number of pairs of each kind (both left, both right, actor left
and agent right, actor right and agent left) plus the boat side, ``O(n**3)`` states instead of
``2**(2n+1)``. The rules are invariant under relabelling pairs, so distances are the same; the
path is mapped back to concrete names by always using the lowest-numbered pairs of each kind.
:func:`solve_labeled` is the plain search over all ``2**(2n)`` bank subsets (a cross-check and
the benchmark baseline). Minimal crossings (Concepts §7 (docs/concepts.md), Opus and Lawsen 2025,
arXiv:2506.09250): k=2: n=1..3 -> 1, 5, 11, none for n >= 4; k=3: n=1..5 -> 1, 3, 5, 9, 11, none
for n >= 6; k=4: n=1..7 -> 1, 1, 3, 5, 7, 9, 11.
"""

from __future__ import annotations

import itertools
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from memlens.puzzles.base import (
    IllegalMove,
    Solution,
    answer_request,
    check_size,
    strip_enumeration,
)

State = tuple[int, int, int]  # (actors on the left bank, agents on the left bank, boat side)
Move = tuple[int, int]  # (actors in the boat, agents in the boat) as bit masks

_NAME = re.compile(r"([aA])_?(\d+)")
_LINE_NAME = re.compile(r"['\"]?\b([aA])_(\d+)\b['\"]?")


def unsafe_member(actors: int, agents: int) -> int | None:
    """Index of an actor left with another agent but without its own (``None`` if safe)."""
    lonely = actors & ~agents
    if agents and lonely:
        return (lonely & -lonely).bit_length() - 1
    return None


def _names(mask: int, letter: str) -> list[str]:
    return [f"{letter}_{i + 1}" for i in range(mask.bit_length()) if mask >> i & 1]


@dataclass(frozen=True)
class River:
    """A River Crossing instance: ``n`` actor/agent pairs and a boat of capacity ``k``."""

    n: int
    k: int = 3
    name: str = "river"

    def __post_init__(self) -> None:
        check_size(self.n, "the number of pairs n", 1, 500)
        check_size(self.k, "the boat capacity k", 1, 1000)

    @property
    def full(self) -> int:
        return (1 << self.n) - 1

    def initial(self) -> State:
        return (self.full, self.full, 0)

    def is_goal(self, state: State) -> bool:
        return state[0] == 0 and state[1] == 0

    def coerce_move(self, obj: Any) -> Move:
        if isinstance(obj, str):
            obj = [t for t in re.split(r"[\s,;&+]+|\band\b", obj) if t]
        if not isinstance(obj, list | tuple):
            raise IllegalMove(
                f"malformed move {obj!r}: expected a list of names like ['A_1', 'a_1']"
            )
        actors = agents = 0
        for item in obj:
            m = _NAME.fullmatch(item.strip()) if isinstance(item, str) else None
            if m is None:
                raise IllegalMove(f"malformed move {obj!r}: {item!r} is not a name like a_1 or A_1")
            i = int(m.group(2))
            if not 1 <= i <= self.n:
                raise IllegalMove(f"{m.group(1)}_{i} does not exist (pairs are 1..{self.n})")
            bit = 1 << (i - 1)
            if m.group(1) == "a":
                if actors & bit:
                    raise IllegalMove(f"a_{i} is listed twice in the boat")
                actors |= bit
            else:
                if agents & bit:
                    raise IllegalMove(f"A_{i} is listed twice in the boat")
                agents |= bit
        return (actors, agents)

    def apply(self, state: State, move: Move, boat_rule: bool = True) -> State:
        """The state after ``move`` (``boat_rule=False`` only to show what omitting it allows)."""
        left_a, left_g, side = state
        actors, agents = move
        count = actors.bit_count() + agents.bit_count()
        if count == 0:
            raise IllegalMove("the boat cannot cross empty")
        if count > self.k:
            raise IllegalMove(f"{count} people in a boat of capacity {self.k}")
        here_a = left_a if side == 0 else self.full & ~left_a
        here_g = left_g if side == 0 else self.full & ~left_g
        bank = "left" if side == 0 else "right"
        missing = (actors & ~here_a, agents & ~here_g)
        if missing[0] or missing[1]:
            who = (_names(missing[1], "A") + _names(missing[0], "a"))[0]
            raise IllegalMove(f"{who} is not on the {bank} bank, where the boat is")
        if boat_rule:
            self._check(actors, agents, "in the boat")
        new_a = left_a & ~actors if side == 0 else left_a | actors
        new_g = left_g & ~agents if side == 0 else left_g | agents
        self._check(new_a, new_g, "on the left bank")
        self._check(self.full & ~new_a, self.full & ~new_g, "on the right bank")
        return (new_a, new_g, 1 - side)

    @staticmethod
    def _check(actors: int, agents: int, where: str) -> None:
        i = unsafe_member(actors, agents)
        if i is not None:
            j = (agents & -agents).bit_length() - 1
            raise IllegalMove(
                f"{where}, a_{i + 1} is with A_{j + 1} without its own agent A_{i + 1}"
            )

    # -- answers --------------------------------------------------------------------------
    def parse_line(self, line: str) -> list[str] | None:
        s = strip_enumeration(line)
        names = [f"{m.group(1)}_{m.group(2)}" for m in _LINE_NAME.finditer(s)]
        rest = _LINE_NAME.sub("", s)
        if not names or re.sub(r"[\s,;\[\]()&+]|\band\b", "", rest):
            return None
        return names

    def format_move(self, move: Any) -> str:
        return "[" + ", ".join(f'"{p}"' for p in move) + "]"

    def move_names(self, move: Move) -> list[str]:
        actors, agents = move
        out = []
        for i in range(self.n):
            if agents >> i & 1:
                out.append(f"A_{i + 1}")
            if actors >> i & 1:
                out.append(f"a_{i + 1}")
        return out

    # -- solvers --------------------------------------------------------------------------
    def solve(self, max_moves: int = 1 << 20) -> Solution:
        """Breadth-first search on pair-type counts (see the module docstring)."""
        path = _bfs_counts(self.n, self.k)
        if path is None:
            return Solution(False, None, None, "breadth-first search over pair-type counts")
        moves = self._concretize(path)
        return Solution(True, len(moves), moves, "breadth-first search over pair-type counts")

    def _concretize(self, path: list[tuple[int, int, int, int, int]]) -> list[list[str]]:
        state = self.initial()
        out = []
        for both, xa, xg, ya, yg in path:
            left_a, left_g, side = state
            here_a = left_a if side == 0 else self.full & ~left_a
            here_g = left_g if side == 0 else self.full & ~left_g
            pairs = range(self.n)
            same = [i for i in pairs if here_a >> i & 1 and here_g >> i & 1]
            actor_here = [i for i in pairs if here_a >> i & 1 and not here_g >> i & 1]
            agent_here = [i for i in pairs if here_g >> i & 1 and not here_a >> i & 1]
            actors = agents = 0
            for i in same[:both]:
                actors |= 1 << i
                agents |= 1 << i
            for i in same[both : both + xa]:
                actors |= 1 << i
            for i in same[both + xa : both + xa + xg]:
                agents |= 1 << i
            for i in actor_here[:ya]:
                actors |= 1 << i
            for i in agent_here[:yg]:
                agents |= 1 << i
            state = self.apply(state, (actors, agents))
            out.append(self.move_names((actors, agents)))
        return out

    def prompt(self, program: bool = False) -> str:
        n, k = self.n, self.k
        rules = (
            f"{n} actors (a_1 to a_{n}) and their {n} agents (A_1 to A_{n}) must cross a river in "
            f"a boat that holds at most {k} people. Everyone starts on the left bank and must end "
            "on the right bank.\n"
            "Rules: the boat cannot cross empty; no actor may be in the presence of another agent "
            "unless the actor's own agent is also present, and this applies on both banks and in "
            "the boat; everyone in the boat gets out when it lands.\n"
            'A move lists the people in the boat, for example ["A_1", "a_1"]; the boat starts '
            "on the left and each move crosses to the other side.\n"
        )
        return rules + answer_request(program, '[["A_1", "a_1"], ["A_1"], ...]')

    def to_dict(self) -> dict[str, Any]:
        return {"puzzle": self.name, "n": self.n, "k": self.k}


def _bfs_counts(n: int, k: int) -> list[tuple[int, int, int, int, int]] | None:
    """Shortest abstract path on (both-left, actor-left/agent-right, actor-right/agent-left,
    boat) counts; each step is (both, actor-only, agent-only from same-side pairs, lone actors,
    lone agents) moved. ``None`` when the goal is unreachable."""

    def safe(ll: int, lr: int, rl: int) -> bool:
        rr = n - ll - lr - rl
        left_ok = not ((ll + rl) > 0 and lr > 0)
        right_ok = not ((rr + lr) > 0 and rl > 0)
        return left_ok and right_ok

    start = (n, 0, 0, 0)
    goal_counts = (0, 0, 0)
    parent: dict[tuple[int, int, int, int], tuple[Any, Any]] = {start: (None, None)}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        ll, lr, rl, side = state
        if (ll, lr, rl) == goal_counts:
            path = []
            while parent[state][0] is not None:
                prev, step = parent[state]
                path.append(step)
                state = prev
            return path[::-1]
        rr = n - ll - lr - rl
        ss, so, os_ = (ll, lr, rl) if side == 0 else (rr, rl, lr)
        for both in range(min(ss, k // 2) + 1):
            for xa in range(min(ss - both, k - 2 * both) + 1):
                for xg in range(min(ss - both - xa, k - 2 * both - xa) + 1):
                    room = k - 2 * both - xa - xg
                    for ya in range(min(so, room) + 1):
                        for yg in range(min(os_, room - ya) + 1):
                            if 2 * both + xa + xg + ya + yg == 0:
                                continue
                            if (both + xg + yg) > 0 and (xa + ya) > 0:
                                continue  # the in-boat rule
                            nss = ss - both - xa - xg
                            noo = (n - ss - so - os_) + both + ya + yg
                            nso = so - ya + xg
                            nos = os_ - yg + xa
                            if side == 0:
                                nxt = (nss, nso, nos, 1)
                            else:
                                nxt = (noo, nos, nso, 0)
                            if nxt in parent or not safe(*nxt[:3]):
                                continue
                            parent[nxt] = (state, (both, xa, xg, ya, yg))
                            queue.append(nxt)
    return None


def solve_labeled(n: int, k: int) -> list[list[str]] | None:
    """Shortest solution by plain breadth-first search over labelled bank subsets.

    Exponential in ``n`` (a cross-check and the benchmark baseline for :meth:`River.solve`).
    """
    puzzle = River(n, k)
    people = [(1 << i, 0) for i in range(n)] + [(0, 1 << i) for i in range(n)]
    start = puzzle.initial()
    parent: dict[State, tuple[Any, Any]] = {start: (None, None)}
    queue = deque([start])
    while queue:
        state = queue.popleft()
        if puzzle.is_goal(state):
            path = []
            while parent[state][0] is not None:
                prev, move = parent[state]
                path.append(puzzle.move_names(move))
                state = prev
            return path[::-1]
        left_a, left_g, side = state
        here_a = left_a if side == 0 else puzzle.full & ~left_a
        here_g = left_g if side == 0 else puzzle.full & ~left_g
        present = [p for p in people if p[0] & here_a or p[1] & here_g]
        for size in range(1, min(k, len(present)) + 1):
            for group in itertools.combinations(present, size):
                move = (sum(p[0] for p in group), sum(p[1] for p in group))
                try:
                    nxt = puzzle.apply(state, move)
                except IllegalMove:
                    continue
                if nxt not in parent:
                    parent[nxt] = (state, move)
                    queue.append(nxt)
    return None
