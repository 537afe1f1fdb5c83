"""``memlens laws``: fit the membership-inference scaling law, and the two experiments behind the
sizing laws (MIA scaling, double descent). Thin layer over :mod:`memlens.laws`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from memlens.commands import options
from memlens.units import PUBLISHED_ALPHA

HELP = (
    "Scaling laws of memorization (Morris et al. 2025): fit the membership-inference law to your "
    "measurements, or run the MIA-scaling and double-descent experiments."
)


def _print_fit(s: Any, title: str) -> None:
    """Print a :class:`memlens.laws.FitMiaSummary`."""
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    level = int(round(s.ci_level * 100))
    t = Table(title=title)
    t.add_column("constant")
    t.add_column("fitted", justify="right")
    t.add_column(f"{level}% CI", justify="right")
    t.add_column("published (corrected)", justify="right")
    for k, v in s.constants.items():
        lo, hi = s.ci[k]
        ci = "at bound" if s.at_bound[k] else f"[{lo:.4g}, {hi:.4g}]"
        t.add_row(k, f"{v:.4g}", ci, f"{s.published_constants[k]:.4g}")
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
    for r in s.predictions:
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
        f"{s.form}; rmse {s.rmse:.4f}, max |residual| {s.max_abs_residual:.4f}, "
        f"{s.n} rows, {s.dof} dof; capacity = {s.capacity_source}."
    )
    for w in s.warnings:
        console.print(f"[yellow]warning:[/yellow] {w}")


def register(app: typer.Typer) -> None:
    laws_app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False)

    @laws_app.command("fit-mia")
    def fit_mia(
        file: Path = typer.Argument(
            ...,
            help="CSV, JSONL or Parquet with columns params (or capacity_bits), n_sequences, f1.",
        ),
        alpha: options.Alpha = PUBLISHED_ALPHA,
        level: float = typer.Option(0.95, "--level", help="Confidence level of the intervals."),
        as_json: options.Json = False,
        out: options.Out = None,
    ) -> None:
        """Fit F1 = 1/2 (1 + c1 sigmoid(c2 - c3 |D|/Capacity)) by least squares, with CIs.

        With --out, write fit_mia.json, predictions.csv and fit_mia.png there."""
        from memlens.laws import FitMiaConfig, run_fit_mia
        from memlens.store import to_json

        result = run_fit_mia(FitMiaConfig(file=str(file), alpha=alpha, level=level), out)
        if as_json:
            typer.echo(to_json(result.summary.to_json()))
            return
        _print_fit(result.summary, f"memlens laws fit-mia: {file}")
        if result.out_dir is not None:
            typer.echo(f"wrote {result.out_dir}/fit_mia.json, predictions.csv, fit_mia.png")

    laws_app.command("mia-experiment")(
        _experiment(
            "mia", "Train shapes x dataset sizes on uniform tokens, attack with the loss threshold "
            "against as many unseen sequences, and fit the MIA scaling law to the measured F1."
        )
    )  # fmt: skip
    laws_app.command("double-descent")(
        _experiment(
            "double-descent", "One shape, dataset sizes spanning capacity ratio 0.1-10 on a Markov "
            "source: held-out loss against capacity ratio, and where it peaks."
        )
    )  # fmt: skip
    app.add_typer(laws_app, name="laws", help=HELP)


def _experiment(which: str, doc: str) -> Any:
    """The command of one laws experiment (both take the same options)."""

    def command(
        preset: str = typer.Option(
            "quick", "--preset", help="smoke (seconds), quick (minutes) or full."
        ),
        config: options.ConfigFile = None,
        out: options.Out = None,
        seed: options.Seed = None,
        max_steps: int | None = typer.Option(
            None, "--max-steps", help="Override the preset's step budget."
        ),
        device: str | None = typer.Option(
            None, "--device", help="cpu (default), cuda, mps or auto."
        ),
        threads: options.Threads = 1,
        as_json: options.Json = False,
        backend: options.Backend = "local",
        workers: options.Workers = None,
        ray_address: options.RayAddress = None,
        ray_cpus_per_cell: options.RayCpusPerCell = 1,
        ray_gpus_per_cell: options.RayGpusPerCell = 0,
    ) -> None:
        from memlens import laws
        from memlens.commands._ui import progress_bars
        from memlens.store import to_json

        build, recipe, printer, files = {
            "mia": (laws.mia_config, laws.run_mia_experiment, _print_mia,
                    "mia_experiment.json, runs.csv, mia_experiment.png"),
            "double-descent": (laws.double_descent_config, laws.run_double_descent, _print_dd,
                               "double_descent.json, runs.csv, double_descent.png"),
        }[which]  # fmt: skip
        options.set_threads(threads)
        cfg = build(preset, config, seed=seed, max_steps=max_steps, device=device)
        scale = options.scale_kwargs(
            backend, workers, ray_address, ray_cpus_per_cell, ray_gpus_per_cell
        )
        with progress_bars(enabled=not as_json) as progress:
            result = recipe(cfg, out, progress=progress, **scale)
        if as_json:
            typer.echo(to_json(result.summary.to_json()))
            return
        printer(result.summary)
        typer.echo(f"wrote {result.out_dir}/{files}")

    command.__doc__ = doc
    return command


def _print_mia(s: Any) -> None:
    """Print a :class:`memlens.laws.MiaExperimentSummary`."""
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    t = Table(title=f"MIA scaling experiment ({s.preset}): V={s.vocab_size}, S={s.seq_len}")
    for col in ("shape", "params", "N", "ratio", "|D|/C", "mem bits/param", "sat", "AUC", "F1",
                "fitted", "published"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in s.runs:
        t.add_row(
            f"L{r.n_layer} d{r.d_model}",
            f"{r.params:,}",
            f"{r.n_sequences:,}",
            f"{r.capacity_ratio:.3g}",
            f"{r.sequences_per_capacity_bit:.3g}",
            f"{r.memorized_bits_per_param:.2f}",
            "yes" if r.saturated else "no",
            f"{r.auc:.3f}",
            f"{r.f1:.3f}",
            f"{r.fitted_f1:.3f}" if r.fitted_f1 is not None else "-",
            f"{r.published_law_f1:.3f}",
        )
    console.print(t)
    if s.fit:
        f = s.fit
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
        console.print(f"law not fitted: {s.fit_skipped}")
    console.print("published (corrected): c1 = 1.3405, c2 = 1.1159, c3 = 120.61 (64-token text).")
    console.print(
        f"capacity = {s.capacity}; train time {s.train_seconds:.0f} s; reused cells: {s.reused_cells}"
    )


def _print_dd(s: Any) -> None:
    """Print a :class:`memlens.laws.DoubleDescentSummary`."""
    from rich.table import Table

    from memlens.commands._ui import make_console

    console = make_console()
    sh = s.shape
    t = Table(
        title=f"Double descent ({s.preset}): L={sh['n_layer']} d={sh['d_model']}, {sh['params']:,} params"
    )
    for col in ("ratio", "N", "train bits/tok", "held-out bits/tok", "excess", "memorized bits",
                "sat"):  # fmt: skip
        t.add_column(col, justify="right")
    for r in s.runs:
        t.add_row(
            f"{r.capacity_ratio:.3g}",
            f"{r.n_sequences:,}",
            f"{r.train_bits_per_token:.3f}",
            f"{r.test_bits_per_token:.3f}",
            f"{r.excess_test_bits_per_token:+.3f}",
            f"{r.memorized_bits:,.0f}",
            "yes" if r.saturated else "no",
        )
    console.print(t)
    console.print(
        f"source entropy rate {s.source['entropy_rate_bits']:.3f} bits/token; {s.peak['verdict']}."
    )
    console.print(f"train time {s.train_seconds:.0f} s; reused cells: {s.reused_cells}")
