"""River Crossing solver speed: breadth-first search over pair-type counts (memlens) against the
plain search over labelled bank subsets, on instances both can finish; plus the cost of the
sandbox's layers over a bare ``python -I -S`` subprocess.

Both River solvers must agree on the minimal length (asserted). Run:
``.venv/bin/python benchmarks/puzzles_speed.py``. Wall times on a shared machine are noisy;
each figure is the best of ``REPEATS`` runs.
"""

from __future__ import annotations

import subprocess
import sys
import time

from memlens.puzzles.river import River, solve_labeled
from memlens.puzzles.sandbox import run_python

REPEATS = 3
CASES = [(6, 3), (7, 4), (6, 5)]  # (n, k): unsolvable, solvable, solvable


def best(fn) -> tuple[float, object]:
    times, out = [], None
    for _ in range(REPEATS):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    print(
        f"{'instance':>14} {'labelled BFS':>13} {'pair-count BFS':>15} {'ratio':>8}  minimal length"
    )
    for n, k in CASES:
        t_naive, naive = best(lambda n=n, k=k: solve_labeled(n, k))
        t_fast, fast = best(lambda n=n, k=k: River(n, k).solve())
        length = None if naive is None else len(naive)
        assert length == fast.optimal_length, (n, k, length, fast.optimal_length)
        print(
            f"{f'n={n}, k={k}':>14} {t_naive:12.3f}s {t_fast:14.4f}s {t_naive / t_fast:7.0f}x  {length}"
        )
    t_big, big = best(lambda: River(200, 3).solve())
    print(f"{'n=200, k=3':>14} {'(infeasible)':>13} {t_big:14.4f}s {'':>8}  {big.optimal_length}")

    code = "print(sum(range(10)))"
    t_bare, _ = best(
        lambda: subprocess.run(
            [sys.executable, "-I", "-S", "-c", code], capture_output=True, check=True
        )
    )
    t_box, r = best(lambda: run_python(code))
    assert r.ok and r.stdout == "45\n"
    print(
        f"\nsandbox run {t_box * 1000:.0f} ms vs bare subprocess {t_bare * 1000:.0f} ms: {t_box / t_bare:.1f}x"
    )


if __name__ == "__main__":
    main()
