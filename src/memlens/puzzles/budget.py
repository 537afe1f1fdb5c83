"""Output-token budgets: which instances can a model answer in full at all?

A complete answer of ``L`` moves at ``t`` tokens per move needs about ``L * t`` tokens (plus a
fixed overhead). Tower of Hanoi with ``n = 15`` has ``2**15 - 1 = 32,767`` moves, over 300k tokens
at about 10 tokens a move -- beyond the output limits of the models in Shojaee et al. (2025), so
their "collapse" there says nothing about reasoning (Opus and Lawsen 2025, arXiv:2506.09250;
Concepts §7 (docs/concepts.md)). :func:`largest_n` gives the largest size whose full move list fits a budget;
:func:`over_budget` flags an item whose expected answer does not fit.

Units: tokens. ``tokens_per_move`` defaults to 10 (the rebuttal's estimate); measure it for a
real tokenizer with :func:`measure_tokens_per_move`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from memlens.errors import UserError

DEFAULT_TOKENS_PER_MOVE = 10.0


@dataclass(frozen=True)
class BudgetAnswer:
    """Largest size whose full answer fits, and what it and the next size cost.

    ``largest_n`` is 0 when even ``n = 1`` does not fit; ``next_tokens`` is ``None`` when the next
    size has no solution (River Crossing) or lies beyond the search range.
    """

    puzzle: str
    budget_tokens: int
    tokens_per_move: float
    overhead_tokens: int
    largest_n: int
    moves: int | None
    tokens: float | None
    next_tokens: float | None
    note: str = ""


def answer_tokens(n_moves: int, tokens_per_move: float, overhead_tokens: int = 0) -> float:
    """Tokens a full answer of ``n_moves`` moves takes: ``n_moves * tokens_per_move + overhead``."""
    return n_moves * tokens_per_move + overhead_tokens


def over_budget(
    optimal_length: int | None, budget_tokens: int, tokens_per_move: float, overhead_tokens: int = 0
) -> bool:
    """Whether the minimal full answer exceeds the budget (``False`` when there is no solution:
    the expected answer is then a short statement)."""
    if optimal_length is None:
        return False
    return answer_tokens(optimal_length, tokens_per_move, overhead_tokens) > budget_tokens


def _check(budget_tokens: int, tokens_per_move: float, overhead_tokens: int) -> None:
    if budget_tokens < 1:
        raise UserError(f"the token budget must be at least 1, got {budget_tokens}.")
    if not tokens_per_move > 0:
        raise UserError(f"tokens per move must be positive, got {tokens_per_move}.")
    if overhead_tokens < 0:
        raise UserError(f"the overhead must be zero or more tokens, got {overhead_tokens}.")


def largest_n(
    puzzle: str,
    budget_tokens: int,
    tokens_per_move: float = DEFAULT_TOKENS_PER_MOVE,
    overhead_tokens: int = 0,
    *,
    k: int | None = None,
    pegs: int | None = None,
    n_max: int | None = None,
) -> BudgetAnswer:
    """The largest ``n`` whose complete optimal move list fits in ``budget_tokens``.

    Minimal lengths are monotone in ``n`` for Hanoi (``2**n - 1`` with 3 pegs), Checker Jumping
    (``(n + 1)**2 - 1``) and River Crossing, so the search walks up from ``n = 1`` to ``n_max``
    (default 64, 200 and 40); for River Crossing it also stops at the first unsolvable size
    (with ``k = 3`` none beyond 5 exists, so larger ones never need an answer longer than a
    sentence). Blocks World lengths depend on the
    seeded instance, so use :func:`over_budget` per item there.

    Examples
    --------
    >>> largest_n("hanoi", 64_000, 10).largest_n  # 4,095 moves fit, 8,191 do not
    12
    """
    from memlens.puzzles import make_instance

    _check(budget_tokens, tokens_per_move, overhead_tokens)
    name = str(puzzle).lower()
    if name == "blocks":
        raise UserError(
            "Blocks World answer lengths depend on the seeded instance; flag items one by one instead."
        )
    if n_max is None:
        n_max = {"hanoi": 64, "checkers": 200, "river": 40}.get(name, 1)
    best: tuple[int, int | None, float | None] = (0, None, None)
    nxt: float | None = None
    note = ""
    for n in range(1, n_max + 1):
        inst = make_instance(name, n, k=k, pegs=pegs)
        length = (
            inst.optimal_length() if name != "river" else inst.solve(max_moves=0).optimal_length
        )
        if length is None:
            note = f"n = {n} and beyond have no solution"
            break
        cost = answer_tokens(length, tokens_per_move, overhead_tokens)
        if cost > budget_tokens:
            nxt = cost
            break
        best = (n, length, cost)
    else:
        note = f"every n up to {n_max} fits"
    return BudgetAnswer(
        name, budget_tokens, tokens_per_move, overhead_tokens, best[0], best[1], best[2], nxt, note
    )


def measure_tokens_per_move(instance, count_tokens: Callable[[str], int]) -> float:
    """Tokens per move of ``instance``'s optimal answer written as ``moves = [...]``.

    ``count_tokens`` maps text to its token count (e.g. ``lambda s: len(tok.encode(s))`` for a
    Hugging Face tokenizer). The fixed ``moves = [`` ... ``]`` is subtracted.
    """
    sol = instance.solve()
    if not sol.moves:
        raise UserError("the instance has no solution to measure tokens per move on.")
    body = ", ".join(instance.format_move(m) for m in sol.moves)
    total = count_tokens(f"moves = [{body}]")
    frame = count_tokens("moves = []")
    return (total - frame) / len(sol.moves)
