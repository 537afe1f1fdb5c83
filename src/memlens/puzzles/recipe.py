"""The puzzles recipes: prompt sets over a grid of sizes, and whole evaluations of responses.

:func:`run` with a :class:`MakeConfig` writes the questions (``prompts.jsonl``: one JSON record
per instance: the spec, the prompt, solvability and optimal length; built by
:func:`make_items`); a model's answers go back in the same records under ``"response"``, and
:func:`run` with an :class:`EvalConfig` grades them all into a run directory:

``grades.csv`` / ``grades.jsonl``
    one row per response: category, correctness, first illegal move, reason, the expected
    answer's size in tokens and whether it exceeds the output budget, the sandbox outcome.
``accuracy_by_size.csv``
    accuracy and category counts per puzzle, knobs and ``n``, with the budget flag.
``summary.json``
    overall accuracy, accuracy on the items whose full answer fits the budget, category counts,
    and the largest ``n`` that fits the budget per puzzle.
``accuracy_by_size.png``
    accuracy by size per puzzle, the sizes over budget shaded and unsolvable sizes marked.

Every graded item is a resumable cell: an interrupted evaluation picks up where it stopped.
The split between "over budget" and "fits" is the point of Opus and Lawsen (2025),
arXiv:2506.09250: accuracy that collapses exactly where answers stop fitting the output limit
measures the limit, not reasoning.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from memlens.config import Config
from memlens.errors import UserError
from memlens.progress import ProgressFn, emit
from memlens.puzzles import PUZZLES, from_spec, make_instance
from memlens.puzzles.budget import DEFAULT_TOKENS_PER_MOVE, answer_tokens, largest_n, over_budget
from memlens.puzzles.grade import CATEGORIES, grade_response
from memlens.puzzles.sandbox import Limits
from memlens.results import RunResult, Summary

KNOBS = ("k", "pegs", "stacks")


def parse_sizes(text: str) -> list[int]:
    """``"1-5"``, ``"2,4,8"`` or ``"1-3,10"`` as a sorted list of sizes."""
    sizes: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if lo > hi:
                raise UserError(f"size range {part!r} runs backwards; write it low-high, like 1-8.")
            sizes.update(range(lo, hi + 1))
        elif part.isdigit():
            sizes.add(int(part))
        else:
            raise UserError(
                f"cannot read sizes {text!r}; use a range like 1-8 or a list like 2,4,8."
            )
    if not sizes or min(sizes) < 1:
        raise UserError(f"sizes must be positive integers, got {text!r}.")
    return sorted(sizes)


def make_items(
    puzzle: str,
    sizes: list[int],
    *,
    k: int | None = None,
    pegs: int | None = None,
    stacks: int | None = None,
    seeds: int = 1,
    program: bool = False,
) -> list[dict[str, Any]]:
    """One record per instance over ``sizes`` (and ``seeds`` seeds for Blocks World).

    Each record holds ``id``, the instance spec (``puzzle``, ``n``, knobs, Blocks World start and
    goal), ``prompt``, ``program`` (whether a program answer is asked for), ``solvable`` and
    ``optimal_length``. No solution is included.
    """
    if seeds < 1:
        raise UserError(f"`seeds` must be at least 1, got {seeds}.")
    items = []
    for n in sizes:
        for seed in range(seeds if puzzle == "blocks" else 1):
            inst = make_instance(puzzle, n, k=k, pegs=pegs, stacks=stacks, seed=seed)
            sol = inst.solve(max_moves=0)
            spec = inst.to_dict()
            tag = "".join(f"-{key}{spec[key]}" for key in KNOBS if key in spec)
            items.append(
                {
                    "id": f"{puzzle}{tag}-n{n}" + (f"-seed{seed}" if puzzle == "blocks" else ""),
                    **spec,
                    "program": program,
                    "solvable": sol.solvable,
                    "optimal_length": sol.optimal_length,
                    "prompt": inst.prompt(program=program),
                }
            )
    return items


def load_items(path: str | Path) -> list[dict[str, Any]]:
    """Read a JSONL file of records; each needs ``puzzle``, ``n`` and a string ``response``."""
    from memlens.data.tables import read_jsonl_records

    path = Path(path)
    if not path.is_file():
        raise UserError(f"responses file {path} does not exist.")
    items = read_jsonl_records(path)
    for i, item in enumerate(items, start=1):
        if str(item.get("puzzle", "")).lower() not in PUZZLES:
            raise UserError(
                f"record {i} of {path} needs a 'puzzle' field, one of {', '.join(PUZZLES)}."
            )
        if not isinstance(item.get("response"), str):
            raise UserError(
                f"record {i} of {path} needs a 'response' field holding the model's answer as text."
            )
        item.setdefault("id", f"line{i}")
    if not items:
        raise UserError(f"responses file {path} holds no records.")
    return items


def _group(item: dict[str, Any]) -> str:
    knobs = " ".join(f"{key}={item[key]}" for key in KNOBS if item.get(key) is not None)
    return f"{item['puzzle']} {knobs}".strip()


def grade_item(
    item: dict[str, Any],
    *,
    budget_tokens: int,
    tokens_per_move: float,
    overhead_tokens: int = 0,
    limits: Limits | None = None,
) -> dict[str, Any]:
    """Grade one record (as read by :func:`load_items`) and return its row."""
    inst = from_spec(item)
    sol = inst.solve(max_moves=0)
    program = item.get("program")
    verdict = grade_response(
        inst,
        item["response"],
        sol,
        program=True if program is True else None,
        finish_reason=item.get("finish_reason"),
        limits=limits,
    )
    # Blocks World past the A* limit: the proven lower bound (flags only certain overruns).
    length = sol.optimal_length if sol.optimal_length is not None else sol.lower_bound
    expected = None if length is None else answer_tokens(length, tokens_per_move, overhead_tokens)
    spec = inst.to_dict()
    row = {
        "id": str(item["id"]),
        "group": _group({**spec, "puzzle": inst.name}),
        "puzzle": inst.name,
        "n": inst.n,
        **{key: spec.get(key) for key in KNOBS},
        "seed": item.get("seed") if inst.name == "blocks" else None,
        **{key: value for key, value in verdict.to_dict().items() if key != "program"},
        "expected_tokens": expected,
        "over_budget": over_budget(length, budget_tokens, tokens_per_move, overhead_tokens),
        "output_tokens": item.get("output_tokens"),
        "program_status": verdict.program["status"] if verdict.program else None,
        "program": verdict.program,
    }
    return row


class MakeConfig(Config):
    """Inputs of ``memlens puzzles make``: a puzzle, sizes (``"1-8"``, ``"2,4,8"`` or a list),
    its knobs (``k`` boat capacity, ``pegs``, ``stacks``), Blocks World instances per size
    (``seeds``) and whether a program answer is asked for."""

    what: ClassVar[str] = "puzzles make config"
    puzzle: str
    sizes: list[int]
    k: int | None = None
    pegs: int | None = None
    stacks: int | None = None
    seeds: int = 1
    program: bool = False

    @field_validator("puzzle")
    @classmethod
    def _known(cls, v: str) -> str:
        v = v.lower()
        if v not in PUZZLES:
            raise ValueError(f"unknown puzzle {v!r}; choose one of {', '.join(PUZZLES)}")
        return v

    @field_validator("sizes", mode="before")
    @classmethod
    def _sizes(cls, v: Any) -> Any:
        return parse_sizes(v) if isinstance(v, str) else v


class EvalConfig(Config):
    """Inputs of ``memlens puzzles eval``: the responses file (JSONL), the model's output-token
    budget, tokens per written move, fixed tokens around the move list and the sandbox limits
    for program answers."""

    what: ClassVar[str] = "puzzles eval config"
    responses: str
    budget_tokens: int = Field(default=64_000, ge=1)
    tokens_per_move: float = Field(default=DEFAULT_TOKENS_PER_MOVE, gt=0)
    overhead_tokens: int = Field(default=0, ge=0)
    limits: Limits = Field(default_factory=Limits)


class MakeSummary(Summary):
    """What ``puzzles make`` wrote: ``prompts.jsonl`` and how many of its items are unsolvable."""

    kind: ClassVar[str] = "puzzles-make"
    file: ClassVar[str] = "make.json"
    n_items: int
    n_unsolvable: int
    prompts: str

    def headline(self) -> list[tuple[str, Any]]:
        return [("items", self.n_items), ("unsolvable items", self.n_unsolvable)]


class EvalSummary(Summary):
    """``summary.json`` of ``puzzles eval``: accuracy overall and on the items whose full answer
    fits the budget, category counts, the largest ``n`` within budget per group and accuracy by
    size per group (``by_group[group][n]``)."""

    kind: ClassVar[str] = "puzzles-eval"
    file: ClassVar[str] = "summary.json"
    items: int
    accuracy: float
    accuracy_within_budget: float | None = None
    items_over_budget: int
    accuracy_over_budget: float | None = None
    categories: dict[str, int]
    program_answers: int
    budget: dict[str, float]
    largest_n_within_budget: dict[str, dict[str, Any]]
    by_group: dict[str, dict[str, float]]

    def headline(self) -> list[tuple[str, Any]]:
        return [
            ("items", self.items), ("accuracy", self.accuracy),
            ("accuracy within budget", self.accuracy_within_budget),
            ("items over budget", self.items_over_budget),
            ("budget (tokens)", self.budget.get("budget_tokens")),
        ]  # fmt: skip


def run(
    config: MakeConfig | EvalConfig,
    out: str | Path | None = None,
    *,
    progress: ProgressFn | None = None,
) -> RunResult[MakeSummary] | RunResult[EvalSummary]:
    """Run a puzzles recipe into the run directory ``out``.

    A :class:`MakeConfig` writes ``prompts.jsonl`` (:class:`MakeSummary`); an :class:`EvalConfig`
    grades every record of its responses file (:class:`EvalSummary`; each graded item is a
    resumable cell, reported to ``progress`` as task ``"grading"``).
    """
    if isinstance(config, MakeConfig):
        return _make(config, out)
    if isinstance(config, EvalConfig):
        return _evaluate(config, out, progress)
    raise UserError(
        f"the puzzles recipes run a MakeConfig or an EvalConfig, not {type(config).__name__}."
    )


def _make(config: MakeConfig, out: str | Path | None) -> RunResult[MakeSummary]:
    from memlens.store import RunDir, default_out_dir, write_text_atomic

    items = make_items(
        config.puzzle, config.sizes, k=config.k, pegs=config.pegs, stacks=config.stacks,
        seeds=config.seeds, program=config.program,
    )  # fmt: skip
    run_dir = RunDir(out or default_out_dir("puzzles-make"), "puzzles-make", config, None)
    path = write_text_atomic(
        run_dir.path / "prompts.jsonl", "".join(json.dumps(i) + "\n" for i in items)
    )
    summary = MakeSummary(
        n_items=len(items),
        n_unsolvable=sum(1 for i in items if i["solvable"] is False),
        prompts=str(path),
    )
    run_dir.write_json(MakeSummary.file, summary.to_json())
    run_dir.write_manifest(n_items=len(items))
    return RunResult(summary, run_dir.path)


def _evaluate(
    config: EvalConfig, out: str | Path | None, progress: ProgressFn | None
) -> RunResult[EvalSummary]:
    """Grade every record of the responses file into the run directory ``out``.

    Records need ``puzzle``, ``n`` (and knobs), ``response``; optional ``program`` (``true``
    forces running the answer as a program; otherwise a program is run only when the text has
    no move list), ``finish_reason`` (``"length"`` marks a generation cut at its token limit)
    and ``output_tokens``.
    """
    import pandas as pd

    from memlens.store import RunDir, default_out_dir, write_text_atomic

    items = load_items(config.responses)
    digest = hashlib.sha256(Path(config.responses).read_bytes()).hexdigest()[:16]
    manifest_config = {**config.to_dict(), "responses_sha256": digest}
    run_dir = RunDir(out or default_out_dir("puzzles-eval"), "puzzles-eval", manifest_config, None)
    run_dir.write_manifest(status="running", n_items=len(items))

    rows = []
    reused: list[str] = []
    for i, item in enumerate(items):
        key = f"item{i:06d}"
        row = run_dir.load_cell(key)
        if row is not None:
            reused.append(key)
        else:
            row = grade_item(
                item,
                budget_tokens=config.budget_tokens,
                tokens_per_move=config.tokens_per_move,
                overhead_tokens=config.overhead_tokens,
                limits=config.limits,
            )
            run_dir.save_cell(key, row)
        rows.append(row)
        emit(progress, "grading", i + 1, len(items))

    table = pd.DataFrame([{k: v for k, v in r.items() if k != "program"} for r in rows])
    for col in (*KNOBS, "seed", "first_illegal_move", "optimal_length", "output_tokens"):
        table[col] = pd.array([None if pd.isna(v) else int(v) for v in table[col]], dtype="Int64")
    run_dir.write_table("grades.csv", table)
    write_text_atomic(run_dir.path / "grades.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    by_size = _by_size(table)
    run_dir.write_table("accuracy_by_size.csv", by_size)
    budget, tpm, overhead = config.budget_tokens, config.tokens_per_move, config.overhead_tokens
    summary = EvalSummary.model_validate(_summary(table, by_size, budget, tpm, overhead))
    run_dir.write_json(EvalSummary.file, summary.to_json())
    run_dir.save_figure("accuracy_by_size.png", _plot(by_size, budget, tpm))
    run_dir.write_manifest(status="finished", n_items=len(items))
    return RunResult(summary, run_dir.path, reused)


def _by_size(table: Any) -> Any:
    import pandas as pd

    out = []
    for (group, n), g in table.groupby(["group", "n"], sort=True):
        counts = Counter(g["category"])
        out.append(
            {
                "group": group,
                "puzzle": g["puzzle"].iloc[0],
                "n": int(n),
                "items": len(g),
                "accuracy": float(g["correct"].mean()),
                "solvable": g["solvable"].iloc[0],
                "optimal_length": g["optimal_length"].iloc[0],
                "expected_tokens": g["expected_tokens"].max(),
                "over_budget": bool(g["over_budget"].any()),
                **{c: int(counts.get(c, 0)) for c in CATEGORIES},
            }
        )
    return pd.DataFrame(out)


def _summary(table: Any, by_size: Any, budget: int, tpm: float, overhead: int) -> dict[str, Any]:
    fits = table[~table["over_budget"].astype(bool)]
    over = table[table["over_budget"].astype(bool)]
    budgets = {}
    for group, g in table.groupby("group"):
        puzzle = g["puzzle"].iloc[0]
        if puzzle == "blocks":
            continue
        knobs = {key: int(g[key].iloc[0]) for key in ("k", "pegs") if g[key].notna().any()}
        answer = largest_n(puzzle, budget, tpm, overhead, **knobs)
        budgets[group] = {"largest_n": answer.largest_n, "note": answer.note}
    return {
        "items": len(table),
        "accuracy": float(table["correct"].mean()),
        "accuracy_within_budget": float(fits["correct"].mean()) if len(fits) else None,
        "items_over_budget": len(over),
        "accuracy_over_budget": float(over["correct"].mean()) if len(over) else None,
        "categories": {c: int((table["category"] == c).sum()) for c in CATEGORIES},
        "program_answers": int((table["source"] == "program").sum()),
        "budget": {"budget_tokens": budget, "tokens_per_move": tpm, "overhead_tokens": overhead},
        "largest_n_within_budget": budgets,
        "by_group": {
            group: {str(int(r["n"])): round(float(r["accuracy"]), 4) for _, r in g.iterrows()}
            for group, g in by_size.groupby("group")
        },
    }


def _plot(by_size: Any, budget: int, tpm: float) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(by_size["group"]))
    fig, axes = plt.subplots(1, len(groups), figsize=(4.2 * len(groups), 3.4), squeeze=False)
    for ax, group in zip(axes[0], groups, strict=True):
        g = by_size[by_size["group"] == group].sort_values("n")
        ax.plot(g["n"], g["accuracy"], "o-", color="C0", label="accuracy")
        over = g[g["over_budget"]]
        if len(over):
            ax.axvspan(
                over["n"].min() - 0.5,
                g["n"].max() + 0.5,
                color="C3",
                alpha=0.12,
                label="answer over budget",
            )
        unsolvable = g[g["solvable"] == False]  # noqa: E712 - pandas elementwise comparison
        if len(unsolvable):
            ax.plot(
                unsolvable["n"],
                [-0.05] * len(unsolvable),
                "x",
                color="k",
                label="no solution exists",
            )
        ax.set_title(group)
        ax.set_xlabel("n")
        ax.set_ylim(-0.1, 1.05)
        ax.set_ylabel("accuracy")
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(f"accuracy by size (budget {budget} tokens at {tpm:g} tokens/move)", fontsize=9)
    fig.tight_layout()
    return fig
