"""``memlens mia``: membership-inference attacks and their metrics.

Two spellings, one group:

* ``memlens mia --model M [--reference R ...] --members F --nonmembers G --out DIR`` runs the
  attacks (:func:`memlens.mia.recipe.run`);
* ``memlens mia metrics --scores FILE [--fpr ...] [--json]`` evaluates scores computed elsewhere
  (:func:`memlens.mia.metrics.evaluate_attacks`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from memlens.errors import UserError

HELP = (
    "Membership inference: was this text in the model's training data? Runs loss, zlib, ref, "
    "min_k, min_k_pp, lowercase and gradnorm attacks in one batched pass (higher score = member) "
    "and reports ROC-AUC with a bootstrap CI, TPR at FPR <= alpha, F1 and balanced accuracy."
)


def _fprs(values: list[str] | None) -> list[float]:
    if not values:
        return [0.001, 0.01]
    out = []
    for v in values:
        for part in str(v).split(","):
            part = part.strip()
            if not part:
                continue
            try:
                a = float(part)
            except ValueError:
                raise UserError(
                    f"--fpr {part!r} is not a number; use e.g. --fpr 0.001,0.01."
                ) from None
            if not 0.0 < a < 1.0:
                raise UserError(f"--fpr {part} must be strictly between 0 and 1.")
            out.append(a)
    return sorted(set(out))


def _summary(result: dict[str, Any], title: str) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table

    from memlens.mia.metrics import alpha_key

    console = Console()
    levels = result["fpr_levels"]
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("attack")
    table.add_column("AUC", justify="right")
    table.add_column("95% CI", justify="right")
    for a in levels:
        table.add_column(f"TPR@{a * 100:g}%FPR", justify="right")
    table.add_column("F1", justify="right")
    table.add_column("bal.acc", justify="right")
    for name, m in result["attacks"].items():
        lo, hi = m["auc_ci"]
        table.add_row(
            name,
            f"{m['auc']:.3f}",
            f"{lo:.3f}-{hi:.3f}",
            *(f"{m['tpr_at_fpr'][alpha_key(a)]:.3f}" for a in levels),
            f"{m['f1']:.3f}",
            f"{m['balanced_accuracy']:.3f}",
        )
    console.print(table)
    first = next(iter(result["attacks"].values()))
    console.print(
        f"{first['n_members']} members, {first['n_nonmembers']} non-members evaluated "
        f"({result['n_samples']} samples); higher score = member. {result['rule']}"
    )
    console.print(
        "F1 and balanced accuracy at the threshold maximizing balanced accuracy (oracle)."
    )
    warnings = list(result.get("warnings", []))
    warnings += list(dict.fromkeys(w for m in result["attacks"].values() for w in m["warnings"]))
    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def register(app: typer.Typer) -> None:
    mia_app = typer.Typer(help=HELP, no_args_is_help=False, add_completion=False)

    @mia_app.callback(invoke_without_command=True)
    def mia(
        ctx: typer.Context,
        model: str = typer.Option(
            None,
            "--model",
            "-m",
            help="Target model: a save_pretrained directory, memlens GPT checkpoint or hub name.",
        ),
        reference: list[str] = typer.Option(
            None,
            "--reference",
            "-r",
            help="Reference model for the ref attack (repeatable); default with --adapter: the bare --model.",
        ),
        adapter: str = typer.Option(
            None,
            "--adapter",
            help="PEFT/LoRA adapter directory over --model; merged into the weights at load.",
        ),
        members: str = typer.Option(
            None,
            "--members",
            help="Member texts: .txt (one per line), .jsonl/.csv/.parquet (text column) or dataset dir.",
        ),
        nonmembers: str = typer.Option(
            None, "--nonmembers", help="Non-member texts, same formats as --members."
        ),
        data: str = typer.Option(
            None,
            "--data",
            help="One table with a label column (1 = member; WikiMIA layout) or member/nonmember columns (MIMIR layout).",
        ),
        text_column: str = typer.Option(
            None,
            "--text-column",
            help="Text column (default: text, or input for a labeled table without one).",
        ),
        label_column: str = typer.Option(
            "label", "--label-column", help="Label column of --data (1/member, 0/non-member)."
        ),
        split: str = typer.Option(None, "--split", help="Split of a saved dataset directory."),
        attacks: str = typer.Option(
            None,
            "--attacks",
            "-a",
            help="Comma-separated attacks (default: all; ref needs --reference).",
        ),
        k: float = typer.Option(0.2, "--k", help="Min-K% fraction: the lowest floor(k*n) tokens."),
        fpr: list[str] = typer.Option(
            None, "--fpr", help="FPR levels for TPR at FPR <= alpha (default 0.001,0.01)."
        ),
        n_boot: int = typer.Option(
            1000, "--n-boot", help="Bootstrap resamples for the AUC interval."
        ),
        nan_policy: str = typer.Option(
            "common",
            "--nan-policy",
            help="common: evaluate all attacks on samples every attack scored (others listed); error: stop.",
        ),
        batch_size: int = typer.Option(32, "--batch-size", help="Sequences per forward pass."),
        window_stride: int = typer.Option(
            None,
            "--window-stride",
            help="Score texts longer than the context with a sliding window of this stride.",
        ),
        dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
        device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
        tokenizer: str = typer.Option(
            None, "--tokenizer", help="Tokenizer directory, if not the model's own."
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
        out: Path = typer.Option(
            None, "--out", "-o", help="Run directory (default: memlens-runs/mia-<time>)."
        ),
    ) -> None:
        """Run membership-inference attacks on a causal LM and evaluate them."""
        if ctx.invoked_subcommand is not None:
            return
        if model is None:
            if not any([members, nonmembers, data, reference]):
                typer.echo(ctx.get_help())
                raise typer.Exit(0)
            raise UserError("pass the target model with --model.")
        from rich.progress import Progress

        from memlens.mia.recipe import MIAConfig, run
        from memlens.store import default_out_dir

        config = MIAConfig(
            model=model,
            references=list(reference or []),
            adapter=adapter,
            members=members,
            nonmembers=nonmembers,
            data=data,
            text_column=text_column,
            label_column=label_column,
            split=split,
            attacks=attacks.split(",") if attacks else None,
            k=k,
            fprs=_fprs(fpr),
            n_boot=n_boot,
            nan_policy=nan_policy,
            batch_size=batch_size,
            window_stride=window_stride,
            dtype=dtype,
            device=device,
            tokenizer=tokenizer,
            seed=seed,
        )
        out_dir = out or default_out_dir("mia")
        with Progress(transient=True) as bar:
            tasks: dict[str, Any] = {}

            def progress(phase: str, done: int, total: int) -> None:
                if phase not in tasks:
                    tasks[phase] = bar.add_task(f"scoring ({phase})", total=total)
                bar.update(tasks[phase], completed=done)

            result = run(config, out_dir, progress=progress)
        title = f"memlens mia: {model}" + (f" + adapter {adapter} (merged)" if adapter else "")
        _summary(result, title)
        typer.echo(f"wrote {out_dir}/mia.json, scores.parquet, roc.png")

    @mia_app.command("metrics")
    def metrics(
        scores: Path = typer.Option(
            ...,
            "--scores",
            "-s",
            help="CSV, Parquet or JSONL with columns score,label (1 = member).",
        ),
        columns: str = typer.Option(
            None, "--columns", help="Comma-separated score columns to evaluate (default: score)."
        ),
        label_column: str = typer.Option(
            "label", "--label-column", help="Label column (1/member, 0/non-member)."
        ),
        fpr: list[str] = typer.Option(
            None, "--fpr", help="FPR levels for TPR at FPR <= alpha (default 0.001,0.01)."
        ),
        n_boot: int = typer.Option(
            1000, "--n-boot", help="Bootstrap resamples for the AUC interval."
        ),
        nan_policy: str = typer.Option(
            "common",
            "--nan-policy",
            help="common: evaluate on rows every column scored (others listed); error: stop.",
        ),
        seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap."),
        as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON only."),
        out: Path = typer.Option(
            None, "--out", "-o", help="Also write mia.json, ROC plots and a manifest here."
        ),
    ) -> None:
        """Metrics for scores computed elsewhere (higher score = member; label 1 = member)."""
        from memlens.mia.recipe import evaluate_scores_file
        from memlens.store import to_json

        result = evaluate_scores_file(
            scores,
            columns=columns.split(",") if columns else None,
            label_column=label_column,
            fprs=_fprs(fpr),
            n_boot=n_boot,
            nan_policy=nan_policy,
            seed=seed,
            out=out,
        )
        if as_json:
            typer.echo(to_json(result))
        else:
            _summary(result, f"memlens mia metrics: {scores}")

    app.add_typer(mia_app, name="mia", help=HELP)
