"""The grader catches every rule (with the 0-based index of the first illegal move and why), and
tells optimal, longer, truncated, refused, unsolvable-claimed and unparseable answers apart."""

from __future__ import annotations

import json

from memlens.puzzles import make_instance
from memlens.puzzles.blocks import Blocks
from memlens.puzzles.grade import grade_response, grade_text
from memlens.puzzles.parse import parse_moves

HANOI3 = [[1, 0, 2], [2, 0, 1], [1, 2, 1], [3, 0, 2], [1, 1, 0], [2, 1, 2], [1, 0, 2]]


def _grade(inst, moves, **kw):
    return grade_text(inst, "moves = " + json.dumps(moves), **kw)


def _illegal(inst, moves, index, *words):
    v = _grade(inst, moves)
    assert v.category == "illegal_move" and not v.correct, v
    assert v.first_illegal_move == index, v
    for w in words:
        assert w in v.reason, v.reason
    return v


# -- rules ------------------------------------------------------------------------------------


def test_moving_a_top_item_is_one_rule_with_each_puzzles_words():
    # Tower of Hanoi's disks on pegs and Blocks World's blocks on stacks share one rule
    # (memlens.puzzles.base.move_top); the full sentences, as the grader reports them
    import pytest

    from memlens.puzzles.base import IllegalMove

    h = make_instance("hanoi", 3)
    b = Blocks(n=2, stacks=3, start=(("A", "B"), (), ()), target=((), ("B", "A"), ()))
    cases = [
        (h, (1, 0, 3), "to_peg 3 does not exist (pegs are 0..2)"),
        (h, (1, 0, 0), "disk 1 moved from peg 0 to the same peg"),
        (h, (1, 1, 2), "peg 1 is empty, so disk 1 cannot move from it"),
        (h, (2, 0, 1), "disk 2 is not on top of peg 0 (the top disk there is 1)"),
        (b, ("B", 3, 1), "from_stack 3 does not exist (stacks are 0..2)"),
        (b, ("B", 1, 1), "block B moved from stack 1 to the same stack"),
        (b, ("B", 1, 2), "stack 1 is empty, so block B cannot move from it"),
        (b, ("A", 0, 1), "block A is not on top of stack 0 (the top block there is B)"),
    ]
    for puzzle, move, message in cases:
        with pytest.raises(IllegalMove) as exc:
            puzzle.apply(puzzle.initial(), move)
        assert str(exc.value) == message
    assert h.apply(h.initial(), (1, 0, 2)) == ((3, 2), (), (1,))
    assert b.apply(b.initial(), ("B", 0, 1)) == (("A",), ("B",), ())


def test_hanoi_rules():
    h = make_instance("hanoi", 3)
    _illegal(h, [[1, 0, 2], [2, 0, 2]], 1, "smaller disk 1")
    _illegal(h, [[2, 0, 1]], 0, "not on top of peg 0")
    _illegal(h, [[1, 1, 2]], 0, "peg 1 is empty")
    _illegal(h, [[1, 0, 3]], 0, "to_peg 3 does not exist")
    _illegal(h, [[1, 0, 0]], 0, "same peg")
    _illegal(h, [[4, 0, 1]], 0, "disk 4 does not exist")
    _illegal(h, [[1, 0]], 0, "malformed")
    # Pegs count from 0 and the goal is the LAST peg: ending on peg 1 is not solved.
    to_peg1 = [[1, 0, 1], [2, 0, 2], [1, 1, 2], [3, 0, 1], [1, 2, 0], [2, 2, 1], [1, 0, 1]]
    assert _grade(h, to_peg1).category == "incomplete"


