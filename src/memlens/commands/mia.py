"""``memlens mia``: membership-inference attacks and their metrics.

Two spellings, one group:

* ``memlens mia --model M [--reference R ...] --members F --nonmembers G --out DIR`` runs the
  attacks (:func:`memlens.mia.recipe.run`);
* ``memlens mia metrics --scores FILE [--fpr ...] [--json]`` evaluates scores computed elsewhere
  (:func:`memlens.mia.recipe.run_metrics`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from memlens.commands import options
from memlens.errors import UserError

HELP = (
    "Membership inference: was this text in the model's training data? Runs loss, zlib, ref, "
    "min_k, min_k_pp, lowercase and gradnorm attacks (and MIMIR's forms of zlib and gradnorm) "
    "in one batched pass (higher score = member) and reports ROC-AUC with a bootstrap CI, TPR at "
    "FPR <= alpha, F1 and balanced accuracy."
)

Fpr = Annotated[
    list[str] | None,
    typer.Option(
        "--fpr",
        help="FPR levels for TPR at FPR <= alpha, 0 included (default 0.001,0.01).",
    ),
]
NBoot = Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples for the AUC interval.")]
NanPolicy = Annotated[
    str,
    typer.Option(
        "--nan-policy",
        help="common: evaluate all attacks on samples every attack scored (others listed); error: stop.",
    ),
]
LabelColumn = Annotated[
    str, typer.Option("--label-column", help="Label column (1/member, 0/non-member).")
]


def _summary(s: Any, title: str) -> None:
    """Print a :class:`~memlens.mia.summary.MIAMetricsSummary` (or :class:`MIASummary`)."""
    from rich import box
    from rich.table import Table

    from memlens.commands._ui import make_console
    from memlens.mia.metrics import alpha_key

    console = make_console()
    table = Table(title=title, box=box.SIMPLE_HEAD)
    table.add_column("attack")
    table.add_column("AUC", justify="right")
    table.add_column("95% CI", justify="right")
    for a in s.fpr_levels:
        table.add_column(f"TPR@{a * 100:g}%FPR", justify="right")
    table.add_column("F1", justify="right")
    table.add_column("bal.acc", justify="right")
    for name, m in s.attacks.items():
        lo, hi = m.auc_ci
        table.add_row(
            name,
            f"{m.auc:.3f}",
            f"{lo:.3f}-{hi:.3f}",
            *(f"{m.tpr_at_fpr[alpha_key(a)]:.3f}" for a in s.fpr_levels),
            f"{m.f1:.3f}",
            f"{m.balanced_accuracy:.3f}",
        )
    console.print(table)
    first = next(iter(s.attacks.values()))
    console.print(
        f"{first.n_members} members, {first.n_nonmembers} non-members evaluated "
        f"({s.n_samples} samples); higher score = member. {s.rule}"
    )
    console.print(
        "F1 and balanced accuracy at the threshold maximizing balanced accuracy (oracle)."
    )
    for ref in getattr(s, "references", []):
        if ref.get("first_token") == "uniform":
            console.print(
                f"reference {ref['label']}: only one of the two tokenizers starts texts with a BOS, "
                "so both models' first text token is charged log2 V (ref attack)."
            )
    warnings = list(s.warnings)
    warnings += list(dict.fromkeys(w for m in s.attacks.values() for w in m.warnings))
    from memlens.cli import cli_message

    for w in warnings:
        console.print(f"[yellow]warning:[/yellow] {cli_message(w)}")


def register(app: typer.Typer) -> None:
    mia_app = typer.Typer(help=HELP, no_args_is_help=False, add_completion=False)

    @mia_app.callback(invoke_without_command=True)
    def mia(
        ctx: typer.Context,
        model: options.Model = None,
        reference: options.References = None,
        adapter: options.Adapter = None,
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
        label_column: LabelColumn = "label",
        split: options.Split = None,
        attacks: str = typer.Option(
            None,
            "--attacks",
            help="Comma-separated attacks (default: all; ref needs --reference).",
        ),
        k: float = typer.Option(0.2, "--k", help="Min-K% fraction: the lowest floor(k*n) tokens."),
        fpr: Fpr = None,
        n_boot: NBoot = 1000,
        nan_policy: NanPolicy = "common",
        batch_size: options.BatchSize = 32,
        window_stride: options.WindowStride = None,
        dtype: options.Dtype = "auto",
        device: options.Device = "auto",
        tokenizer: options.Tokenizer = None,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
        out: options.Out = None,
    ) -> None:
        """Run membership-inference attacks on a causal LM and evaluate them."""
        if ctx.invoked_subcommand is not None:
            return
        if model is None:
            if not any([members, nonmembers, data, reference]):
                typer.echo(ctx.get_help())
                raise typer.Exit(0)
            raise UserError("pass the target model with --model.")
        from memlens.commands._ui import progress_bars
        from memlens.config import build_config
        from memlens.mia.recipe import MIAConfig, run

        config = build_config(
            MIAConfig,
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
            fprs=options.fpr_levels(fpr),
            n_boot=n_boot,
            nan_policy=nan_policy,
            batch_size=batch_size,
            window_stride=window_stride,
            dtype=dtype,
            device=device,
            tokenizer=tokenizer,
            seed=seed,
        )
        with progress_bars() as progress:
            result = run(config, out, progress=progress)
        title = f"memlens mia: {model}" + (f" + adapter {adapter} (merged)" if adapter else "")
        _summary(result.summary, title)
        if result.reused:  # the stored code lengths / gradient norms of an earlier run
            typer.echo(
                f"reused {len(result.reused)} stored result(s) of an earlier run in this "
                f"directory: {', '.join(result.reused)}"
            )
        typer.echo(f"wrote {result.out_dir}/mia.json, scores.parquet, roc.png")

    @mia_app.command("metrics")
    def metrics(
        scores: Path = typer.Option(
            ...,
            "--scores",
            help="CSV, Parquet or JSONL with columns score,label (1 = member).",
        ),
        columns: str = typer.Option(
            None, "--columns", help="Comma-separated score columns to evaluate (default: score)."
        ),
        label_column: LabelColumn = "label",
        fpr: Fpr = None,
        n_boot: NBoot = 1000,
        nan_policy: NanPolicy = "common",
        seed: Annotated[int, typer.Option("--seed", help="Seed of the bootstrap.")] = 0,
        as_json: options.Json = False,
        out: Path = typer.Option(
            None, "--out", help="Also write mia.json, ROC plots and a manifest here."
        ),
    ) -> None:
        """Metrics for scores computed elsewhere (higher score = member; label 1 = member)."""
        from memlens.config import build_config
        from memlens.mia.recipe import MIAMetricsConfig, run_metrics
        from memlens.store import to_json

        config = build_config(
            MIAMetricsConfig,
            scores=str(scores),
            columns=columns.split(",") if columns is not None else None,
            label_column=label_column,
            fprs=options.fpr_levels(fpr),
            n_boot=n_boot,
            nan_policy=nan_policy,
            seed=seed,
        )
        result = run_metrics(config, out)
        if as_json:
            typer.echo(to_json(result.summary.to_json()))
        else:
            _summary(result.summary, f"memlens mia metrics: {scores}")

    app.add_typer(mia_app, name="mia", help=HELP)
