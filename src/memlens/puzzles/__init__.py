"""Reasoning puzzles as an evaluation, done right (Concepts §7 (docs/concepts.md)).

Four puzzles with exact rules and solvers -- :mod:`~memlens.puzzles.hanoi`,
:mod:`~memlens.puzzles.checkers`, :mod:`~memlens.puzzles.river`, :mod:`~memlens.puzzles.blocks` --
a tolerant but unambiguous answer parser (:mod:`~memlens.puzzles.parse`), a grader that tells an
illegal move from a truncated, refused, unsolvable or program answer
(:mod:`~memlens.puzzles.grade`), a sandbox for program answers
(:mod:`~memlens.puzzles.sandbox`) and output-token budgets (:mod:`~memlens.puzzles.budget`).

Example
-------
>>> from memlens.puzzles import make_instance
>>> make_instance("river", 6, k=3).solve().solvable
False
>>> make_instance("hanoi", 10).solve().optimal_length
1023

References: Shojaee et al. (2025), "The Illusion of Thinking"; Opus and Lawsen (2025), "The
Illusion of the Illusion of Thinking", arXiv:2506.09250.
"""

from __future__ import annotations

from typing import Any

from memlens.errors import UserError
from memlens.puzzles.base import IllegalMove, Puzzle, Solution

PUZZLES = ("hanoi", "checkers", "river", "blocks")

__all__ = ["PUZZLES", "IllegalMove", "Puzzle", "Solution", "from_spec", "make_instance"]


def make_instance(
    puzzle: str,
    n: int,
    *,
    k: int | None = None,
    pegs: int | None = None,
    stacks: int | None = None,
    seed: int = 0,
) -> Puzzle:
    """Build an instance of ``puzzle`` with size ``n`` and its knobs.

    Parameters
    ----------
    puzzle:
        ``"hanoi"``, ``"checkers"``, ``"river"`` or ``"blocks"``.
    n:
        Disks, checkers per colour, actor/agent pairs, or blocks.
    k:
        River Crossing boat capacity (default 3).
    pegs:
        Tower of Hanoi pegs (default 3).
    stacks:
        Blocks World stacks (default 3).
    seed:
        Seeds the Blocks World start and goal; the other three puzzles are fixed by their size.
    """
    from memlens.puzzles import blocks, checkers, hanoi, river

    name = str(puzzle).strip().lower()
    if name not in PUZZLES:
        raise UserError(f"unknown puzzle {puzzle!r}; choose one of {', '.join(PUZZLES)}.")
    knobs = {"k": ("river", k), "pegs": ("hanoi", pegs), "stacks": ("blocks", stacks)}
    for knob, (owner, value) in knobs.items():
        if value is not None and name != owner:
            raise UserError(f"--{knob} applies only to the {owner} puzzle, not {name}.")
    if name == "hanoi":
        return hanoi.Hanoi(n, 3 if pegs is None else pegs)
    if name == "checkers":
        return checkers.Checkers(n)
    if name == "river":
        return river.River(n, 3 if k is None else k)
    return blocks.generate(n, 3 if stacks is None else stacks, seed)


def from_spec(spec: dict[str, Any]) -> Puzzle:
    """An instance from a JSON record: ``{"puzzle", "n", "k"/"pegs"/"stacks", "seed"}``.

    Blocks World records may carry an explicit ``"start"`` and ``"goal"`` (as written by
    ``to_dict``), which then take precedence over the seed.
    """
    from memlens.puzzles import blocks

    if not isinstance(spec, dict) or "puzzle" not in spec or "n" not in spec:
        raise UserError("each item needs at least a 'puzzle' and an 'n' field.")
    name = str(spec["puzzle"]).strip().lower()
    n = spec["n"]
    if isinstance(n, str) and n.strip().isdigit():
        n = int(n)
    if name == "blocks" and spec.get("start") is not None and spec.get("goal") is not None:
        try:
            return blocks.from_dict({**spec, "n": n})
        except (TypeError, ValueError, KeyError) as exc:
            if isinstance(exc, UserError):
                raise
            raise UserError(f"the blocks start/goal in the item are malformed: {exc}.") from None
    return make_instance(
        name,
        n,
        k=spec.get("k"),
        pegs=spec.get("pegs"),
        stacks=spec.get("stacks"),
        seed=int(spec.get("seed") or 0),
    )
