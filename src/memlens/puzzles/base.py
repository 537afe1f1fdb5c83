"""Shared types for the four reasoning puzzles.

Every puzzle is a frozen dataclass (the *instance*: its size knobs and, for Blocks World, its
seeded start and goal) with the same small set of methods, so the parser, the grader and the
command line treat all four alike:

``initial()``
    the start state (immutable, hashable).
``apply(state, move)``
    the next state, or :class:`IllegalMove` with the reason; the rules live here and only here.
``is_goal(state)``
    whether the puzzle is solved.
``coerce_move(obj)``
    turn a parsed literal (a list, tuple or tokens of one line) into a move, or raise
    :class:`IllegalMove` saying which shape was expected.
``parse_line(line)``
    one move written on one line, or ``None`` when the line is not a move.
``solve()``
    a :class:`Solution` (solvability, optimal length, one optimal move list).
``prompt(program)``
    the question for a model, in the answer format of Shojaee et al. (2025).

References
----------
Shojaee, Mirzadeh, Alizadeh, Horton, Bengio, Farajtabar (2025), "The Illusion of Thinking".
Opus and Lawsen (2025), "The Illusion of the Illusion of Thinking", arXiv:2506.09250.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from typing import Any, Protocol


class IllegalMove(Exception):
    """A move that breaks the rules (or is malformed); ``str(exc)`` says which rule and why."""


@dataclass(frozen=True)
class Solution:
    """What a solver knows about an instance.

    Attributes
    ----------
    solvable:
        ``True``/``False``; ``None`` only when a search gave up before deciding.
    optimal_length:
        Minimal number of moves (``None`` if unsolvable or unknown).
    moves:
        One solution as a list of moves (``None`` if unsolvable, or if it would exceed the
        ``max_moves`` the caller allowed; ``optimal_length`` is still reported then).
    method:
        How it was obtained (``"closed form"``, ``"breadth-first search"``, ``"A*"`` ...).
    note:
        Anything the user should know (conjectured optimality, a search limit hit).
    """

    solvable: bool | None
    optimal_length: int | None
    moves: list[Any] | None
    method: str
    note: str = ""
    lower_bound: int | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "solvable": self.solvable,
            "optimal_length": self.optimal_length,
            "method": self.method,
            "note": self.note,
            "solution": self.moves,
        }


class Puzzle(Protocol):
    """The interface the four puzzle instances share (see the module docstring)."""

    name: str
    n: int

    def initial(self) -> Any: ...
    def apply(self, state: Any, move: Any) -> Any: ...
    def is_goal(self, state: Any) -> bool: ...
    def coerce_move(self, obj: Any) -> Any: ...
    def parse_line(self, line: str) -> Any | None: ...
    def solve(self, max_moves: int = ...) -> Solution: ...
    def prompt(self, program: bool = False) -> str: ...
    def to_dict(self) -> dict[str, Any]: ...
    def format_move(self, move: Any) -> str: ...


# -- small helpers the puzzle modules share -------------------------------------------------

_ENUM_PREFIX = re.compile(r"^\s*(?:[-*•]\s*)?(?:(?:move|step)\s*)?(?:\d+\s*[.):]\s*)?", re.I)


def strip_enumeration(line: str) -> str:
    """Drop a leading bullet or ``3.`` / ``Move 3:`` / ``Step 3)`` enumeration from a line."""
    return _ENUM_PREFIX.sub("", line, count=1).strip().rstrip(",;").strip()


def literal(text: str) -> Any | None:
    """``ast.literal_eval`` of ``text`` (never executes code), or ``None`` if it is not a literal."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None


def as_int(x: Any, what: str) -> int:
    """An integer from an int or a string of digits (not a bool or a float)."""
    if isinstance(x, bool):
        raise IllegalMove(f"{what} must be an integer, got {x!r}")
    if isinstance(x, int):
        return x
    if isinstance(x, str) and re.fullmatch(r"\s*-?\d+\s*", x):
        return int(x)
    raise IllegalMove(f"{what} must be an integer, got {x!r}")


def move_top(
    state: tuple[tuple[Any, ...], ...],
    item: Any,
    src: int,
    dst: int,
    *,
    item_word: str,
    place_word: str,
) -> tuple[tuple[Any, ...], ...]:
    """The state after moving ``item`` from the top of pile ``src`` to the top of pile ``dst``
    (Tower of Hanoi's pegs, Blocks World's stacks), or :class:`IllegalMove` when a pile does not
    exist, the two are the same, ``src`` is empty or ``item`` is not its top. Each pile is a tuple
    from bottom to top; a puzzle checks what may be put where itself."""
    last = len(state) - 1
    for pile, end in ((src, "from"), (dst, "to")):
        if not 0 <= pile <= last:
            raise IllegalMove(
                f"{end}_{place_word} {pile} does not exist ({place_word}s are 0..{last})"
            )
    if src == dst:
        raise IllegalMove(
            f"{item_word} {item} moved from {place_word} {src} to the same {place_word}"
        )
    if not state[src]:
        raise IllegalMove(f"{place_word} {src} is empty, so {item_word} {item} cannot move from it")
    if state[src][-1] != item:
        raise IllegalMove(
            f"{item_word} {item} is not on top of {place_word} {src} (the top {item_word} there "
            f"is {state[src][-1]})"
        )
    new = list(state)
    new[src] = state[src][:-1]
    new[dst] = state[dst] + (item,)
    return tuple(new)


def check_size(value: int, name: str, low: int, high: int | None = None) -> int:
    """Validate a size knob; raise :class:`~memlens.errors.UserError` with one sentence."""
    from memlens.errors import UserError

    if isinstance(value, bool) or not isinstance(value, int):
        raise UserError(f"{name} must be an integer, got {value!r}.")
    if value < low or (high is not None and value > high):
        allowed = f"at least {low}" if high is None else f"between {low} and {high}"
        raise UserError(f"{name} must be {allowed}, got {value}.")
    return value


def answer_request(program: bool, shape: str) -> str:
    """The closing sentence of every prompt: a move list, or a program that prints one."""
    if program:
        return (
            "Write a Python program (standard library only, no input) that prints the complete "
            f"list of moves that solves it, either as `moves = {shape}` or one move per line. "
            "Give the program in a single ```python code block."
        )
    return (
        "Find the shortest sequence of moves that solves it. Give the complete list of moves as "
        f"`moves = {shape}`; if the puzzle cannot be solved, say that it has no solution."
    )
