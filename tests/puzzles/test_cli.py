"""The `memlens puzzles` commands end to end: real output, run directories, bad input -> exit 2."""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys

import pandas as pd
import pytest

from memlens.puzzles import make_instance
from memlens.puzzles.budget import largest_n, measure_tokens_per_move, over_budget
from memlens.puzzles.recipe import parse_sizes


def memlens(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the real entry point (``memlens.cli.main``) in-process; exit code and streams as a
    subprocess would give them (one test below also runs a real subprocess)."""
    from memlens.cli import main

    out, err = io.StringIO(), io.StringIO()
    old = sys.argv, sys.stdin
    sys.argv, sys.stdin = ["memlens", *args], io.StringIO(stdin or "")
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv, sys.stdin = old
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_real_subprocess_exit_code_and_message():
    r = subprocess.run(
        [sys.executable, "-m", "memlens.cli", "puzzles", "solve", "hanoi", "--n", "99"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (
        r.returncode == 2
        and r.stderr.strip() == "error: the number of disks n must be between 1 and 64, got 99."
    )


def test_solve_json_and_unsolvable():
    r = memlens("puzzles", "solve", "river", "--n", "3", "--k", "2", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["solvable"] is True and out["optimal_length"] == 11 and len(out["solution"]) == 11
    r = memlens("puzzles", "solve", "river", "--n", "4", "--k", "2", "--json")
    assert json.loads(r.stdout)["solvable"] is False
    r = memlens("puzzles", "solve", "checkers", "--n", "4")
    assert "optimal_length: 24" in r.stdout


def test_grade_from_file_and_stdin(tmp_path):
    answer = tmp_path / "a.txt"
    answer.write_text(
        "moves = [[1, 0, 2], [2, 0, 1], [1, 2, 1], [3, 0, 2], [1, 1, 0], [2, 1, 2], [1, 2, 0]]"
    )
    r = memlens(
        "puzzles", "grade", "--puzzle", "hanoi", "--n", "3", "--answer", str(answer), "--json"
    )
    v = json.loads(r.stdout)
    assert (
        v["correct"] is False and v["category"] == "illegal_move" and v["first_illegal_move"] == 6
    )
    r = memlens(
        "puzzles", "grade", "--puzzle", "river", "--n", "6", "--k", "3", "--answer", "-", "--out", str(tmp_path / "g"),
        stdin="This instance is unsolvable.",
    )  # fmt: skip
    assert (
        r.returncode == 0
        and "unsolvable_claimed" in r.stdout
        and "correct:            True" in r.stdout
    )
    assert (tmp_path / "g" / "manifest.json").exists() and (tmp_path / "g" / "grade.json").exists()


def test_grade_program_flag(tmp_path):
    prog = tmp_path / "p.py"
    prog.write_text("for m in [[1, 0, 1], [2, 0, 2], [1, 1, 2]]:\n    print(m)\n")
    r = memlens(
        "puzzles",
        "grade",
        "--puzzle",
        "hanoi",
        "--n",
        "2",
        "--answer",
        str(prog),
        "--program",
        "--json",
    )
    v = json.loads(r.stdout)
    assert v["category"] == "optimal" and v["source"] == "program"


@pytest.mark.parametrize(
    "args, words",
    [
        (["puzzles", "solve", "hanoi", "--n", "3", "--k", "2"], "--k applies only"),
        (["puzzles", "solve", "tetris", "--n", "3"], "unknown puzzle"),
        (["puzzles", "solve", "river", "--n", "0"], "between 1 and"),
        (
            ["puzzles", "grade", "--puzzle", "hanoi", "--n", "3", "--answer", "/no/such/file"],
            "does not exist",
        ),
        (["puzzles", "make", "--puzzle", "hanoi", "--sizes", "5-2"], "runs backwards"),
        (["puzzles", "eval", "/no/such.jsonl"], "does not exist"),
        (
            ["puzzles", "budget", "--puzzle", "blocks", "--tokens", "1000"],
            "depend on the seeded instance",
        ),
        (["puzzles", "budget", "--puzzle", "hanoi", "--tokens", "0"], "at least 1"),
    ],
)
def test_bad_input_is_one_sentence_and_exit_2(args, words):
    r = memlens(*args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert words in r.stderr and "Traceback" not in r.stderr


def test_make_then_eval(tmp_path):
    prompts = tmp_path / "prompts"
    r = memlens(
        "puzzles", "make", "--puzzle", "river", "--k", "3", "--sizes", "4-7", "--out", str(prompts)
    )
    assert r.returncode == 0, r.stderr
    items = [json.loads(line) for line in (prompts / "prompts.jsonl").read_text().splitlines()]
    assert [i["n"] for i in items] == [4, 5, 6, 7]
    assert [i["solvable"] for i in items] == [True, True, False, False]
    assert "in the boat" in items[0]["prompt"] and (prompts / "manifest.json").exists()

    sol5 = make_instance("river", 5, k=3).solve().moves
    responses = [
        {**items[0], "response": 'moves = [["A_1", "a_1"], ["A_1"]]'},  # incomplete
        {**items[1], "response": "moves = " + json.dumps(sol5)},  # optimal
        {**items[2], "response": "There is no solution for six pairs with a boat of three."},
        {**items[3], "response": 'moves = [["a_1", "A_2", "a_2"]]'},  # breaks the in-boat rule
        {
            "puzzle": "hanoi",
            "n": 16,
            "response": "moves = [[1, 0, 1], [2, 0, 2], [1, 1, 2], [3, 0, 1]",
        },
        {"puzzle": "hanoi", "n": 3, "program": True, "response": "import sys\nsys.exit(3)"},
    ]
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in responses))
    out = tmp_path / "eval"
    r = memlens("puzzles", "eval", str(path), "--out", str(out), "--budget-tokens", "64000")
    assert r.returncode == 0, r.stderr
    grades = pd.read_csv(out / "grades.csv")
    assert list(grades["category"]) == [
        "incomplete", "optimal", "unsolvable_claimed", "illegal_move", "truncated", "program_failed",
    ]  # fmt: skip
    assert list(grades["correct"]) == [False, True, True, False, False, False]
    assert "in the boat" in grades["reason"][3]
    assert list(grades["over_budget"]) == [False, False, False, False, True, False]  # 65,535 moves
    summary = json.loads((out / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(2 / 6)
    assert summary["accuracy_within_budget"] == pytest.approx(2 / 5)
    assert summary["largest_n_within_budget"]["hanoi pegs=3"]["largest_n"] == 12
    assert summary["largest_n_within_budget"]["river k=3"]["largest_n"] == 5
    for name in ("manifest.json", "accuracy_by_size.csv", "accuracy_by_size.png", "grades.jsonl"):
        assert (out / name).exists(), name
    # Rerunning the same command resumes from the stored cells.
    again = memlens("puzzles", "eval", str(path), "--out", str(out), "--budget-tokens", "64000")
    assert again.returncode == 0 and again.stdout.splitlines()[0] == r.stdout.splitlines()[0]
    assert "reused 6 of 6 graded items from an earlier run" in again.stdout
    assert "reused" not in r.stdout


def test_eval_rejects_bad_records(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"puzzle": "hanoi", "n": 3}\n')
    r = memlens("puzzles", "eval", str(bad), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "needs a 'response' field" in r.stderr
    assert not (tmp_path / "o" / "grades.csv").exists()
    bad.write_text("not json\n")
    r = memlens("puzzles", "eval", str(bad), "--out", str(tmp_path / "o2"))
    assert r.returncode == 2 and "line 1" in r.stderr


def test_budget_known_answers():
    # 64,000 tokens at 10 a move: Hanoi 2^12 - 1 = 4,095 moves fit, 8,191 do not.
    assert largest_n("hanoi", 64_000, 10).largest_n == 12
    # Checkers: 80^2 - 1 = 6,399 moves -> 63,990 tokens fit; 81^2 - 1 = 6,560 do not.
    a = largest_n("checkers", 64_000, 10)
    assert (a.largest_n, a.moves, a.next_tokens) == (79, 6399, 65_600)
    # River, k=3: everything solvable fits; n = 6 has no solution at all.
    a = largest_n("river", 64_000, 10, k=3)
    assert a.largest_n == 5 and "no solution" in a.note
    # 2^15 - 1 moves at 10 tokens a move is over 300k tokens (Concepts §7 (docs/concepts.md)).
    assert over_budget(2**15 - 1, 300_000, 10) and not over_budget(None, 1, 10)
    r = memlens("puzzles", "budget", "--puzzle", "hanoi", "--tokens", "64000", "--json")
    assert json.loads(r.stdout)["largest_n"] == 12


def test_measure_tokens_per_move_with_a_known_tokenizer():
    # Whitespace "tokenizer": "moves = [[1, 0, 2], ..., [1, 0, 2]]" is 2 + 3 * 7 words and
    # "moves = []" is 3, so (23 - 3) / 7 per move.
    words = measure_tokens_per_move(make_instance("hanoi", 3), lambda s: len(s.split()))
    assert words == pytest.approx(20 / 7)


def test_parse_sizes():
    assert parse_sizes("1-3,7") == [1, 2, 3, 7]


def test_docstring_examples_run():
    import doctest

    import memlens.puzzles as pkg
    from memlens.puzzles import budget, sandbox

    for mod in (pkg, budget, sandbox):
        result = doctest.testmod(mod)
        assert result.attempted > 0 and result.failed == 0, mod.__name__


def test_eval_from_python_names_the_reused_items(tmp_path):
    """``run(EvalConfig(...), out)`` twice on the same ``out``: the rerun grades nothing again and
    its result names every stored item in ``reused`` (it was always empty)."""
    from memlens.puzzles.recipe import EvalConfig, MakeConfig, run

    made = run(MakeConfig(puzzle="hanoi", sizes="1-3"), tmp_path / "prompts")
    items = [json.loads(line) for line in open(made.summary.prompts)]
    path = tmp_path / "responses.jsonl"
    path.write_text("".join(json.dumps({**i, "response": "no idea"}) + "\n" for i in items))
    first = run(EvalConfig(responses=str(path)), tmp_path / "eval")
    again = run(EvalConfig(responses=str(path)), tmp_path / "eval")
    assert first.reused == [] and first.summary.items == 3
    assert again.reused == ["item000000", "item000001", "item000002"]
    assert again.summary == first.summary