def test_checkers_rules_including_backward_moves():
    c = make_instance("checkers", 2)  # R R _ B B
    _illegal(c, [["R", 1, 2], ["R", 2, 1]], 1, "backward move")  # red back to the left
    _illegal(c, [["R", 1, 2], ["B", 3, 1], ["B", 1, 3]], 2, "backward move")  # blue jumps right
    _illegal(c, [["R", 0, 2]], 0, "own colour")  # R jumps over R
    _illegal(c, [["R", 1, 3]], 0, "occupied")
    _illegal(c, [["B", 1, 2]], 0, "holds R")
    _illegal(c, [["R", 1, 2], ["B", 4, 1]], 1, "1 cell")  # three cells: too far (and occupied)
    _illegal(c, [["R", 1, 2], ["R", 0, 1], ["R", 2, 5]], 2, "off the board")
    _illegal(c, [["G", 1, 2]], 0, "colour must be")
    sol = c.solve().moves
    assert _grade(c, sol).category == "optimal"


def test_river_rules_including_the_in_boat_rule():
    r = make_instance("river", 2, k=3)
    # a_1 rides with A_2 but without A_1: forbidden in the boat itself.
    _illegal(r, [["a_1", "A_2", "a_2"]], 0, "in the boat", "a_1", "A_2")
    # Left behind: a_2 with A_1 without A_2 on the left bank.
    _illegal(r, [["A_2", "a_1"]], 0)
    v = _grade(r, [["A_2"]])
    assert v.first_illegal_move == 0 and "left bank" in v.reason
    # Arriving: a_1 meets A_2 on the right bank without A_1.
    _illegal(r, [["A_1", "a_1"], ["A_1"], ["A_2"]], 2)
    _illegal(r, [["A_1", "a_1"], ["A_1"], ["A_2", "a_2"]], 2, "right bank", "a_1 is with A_2")
    _illegal(r, [[]], 0, "empty")
    _illegal(r, [["A_1", "a_1", "A_2", "a_2"]], 0, "capacity 3")
    _illegal(r, [["A_1", "a_1"], ["A_2"]], 1, "not on the right bank")
    _illegal(r, [["A_1", "A_1"]], 0, "twice")
    _illegal(r, [["A_3"]], 0, "does not exist")
    _illegal(r, [["bob"]], 0, "malformed")
    ok = [["A_1", "a_1"], ["A_1"], ["A_1", "A_2", "a_2"]]
    assert _grade(r, ok).category == "optimal"


def test_blocks_rules():
    b = Blocks(3, 3, (("A", "B"), ("C",), ()), (("A",), ("C", "B"), ()))
    _illegal(b, [["A", 0, 1]], 0, "not on top of stack 0", "top block there is B")
    _illegal(b, [["B", 2, 1]], 0, "stack 2 is empty")
    _illegal(b, [["B", 0, 3]], 0, "does not exist")
    _illegal(b, [["B", 0, 0]], 0, "same stack")
    assert _grade(b, [["B", 0, 1]]).category == "optimal"
    assert _grade(b, [["B", 0, 2], ["B", 2, 1]]).category == "correct_longer"


# -- categories -------------------------------------------------------------------------------


def test_optimal_longer_incomplete():
    h = make_instance("hanoi", 3)
    assert _grade(h, HANOI3).category == "optimal"
    longer = [[1, 0, 1], [1, 1, 0]] + HANOI3
    v = _grade(h, longer)
    assert v.category == "correct_longer" and v.correct and v.n_moves == 9
    v = _grade(h, HANOI3[:4])
    assert v.category == "incomplete" and not v.correct and v.first_illegal_move is None


def test_truncation_refusal_and_elision():
    h = make_instance("hanoi", 3)
    cut = "moves = " + json.dumps(HANOI3)[:-8]  # the list never closes
    v = grade_text(h, cut)
    assert v.category == "truncated" and v.n_moves == 6  # "[1, 0" of the 7th is dropped
    bad_then_cut = "moves = [[1, 0, 2], [2, 0, 2], [1, 2"
    assert grade_text(h, bad_then_cut).category == "illegal_move"  # an illegal move decides
    closed_but_limit = "moves = " + json.dumps(HANOI3[:3])
    assert grade_text(h, closed_but_limit, finish_reason="length").category == "truncated"
    refusal = (
        "The pattern continues, but to avoid making this too long, I'll stop here.\n"
        "moves = [[1, 0, 2], [2, 0, 1], [1, 2, 1]]"
    )
    v = grade_text(h, refusal)
    assert v.category == "refusal" and not v.correct
    elided = "moves = [[1, 0, 2], [2, 0, 1], ..., [1, 0, 2]]"
    v = grade_text(h, elided)
    assert v.category == "refusal" and "index 2" in v.reason
    assert (
        grade_text(h, "Listing all 32767 moves is too long for this answer.").category == "refusal"
    )


