"""``memlens laws``: fit the membership-inference scaling law, and the two experiments behind the
sizing laws (MIA scaling, double descent). Thin layer over :mod:`memlens.laws` and
:mod:`memlens.laws`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer

HELP = (
    "Scaling laws of memorization (Morris et al. 2025): fit the membership-inference law to your "
    "measurements, or run the MIA-scaling and double-descent experiments."
)


def _print_fit(result: dict[str, Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    level = int(round(result["ci_level"] * 100))
    t = Table(title=title)
    t.add_column("constant")
    t.add_column("fitted", justify="right")
    t.add_column(f"{level}% CI", justify="right")
    t.add_column("published (corrected)", justify="right")
    for k, v in result["constants"].items():
        lo, hi = result["ci"][k]
        ci = "at bound" if result["at_bound"][k] else f"[{lo:.4g}, {hi:.4g}]"
        t.add_row(k, f"{v:.4g}", ci, f"{result['published_constants'][k]:.4g}")
    console.print(t)
    p = Table(title="per-row predictions (input order)")
    for col in (
        "row",
        "n_sequences",
        "capacity_bits",
        "|D|/C",
        "f1",
        "fitted",
        "residual",
        "published law",
    ):
        p.add_column(col, justify="right")
    for r in result["predictions"]:
        p.add_row(
            str(r["row"]),
            f"{r['n_sequences']:,.0f}",
            f"{r['capacity_bits']:.4g}",
            f"{r['sequences_per_capacity_bit']:.4g}",
            f"{r['f1']:.3f}",
            f"{r['fitted_f1']:.3f}",
            f"{r['residual']:+.3f}",
            f"{r['published_law_f1']:.3f}",
        )
    console.print(p)
    console.print(
        f"{result['form']}; rmse {result['rmse']:.4f}, max |residual| {result['max_abs_residual']:.4f}, "
        f"{result['n']} rows, {result['dof']} dof; capacity = {result['capacity_source']}."
    )
    for w in result["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {w}")


def register(app: typer.Typer) -> None:
    laws_app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

    @laws_app.command("fit-mia")
    def fit_mia(
        file: Path = typer.Argument(
            ..., help="CSV/Parquet with columns params (or capacity_bits), n_sequences, f1."
        ),
        alpha: float = typer.Option(
            3.64, "--alpha", help="Bits per parameter when the table gives params."
        ),
        level: float = typer.Option(0.95, "--level", help="Confidence level of the intervals."),
        as_json: bool = typer.Option(
            False, "--json", help="Print JSON only (constants, predictions in input order)."
        ),
        out: Path = typer.Option(
            None,
            "--out",
            "-o",
            help="Run directory for fit_mia.json, predictions.csv and fit_mia.png.",
        ),
    ) -> None:
        """Fit F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D|/Capacity)) by least squares, with CIs."""
        from memlens.laws import fit_mia_table, plot_mia_fit
        from memlens.store import RunDir, to_json

        result = fit_mia_table(file, alpha=alpha, level=level)
        if out is not None:
            import pandas as pd

            rd = RunDir(
                out, "laws-fit-mia", {"file": str(file), "alpha": alpha, "level": level}, None
            )
            rd.write_json("fit_mia.json", result)
            rd.write_table("predictions.csv", pd.DataFrame(result["predictions"]))
            rd.save_figure(
                "fit_mia.png", plot_mia_fit(result, title=f"MIA law fit: {Path(file).name}")
            )
            rd.write_manifest(status="finished")
        if as_json:
            typer.echo(to_json(result))
        else:
            _print_fit(result, f"memlens laws fit-mia: {file}")
            if out is not None:
                typer.echo(f"wrote {out}/fit_mia.json, predictions.csv, fit_mia.png")

    @laws_app.command("mia-experiment")
    def mia_experiment(
        preset: str = typer.Option(
            "quick", "--preset", help="smoke (seconds), quick (minutes) or full."
        ),
        out: Path = typer.Option(
            None, "--out", "-o", help="Run directory (rerun with the same one to resume)."
        ),
        seed: int = typer.Option(None, "--seed", help="Seed of data, initialization and batches."),
        max_steps: int = typer.Option(
            None, "--max-steps", help="Override the preset's step budget."
        ),
        threads: int = typer.Option(
            None, "--threads", help="PyTorch threads (default 1; 0 = PyTorch's choice)."
        ),
        device: str = typer.Option(None, "--device", help="cpu (default), cuda, mps or auto."),
        as_json: bool = typer.Option(
            False, "--json", help="Print mia_experiment.json instead of tables."
        ),
        backend: str = typer.Option("local", "--backend", help="local or ray (one task per cell)."),
        ray_address: str = typer.Option(
            None, "--ray-address", help="Join an existing Ray cluster (default: start a local one)."
        ),
        ray_cpus_per_cell: float = typer.Option(
            1, "--ray-cpus-per-cell", min=0, help="CPUs each Ray task asks for."
        ),
        ray_gpus_per_cell: float = typer.Option(
            0, "--ray-gpus-per-cell", min=0, help="GPUs each Ray task asks for (fractions allowed)."
        ),
    ) -> None:
        """Train shapes x dataset sizes on uniform tokens, attack with the loss threshold against as
        many unseen sequences, and fit the MIA scaling law to the measured F1."""
        from memlens.laws import mia_config, run_mia
        from memlens.store import default_out_dir, to_json

        config = mia_config(preset, seed=seed, max_steps=max_steps, threads=threads, device=device)
        out_dir = out or default_out_dir("laws-mia")
        with _progress(as_json) as (progress, on_cell):
            summary = run_mia(
                config, out_dir, progress=progress, on_cell=on_cell, backend=backend,
                ray_address=ray_address, ray_cpus_per_cell=ray_cpus_per_cell,
                ray_gpus_per_cell=ray_gpus_per_cell,
            )  # fmt: skip
        if as_json:
            typer.echo(to_json(summary))
            return
        _print_mia(summary)
        typer.echo(f"wrote {out_dir}/mia_experiment.json, runs.csv, mia_experiment.png")

    @laws_app.command("double-descent")
    def double_descent(
        preset: str = typer.Option(
            "quick", "--preset", help="smoke (seconds), quick (minutes) or full."
        ),
        out: Path = typer.Option(
            None, "--out", "-o", help="Run directory (rerun with the same one to resume)."
        ),
        seed: int = typer.Option(None, "--seed", help="Seed of data, initialization and batches."),
        max_steps: int = typer.Option(
            None, "--max-steps", help="Override the preset's step budget."
        ),
        threads: int = typer.Option(
            None, "--threads", help="PyTorch threads (default 1; 0 = PyTorch's choice)."
        ),
        device: str = typer.Option(None, "--device", help="cpu (default), cuda, mps or auto."),
        as_json: bool = typer.Option(
            False, "--json", help="Print double_descent.json instead of tables."
        ),
    ) -> None:
        """One shape, dataset sizes spanning capacity ratio 0.1-10 on a Markov source: held-out loss
        against capacity ratio, and where it peaks."""
        from memlens.laws import double_descent_config, run_double_descent
        from memlens.store import default_out_dir, to_json

        config = double_descent_config(
            preset, seed=seed, max_steps=max_steps, threads=threads, device=device
        )
        out_dir = out or default_out_dir("laws-double-descent")
        with _progress(as_json) as (progress, on_cell):
            summary = run_double_descent(config, out_dir, progress=progress, on_cell=on_cell)
        if as_json:
            typer.echo(to_json(summary))
            return
        _print_dd(summary)
        typer.echo(f"wrote {out_dir}/double_descent.json, runs.csv, double_descent.png")

    app.add_typer(laws_app, name="laws", help=HELP)


@contextlib.contextmanager
def _progress(quiet: bool) -> Iterator[tuple[Any, Any]]:
    """A rich progress bar for training steps, one task per cell (silent with --json)."""
    if quiet:
        yield None, None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("step {task.completed:>6.0f}/{task.total:.0f}"),
        TimeElapsedColumn(),
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def progress(label: str, step: int, total: int) -> None:
            if label not in tasks:
                tasks[label] = bar.add_task(label, total=total)
            bar.update(tasks[label], completed=step)

        def on_cell(i: int, n: int, done: bool) -> None:
            bar.console.print(f"cell {i}/{n} finished")

        yield progress, on_cell


def _print_mia(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    t = Table(
        title=f"MIA scaling experiment ({s['preset']}): V={s['vocab_size']}, S={s['seq_len']}"
    )
    for col in (
        "shape",
        "params",
        "N",
        "ratio",
        "|D|/C",
        "mem bits/param",
        "sat",
        "AUC",
        "F1",
        "fitted",
        "published",
    ):
        t.add_column(col, justify="right")
    for r in s["runs"]:
        t.add_row(
            f"L{r['n_layer']} d{r['d_model']}",
            f"{r['params']:,}",
            f"{r['n_sequences']:,}",
            f"{r['capacity_ratio']:.3g}",
            f"{r['sequences_per_capacity_bit']:.3g}",
            f"{r['memorized_bits_per_param']:.2f}",
            "yes" if r["saturated"] else "no",
            f"{r['auc']:.3f}",
            f"{r['f1']:.3f}",
            f"{r['fitted_f1']:.3f}" if "fitted_f1" in r else "-",
            f"{r['published_law_f1']:.3f}",
        )
    console.print(t)
    if s.get("fit"):
        f = s["fit"]
        parts = []
        for k, v in f["constants"].items():
            lo, hi = f["ci"][k]
            parts.append(
                f"{k} = {v:.4g} " + ("(at bound)" if f["at_bound"][k] else f"[{lo:.4g}, {hi:.4g}]")
            )
        console.print(
            f"fitted law ({int(f['ci_level'] * 100)}% CI): "
            + ", ".join(parts)
            + f"; rmse {f['rmse']:.3f}"
        )
        for w in f["warnings"]:
            console.print(f"[yellow]warning:[/yellow] {w}")
    else:
        console.print(f"law not fitted: {s.get('fit_skipped')}")
    console.print("published (corrected): c1 = 1.3405, c2 = 1.1159, c3 = 120.61 (64-token text).")
    console.print(
        f"capacity = {s['capacity']}; train time {s['train_seconds']:.0f} s; reused cells: {s['reused_cells']}"
    )


def _print_dd(s: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    sh = s["shape"]
    t = Table(
        title=f"Double descent ({s['preset']}): L={sh['n_layer']} d={sh['d_model']}, {sh['params']:,} params"
    )
    for col in (
        "ratio",
        "N",
        "train bits/tok",
        "held-out bits/tok",
        "excess",
        "memorized bits",
        "sat",
    ):
        t.add_column(col, justify="right")
    for r in s["runs"]:
        t.add_row(
            f"{r['capacity_ratio']:.3g}",
            f"{r['n_sequences']:,}",
            f"{r['train_bits_per_token']:.3f}",
            f"{r['test_bits_per_token']:.3f}",
            f"{r['excess_test_bits_per_token']:+.3f}",
            f"{r['memorized_bits']:,.0f}",
            "yes" if r["saturated"] else "no",
        )
    console.print(t)
    console.print(
        f"source entropy rate {s['source']['entropy_rate_bits']:.3f} bits/token; {s['peak']['verdict']}."
    )
    console.print(f"train time {s['train_seconds']:.0f} s; reused cells: {s['reused_cells']}")
