"""Solvers against known answers: the River Crossing table (Concepts §7 (docs/concepts.md)), (n+1)^2 - 1 for Checker
Jumping, 2^n - 1 and the Frame-Stewart numbers for Hanoi, hand-derived Blocks World optima."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from memlens.errors import UserError
from memlens.puzzles import make_instance
from memlens.puzzles.blocks import Blocks, generate
from memlens.puzzles.checkers import Checkers
from memlens.puzzles.hanoi import Hanoi, frame_stewart
from memlens.puzzles.river import River, solve_labeled

# Concepts §7 (docs/concepts.md) (Opus and Lawsen 2025): minimal crossings, None = no solution.
RIVER_TABLE = {
    2: [1, 5, 11, None, None, None, None, None],
    3: [1, 3, 5, 9, 11, None, None, None, None, None, None, None],
    4: [1, 1, 3, 5, 7, 9, 11],
}


def _replay(inst, moves):
    state = inst.initial()
    for m in moves:
        state = inst.apply(state, inst.coerce_move(m))
    return state


@pytest.mark.parametrize("k", sorted(RIVER_TABLE))
def test_river_table(k):
    for n, want in enumerate(RIVER_TABLE[k], start=1):
        sol = River(n, k).solve()
        assert sol.optimal_length == want, (n, k)
        assert sol.solvable is (want is not None)
        if want is not None:  # the concrete solution obeys every rule and ends at the goal
            assert len(sol.moves) == want
            assert River(n, k).is_goal(_replay(River(n, k), sol.moves))


def test_river_unsolvable_far_beyond_the_table():
    # k=3 has no solution for any n >= 6; the pair-count search decides it for large n at once.
    for n in (6, 10, 25, 60):
        assert River(n, 3).solve().solvable is False
    assert River(3, 1).solve().solvable is False  # a one-seat boat can never bring it back


def test_river_two_independent_solvers_agree():
    for k, n_max in ((2, 5), (3, 6), (4, 5)):
        for n in range(1, n_max + 1):
            labeled = solve_labeled(n, k)
            fast = River(n, k).solve()
            assert (None if labeled is None else len(labeled)) == fast.optimal_length, (n, k)


def test_river_boat_rule_never_matters_for_minimal_lengths_but_is_reported_first():
    # Exhaustively: from every reachable state, a crossing that breaks the in-boat rule also leaves
    # an unsafe bank (everyone lands), and the grader names the boat as the first violation.
    from memlens.puzzles.base import IllegalMove

    for n, k in ((2, 3), (3, 3), (3, 4), (4, 5)):
        r = River(n, k)
        people = [(1 << i, 0) for i in range(n)] + [(0, 1 << i) for i in range(n)]
        seen, queue, boat_unsafe = {r.initial()}, deque([r.initial()]), 0
        while queue:
            state = queue.popleft()
            left_a, left_g, side = state
            here_a = left_a if side == 0 else r.full & ~left_a
            here_g = left_g if side == 0 else r.full & ~left_g
            present = [p for p in people if p[0] & here_a or p[1] & here_g]
            for size in range(1, min(k, len(present)) + 1):
                for group in itertools.combinations(present, size):
                    move = (sum(p[0] for p in group), sum(p[1] for p in group))
                    try:
                        nxt = r.apply(state, move)
                    except IllegalMove as exc:
                        if "in the boat" in str(exc):
                            boat_unsafe += 1
                            with pytest.raises(IllegalMove, match="bank"):
                                r.apply(state, move, boat_rule=False)
                        continue
                    if nxt not in seen:
                        seen.add(nxt)
                        queue.append(nxt)
        assert boat_unsafe > 0


def test_checkers_closed_form_matches_bfs():
    for n in range(1, 8):
        c = Checkers(n)
        assert c.optimal_length() == (n + 1) ** 2 - 1
        assert c.bfs_length() == (n + 1) ** 2 - 1
        sol = c.solve()
        assert len(sol.moves) == sol.optimal_length == (n + 1) ** 2 - 1
        assert c.is_goal(_replay(c, sol.moves))
    assert Checkers(40).solve().optimal_length == 41**2 - 1


def test_checkers_every_solution_has_the_optimal_length():
    # Forward-only moves: the move graph is acyclic and all goal paths are equally long.
    for n in range(1, 5):
        c = Checkers(n)
        lengths = {c.initial(): {0}}
        order = deque([c.initial()])
        while order:
            s = order.popleft()
            for _, t in c.successors(s):
                new = {d + 1 for d in lengths[s]}
                if t not in lengths:
                    lengths[t] = set()
                    order.append(t)
                lengths[t] |= new
        assert lengths[c.goal()] == {(n + 1) ** 2 - 1}


def test_hanoi_closed_form_and_bfs():
    for n in range(1, 11):
        assert Hanoi(n).solve().optimal_length == 2**n - 1
    for n in range(1, 7):
        assert Hanoi(n).bfs_length() == 2**n - 1
        sol = Hanoi(n).solve()
        assert Hanoi(n).is_goal(_replay(Hanoi(n), sol.moves))
    # The goal is the last peg and moves are [disk, from, to] from peg 0.
    assert Hanoi(1).solve().moves == [[1, 0, 2]]
    assert Hanoi(2).solve().moves == [[1, 0, 1], [2, 0, 2], [1, 1, 2]]


def test_hanoi_more_pegs_frame_stewart():
    # OEIS A007664 (4 pegs) and A007665 (5 pegs).
    assert [frame_stewart(n, 4) for n in range(1, 13)] == [
        1,
        3,
        5,
        9,
        13,
        17,
        25,
        33,
        41,
        49,
        65,
        81,
    ]
    assert [frame_stewart(n, 5) for n in range(1, 10)] == [1, 3, 5, 7, 11, 15, 19, 23, 27]
    for n in range(1, 6):
        h = Hanoi(n, 4)
        assert h.bfs_length() == frame_stewart(n, 4)
        sol = h.solve()
        assert len(sol.moves) == sol.optimal_length and h.is_goal(_replay(h, sol.moves))
    sol = Hanoi(7, 5).solve()
    assert "conjectured" in sol.note and Hanoi(7, 5).is_goal(_replay(Hanoi(7, 5), sol.moves))


def _blocks_bfs(b: Blocks):
    dist = {b.start: 0}
    queue = deque([b.start])
    while queue:
        s = queue.popleft()
        if s == b.target:
            return dist[s]
        for src in range(b.stacks):
            if not s[src]:
                continue
            for dst in range(b.stacks):
                if dst != src:
                    t = b.apply(s, (s[src][-1], src, dst))
                    if t not in dist:
                        dist[t] = dist[s] + 1
                        queue.append(t)
    return None


def test_blocks_hand_derived_reversal_needs_seven_moves():
    # Reversing A,B,C (C on top) on stack 0 with two empty stacks: each block moves twice at
    # least, and six is impossible (A's first move must bury B or C), so 7.
    b = Blocks(3, 3, (("A", "B", "C"), (), ()), (("C", "B", "A"), (), ()))
    sol = b.solve()
    assert sol.optimal_length == 7 == _blocks_bfs(b)
    assert b.is_goal(_replay(b, sol.moves))


def test_blocks_two_stacks_closed_form():
    ok = Blocks(3, 2, (("A", "B"), ("C",)), (("A",), ("C", "B")))
    assert ok.solve().optimal_length == 1 == _blocks_bfs(ok)
    swapped = Blocks(2, 2, (("A", "B"), ()), (("B", "A"), ()))
    assert swapped.solve().solvable is False and _blocks_bfs(swapped) is None
    one = Blocks(2, 1, (("A", "B"),), (("B", "A"),))
    assert one.solve().solvable is False


def test_blocks_astar_matches_bfs_and_constructive_is_valid():
    for n in range(2, 6):
        for seed in range(4):
            b = generate(n, 3, seed)
            sol = b.solve()
            assert sol.optimal_length == _blocks_bfs(b), (n, seed)
            assert b.lower_bound(b.start) <= sol.optimal_length
            assert b.is_goal(_replay(b, sol.moves))
            assert b.is_goal(_replay(b, b.constructive()))
    for seed in range(3):  # two-stack random instances agree with exhaustive search too
        b = generate(4, 2, seed)
        sol = b.solve()
        assert sol.optimal_length == _blocks_bfs(b)


def test_blocks_past_the_search_limit_gives_a_valid_unproven_solution():
    b = generate(12, 3, 0)
    sol = b.solve(node_limit=50)
    assert sol.optimal_length is None and sol.solvable is True
    # the bound reported is the admissible heuristic of the start state, which no solution beats
    assert sol.lower_bound == b.lower_bound(b.start) and len(sol.moves) >= sol.lower_bound
    assert b.is_goal(_replay(b, sol.moves))


def test_generators_are_seeded_and_validate_sizes():
    assert generate(6, 3, 5) == generate(6, 3, 5)
    assert generate(6, 3, 5) != generate(6, 3, 6)
    assert make_instance("hanoi", 4).to_dict() == {"puzzle": "hanoi", "n": 4, "pegs": 3}
    with pytest.raises(UserError, match="n must be"):
        make_instance("checkers", 0)
    with pytest.raises(UserError, match="only to the river"):
        make_instance("hanoi", 3, k=2)
    with pytest.raises(UserError, match="unknown puzzle"):
        make_instance("sudoku", 3)