def test_unsolvable_claims_are_correct_exactly_when_unsolvable():
    claim = "After checking every option, this puzzle has no solution: the boat is too small."
    v = grade_text(make_instance("river", 6, k=3), claim)
    assert v.category == "unsolvable_claimed" and v.correct and v.solvable is False
    v = grade_text(make_instance("river", 5, k=3), claim)
    assert v.category == "unsolvable_claimed" and not v.correct and "11 moves" in v.reason
    # Moves given for an unsolvable instance fail by the rules.
    v = _grade(make_instance("river", 6, k=3), [["A_1", "a_1"], ["A_1"]])
    assert not v.correct and v.category == "incomplete"
    # Restating a rule with "impossible" is not a claim.
    v = grade_text(make_instance("hanoi", 2), "It is impossible to put a disk on a smaller one.")
    assert v.category == "unparseable"


def test_answer_formats():
    h = make_instance("hanoi", 3)
    lines = "\n".join(f"{i + 1}. {d} {s} {t}" for i, (d, s, t) in enumerate(HANOI3))
    assert grade_text(h, "Here you go:\n" + lines).category == "optimal"
    words = "\n".join(f"Move disk {d} from peg {s} to peg {t}" for d, s, t in HANOI3)
    assert grade_text(h, words).category == "optimal"
    as_json = "Answer:\n```json\n" + json.dumps(HANOI3) + "\n```"
    assert grade_text(h, as_json).answer_format == "json"
    # A peg state printed along the way is not mistaken for the answer.
    with_state = "Start: [[3, 2, 1], [], []]\n" + json.dumps(HANOI3) + "\nEnd: [[], [], [3, 2, 1]]"
    assert grade_text(h, with_state).category == "optimal"
    # The last `moves =` wins; text in <think> is ignored.
    thinking = "<think>moves = [[1, 0, 1]]</think>\nmoves = " + json.dumps(HANOI3)
    assert grade_text(h, thinking).category == "optimal"
    # River names may be unquoted; checkers colours too.
    r = make_instance("river", 2, k=3)
    assert grade_text(r, "moves = [[A_1, a_1], [A_1], [A_1, A_2, a_2]]").category == "optimal"
    assert grade_text(r, "A_1, a_1\nA_1\nA_1, A_2, a_2").category == "optimal"
    c = make_instance("checkers", 1)
    assert grade_text(c, "moves = [[R, 0, 1], [B, 2, 0], [R, 1, 2]]").category == "optimal"


def test_two_separate_move_blocks_are_ambiguous():
    h = make_instance("hanoi", 2)
    text = "First try:\n1 0 1\n2 0 2\nHmm, or maybe:\n1 0 2\n2 0 1\n"
    p = parse_moves(h, text)
    assert p.moves is None and "2 separate blocks" in p.error
    assert grade_text(h, text).category == "unparseable"


def test_auto_mode_runs_a_program_only_when_the_text_has_no_moves():
    h = make_instance("hanoi", 2)
    prog = (
        "Too long to list, so here is a program:\n```python\n"
        "def h(n, a, b, c):\n    if n:\n        h(n - 1, a, c, b)\n        print([n, a, c])\n"
        "        h(n - 1, b, a, c)\nh(2, 0, 1, 2)\n```"
    )
    v = grade_response(h, prog)
    assert v.source == "program" and v.category == "optimal"
    listed = "```python\nmoves = [[1, 0, 1], [2, 0, 2], [1, 1, 2]]\n```"  # a list in a code block
    v = grade_response(h, listed)
    assert v.source == "text" and v.category == "optimal"
    assert grade_response(h, prog, program=False).category == "refusal"
