"""``memlens puzzles``: reasoning-puzzle evaluation done right (thin wrappers over
:mod:`memlens.puzzles`).

Shojaee et al. (2025), "The Illusion of Thinking"; Opus and Lawsen (2025), "The Illusion of the
Illusion of Thinking", arXiv:2506.09250.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from memlens.commands import options

HELP = (
    "Tower of Hanoi, Checker Jumping, River Crossing and Blocks World: exact solvers, a grader "
    "that separates illegal, truncated, refused, unsolvable and program answers, a sandbox for "
    "program answers, and output-token budgets."
)
PUZZLE_HELP = "hanoi, checkers, river or blocks."
N_HELP = "Size: disks, checkers per colour, actor/agent pairs, or blocks."


def _knobs():
    return (
        typer.Option(None, "--k", help="River Crossing boat capacity (default 3)."),
        typer.Option(None, "--pegs", help="Tower of Hanoi pegs (default 3)."),
        typer.Option(None, "--stacks", help="Blocks World stacks (default 3)."),
        typer.Option(0, "--seed", help="Blocks World instance seed."),
    )


_K, _PEGS, _STACKS, _SEED = _knobs()


def _limits(cpu: int, wall: float, memory: int, output_mb: float):
    from memlens.puzzles.sandbox import Limits

    return Limits(
        cpu_seconds=cpu, wall_seconds=wall, memory_mb=memory, output_bytes=int(output_mb * 2**20)
    )


def register(app: typer.Typer) -> None:
    puzzles_app = typer.Typer(help=HELP, no_args_is_help=True)

    @puzzles_app.command("solve", no_args_is_help=True)
    def solve(
        puzzle: str = typer.Argument(..., help=PUZZLE_HELP),
        n: int = typer.Option(..., "--n", help=N_HELP),
        k: int | None = _K,
        pegs: int | None = _PEGS,
        stacks: int | None = _STACKS,
        seed: int = _SEED,
        max_moves: int = typer.Option(
            1 << 16, "--max-moves", min=0, help="List the solution only up to this many moves."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print solvable, optimal_length and solution as JSON."
        ),
    ) -> None:
        """Is the instance solvable, in how many moves at least, and one optimal solution."""
        from memlens.puzzles import make_instance

        inst = make_instance(puzzle, n, k=k, pegs=pegs, stacks=stacks, seed=seed)
        sol = inst.solve(max_moves=max_moves)
        if as_json:
            typer.echo(json.dumps({"instance": inst.to_dict(), **sol.to_dict()}))
            return
        typer.echo(f"instance:       {json.dumps(inst.to_dict())}")
        typer.echo(f"solvable:       {sol.solvable}")
        typer.echo(f"optimal_length: {sol.optimal_length}")
        typer.echo(f"method:         {sol.method}" + (f" ({sol.note})" if sol.note else ""))
        if sol.moves is not None:
            shown = ", ".join(inst.format_move(m) for m in sol.moves[:12])
            more = f", ... ({len(sol.moves) - 12} more)" if len(sol.moves) > 12 else ""
            typer.echo(f"solution:       [{shown}{more}]")

    @puzzles_app.command("grade", no_args_is_help=True)
    def grade(
        puzzle: str = typer.Option(..., "--puzzle", help=PUZZLE_HELP),
        n: int = typer.Option(..., "--n", help=N_HELP),
        answer: Path = typer.Option(
            ..., "--answer", help="File with the response text ('-' for stdin)."
        ),
        k: int | None = _K,
        pegs: int | None = _PEGS,
        stacks: int | None = _STACKS,
        seed: int = _SEED,
        program: bool = typer.Option(
            False,
            "--program",
            help="The answer is a program that prints the moves: run it in the sandbox.",
        ),
        finish_reason: str | None = typer.Option(
            None, "--finish-reason", help="'length' if the generation hit its token limit."
        ),
        cpu: int = typer.Option(5, "--cpu-seconds", help="Sandbox CPU-time limit."),
        wall: float = typer.Option(10.0, "--wall-seconds", help="Sandbox wall-clock limit."),
        memory: int = typer.Option(512, "--memory-mb", help="Sandbox memory limit (MiB)."),
        output_mb: float = typer.Option(8.0, "--max-output-mb", help="Sandbox output limit (MiB)."),
        out: Path | None = typer.Option(
            None, "--out", help="Also write a run directory with grade.json."
        ),
        as_json: bool = typer.Option(False, "--json", help="Print the verdict as JSON."),
    ) -> None:
        """Replay one answer with the exact rules: correct?, category, first illegal move."""
        import sys

        from memlens.errors import UserError
        from memlens.puzzles import make_instance
        from memlens.puzzles.grade import grade_response

        inst = make_instance(puzzle, n, k=k, pegs=pegs, stacks=stacks, seed=seed)
        if str(answer) == "-":
            text = sys.stdin.read()
        elif answer.is_file():
            text = answer.read_text(encoding="utf-8", errors="replace")
        else:
            raise UserError(f"answer file {answer} does not exist.")
        verdict = grade_response(
            inst,
            text,
            program=True if program else None,
            finish_reason=finish_reason,
            limits=_limits(cpu, wall, memory, output_mb),
        )
        if out is not None:
            from memlens.store import RunDir

            config = {"instance": inst.to_dict(), "answer": str(answer), "program": program}
            run = RunDir(out, "puzzles-grade", config, seed=None)
            run.write_json("grade.json", {"instance": inst.to_dict(), **verdict.to_dict()})
            run.write_manifest()
        if as_json:
            typer.echo(json.dumps(verdict.to_dict()))
            return
        typer.echo(f"correct:            {verdict.correct}")
        typer.echo(f"category:           {verdict.category} (from the {verdict.source})")
        typer.echo(f"first_illegal_move: {verdict.first_illegal_move}")
        typer.echo(f"moves:              {verdict.n_moves} (optimal {verdict.optimal_length})")
        typer.echo(f"reason:             {verdict.reason}")

    @puzzles_app.command("make", no_args_is_help=True)
    def make(
        puzzle: str = typer.Option(..., "--puzzle", help=PUZZLE_HELP),
        sizes: str = typer.Option("1-8", "--sizes", help="Sizes n, e.g. 1-8 or 2,4,8."),
        k: int | None = _K,
        pegs: int | None = _PEGS,
        stacks: int | None = _STACKS,
        seeds: int = typer.Option(
            1, "--seeds", help="Blocks World: instances per size (seeds 0..S-1)."
        ),
        program: bool = typer.Option(
            False, "--program", help="Ask for a program that prints the moves."
        ),
        out: options.Out = None,
    ) -> None:
        """Write prompts.jsonl: one question per instance over a grid of sizes."""
        from memlens.puzzles.recipe import MakeConfig, run

        config = MakeConfig(
            puzzle=puzzle, sizes=sizes, k=k, pegs=pegs, stacks=stacks, seeds=seeds, program=program
        )
        s = run(config, out).summary
        typer.echo(f"{s.n_items} prompts ({s.n_unsolvable} unsolvable) -> {s.prompts}")
        typer.echo(
            "add each model answer as a 'response' field, then: memlens puzzles eval FILE --out DIR"
        )

    @puzzles_app.command("eval", no_args_is_help=True)
    def eval_(
        responses: Path = typer.Argument(
            ..., help="JSONL: instance spec (puzzle, n, knobs) and 'response'."
        ),
        out: options.Out = None,
        budget_tokens: int = typer.Option(
            64_000, "--budget-tokens", help="Output-token budget of the model."
        ),
        tokens_per_move: float = typer.Option(
            10.0, "--tokens-per-move", help="Tokens one written move takes."
        ),
        overhead_tokens: int = typer.Option(
            0, "--overhead-tokens", help="Fixed tokens around the move list."
        ),
        cpu: int = typer.Option(5, "--cpu-seconds", help="Sandbox CPU-time limit per program."),
        wall: float = typer.Option(
            10.0, "--wall-seconds", help="Sandbox wall-clock limit per program."
        ),
        memory: int = typer.Option(512, "--memory-mb", help="Sandbox memory limit (MiB)."),
        output_mb: float = typer.Option(8.0, "--max-output-mb", help="Sandbox output limit (MiB)."),
    ) -> None:
        """Grade every response; accuracy by size with budget flags, plots, per-item verdicts."""
        import sys

        from memlens.commands._ui import progress_bars
        from memlens.puzzles.recipe import EvalConfig, run

        config = EvalConfig(
            responses=str(responses),
            budget_tokens=budget_tokens,
            tokens_per_move=tokens_per_move,
            overhead_tokens=overhead_tokens,
            limits=_limits(cpu, wall, memory, output_mb),
        )
        with progress_bars(enabled=sys.stdout.isatty()) as progress:
            result = run(config, out, progress=progress)
        s = result.summary
        within = s.accuracy_within_budget
        typer.echo(
            f"items: {s.items}   accuracy: {s.accuracy:.3f}   program answers: {s.program_answers}"
        )
        typer.echo(
            f"over budget: {s.items_over_budget} items"
            + (f"   accuracy within budget: {within:.3f}" if within is not None else "")
        )
        typer.echo("categories: " + ", ".join(f"{c} {v}" for c, v in s.categories.items() if v))
        for group, acc in s.by_group.items():
            fit = s.largest_n_within_budget.get(group)
            tail = f"   (largest n within budget: {fit['largest_n']})" if fit else ""
            typer.echo(f"{group}: " + " ".join(f"n={n}:{a:.2f}" for n, a in acc.items()) + tail)
        if result.reused:
            typer.echo(
                f"reused {len(result.reused)} of {s.items} graded items from an earlier run in "
                "this directory"
            )
        typer.echo(f"wrote {result.out_dir}")

    @puzzles_app.command("budget", no_args_is_help=True)
    def budget(
        puzzle: str = typer.Option(..., "--puzzle", help="hanoi, checkers or river."),
        tokens: int = typer.Option(..., "--tokens", help="Output-token budget."),
        tokens_per_move: float = typer.Option(
            10.0, "--tokens-per-move", help="Tokens one written move takes."
        ),
        overhead_tokens: int = typer.Option(
            0, "--overhead-tokens", help="Fixed tokens around the move list."
        ),
        k: int | None = _K,
        pegs: int | None = _PEGS,
        as_json: bool = typer.Option(False, "--json", help="Print the answer as JSON."),
    ) -> None:
        """The largest n whose complete move list fits in an output-token budget."""
        from dataclasses import asdict

        from memlens.puzzles.budget import largest_n

        a = largest_n(puzzle, tokens, tokens_per_move, overhead_tokens, k=k, pegs=pegs)
        if as_json:
            typer.echo(json.dumps(asdict(a)))
            return
        typer.echo(f"largest n whose full answer fits {tokens} tokens: {a.largest_n}")
        if a.moves is not None:
            typer.echo(f"  n={a.largest_n}: {a.moves} moves, {a.tokens:g} tokens")
        if a.next_tokens is not None:
            typer.echo(f"  n={a.largest_n + 1}: {a.next_tokens:g} tokens (over budget)")
        if a.note:
            typer.echo(f"  {a.note}")

    app.add_typer(puzzles_app, name="puzzles")
