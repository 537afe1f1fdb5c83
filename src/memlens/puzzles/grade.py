"""Grading: replay an answer with the exact simulator and say what kind of answer it is.

The published "collapse" of reasoning models on these puzzles mixed up different things
(Opus and Lawsen 2025, arXiv:2506.09250; Concepts §7 (docs/concepts.md)). A grade separates them:

=====================  =====================================================================
category               meaning
=====================  =====================================================================
``optimal``            solves the instance in the minimal number of moves
``correct_longer``     solves it, with more moves than the minimum
``correct``            solves it; the minimum is unknown (large Blocks World instances)
``illegal_move``       a move breaks a rule; ``first_illegal_move`` is its 0-based index
``incomplete``         every move is legal but the puzzle is not solved
``truncated``          the move list was cut off (never closed, or the generation hit its
                       length limit) and every move before the cut is legal
``refusal``            no complete list, and the response says it will not enumerate the moves
                       (or elides them with ``...``)
``unsolvable_claimed`` the response says there is no solution; correct exactly when the
                       instance is unsolvable
``unparseable``        no move list could be found unambiguously
``program_failed``     a program answer crashed, hit a limit or tried a blocked operation
=====================  =====================================================================

``source`` says whether the moves came from the response text or from running the program in
it (in the :mod:`~memlens.puzzles.sandbox`); program output is graded exactly like text.
Precedence: an illegal move decides; then a solved list; then truncation; then a claim of no
solution; then a refusal; then incomplete.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from typing import Any

from memlens.puzzles.base import IllegalMove, Puzzle, Solution
from memlens.puzzles.parse import Parsed, extract_program, parse_moves, strip_code

#: Every category a grade can have, in the order of the table above.
CATEGORIES = (
    "optimal",
    "correct_longer",
    "correct",
    "illegal_move",
    "incomplete",
    "truncated",
    "refusal",
    "unsolvable_claimed",
    "unparseable",
    "program_failed",
)


@dataclass
class Verdict:
    """The grade of one answer (see the module docstring for the categories)."""

    correct: bool
    category: str
    first_illegal_move: int | None
    reason: str
    n_moves: int
    optimal_length: int | None
    solvable: bool | None
    source: str = "text"
    answer_format: str = "none"
    program: dict[str, Any] | None = field(default=None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Replay:
    """Result of replaying a move list from the start state."""

    legal_moves: int
    first_illegal: int | None
    reason: str
    solved: bool
    elided_at: int | None


def replay(puzzle: Puzzle, moves: list[Any]) -> Replay:
    """Apply ``moves`` in order with the puzzle's rules; stop at the first illegal one.

    A ``...`` placeholder stops the replay too (``elided_at``), since what it stands for is not
    an answer.
    """
    state = puzzle.initial()
    for i, raw in enumerate(moves):
        if raw is Ellipsis:
            return Replay(i, None, f"moves elided with '...' at index {i}", False, i)
        try:
            state = puzzle.apply(state, puzzle.coerce_move(raw))
        except IllegalMove as exc:
            return Replay(i, i, f"move {i} {_show(raw)}: {exc}", False, None)
    return Replay(len(moves), None, "", puzzle.is_goal(state), None)


def _show(raw: Any) -> str:
    text = repr(list(raw)) if isinstance(raw, tuple) else repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def grade_text(
    puzzle: Puzzle,
    text: str,
    solution: Solution | None = None,
    *,
    finish_reason: str | None = None,
    source: str = "text",
) -> Verdict:
    """Grade a response whose answer is a move list in ``text``.

    Parameters
    ----------
    puzzle:
        The instance (from :func:`memlens.puzzles.make_instance`).
    text:
        The response (or a program's standard output).
    solution:
        ``puzzle.solve()`` if already computed.
    finish_reason:
        ``"length"`` when the generation stopped at its token limit (as reported by the API or
        ``generate``): an unsolved answer is then ``truncated``.
    """
    sol = solution or puzzle.solve(max_moves=0)
    parsed = parse_moves(puzzle, text)
    base = {
        "optimal_length": sol.optimal_length,
        "solvable": sol.solvable,
        "source": source,
        "answer_format": parsed.fmt,
    }
    hit_limit = finish_reason == "length"

    def verdict(
        correct: bool, category: str, reason: str, n: int, first: int | None = None
    ) -> Verdict:
        return Verdict(correct, category, first, reason, n, **base)

    if parsed.moves is None:
        n = 0
        if parsed.claims_unsolvable:
            return _claim(sol, verdict, n)
        if parsed.refuses:
            return verdict(False, "refusal", "states it will not list the moves", n)
        if parsed.truncated or hit_limit:
            return verdict(
                False, "truncated", parsed.error or "output stopped at the length limit", n
            )
        return verdict(False, "unparseable", parsed.error or "no move list found", n)

    r = replay(puzzle, parsed.moves)
    n = len(parsed.moves)
    if r.first_illegal is not None:
        return verdict(False, "illegal_move", r.reason, n, r.first_illegal)
    if r.elided_at is not None:
        return verdict(False, "refusal", r.reason, n)
    if r.solved and not parsed.truncated:
        return _solved(sol, verdict, n)
    if parsed.truncated or hit_limit:
        why = (
            "the move list is cut off"
            if parsed.truncated
            else "generation stopped at the length limit"
        )
        return verdict(False, "truncated", f"{why} after {r.legal_moves} legal moves", n)
    if parsed.claims_unsolvable:
        return _claim(sol, verdict, n)
    if parsed.refuses:
        return verdict(
            False, "refusal", f"stops after {n} legal moves and says it will not list the rest", n
        )
    return verdict(False, "incomplete", f"all {n} moves are legal but the puzzle is not solved", n)


def _solved(sol: Solution, verdict: Any, n: int) -> Verdict:
    if sol.optimal_length is not None:
        if n < sol.optimal_length:  # pragma: no cover - would mean a solver bug
            raise AssertionError(
                f"a {n}-move solution beats the claimed optimum {sol.optimal_length}"
            )
        if n == sol.optimal_length:
            return verdict(True, "optimal", f"solved in the minimal {n} moves", n)
        return verdict(
            True, "correct_longer", f"solved in {n} moves; the minimum is {sol.optimal_length}", n
        )
    if sol.lower_bound is not None and n == sol.lower_bound:
        return verdict(True, "optimal", f"solved in {n} moves, equal to a proven lower bound", n)
    return verdict(True, "correct", f"solved in {n} moves (the minimum is not known)", n)


def _claim(sol: Solution, verdict: Any, n: int) -> Verdict:
    if sol.solvable is False:
        return verdict(True, "unsolvable_claimed", "correctly says the instance has no solution", n)
    length = f" (it takes {sol.optimal_length} moves)" if sol.optimal_length is not None else ""
    return verdict(
        False, "unsolvable_claimed", f"says there is no solution, but there is one{length}", n
    )


def grade_program(
    puzzle: Puzzle,
    code: str,
    solution: Solution | None = None,
    *,
    language: str = "python",
    limits: Any = None,
) -> Verdict:
    """Run a program answer in the sandbox and grade what it prints like a move list."""
    from memlens.puzzles import sandbox

    sol = solution or puzzle.solve(max_moves=0)
    failed = {
        "optimal_length": sol.optimal_length,
        "solvable": sol.solvable,
        "source": "program",
        "answer_format": "program",
    }
    if language != "python":
        return Verdict(
            False,
            "program_failed",
            None,
            f"{language} programs are not supported (Python only)",
            0,
            **failed,
        )
    try:
        result = sandbox.run_python(code, limits)
    except (OSError, subprocess.SubprocessError) as exc:
        reason = f"the sandbox could not start the program: {exc}"
        return Verdict(False, "program_failed", None, reason, 0, **failed)
    info = result.summary()
    if not result.ok:
        return Verdict(
            False,
            "program_failed",
            None,
            f"{result.status}: {result.detail}",
            0,
            program=info,
            **failed,
        )
    v = grade_text(puzzle, result.stdout, sol, source="program")
    v.program = info
    return v


def grade_response(
    puzzle: Puzzle,
    response: str,
    solution: Solution | None = None,
    *,
    program: bool | None = None,
    finish_reason: str | None = None,
    limits: Any = None,
) -> Verdict:
    """Grade any response: as a program (``program=True``), as text (``False``), or decide
    (``None``, the default).

    Deciding: when the response holds a program that prints (a fenced ``python`` block, or the
    only untagged block, containing ``print``) and its prose outside code blocks has no move
    list, the program is run; otherwise the text is graded (so a list written inside a code
    block still counts as a written answer). With ``program=True`` and no code fence, the whole
    response is the program.
    """
    sol = solution or puzzle.solve(max_moves=0)
    found = extract_program(response)
    if program is True:
        language, code = found if found else ("python", response)
        return grade_program(puzzle, code, sol, language=language, limits=limits)
    if program is None and found is not None and "print" in found[1]:
        if parse_moves(puzzle, strip_code(response)).moves is None:
            return grade_program(puzzle, found[1], sol, language=found[0], limits=limits)
    return grade_text(puzzle, response, sol, finish_reason=finish_reason)


__all__ = [
    "CATEGORIES",
    "Parsed",
    "Replay",
    "Verdict",
    "grade_program",
    "grade_response",
    "grade_text",
    "replay",
]
